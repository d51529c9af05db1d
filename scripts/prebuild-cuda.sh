#!/usr/bin/env bash
# Builds the CUDA prebuilt binaries (prebuilds/<platform>-<arch>/sdtorch.cu130.torch-<v>.node, and
# the same file as sdtorch.cu128.torch-<v>.node) against the CUDA build of libtorch in the torch
# wheel, with the CUDA toolkit's nvcc present. No GPU is needed to compile and link.
#   bash scripts/prebuild-cuda.sh [torch version, default 2.14.1]     (after npm run build:ts)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-2.14.1}"
dir=".cache/torch-${version}-cuda"
cuda="${CUDA_HOME:-/usr/local/cuda}"

# The wheel's libtorch (include/, lib/, share/cmake) is all the build needs: no dependencies.
if [ ! -f "$dir/torch/share/cmake/Torch/TorchConfigVersion.cmake" ]; then
  python3 -m pip install --quiet --root-user-action=ignore --retries 0 --timeout 5 --no-deps --target "$dir" "torch==${version}"
fi
# libtorch's CMake config asks for NVRTC; a toolkit without it gets the one from NVIDIA's wheel.
if ! ls "$cuda"/lib64/libnvrtc.so* >/dev/null 2>&1; then
  major="$("$cuda/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
  python3 -m pip install --quiet --root-user-action=ignore --retries 0 --timeout 5 --no-deps --target "$dir" "nvidia-cuda-nvrtc>=${major},<$((major + 1))"
  nvrtc="$(find "$dir/nvidia" -name "libnvrtc.so.${major}" | head -1)"
  export SDTORCH_CMAKE_ARGS="${SDTORCH_CMAKE_ARGS:-} -DCUDA_nvrtc_LIBRARY=$(pwd)/$nvrtc"
fi
CUDA_HOME="$cuda" node scripts/prebuild.js --libtorch "$dir/torch"

# Linked against libtorch's CUDA library (else CUDA kernels would not register), with no path
# of this machine recorded in it.
out="$(ls prebuilds/*/sdtorch.cu*.torch-"${version}".node)"
readelf -d "$out" | grep -q 'NEEDED.*\[libtorch_cuda.so\]' || { echo "prebuild-cuda: $out does not link libtorch_cuda.so" >&2; exit 1; }
if readelf -d "$out" | grep -q -E 'RPATH|RUNPATH'; then echo "prebuild-cuda: $out records a library path" >&2; exit 1; fi
echo "prebuild-cuda: $out links libtorch_cuda.so" >&2

# The addon has no CUDA code of its own: it imports no symbol from libtorch's CUDA libraries and
# only needs libtorch_cuda.so loaded (its kernels register themselves). So the same binary runs
# with a CUDA 12 build of the same libtorch, for drivers older than CUDA 13's; it ships under
# that name too. Checked here, so that a change importing CUDA symbols stops it.
lib="$dir/torch/lib"
cuda_symbols="$(nm -D --defined-only "$lib/libtorch_cuda.so" "$lib/libc10_cuda.so" | awk 'NF == 3 {print $3}' | sort -u)"
imports="$(nm -D --undefined-only "$out" | awk '{print $NF}' | sort -u)"
shared="$(comm -12 <(echo "$cuda_symbols") <(echo "$imports"))"
if [ -n "$shared" ]; then
  echo "prebuild-cuda: $out imports symbols of libtorch's CUDA libraries; a CUDA 12 binary needs its own build:" >&2
  echo "$shared" | head >&2
  exit 1
fi
cu12="$(dirname "$out")/sdtorch.cu128.torch-${version}.node"
cp "$out" "$cu12"
echo "prebuild-cuda: $cu12 (the same binary: it imports nothing from libtorch_cuda.so or libc10_cuda.so)" >&2
