#!/bin/bash
# Trains models/tiny-shapes on one CUDA GPU inside a fixed wall-clock budget: how the shipped model was made
# (tools/train/README.md). The same stages run on a CPU with `train.py all`; this script only sizes the step
# counts to the budget from a short timed pilot on the same machine, and runs the UNet and the DiT side by side.
#
#   tools/train/gpu-train.sh [BUDGET_S]     (default 330: seconds for the UNet + DiT stage)
#
# Environment: PYTHON (default python3; needs torch with CUDA, diffusers 0.32.2, transformers 4.57.1),
# CKPT (default tools/train/ckpt), LOGDIR (default tools/train), VAE_BUDGET_S (default 100), SKIP_SAMPLES.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
CK=${CKPT:-tools/train/ckpt}
LOGDIR=${LOGDIR:-tools/train}
BUDGET=${1:-330}
VAE_BUDGET=${VAE_BUDGET_S:-100}
NCPU=$(nproc)
export PYTHONUNBUFFERED=1 TRAIN_THREADS=4
mkdir -p "$LOGDIR" "$CK"

# 1. pilot: 40 timed steps (the rate of the last 15, past the warm-up) of each stage on a small pool (everything end to end but the samples)
PILOT=$(mktemp -d)
cp -r "$CK/tokenizer" "$PILOT/" 2>/dev/null || true
$PY tools/train/train.py vae --ckpt "$PILOT" --steps vae=40,unet=40,dit=40 --pool unet=4000,dit=2000 \
    > "$LOGDIR/pilot.log" 2>&1
$PY tools/train/train.py unet --ckpt "$PILOT" --steps vae=40,unet=40,dit=40 --pool unet=4000,dit=2000 \
    >> "$LOGDIR/pilot.log" 2>&1
$PY tools/train/train.py dit --ckpt "$PILOT" --steps vae=40,unet=40,dit=40 --pool unet=4000,dit=2000 \
    >> "$LOGDIR/pilot.log" 2>&1
$PY tools/train/train.py export --ckpt "$PILOT" --out "$PILOT/model" >> "$LOGDIR/pilot.log" 2>&1
rate() { grep "\[$1\] 40/40" "$LOGDIR/pilot.log" | sed 's/.*| \([0-9.]*\) s\/step.*/\1/'; }
RV=$(rate vae); RU=$(rate unet); RD=$(rate dit)
echo "pilot s/step: vae $RV unet $RU dit $RD"
rm -rf "$PILOT"

# 2. steps for the budget: the VAE alone (less its pool), then UNet and DiT side by side, each allowed 1/1.7 of
#    the GPU (the deadline ends a stage early, with its EMA weights, if sharing costs more than that)
read -r SV SU SD < <($PY - "$RV" "$RU" "$RD" "$VAE_BUDGET" "$BUDGET" <<'EOF'
import sys
rv, ru, rd, bv, b = (max(float(v), 0.002) for v in sys.argv[1:])
work = b - 60.0  # pool rendering, latents, start-up
sv = int((bv - 30.0) / rv) // 100 * 100
su = int(work / (1.7 * ru)) // 100 * 100
sd = int(work / (1.7 * rd)) // 100 * 100
print(*(min(max(s, 200), 30000) for s in (sv, su, sd)))
EOF
)
echo "steps: vae $SV unet $SU dit $SD (budgets ${VAE_BUDGET} s, ${BUDGET} s)"

# 3. the run
TRAIN_WORKERS=$NCPU $PY tools/train/train.py vae --ckpt "$CK" --steps vae=$SV --deadline-s "$VAE_BUDGET" \
    > "$LOGDIR/train-vae.log" 2>&1
W=$(( NCPU / 2 > 1 ? NCPU / 2 : 1 ))
TRAIN_WORKERS=$W $PY tools/train/train.py unet --ckpt "$CK" --steps unet=$SU --deadline-s "$BUDGET" \
    > "$LOGDIR/train-unet.log" 2>&1 &
PU=$!
TRAIN_WORKERS=$W $PY tools/train/train.py dit --ckpt "$CK" --steps dit=$SD --deadline-s "$BUDGET" \
    > "$LOGDIR/train-dit.log" 2>&1 &
PD=$!
wait $PU
wait $PD
$PY tools/train/train.py export --ckpt "$CK" > "$LOGDIR/train-export.log" 2>&1
[ -n "${SKIP_SAMPLES:-}" ] || TRAIN_THREADS=$NCPU $PY tools/train/train.py samples --ckpt "$CK" \
    > "$LOGDIR/train-samples.log" 2>&1
echo "done"
