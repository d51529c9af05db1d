#!/usr/bin/env bash
# Writes the bundle scripts/bench/gpu.sh needs on a GPU machine that has python3 + torch, nvcc,
# cmake and ninja but no node, npm or diffusers, into DEST/.gpu/ (ignored through DEST's
# .git/info/exclude, so it travels only when named):
#   node.xz           this machine's node binary, xz-compressed (Node >= 20, x86-64, glibc)
#   modules.tar.xz    dist/ (compiled from DEST's lib/, no maps or .d.ts) and the node_modules a
#                     load and a source build need: sharp (+ its libvips), node-addon-api,
#                     node-api-headers, cmake-js with its dependencies
#   diffusers.tar.xz  diffusers' .py files (DIFFUSERS_SRC, default /tmp/diffusers/src), for the reference side
#   bench/            gpu.sh, gpu-sdtorch.js, gpu_diffusers.py of this tree (runs as bash .gpu/bench/gpu.sh)
# then prints what travels: DEST's tracked and untracked-not-ignored files plus .gpu/, against 64 MiB.
#   bash scripts/bench/gpu-bundle.sh [DEST_REPO, default: this repo]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(cd "$HERE/../.." && pwd)"
DEST="$(cd "${1:-$SRC}" && pwd)"
B="$DEST/.gpu"
DIFFUSERS_SRC="${DIFFUSERS_SRC:-/tmp/diffusers/src}"
NODE_BIN="$(readlink -f "${NODE:-$(command -v node)}")"
LIMIT=$((64 * 1024 * 1024))
mkdir -p "$B"

exclude="$(cd "$DEST" && readlink -f "$(git rev-parse --git-path info/exclude)")"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >>"$exclude"
git -C "$DEST" check-ignore -q .gpu/node.xz || { echo "gpu-bundle: $DEST/.gpu is not ignored" >&2; exit 1; }

# node: compressed once per binary (xz -9 of ~95 MB takes about a minute on 2 cores).
sum="$(sha256sum "$NODE_BIN" | cut -d' ' -f1)"
if [ ! -f "$B/node.xz" ] || [ "$(cat "$B/node.sha256" 2>/dev/null)" != "$sum" ]; then
  echo "gpu-bundle: compressing $NODE_BIN ($("$NODE_BIN" --version))" >&2
  xz -T2 -9 <"$NODE_BIN" >"$B/node.xz.tmp" && mv "$B/node.xz.tmp" "$B/node.xz"
  echo "$sum" >"$B/node.sha256"
fi

# dist/ from DEST's lib (the TypeScript matching the native code that travels), node_modules closure.
nm="$DEST/node_modules"
[ -d "$nm/node-addon-api" ] || nm="$SRC/node_modules"
[ -d "$nm/node-addon-api" ] || { echo "gpu-bundle: no node_modules in $DEST or $SRC (npm ci)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$NODE_BIN" "$nm/typescript/bin/tsc" -p "$DEST/tsconfig.json" --outDir "$tmp/dist" --sourceMap false --declaration false
# Each package and, recursively, its dependencies as node would resolve them from where it lies.
"$NODE_BIN" - "$(dirname "$nm")" sharp node-addon-api node-api-headers cmake-js >"$tmp/packages" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const [root, ...names] = process.argv.slice(2);
const seen = new Set();
function visit(name, from) {
  for (let d = from; ; d = path.dirname(d)) {
    const dir = path.join(d, 'node_modules', name);
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      if (seen.has(dir)) return;
      seen.add(dir);
      const pj = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
      // optional ones (sharp's per-platform builds) count where they are installed
      for (const dep of Object.keys({ ...pj.dependencies, ...pj.optionalDependencies })) visit(dep, dir);
      return;
    }
    if (d === path.dirname(d)) return;
  }
}
for (const n of names) visit(n, root);
console.log([...seen].map((d) => path.relative(root, d)).sort().join('\n'));
EOF
echo "gpu-bundle: $(wc -l <"$tmp/packages") packages from $nm" >&2
tar -cf - --sort=name --exclude='*.md' -C "$(dirname "$nm")" -T "$tmp/packages" -C "$tmp" dist | xz -T2 -9 >"$B/modules.tar.xz"

# diffusers: every .py file (25 MB, ~1.7 MB compressed): pruning it would save little.
if [ -d "$DIFFUSERS_SRC/diffusers" ]; then
  (cd "$DIFFUSERS_SRC" && find diffusers -name '*.py' | sort | tar -cf - -T - | xz -T2 -9 >"$B/diffusers.tar.xz")
else
  echo "gpu-bundle: WARNING: no diffusers at $DIFFUSERS_SRC/diffusers: the run will time sdtorch alone" >&2
  rm -f "$B/diffusers.tar.xz"
fi

rm -rf "$B/bench" && mkdir -p "$B/bench"
cp "$HERE/gpu.sh" "$HERE/gpu-sdtorch.js" "$HERE/gpu_diffusers.py" "$B/bench/"
{
  echo "made $(date -u +%FT%TZ) from $SRC ($(git -C "$SRC" rev-parse --short HEAD)) for $DEST ($(git -C "$DEST" rev-parse --short HEAD))"
  echo "node $("$NODE_BIN" --version); diffusers $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$DIFFUSERS_SRC/diffusers/__init__.py" 2>/dev/null)"
} >"$B/STAMP"

# What travels: tracked + untracked-not-ignored files of DEST, and .gpu/ when carried.
size_of() { { xargs -0 -r stat -c %s -- 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'; }
tracked="$(cd "$DEST" && git ls-files -z --cached --others --exclude-standard | size_of)"
bundle="$(find "$B" -type f -print0 | size_of)"
total=$((tracked + bundle))
ls -l "$B" >&2
awk -v t="$tracked" -v b="$bundle" 'BEGIN {m = 1048576; printf "gpu-bundle: tree %.1f MiB + .gpu %.1f MiB = %.1f MiB of 64 MiB\n", t / m, b / m, (t + b) / m}' >&2
if ((total > LIMIT - 2 * 1024 * 1024)); then
  echo "gpu-bundle: too large: less than 2 MiB short of the 64 MiB limit" >&2
  exit 1
fi
