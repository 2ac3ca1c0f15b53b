#!/bin/bash
# Trains the finished DiT on for one more phase, on one CUDA GPU, inside a wall-clock budget: how its GPU phase
# was made (tools/train/README.md). A timed pilot of a fresh DiT at each candidate batch size picks the batch
# (the larger only for 1.3 times the samples per second) and sizes the phase's steps (its warm-up and cosine) to
# what is left of the budget; --deadline-s ends the phase, as it is, if that estimate was short.
#
#   tools/train/gpu-dit.sh [BUDGET_S]     (default 520: seconds for the whole script, pilot included)
#
# Environment: PYTHON (default python3; torch with CUDA and diffusers 0.32.2), CKPT (default tools/train/ckpt:
# vae.pt and a finished dit.pt), LOGDIR (default tools/train), POOL (scenes for the phase, default 200000),
# BATCHES (candidates as batch:peak-lr, ascending, default "512:8e-4 1024:1e-3 2048:1.2e-3"), PILOT_STEPS
# (default 150), SETUP_S (the phase's own start-up, pool and final save, default 60).
set -euo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
CK=${CKPT:-tools/train/ckpt}
LOGDIR=${LOGDIR:-tools/train}
BUDGET=${1:-520}
POOL=${POOL:-200000}
NP=${PILOT_STEPS:-150}
SETUP=${SETUP_S:-60}
export PYTHONUNBUFFERED=1 TRAIN_THREADS=${TRAIN_THREADS:-4} TRAIN_WORKERS=${TRAIN_WORKERS:-$(nproc)}
mkdir -p "$LOGDIR"
[ -f "$CK/vae.pt" ] && [ -f "$CK/dit.pt" ] || { echo "gpu-dit.sh: $CK needs vae.pt and dit.pt" >&2; exit 1; }

# 1. pilot: NP steps of a fresh DiT on a small pool at each batch size (ascending); the rate of the last 25
#    steps. A larger batch is taken only for 1.3 times the samples per second: it also means fewer steps.
best_b="" best_lr="" best_r="" best_sps=0
for cand in ${BATCHES:-512:8e-4 1024:1e-3 2048:1.2e-3}; do
    b=${cand%%:*} lr=${cand##*:}
    P=$(mktemp -d)
    cp "$CK/vae.pt" "$P/"
    log="$LOGDIR/gpu-dit-pilot-$b.log"
    $PY tools/train/train.py dit --ckpt "$P" --steps dit="$NP" --set dit.batch="$b" --pool dit=2000 > "$log" 2>&1 ||
        { tail -20 "$log" >&2; rm -rf "$P"; exit 1; }
    rm -rf "$P"
    r=$(grep "\[dit\] $NP/$NP" "$log" | sed 's/.*| \([0-9.]*\) s\/step.*/\1/')
    sps=$($PY -c "print(int($b / max($r, 1e-4)))")
    echo "pilot: batch $b, $r s/step, $sps samples/s"
    if [ $(( sps * 10 )) -gt $(( best_sps * 13 )) ]; then best_b=$b best_lr=$lr best_r=$r best_sps=$sps; fi
done

# 2. the phase: the steps that fit what is left, less its start-up; the deadline a little inside the budget
left=$(( BUDGET - ($(date +%s) - T0) ))
steps=$($PY -c "print(max(100, int(0.95 * ($left - $SETUP) / $best_r) // 100 * 100))")
echo "phase: $steps steps x $best_b, peak lr $best_lr, pool $POOL, deadline $((left - 10)) s"
$PY tools/train/train.py dit --ckpt "$CK" --extend dit="$steps" \
    --set dit.batch="$best_b",dit.lr="$best_lr",dit.ckpt_every=2000 --pool dit="$POOL" --deadline-s $((left - 10)) \
    > "$LOGDIR/train-dit-gpu.log" 2>&1 || { tail -20 "$LOGDIR/train-dit-gpu.log" >&2; exit 1; }
grep "\[dit\]" "$LOGDIR/train-dit-gpu.log" | tail -3
echo "done in $(( $(date +%s) - T0 )) s"
