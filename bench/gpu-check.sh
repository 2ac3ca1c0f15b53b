#!/bin/sh
# The OpenCL GPU check, for a lent GPU machine (never needed for CI).
#
# Here:   make gpu-bundle        (builds the test and bench binaries and copies
#                                 them with every shared library they need,
#                                 CLBlast and the OpenCL ICD loader included,
#                                 into build/gpu-bundle)
# There:  sh bench/gpu-check.sh  (with build/gpu-bundle, or build/gpu-bundle.tar.xz, carried along)
#
# It registers the NVIDIA OpenCL driver with the bundled ICD loader when the
# machine has one, lists the devices, runs the backend-consistency suite and
# the torch-fixture suite on the GPU, then the OpenCL benchmark; each step is
# time-boxed so the whole check stays within 8 minutes.
set -u
B=${GPU_BUNDLE:-build/gpu-bundle}
. bench/gpu-env.sh
[ -x "$B/bin/opencl_devices" ] || { echo "gpu-check: $B missing: run 'make gpu-bundle' first and carry it"; exit 2; }
export LD_LIBRARY_PATH="$BUNDLE_LIBS"  # (only the bundle's binaries run here)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

echo "== devices"
if ! timeout 60 "$B/bin/opencl_devices"; then
    echo "gpu-check: the bundled binaries do not start here; missing libraries:"
    ldd "$B/bin/opencl_devices" | grep 'not found'
    exit 1
fi
export DIFUSA_DEVICE="${DIFUSA_DEVICE:-}" DIFUSA_REQUIRE_OPENCL=1
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$(mktemp -d)}"
echo "== backend consistency (OpenCL vs CPU) on the default device (the first GPU)"
timeout 150 "$B/bin/test_opencl" --jobs 1 2>&1 | grep -vE '^\[(RUN |PASS)\]' | tail -n 40
echo "== torch fixtures on OpenCL"
timeout 90 "$B/bin/test_ops_opencl" --jobs 1 2>&1 | grep -vE '^\[(RUN |PASS)\]' | tail -n 20
echo "== models on OpenCL: CLIP, UNet, VAE, DiT against transformers / diffusers"
for t in test_clip_opencl test_unet_opencl test_dit_opencl; do
    timeout 60 "$B/bin/$t" --jobs 1 --verbose 2>&1 | grep -E 'max rel err|FAIL|Synthesis' | tail -n 30
done
echo "== make bench, OpenCL"
timeout 200 "$B/bin/bench_ops" opencl
