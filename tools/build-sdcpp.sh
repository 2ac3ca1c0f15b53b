#!/bin/sh
# Builds stable-diffusion.cpp's CLI for make bench-full, CPU backend only, into build/bench/sdcpp
# (bin/sd). Development-time only and never committed: the source is fetched from its public
# repository at the commit the README's performance table was measured with.
#
#   tools/build-sdcpp.sh [source-dir]   (a checkout already on disk, e.g. without network)
set -eu
SDCPP_COMMIT=97d2990807fe6d558e395f8764198d7c7e7b411c # leejet/stable-diffusion.cpp
GGML_COMMIT=8e800cef2948046cc47f9db6090491c6128ca42c  # ggml-org/ggml, its submodule at that commit
DEST=build/bench/sdcpp
mkdir -p "$DEST"
SRC=${1:-$DEST/src}
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  git clone https://github.com/leejet/stable-diffusion.cpp "$SRC"
  git -C "$SRC" checkout "$SDCPP_COMMIT"
  git -C "$SRC" submodule update --init ggml
  git -C "$SRC/ggml" checkout "$GGML_COMMIT"
fi
command -v cmake > /dev/null || { echo "build-sdcpp: needs cmake (apt-get install cmake)" >&2; exit 1; }
# Release, -march=native (GGML_NATIVE), ggml's own CPU kernels with OpenMP: no BLAS, no GPU backend.
cmake -S "$SRC" -B "$DEST/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DSD_CUDA=OFF -DGGML_BLAS=OFF \
  -DSD_WEBP=OFF -DSD_WEBM=OFF
cmake --build "$DEST/build" --target sd-cli -j "$(nproc)"
mkdir -p "$DEST/bin"
ln -sf ../build/bin/sd-cli "$DEST/bin/sd"
"$DEST/bin/sd" --help | head -n 3
