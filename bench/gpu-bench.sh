#!/bin/sh
# The GPU benchmark of issue 10, for a lent GPU machine (never in CI): SD1.5 at 512 x 512, difusa through
# OpenCL (NVIDIA's ICD) against PyTorch CUDA fp32 and fp16 (diffusers) on the same GPU, in one script,
# within 8 minutes.
#
# Here:   make gpu-bundle       (the host and the test binaries with their libraries, build/gpu-bundle, and
#                                the same packed, build/gpu-bundle.tar.xz: 11 MB against 59)
# There:  sh bench/gpu-bench.sh (with either carried; python3 with torch, diffusers and transformers
#                                importable there, e.g. wheels installed with pip --target + PYTHONPATH)
#
# Environment: STEPS (default 10), GEN_TIMEOUT_S, DIFUSA_TIMEOUT_S, TORCH_TIMEOUT_S (180, 150, 100: each part's
# limit), GPU_BUNDLE, PYTHON, BENCH_MODELS.
#
# The SD1.5 random-weight model is generated there (tools/gen_bench_models.py, about a minute), not carried.
# Each line is bench/full.lua's or tools/bench_torch.py's: step_s is one UNet step with CFG (batch 2).
set -u
B=${GPU_BUNDLE:-build/gpu-bundle}
PY=${PYTHON:-python3}
MODELS=${BENCH_MODELS:-/tmp/bench-models}
STEPS=${STEPS:-10}
. bench/gpu-env.sh
[ -x "$B/bin/difusa" ] || { echo "gpu-bench: $B/bin/difusa missing: run 'make gpu-bundle' first and carry it"; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
date -u +"gpu-bench: %Y-%m-%d %H:%M UTC"
timeout "${GEN_TIMEOUT_S:-180}" "$PY" tools/gen_bench_models.py "$MODELS" sd15 ||
    { echo "gpu-bench: could not write the model"; exit 1; }
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$(mktemp -d)}"
echo "== OpenCL devices"
LD_LIBRARY_PATH="$BUNDLE_LIBS" timeout 30 "$B/bin/opencl_devices" 2>&1 | head -n 20
echo "== difusa, OpenCL (the first GPU)"
LD_LIBRARY_PATH="$BUNDLE_LIBS" timeout "${DIFUSA_TIMEOUT_S:-150}" "$B/bin/difusa" bench/full.lua sd \
    "$MODELS/sd15.safetensors" 512 "$STEPS" opencl 2>&1 | tail -n 3
for dt in fp32 fp16; do
    echo "== PyTorch CUDA $dt"
    timeout "${TORCH_TIMEOUT_S:-100}" "$PY" tools/bench_torch.py sd "$MODELS/sd15" 512 "$STEPS" cuda "" "$dt" 2>&1 |
        tail -n 1
done
