// Loads the addon: a local build when there is one, else the prebuilt binary for this platform
// and libtorch variant (CUDA when the driver and a matching libtorch are there, else CPU) after
// loading the libtorch it was built for. The binding's types are in binding.ts.
import fs from 'node:fs';
import path from 'node:path';
import type { Binding } from './binding';
import { cudaMajor, describe, driverCudaMajor, fits, lookup, preload, type Libtorch, type Lookup } from './libtorch';

export const packageRoot = path.resolve(__dirname, '..', '..');

export interface Prebuild {
  file: string;
  /** "cpu" or "cu130": the libtorch variant it was built against. */
  flavor: string;
  torch: string;
}

export const prebuildDir = () => path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`);

/** prebuilds/<platform>-<arch>/sdtorch.<flavor>.torch-<version>.node, as scripts/prebuild.js names them. */
export function prebuildName(flavor: string, torch: string): string {
  return `sdtorch.${flavor}.torch-${torch}.node`;
}

/** The prebuilt binaries shipped for this platform. */
export function shippedPrebuilds(): Prebuild[] {
  let names: string[] = [];
  try {
    names = fs.readdirSync(prebuildDir());
  } catch { /* none for this platform */ }
  return names.flatMap((f) => {
    const m = /^sdtorch\.(cpu|cu\d+)\.torch-(\d+\.\d+\.\d+)\.node$/.exec(f);
    return m ? [{ file: path.join(prebuildDir(), f), flavor: m[1], torch: m[2] }] : [];
  });
}

/**
 * The prebuilt binaries worth trying, best first: CUDA ones the driver runs (newest toolkit
 * first), then CPU. `variant` (SDTORCH_VARIANT: cpu, cu128, cu130) keeps only that one.
 */
export function orderPrebuilds(all: Prebuild[], driverCuda: number | null, variant?: string): Prebuild[] {
  if (variant) return all.filter((p) => p.flavor === variant);
  const runs = (p: Prebuild) => p.flavor === 'cpu' || (driverCuda !== null && (cudaMajor(p.flavor) ?? Infinity) <= driverCuda);
  const rank = (p: Prebuild) => (p.flavor === 'cpu' ? 0 : Number(p.flavor.slice(2)));
  return all.filter(runs).sort((a, b) => rank(b) - rank(a));
}

export const prebuilds = () => orderPrebuilds(shippedPrebuilds(), driverCudaMajor(), process.env.SDTORCH_VARIANT || undefined);

/** The libtorch on this machine a prebuilt binary can run with, and where we looked. */
export function libtorchFor(p: Prebuild, searched?: Lookup): { libtorch?: Libtorch; searched: Lookup } {
  // A search that found no fit looked everywhere: the next binary can pick from its list.
  const r = searched ?? lookup((lt) => fits(lt, p.torch, p.flavor));
  return { libtorch: r.found.find((lt) => fits(lt, p.torch, p.flavor)), searched: r };
}

export interface Loaded {
  binary: string;
  /** "cpu"/"cu130" for a prebuilt binary; "source" for a local build. */
  variant: string;
  /** The libtorch loaded for a prebuilt binary (a local build records its own path). */
  libtorch?: Libtorch;
  /** Better binaries that were passed over, and why (a CUDA one without its libtorch, say). */
  skipped: string[];
}

let binding: Binding | undefined;
export let loaded: Loaded | undefined;

const localBuild = () => path.join(packageRoot, 'build', 'Release', 'sdtorch.node');

function requireAddon(file: string): Binding {
  try {
    // A native addon can only be loaded with require().
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as Binding;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    if (/undefined symbol|symbol not found/i.test(msg)) throw new Error(`${msg} (the libtorch it found is not the version it was built against)`);
    throw new Error(msg);
  }
}

export function native(): Binding {
  if (binding) return binding;
  const tried: string[] = [];
  const forced = process.env.SDTORCH_BINARY;
  if (forced || (!process.env.SDTORCH_VARIANT && fs.existsSync(localBuild()))) {
    const file = forced ? path.resolve(forced) : localBuild();
    try {
      // SDTORCH_BINARY with LIBTORCH: that binary with that libtorch (a local build records its own).
      const explicit = forced && process.env.LIBTORCH ? describe(process.env.LIBTORCH, 'LIBTORCH') : null;
      if (explicit) preload(explicit);
      binding = requireAddon(file);
      loaded = { binary: file, variant: 'source', skipped: [] };
      return binding;
    } catch (e) {
      tried.push(`  ${file}: ${(e as Error).message}`);
    }
  }
  const missing: Prebuild[] = [];
  let complete: Lookup | undefined; // each place looked at once per process (Python costs a start)
  for (const p of forced ? [] : prebuilds()) {
    const { libtorch, searched } = libtorchFor(p, complete);
    if (!libtorch) {
      complete = searched;
      missing.push(p);
      tried.push(`  ${p.file}: needs libtorch ${p.torch} (${p.flavor}); none found. Looked at:\n${searched.looked.map((l) => `      ${l}`).join('\n')}`);
      continue;
    }
    try {
      preload(libtorch);
      binding = requireAddon(p.file);
      loaded = { binary: p.file, variant: p.flavor, libtorch, skipped: tried.map((l) => l.trim()) };
      return binding;
    } catch (e) {
      tried.push(`  ${p.file} with libtorch ${libtorch.version} at ${libtorch.root}: ${(e as Error).message}`);
    }
  }
  throw new Error(loadError(tried, missing));
}

function loadError(tried: string[], missing: Prebuild[]): string {
  const where = `${process.platform}-${process.arch}`;
  const lines = [`sdtorch could not load its native addon (${where}).`];
  const variant = process.env.SDTORCH_VARIANT;
  const shipped = shippedPrebuilds().map((p) => p.flavor).join(', ') || 'none';
  if (variant) lines.push(`SDTORCH_VARIANT=${variant}: ${missing.length || tried.length ? 'it did not load' : `there is no such prebuilt binary (shipped for ${where}: ${shipped})`}.`);
  if (tried.length) lines.push(`Tried:\n${tried.join('\n')}`);
  else if (!variant) lines.push(`No prebuilt binary fits ${where} (shipped: ${shipped}) and no local build exists.`);
  lines.push('Possible solutions:');
  for (const p of missing) {
    lines.push(`  - get libtorch ${p.torch} (${p.flavor}) for the prebuilt binary: npx sdtorch setup   (downloads it into the cache),`);
    lines.push(`    or ${p.flavor === 'cpu' ? `pip install torch==${p.torch}` : `set LIBTORCH=/path/to/libtorch-${p.torch}+${p.flavor}`}, or set LIBTORCH to an unpacked libtorch ${p.torch}`);
  }
  lines.push('  - build it from source: npx sdtorch build   (needs a C++17 compiler, cmake and libtorch; downloads libtorch when none is found)');
  lines.push('  - if npm blocked sdtorch\'s install script: npm install-scripts approve sdtorch && npm rebuild sdtorch');
  return lines.join('\n');
}
