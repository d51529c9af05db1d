'use strict';
// The sdtorch side of scripts/bench/gpu.sh; each mode prints one JSON line on stdout.
//   node gpu-sdtorch.js info                          the loaded binary and libtorch, CUDA or not
//   node gpu-sdtorch.js check WEIGHTS SIZE STEPS REF TARGET:LIMIT...
//        the same generate (seed 1, euler_a, cfg 7.5, decode: false) on REF and each TARGET
//        (device/dtype, e.g. cpu/float32, cuda/float16); final latents' ‖t − ref‖/‖ref‖ against LIMIT
//   node gpu-sdtorch.js speed WEIGHTS DEVICE DTYPE SIZE STEPS BATCHES REPEATS
//        seconds of whole generate() calls (euler, cfg 7.5, decode: false), BATCHES comma-separated,
//        after one 2-step warm-up per batch size; REPEATS rounds over the batch sizes
//   node gpu-sdtorch.js summary FILE...               merges gpu.sh's JSON lines into one summary
// The package is found at SDTORCH_ROOT (default: two folders up), so this file also runs from a copy.
const fs = require('node:fs');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const root = process.env.SDTORCH_ROOT || path.join(__dirname, '..', '..');
const sd = () => require(path.join(root, 'dist'));

const PROMPT = 'a photo of a cat';
const NEGATIVE = 'blurry';
const seconds = (t) => (performance.now() - t) / 1000;

function info() {
  const s = sd().systemInfo();
  return { torchVersion: s.torchVersion, builtForTorch: s.builtForTorch, cudaAvailable: s.cudaAvailable, cudaDevices: s.cudaDevices,
    threads: s.threads, binary: s.binary, variant: s.variant, node: process.version };
}

/** Final latents of one generate on device/dtype, as float32 on the CPU. */
async function latentsOn(weights, spec, size, steps) {
  const [device, dtype] = spec.split('/');
  const t = performance.now();
  const pipe = await sd().loadPipeline(weights, { device, dtype });
  const loadS = seconds(t);
  const s = performance.now();
  const res = await pipe.generate({ prompt: PROMPT, negativePrompt: NEGATIVE, steps, cfgScale: 7.5, sampler: 'euler_a',
    seed: 1, width: size, height: size, decode: false });
  const latents = res.latents.to('cpu', 'float32');
  const genS = seconds(s);
  res.latents.dispose();
  pipe.dispose();
  return { latents, loadS, genS };
}

function finite(t) {
  const a = t.toArray();
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

async function check(weights, size, steps, ref, targets) {
  const base = await latentsOn(weights, ref, size, steps);
  const out = { mode: 'check', size, steps, sampler: 'euler_a', ref, ref_load_s: base.loadS, ref_generate_s: base.genS,
    ref_finite: finite(base.latents), results: [] };
  for (const spec of targets) {
    const [target, limit] = spec.split(':');
    const r = await latentsOn(weights, target, size, steps);
    const relErr = r.latents.sub(base.latents).norm() / base.latents.norm();
    const isFinite = finite(r.latents);
    out.results.push({ target, rel_err: relErr, limit: Number(limit), finite: isFinite, ok: isFinite && relErr < Number(limit),
      load_s: r.loadS, generate_s: r.genS });
    r.latents.dispose();
  }
  out.ok = out.ref_finite && out.results.every((r) => r.ok);
  return out;
}

async function speed(weights, device, dtype, size, steps, batches, repeats) {
  const t = performance.now();
  const pipe = await sd().loadPipeline(weights, { device, dtype });
  const out = { mode: 'speed', impl: 'sdtorch', device, dtype, size, steps, load_s: seconds(t), warmup_s: {}, runs: {} };
  const once = async (batchSize, n) => {
    const s = performance.now();
    const res = await pipe.generate({ prompt: PROMPT, negativePrompt: NEGATIVE, steps: n, cfgScale: 7.5, sampler: 'euler',
      seed: 1, width: size, height: size, batchSize, decode: false });
    res.latents.to('cpu').dispose(); // waits for the device
    res.latents.dispose();
    return seconds(s);
  };
  for (const b of batches) out.warmup_s[b] = await once(b, 2);
  for (let r = 0; r < repeats; r++) {
    for (const b of batches) (out.runs[b] ??= []).push(await once(b, steps));
  }
  pipe.dispose();
  return out;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? null : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** gpu.sh's JSON lines (one per file; several per file allowed) -> one summary object. */
function summary(files) {
  const lines = files.filter((f) => fs.existsSync(f)).flatMap((f) => fs.readFileSync(f, 'utf8').split('\n'))
    .map((l) => l.trim()).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  const out = { };
  const speeds = {};
  for (const l of lines) {
    if (l.mode === 'env') Object.assign(out, l.env);
    else if (l.mode === 'info') out.sdtorch = { ...out.sdtorch, ...l.info };
    else if (l.mode === 'timing') out.timings_s = { ...out.timings_s, ...l.timings_s };
    else if (l.mode === 'check') {
      out.correctness = { size: l.size, steps: l.steps, sampler: l.sampler, ref: l.ref, ok: l.ok,
        ...Object.fromEntries(l.results.map((r) => [`${r.target}_vs_${l.ref}`, { rel_err: r.rel_err, limit: r.limit, finite: r.finite, ok: r.ok }])) };
    } else if (l.mode === 'speed') {
      const key = l.impl === 'sdtorch' ? 'sdtorch' : l.compiled ? 'diffusers_compile' : 'diffusers_eager';
      const e = (speeds[key] ??= { runs: {}, load_s: [], size: l.size, steps: l.steps, dtype: l.dtype });
      e.load_s.push(l.load_s);
      for (const [b, xs] of Object.entries(l.runs ?? {})) (e.runs[b] ??= []).push(...xs);
      if (l.compile_s) e.compile_s = { ...e.compile_s, ...l.compile_s };
      if (l.compile_mode) e.compile_mode = l.compile_mode;
      if (l.error) e.error = l.error;
    } else if (l.mode === 'note') (out.notes ??= []).push(l.note);
  }
  if (Object.keys(speeds).length) {
    out.speed = {};
    for (const [k, e] of Object.entries(speeds)) {
      const r = { size: e.size, steps: e.steps, dtype: e.dtype, load_s: median(e.load_s) };
      for (const [b, xs] of Object.entries(e.runs)) {
        const m = median(xs);
        r[`b${b}_s`] = m;
        r[`b${b}_it_s`] = m ? e.steps / m : null;
        r[`b${b}_n`] = xs.length;
      }
      if (e.compile_s) r.compile_s = e.compile_s;
      if (e.compile_mode) r.compile_mode = e.compile_mode;
      if (e.error) r.error = e.error;
      out.speed[k] = r;
    }
    const s = out.speed.sdtorch;
    for (const other of ['diffusers_eager', 'diffusers_compile']) {
      const o = out.speed[other];
      if (!s || !o) continue;
      for (const key of Object.keys(s).filter((k) => /^b\d+_s$/.test(k))) {
        if (s[key] && o[key]) (out.ratio_time_sdtorch_over ??= {})[`${other}_${key.slice(0, -2)}`] = s[key] / o[key];
      }
    }
  }
  return out;
}

async function main() {
  const [mode, ...a] = process.argv.slice(2);
  let out;
  if (mode === 'info') out = { mode, info: info() };
  else if (mode === 'check') out = await check(a[0], Number(a[1]), Number(a[2]), a[3], a.slice(4));
  else if (mode === 'speed') out = await speed(a[0], a[1], a[2], Number(a[3]), Number(a[4]), a[5].split(',').map(Number), Number(a[6]));
  else if (mode === 'summary') out = summary(a);
  else throw new Error(`unknown mode ${mode}`);
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
