# Sourced by bench/gpu-check.sh and bench/gpu-bench.sh on a lent GPU machine: the bundle unpacked from
# $B.tar.xz when only that was carried, BUNDLE_LIBS (its libraries, for LD_LIBRARY_PATH when running its
# binaries, and only then: its libstdc++ and libgomp are older than those the machine's Python and torch
# need), and the NVIDIA driver's OpenCL library registered with the bundled ICD loader (with any ICDs the
# machine lists itself). Needs $B, the bundle folder.
if [ ! -d "$B/bin" ] && [ -f "$B.tar.xz" ]; then
    tar -C "$(dirname "$B")" -xJf "$B.tar.xz" && echo "gpu: unpacked $B.tar.xz"
fi
BUNDLE_LIBS="$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
icd_dir=$(mktemp -d)
trap 'rm -rf "$icd_dir"' EXIT

# The NVIDIA driver's OpenCL library, wherever the machine keeps it.
nv=$( (ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ {print $NF; exit}');
      find /usr/lib /usr/lib64 /usr/local/nvidia /usr/local/lib -name 'libnvidia-opencl.so.1' 2>/dev/null | head -n 1)
nv=$(printf '%s\n' "$nv" | grep -m1 . || true)
if [ -n "$nv" ]; then
    echo "$nv" > "$icd_dir/nvidia.icd"
    echo "gpu: NVIDIA OpenCL driver: $nv"
else
    echo "gpu: no libnvidia-opencl.so.1 on this machine (nvidia-smi: $(command -v nvidia-smi || echo absent))"
fi
for f in /etc/OpenCL/vendors/*.icd; do [ -f "$f" ] && cp "$f" "$icd_dir/"; done
export OCL_ICD_VENDORS="$icd_dir"
