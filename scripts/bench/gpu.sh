#!/usr/bin/env bash
# sdtorch on a GPU machine in one run (issue #16): build, correctness against the CPU, speed against
# diffusers. Made for a lent machine with python3 + torch (CUDA), nvcc, cmake and ninja but no node,
# npm or diffusers: those come from the bundle scripts/bench/gpu-bundle.sh writes into .gpu/.
# Without a GPU (or with GPU_SH_DEVICE=cpu) the same steps run small on the CPU, with no bundle and
# no build (the binary that already loads), so CI runs this script's CPU part.
#
#   bash scripts/bench/gpu.sh         (from the repo root; also as .gpu/bench/gpu.sh, the bundle's copy)
#
# Steps (each timed; the summary is one JSON line, printed last and written to $OUT/gpu.json):
#   1. bring: node from .gpu/node.xz, node_modules + dist from .gpu/modules.tar.xz, diffusers' source
#      from .gpu/diffusers.tar.xz (unpacked with python3, which needs no xz binary)
#   2. build: the addon from source against this machine's Python torch (npm run build:native's
#      path, cmake-js; a direct cmake call if that fails), then check it loads and sees CUDA
#   3. weights: the random fp16 SD 1.5 file (scripts/make_random_sd15.py's recipe, its .fp16 bytes),
#      drawn while the addon builds
#   4. correctness: one generate (seed 1, euler_a, decode: false) on cpu/float32 and on each target;
#      final latents' relative error: cuda/float32 < 1e-3, cuda/float16 < 2e-2, all finite
#   5. speed: whole generate() calls, 20 euler steps, CFG 7.5, decode off, sdtorch vs diffusers eager
#      vs diffusers with a compiled UNet (compile time apart); processes alternate S D | D S; medians
#
# Settings (environment; defaults in brackets, cuda | cpu):
#   GPU_SH_DEVICE auto|cuda|cpu [auto: cuda when nvidia-smi and torch see a GPU]
#   GPU_SH_WEIGHTS FILE         [cuda: drawn into $GPU_SH_WORK; cpu: .cache/weights/...fp16, drawn if missing]
#   GPU_SH_CHECK_SIZE [256 | 64]  GPU_SH_CHECK_STEPS [5 | 2]
#   GPU_SH_SIZE [512 | 64]  GPU_SH_STEPS [20 | 2]  GPU_SH_BATCHES [1,4 | 1,2]  GPU_SH_REPEATS [3 | 1]
#   GPU_SH_DTYPE [float16 | float32]  GPU_SH_ROUNDS [2 | 1]  GPU_SH_COMPILE [1 | 0]
#   GPU_COMPILE_MODE [reduce-overhead]   GPU_SH_BUDGET seconds for the whole run [390]: the second
#   round is skipped when it would not fit; GPU_SH_DEADLINE [410]: a correctness or speed process
#   still running then is stopped (a diffusers run's eager figures are printed before it compiles)
#   GPU_SH_BUILD 1|0 [cuda: 1, cpu: 0]  GPU_SH_DIRECT_CMAKE=1: cmake alone, not cmake-js   GPU_SH_DIFFUSERS DIR (holding diffusers/) or none [bundle, else import]
#   GPU_SH_WORK DIR [/tmp/sdtorch-gpu]   OUT DIR for gpu.json [a new temp dir]
#   GPU_SH_UNPACK=1: use the bundle's node and packages even where node and npm's packages exist
# Exit status 0 when every step ran and every check passed.
set -uo pipefail
start=$SECONDS
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(pwd)"
export SDTORCH_ROOT="$ROOT"
if [ ! -f "$ROOT/package.json" ] || [ ! -f "$ROOT/CMakeLists.txt" ]; then
  echo "gpu.sh: run it from the sdtorch repo root" >&2
  exit 2
fi
WORK="${GPU_SH_WORK:-/tmp/sdtorch-gpu}"
OUT="${OUT:-$(mktemp -d /tmp/sdtorch-gpu-out.XXXXXX)}"
mkdir -p "$WORK" "$OUT"
rm -f "$WORK"/*.jsonl
BUNDLE="$ROOT/.gpu"
STATUS=0

say() { printf '[gpu.sh %3ds] %s\n' "$((SECONDS - start))" "$*"; }
# One JSON line into $WORK/NAME.jsonl (python3 quotes it; node may not be there yet).
jline() { python3 -c 'import json,sys; print(json.dumps({"mode": sys.argv[1], sys.argv[2]: sys.argv[3]}))' "$2" "$3" "$4" >>"$WORK/$1.jsonl"; }
note() { say "NOTE: $*"; jline notes note note "$*"; }
fail() { note "FAILED: $*"; STATUS=1; }
timing() { python3 -c 'import json,sys; print(json.dumps({"mode": "timing", "timings_s": {sys.argv[1]: float(sys.argv[2])}}))' "$1" "$2" >>"$WORK/timing.jsonl"; }
finish() {
  timing total "$((SECONDS - start))"
  local files=("$WORK"/env.jsonl "$WORK"/info.jsonl "$WORK"/check.jsonl "$WORK"/speed.jsonl "$WORK"/timing.jsonl "$WORK"/notes.jsonl)
  if command -v node >/dev/null && node "$HERE/gpu-sdtorch.js" summary "${files[@]}" >"$OUT/gpu.json.tmp"; then
    mv "$OUT/gpu.json.tmp" "$OUT/gpu.json"
  else # no node: the raw lines, still one JSON object
    python3 -c 'import json,sys; print(json.dumps({"raw": [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip()]}))' \
      $(ls "${files[@]}" 2>/dev/null) >"$OUT/gpu.json"
  fi
  python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT/gpu.json" || STATUS=1
  say "done in $((SECONDS - start)) s, status $STATUS; summary in $OUT/gpu.json:"
  cat "$OUT/gpu.json"
  exit "$STATUS"
}

# ---- mode and settings ----
DEVICE="${GPU_SH_DEVICE:-auto}"
if [ "$DEVICE" = auto ]; then
  DEVICE=cpu
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 &&
    python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    DEVICE=cuda
  fi
fi
if [ "$DEVICE" = cuda ]; then
  d_check_size=256 d_check_steps=5 d_size=512 d_steps=20 d_batches=1,4 d_repeats=3 d_dtype=float16 d_rounds=2 d_compile=1 d_build=1
  d_targets="cuda/float32:1e-3 cuda/float16:2e-2"
else
  d_check_size=64 d_check_steps=2 d_size=64 d_steps=2 d_batches=1,2 d_repeats=1 d_dtype=float32 d_rounds=1 d_compile=0 d_build=0
  d_targets="cpu/float32:1e-3"
fi
CHECK_SIZE="${GPU_SH_CHECK_SIZE:-$d_check_size}" CHECK_STEPS="${GPU_SH_CHECK_STEPS:-$d_check_steps}"
SIZE="${GPU_SH_SIZE:-$d_size}" STEPS="${GPU_SH_STEPS:-$d_steps}" BATCHES="${GPU_SH_BATCHES:-$d_batches}"
REPEATS="${GPU_SH_REPEATS:-$d_repeats}" DTYPE="${GPU_SH_DTYPE:-$d_dtype}" ROUNDS="${GPU_SH_ROUNDS:-$d_rounds}"
COMPILE="${GPU_SH_COMPILE:-$d_compile}" BUILD="${GPU_SH_BUILD:-$d_build}" TARGETS="${GPU_SH_TARGETS:-$d_targets}"
BUDGET="${GPU_SH_BUDGET:-390}" DEADLINE="${GPU_SH_DEADLINE:-410}"
# Seconds a step may still take: up to the deadline, at least 30.
left() { local l=$((DEADLINE - (SECONDS - start))); echo $((l < 30 ? 30 : l)); }
export SDTORCH_CACHE="${SDTORCH_CACHE:-$WORK/cache}" SDTORCH_SKIP_DOWNLOAD=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error \
  DIFFUSERS_VERBOSITY=error PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 TOKENIZERS_PARALLELISM=false
say "device $DEVICE; root $ROOT; work $WORK; out $OUT"

# ---- 1. bring node, node_modules + dist, diffusers ----
t=$SECONDS
if [ -f "$BUNDLE/node.xz" ] && { [ "$DEVICE" = cuda ] || [ "${GPU_SH_UNPACK:-0}" = 1 ] || ! command -v node >/dev/null; }; then
  mkdir -p "$WORK/node/bin"
  python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"), 1 << 20)' \
    "$BUNDLE/node.xz" "$WORK/node/bin/node" && chmod +x "$WORK/node/bin/node"
  export PATH="$WORK/node/bin:$PATH"
fi
untar() { python3 -c 'import sys,tarfile; t = tarfile.open(sys.argv[1], "r:xz"); t.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))' "$1" "$2"; }
# A tree npm installed (node_modules/.package-lock.json) keeps its own packages and dist.
if [ -f "$BUNDLE/modules.tar.xz" ] && { [ "${GPU_SH_UNPACK:-0}" = 1 ] || [ ! -f "$ROOT/node_modules/.package-lock.json" ]; }; then
  rm -rf "$ROOT/dist"
  untar "$BUNDLE/modules.tar.xz" "$ROOT" || fail "unpacking $BUNDLE/modules.tar.xz"
fi
DIFFUSERS="${GPU_SH_DIFFUSERS:-}"
if [ "$DIFFUSERS" = none ]; then
  :
elif [ -z "$DIFFUSERS" ] && [ -f "$BUNDLE/diffusers.tar.xz" ]; then
  rm -rf "$WORK/diffusers-src" && mkdir -p "$WORK/diffusers-src"
  untar "$BUNDLE/diffusers.tar.xz" "$WORK/diffusers-src" && DIFFUSERS="$WORK/diffusers-src"
fi
HAVE_DIFFUSERS=0
if [ "$DIFFUSERS" != none ]; then
  [ -n "$DIFFUSERS" ] && export PYTHONPATH="$DIFFUSERS${PYTHONPATH:+:$PYTHONPATH}"
  python3 -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("diffusers") else 1)' 2>/dev/null && HAVE_DIFFUSERS=1
fi
timing unpack "$((SECONDS - t))"
if ! command -v node >/dev/null; then fail "no node (no $BUNDLE/node.xz and none on PATH)"; finish; fi
say "node $(node --version) at $(command -v node); diffusers: $([ $HAVE_DIFFUSERS = 1 ] && echo "yes${DIFFUSERS:+ ($DIFFUSERS)}" || echo no)"
[ -f "$ROOT/dist/index.js" ] || { fail "no dist/ (npm run build:ts, or the bundle's modules.tar.xz)"; finish; }

# What this machine is, for the summary.
python3 - "$DEVICE" "${DIFFUSERS#none}" >>"$WORK/env.jsonl" <<'EOF' || note "could not read the environment"
import json, os, platform, re, subprocess, sys
import torch
env = {"device": sys.argv[1], "torch": torch.__version__, "torch_cuda": torch.version.cuda, "python": platform.python_version(),
       "cpus": os.cpu_count(), "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()}
if torch.cuda.is_available():
    env["gpu"] = torch.cuda.get_device_name(0)
    try:
        env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
init = os.path.join(sys.argv[2] or "", "diffusers", "__init__.py")
if os.path.exists(init):
    m = re.search(r'__version__ = "([^"]+)"', open(init).read())
    env["diffusers"] = m and m.group(1)
try:
    import transformers
    env["transformers"] = transformers.__version__
except ImportError:
    pass
print(json.dumps({"mode": "env", "env": env}))
EOF

# ---- 3 (in the background). the random fp16 SD 1.5 checkpoint ----
WEIGHTS="${GPU_SH_WEIGHTS:-}"
if [ -z "$WEIGHTS" ]; then
  if [ "$DEVICE" = cpu ] && [ -f "$ROOT/.cache/weights/sd15-random-1234.fp16.safetensors" ]; then
    WEIGHTS="$ROOT/.cache/weights/sd15-random-1234.fp16.safetensors"
  else
    WEIGHTS="$WORK/weights/sd15-random-1234.fp16.safetensors"
  fi
fi
weights_pid=
if [ ! -f "$WEIGHTS" ]; then
  say "drawing $WEIGHTS in the background"
  mkdir -p "$(dirname "$WEIGHTS")"
  # make_random_sd15.py's recipe (same manifest, seed, order); only its .fp16.safetensors is written,
  # with the same save_file call, so the bytes are that file's.
  python3 - "$ROOT/scripts" "$WEIGHTS" "$WORK/timing.jsonl" >"$WORK/weights.log" 2>&1 <<'EOF' &
import sys, time
sys.path.insert(0, sys.argv[1])
t = time.perf_counter()
import make_random_sd15 as m
from safetensors.torch import save_file
sd = m.random_state_dict(1234)
drawn = time.perf_counter() - t
half = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
del sd
save_file(half, sys.argv[2] + ".tmp")
import os
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
written = time.perf_counter() - t - drawn
print(f"weights: drawn in {drawn:.1f} s, written in {written:.1f} s", flush=True)
import json
with open(sys.argv[3], "a") as f:
    f.write(json.dumps({"mode": "timing", "timings_s": {"weights_draw": drawn, "weights_write": written}}) + "\n")
EOF
  weights_pid=$!
  weights_t=$SECONDS
fi

# ---- 2. build the addon against this machine's Python torch ----
if [ "$BUILD" = 1 ]; then
  t=$SECONDS
  jobs="$(nproc)"
  if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then CUDA_HOME=/usr/local/cuda; fi
  if [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null; then CUDA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"; fi
  export CUDA_HOME="${CUDA_HOME:-}"
  # cmake and ninja may be Python packages whose programs are not on PATH.
  command -v cmake >/dev/null || PATH="$(python3 -c 'import cmake, os; print(os.path.join(os.path.dirname(cmake.__file__), "data", "bin"))' 2>/dev/null):$PATH"
  command -v ninja >/dev/null || PATH="$(python3 -c 'import ninja; print(ninja.BIN_DIR)' 2>/dev/null):$PATH"
  torch_dir="$(python3 -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')"
  extra=""
  # libtorch's CMake config asks for NVRTC: a toolkit without it gets the one from NVIDIA's wheel.
  if [ -n "$CUDA_HOME" ] && ! ls "$CUDA_HOME"/lib64/libnvrtc.so* "$CUDA_HOME"/targets/*/lib/libnvrtc.so* >/dev/null 2>&1; then
    nvrtc="$(find "$(dirname "$torch_dir")/nvidia" -name 'libnvrtc.so*' 2>/dev/null | grep -v builtins | head -1)"
    [ -n "$nvrtc" ] && extra="-DCUDA_nvrtc_LIBRARY=$nvrtc"
  fi
  say "building the addon against $torch_dir (CUDA_HOME=${CUDA_HOME:-none}, -j$jobs) ${extra}"
  rm -rf "$ROOT/build" "$WORK/build.log"
  export CMAKE_BUILD_PARALLEL_LEVEL="$jobs"
  if [ "${GPU_SH_DIRECT_CMAKE:-0}" = 1 ] || ! SDTORCH_CMAKE_ARGS="$extra" timeout "$(left)" node scripts/install.js --from-source >"$WORK/build.log" 2>&1; then
    [ -f "$WORK/build.log" ] && tail -n 30 "$WORK/build.log"
    note "the cmake-js build (npm run build:native) failed or was skipped; building with cmake directly"
    rm -rf "$ROOT/build"
    cuda_args=()
    [ -n "$CUDA_HOME" ] && cuda_args=(-DCUDA_TOOLKIT_ROOT_DIR="$CUDA_HOME" -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc")
    gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    if ! { cmake -S "$ROOT" -B "$ROOT/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSDTORCH_PREBUILD=OFF \
        -DTorch_DIR="$torch_dir/share/cmake/Torch" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/build/Release" \
        -DCMAKE_JS_INC="$ROOT/node_modules/node-api-headers/include" -DCMAKE_CXX_FLAGS=-DBUILDING_NODE_EXTENSION "${cuda_args[@]}" $extra &&
        timeout "$(left)" cmake --build "$ROOT/build" -j "$jobs"; } >>"$WORK/build.log" 2>&1; then
      tail -n 40 "$WORK/build.log"
      fail "the addon did not build (log: $WORK/build.log)"
      cp "$WORK/build.log" "$OUT/build.log" 2>/dev/null
      finish
    fi
  fi
  tail -n 3 "$WORK/build.log"
  timing build "$((SECONDS - t))"
  if [ "$DEVICE" = cuda ] && ! readelf -d "$ROOT/build/Release/sdtorch.node" 2>/dev/null | grep -q 'libtorch_cuda'; then
    note "build/Release/sdtorch.node does not list libtorch_cuda.so as NEEDED"
  fi
fi
if ! node "$HERE/gpu-sdtorch.js" info >"$WORK/info.jsonl"; then fail "the addon does not load"; finish; fi
say "addon: $(cat "$WORK/info.jsonl")"
if [ "$DEVICE" = cuda ] && ! grep -q '"cudaAvailable":true' "$WORK/info.jsonl"; then fail "the addon does not see CUDA"; finish; fi

if [ -n "$weights_pid" ]; then
  if wait "$weights_pid"; then
    cat "$WORK/weights.log"
    say "the weights were ready $((SECONDS - weights_t)) s after they were started"
  else
    cat "$WORK/weights.log"
    fail "drawing the weights failed"
    finish
  fi
fi
say "weights: $WEIGHTS ($(du -h "$WEIGHTS" | cut -f1))"

# ---- 4. correctness: the same generate on the CPU (fp32) and on each target ----
t=$SECONDS
# shellcheck disable=SC2086 # TARGETS is a list
if timeout "$(left)" node "$HERE/gpu-sdtorch.js" check "$WEIGHTS" "$CHECK_SIZE" "$CHECK_STEPS" cpu/float32 $TARGETS >"$WORK/check.jsonl"; then
  python3 - "$WORK/check.jsonl" <<'EOF'
import json, sys
c = json.loads(open(sys.argv[1]).read())
print(f"correctness ({c['size']}x{c['size']}, {c['steps']} {c['sampler']} steps, final latents vs {c['ref']}; ref finite: {c['ref_finite']}):")
for r in c["results"]:
    print(f"  {r['target']:>14}: rel err {r['rel_err']:.3e} (limit {r['limit']:g}), finite {r['finite']}: {'ok' if r['ok'] else 'FAIL'}")
EOF
  grep -q '"ok":true}$' "$WORK/check.jsonl" || fail "correctness: a figure is over its limit, or not finite"
else
  fail "the correctness run failed"
fi
timing check "$((SECONDS - t))"

# ---- 5. speed: S D (+compile) | D S, each process REPEATS rounds over BATCHES ----
t=$SECONDS
sd_run() {
  local s=$SECONDS rc=0
  timeout "$(left)" node "$HERE/gpu-sdtorch.js" speed "$WEIGHTS" "$DEVICE" "$DTYPE" "$SIZE" "$STEPS" "$BATCHES" "$REPEATS" >>"$WORK/speed.jsonl" || rc=$?
  case $rc in
    0) say "sdtorch: $(tail -n 1 "$WORK/speed.jsonl")" ;;
    124) fail "the sdtorch speed run was stopped at the ${DEADLINE} s deadline" ;;
    *) fail "the sdtorch speed run failed (exit $rc)" ;;
  esac
  last_sd=$((SECONDS - s))
}
df_run() {
  local s=$SECONDS rc=0
  if [ "$HAVE_DIFFUSERS" != 1 ]; then return; fi
  timeout "$(left)" python3 "$HERE/gpu_diffusers.py" "$WEIGHTS" "$DEVICE" "$DTYPE" "$SIZE" "$STEPS" "$BATCHES" "$REPEATS" "$@" >>"$WORK/speed.jsonl" || rc=$?
  case $rc in
    0) say "diffusers ${*:-(eager)}: $(tail -n 1 "$WORK/speed.jsonl")" ;;
    124) fail "the diffusers run ($*) was stopped at the ${DEADLINE} s deadline (figures printed before then are kept)" ;;
    *) fail "the diffusers speed run ($*) failed (exit $rc)" ;;
  esac
  last_df=$((SECONDS - s))
}
[ "$HAVE_DIFFUSERS" = 1 ] || note "diffusers is not importable: the speed runs are sdtorch's alone"
last_sd=0 last_df=0
sd_run
if [ "$COMPILE" = 1 ]; then df_run --compile; else df_run; fi
t_sd=$last_sd t_df=$last_df
for ((round = 2; round <= ROUNDS; round++)); do
  # The eager diffusers run costs about the first one's eager part; the compile part is not repeated.
  est_df=$(python3 -c 'import json,sys
w=[json.loads(l).get("eager_wall_s") for l in open(sys.argv[1]) if "\"impl\": \"diffusers\"" in l]
w=[x for x in w if x]
print(int(w[0]) + 5 if w else int(sys.argv[2]))' "$WORK/speed.jsonl" "$t_df" 2>/dev/null || echo "$t_df")
  if ((SECONDS - start + t_sd + est_df > BUDGET)); then
    note "round $round skipped: it would end past the ${BUDGET} s budget (at $((SECONDS - start)) s; it needs ~$((t_sd + est_df)) s)"
    break
  fi
  df_run
  sd_run
done
timing speed "$((SECONDS - t))"
finish
