#!/usr/bin/env bash
# Builds stable-diffusion.cpp's CLI (sd-cli) for the CPU, the third peer of scripts/benchmark.js
# (--sdcpp BIN), and prints the binary's path as the last line of stdout.
#   bash scripts/bench/sdcpp.sh SDCPP_SRC [GGML_SRC]
#   SDCPP_SRC / GGML_SRC may also come from the environment. SDCPP_SRC is a source tree of
#   leejet/stable-diffusion.cpp; GGML_SRC the ggml tree its `ggml` submodule points to (not needed
#   when SDCPP_SRC/ggml already holds it, as in a recursive clone). Nothing is downloaded.
# Env: SDCPP_BUILD_DIR (default .bench/sdcpp, ignored by git), SDCPP_JOBS (default 2),
#      SDCPP_NICE (default 19: the build yields to anything else on the machine).
# CPU only: Release, -march=native through GGML_NATIVE, OpenMP; no CUDA/Vulkan/Metal/BLAS, no
# WebP/WebM (the benchmark writes PNG).
set -euo pipefail

SDCPP_SRC=${1:-${SDCPP_SRC:-}}
GGML_SRC=${2:-${GGML_SRC:-}}
if [ -z "$SDCPP_SRC" ] || [ ! -f "$SDCPP_SRC/CMakeLists.txt" ] || [ ! -d "$SDCPP_SRC/src" ]; then
  echo "usage: sdcpp.sh SDCPP_SRC [GGML_SRC] (a stable-diffusion.cpp source tree, and its ggml)" >&2
  exit 2
fi
if [ -z "$GGML_SRC" ]; then GGML_SRC=$SDCPP_SRC/ggml; fi
if [ ! -f "$GGML_SRC/CMakeLists.txt" ] || [ ! -d "$GGML_SRC/src/ggml-cpu" ]; then
  echo "sdcpp.sh: no ggml source tree at $GGML_SRC (give GGML_SRC)" >&2
  exit 2
fi

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${SDCPP_BUILD_DIR:-$repo/.bench/sdcpp}
jobs=${SDCPP_JOBS:-2}
nice=${SDCPP_NICE:-19}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# A private copy of the sources (cp -a keeps the times, so a rebuild only compiles what changed):
# the trees given stay untouched, and ggml goes where the submodule would be.
rm -rf "$out/src"
mkdir -p "$out/src"
(cd "$SDCPP_SRC" && tar --exclude=./ggml --exclude=./assets --exclude=./.git -cf - .) | tar -xf - -C "$out/src"
mkdir -p "$out/src/ggml"
(cd "$GGML_SRC" && tar --exclude=./.git -cf - .) | tar -xf - -C "$out/src/ggml"
for d in "$SDCPP_SRC" "$GGML_SRC"; do
  echo "$d: $(git -C "$d" describe --tags --always --dirty 2>/dev/null || echo 'not a git checkout')"
done > "$out/sources.txt"

# The tokenizer vocabularies of the other model families (T5, UMT5, Qwen, Mistral, Gemma, GPT-OSS)
# are generated headers of several tens of MB, compiled into one file: slow to build on a small
# machine and not needed for SD 1.x, which uses only CLIP's merges. This build replaces vocab.cpp
# with one that keeps CLIP's and makes every other loader stop with a message, so the binary is an
# SD 1.x/2.x/SDXL build only. The stub is written from vocab.h's declarations, so it follows them.
vocab=$out/src/src/tokenizers/vocab
[ -f "$vocab/vocab.h" ] && [ -f "$vocab/clip_merges.hpp" ] || { echo "sdcpp.sh: unexpected layout of $vocab" >&2; exit 1; }
{
  echo '// Written by sdtorch scripts/bench/sdcpp.sh: a CLIP-only vocabulary for an SD 1.x build.'
  echo '#include <cstdio>'
  echo '#include <cstdlib>'
  echo '#include "vocab.h"'
  echo '#include "clip_merges.hpp"'
  echo 'std::string load_clip_merges() {'
  echo '    return std::string(reinterpret_cast<const char*>(clip_merges_utf8_c_str), sizeof(clip_merges_utf8_c_str));'
  echo '}'
  for f in $(sed -n 's/^std::string \(load_[a-z0-9_]*\)().*/\1/p' "$vocab/vocab.h"); do
    [ "$f" = load_clip_merges ] && continue
    echo "std::string $f() {"
    echo "    fprintf(stderr, \"this sd-cli was built for SD 1.x only: $f is stubbed\\n\");"
    echo '    abort();'
    echo '}'
  done
} > "$vocab/vocab.cpp"
# Only vocab.cpp is compiled (CMake globs the .cpp files); the big headers need not be there at all.
find "$vocab" -name '*.hpp' ! -name clip_merges.hpp -delete

gen=()
if command -v ninja >/dev/null; then gen=(-G Ninja); fi
start=$(date +%s)
# The sources sit below this repository: without the ceiling, CMake's `git describe` would name
# sdtorch's commit as stable-diffusion.cpp's version.
export GIT_CEILING_DIRECTORIES=$out
nice -n "$nice" cmake -S "$out/src" -B "$out/build" "${gen[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DGGML_BLAS=OFF \
  -DSD_CUDA=OFF -DSD_VULKAN=OFF -DSD_METAL=OFF -DSD_HIPBLAS=OFF -DSD_OPENCL=OFF -DSD_SYCL=OFF \
  -DSD_WEBP=OFF -DSD_WEBM=OFF -DSD_BUILD_SHARED_LIBS=OFF -DSD_BUILD_EXAMPLES=ON >&2
nice -n "$nice" cmake --build "$out/build" --target sd-cli -j "$jobs" >&2
bin=$out/build/bin/sd-cli
[ -x "$bin" ] || { echo "sdcpp.sh: no binary at $bin" >&2; exit 1; }
echo "built in $(( $(date +%s) - start )) s ($jobs jobs); sources: $(tr '\n' ' ' < "$out/sources.txt")" >&2
echo "$bin"
