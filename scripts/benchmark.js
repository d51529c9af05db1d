#!/usr/bin/env node
'use strict';
// sdtorch vs its peers (diffusers, stable-diffusion.cpp) on the same checkpoint and settings,
// alternating over repeats (A/B/C, then C/B/A), each measurement in a fresh process; prints a
// markdown table of medians and ratios (sdtorch / peer).
//   node scripts/benchmark.js --weights sd15-random-1234.safetensors --diffusers /path/to/diffusers/src \
//        [--repeats 3] [--modes load,step256,step512,image512]
//   node scripts/benchmark.js --family sdxl --weights sdxl-base-random-1234.fp16.safetensors --diffusers ... \
//        [--modes load,step512,step1024]
//   node scripts/benchmark.js --weights sd15-random-1234.safetensors --sdcpp .bench/sdcpp/build/bin/sd-cli \
//        [--sdcpp-types f32,f16] [--modes image256,image512] [--diffusers ...]
// --sdcpp BIN: stable-diffusion.cpp's CLI (scripts/bench/sdcpp.sh builds it), SD 1.x image modes only
// (it has no single-step or load-only run); one column per --sdcpp-types entry (its --type), with
// --sdcpp-threads N (default: sdtorch's own thread count, so both use the same cores) and
// --sdcpp-args "..." (more sd-cli arguments, e.g. --diffusion-fa).
// --compiled (with --diffusers): also diffusers with its UNet through torch.compile (inductor, freezing
// on), compiled by a first call at the measured shape; the compile time is reported apart.
// --noprepack: also sdtorch with LoadOptions.prepack false (the plain convolutions), to measure the lever;
// --nowinograd: also sdtorch with LoadOptions.winograd false (prepacked, direct 3x3 convolutions).
// --steps N: the steps of an image mode (default 20; fewer only to check the harness).
// --wait-rss-gb N (a shared machine): before each measurement, wait until no other process has more
// than N GiB resident, so that a big neighbour and a big measurement do not run out of memory together.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

const weights = arg('weights');
const diffusers = arg('diffusers');
const sdcpp = arg('sdcpp');
const sdcppTypes = arg('sdcpp-types', 'f32,f16').split(',');
const sdcppArgs = (arg('sdcpp-args') ?? '').split(/\s+/).filter(Boolean);
const steps = arg('steps', '20');
const repeats = Number(arg('repeats', '3'));
const family = arg('family', 'sd15');
const modes = arg('modes', family === 'sdxl' ? 'load,step512,step1024' : diffusers ? 'load,step256,step512,image512' : 'image512').split(',');
const waitRssGb = arg('wait-rss-gb') === undefined ? null : Number(arg('wait-rss-gb'));
if (!weights || !(diffusers || sdcpp) || !['sd15', 'sdxl'].includes(family) || (family === 'sdxl' && modes.some((m) => m.startsWith('image'))) ||
    (sdcpp && (family !== 'sd15' || (!diffusers && modes.some((m) => !m.startsWith('image'))))) || !/^\d+$/.test(steps)) {
  console.error('usage: benchmark.js --weights FILE (--diffusers DIFFUSERS_SRC_DIR | --sdcpp SD_CLI)... [--family sd15|sdxl] [--repeats N] ' +
    '[--modes load,step256,step512,image512 | sdxl: load,step512,step1024 | sd.cpp: image256,image512] [--steps N] ' +
    '[--sdcpp-types f32,f16] [--sdcpp-threads N] [--sdcpp-args "..."] [--wait-rss-gb N]');
  process.exit(2);
}
const peers = [...(diffusers ? ['diffusers'] : []), ...(diffusers && process.argv.includes('--compiled') ? ['diffusers-compiled'] : []),
  ...(sdcpp ? sdcppTypes.map((t) => `sdcpp-${t}`) : []), ...['noprepack', 'nowinograd'].filter((v) => process.argv.includes(`--${v}`)).map((v) => `sdtorch-${v}`)];
const label = (impl) => (impl.startsWith('sdcpp-') ? `sd.cpp ${impl.slice(6)}` : impl);
// sd-cli runs whole images only; the other modes are sdtorch's and diffusers'.
const implsFor = (mode) => ['sdtorch', ...peers.filter((p) => !p.startsWith('sdcpp-') || mode.startsWith('image'))];
const sdcppThreads = !sdcpp ? null : arg('sdcpp-threads') ?? spawnSync(process.execPath,
  ['-e', `console.log(require(${JSON.stringify(path.join(__dirname, '..', 'dist'))}).systemInfo().threads)`], { encoding: 'utf8' }).stdout.trim();
if (sdcpp && !/^\d+$/.test(sdcppThreads)) throw new Error(`no thread count for sd.cpp (sdtorch's systemInfo() said ${JSON.stringify(sdcppThreads)})`);

/** The largest resident set of another process, in GiB (Linux /proc). */
function largestOtherRssGb() {
  let max = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) max = Math.max(max, Number(m[1]) / 2 ** 20);
    } catch {} // gone
  }
  return max;
}

function waitForMemory() {
  if (waitRssGb === null) return;
  let said = false;
  for (let rss = largestOtherRssGb(); rss > waitRssGb; rss = largestOtherRssGb()) {
    if (!said) console.error(`waiting: another process holds ${rss.toFixed(1)} GiB`);
    said = true;
    spawnSync('sleep', ['10']);
  }
}

function once(impl, mode) {
  waitForMemory();
  const env = { ...process.env, BENCH_STEPS: steps };
  const t = process.hrtime.bigint();
  const r = impl.startsWith('sdtorch')
    ? spawnSync(process.execPath, [path.join(__dirname, 'bench', 'sdtorch-side.js'), mode, weights, family, ...(impl === 'sdtorch' ? [] : [impl.slice('sdtorch-'.length)])],
        { encoding: 'utf8', env })
    : impl.startsWith('diffusers')
      ? spawnSync('python3', [path.join(__dirname, 'bench', 'diffusers_side.py'), mode, weights, family, ...(impl === 'diffusers' ? [] : ['compiled'])], {
          encoding: 'utf8', env: { ...env, PYTHONPATH: diffusers, HF_HUB_OFFLINE: '1', TRANSFORMERS_VERBOSITY: 'error' },
        })
      : spawnSync(process.execPath, [path.join(__dirname, 'bench', 'sdcpp-side.js'), mode, weights, sdcpp, impl.slice(6), sdcppThreads,
          JSON.stringify(sdcppArgs)], { encoding: 'utf8', env });
  const wall = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`${impl} ${mode} failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop();
  // process_s: the side's process from start to exit; sd.cpp's side times the CLI itself, without its own Node start.
  return { wall_s: wall, process_s: wall, ...JSON.parse(line) };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const results = {};
for (const mode of modes) {
  for (let i = 0; i < repeats; i++) {
    const impls = implsFor(mode);
    for (const impl of i % 2 ? impls.reverse() : impls) {
      const r = once(impl, mode);
      ((results[mode] ??= {})[impl] ??= []).push(r);
      console.error(`${mode} #${i + 1} ${impl}: ${JSON.stringify(r)}`);
    }
  }
}

const rows = [];
const row = (measure, mode, key, unit) => {
  const a = median(results[mode].sdtorch.map((r) => r[key]));
  const cells = peers.map((p) => {
    if (!results[mode][p]) return '– | –';
    const b = median(results[mode][p].map((r) => r[key]));
    return `${b.toFixed(2)} ${unit} | ${(a / b).toFixed(2)}x`;
  });
  rows.push(`| ${measure} | ${a.toFixed(2)} ${unit} | ${cells.join(' | ')} |`);
};
/** diffusers-compiled's compile time (its first call) for `mode`, in its column. */
const compileRow = (mode) => {
  const xs = (results[mode]['diffusers-compiled'] ?? []).map((r) => r.compile_s).filter((v) => typeof v === 'number');
  if (xs.length) rows.push(`| torch.compile before that (first call) | | ${peers.map((p) => (p === 'diffusers-compiled' ? `${median(xs).toFixed(1)} s | ` : ' | ')).join(' | ')} |`);
};
if (results.load) {
  row('cold start: process start to pipeline ready', 'load', 'load_from_start_s', 's');
  row('load time inside the process', 'load', 'load_s', 's');
  row('peak RSS while loading', 'load', 'load_peak_rss_mb', 'MB');
}
for (const m of ['step256', 'step512', 'step1024']) {
  if (!results[m]) continue;
  row(`one guided UNet step (batch 2), ${m.slice(4)}x${m.slice(4)}`, m, 'seconds', 's');
  compileRow(m);
  if (family === 'sdxl') row('peak RSS of that process (load + 2 steps)', m, 'peak_rss_mb', 'MB');
}
for (const m of ['image256', 'image512']) {
  if (!results[m]) continue;
  row(`whole image ${m.slice(5)}x${m.slice(5)}, ${steps} euler steps, guidance 7.5`, m, 'seconds', 's');
  compileRow(m);
  row(`peak RSS during that run`, m, 'peak_rss_mb', 'MB');
  if (sdcpp) row('that process from start to exit (load, image, save)', m, 'process_s', 's');
}
console.log(`Family: ${family}; weights: ${path.basename(weights)}\n`);
console.log(`Machine: ${os.cpus()[0].model}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
  `medians of ${repeats} alternating runs; ${peers.length === 1 ? 'ratio' : 'each ratio'} = sdtorch / ${peers.length === 1 ? label(peers[0]) : 'the column before it'} (lower is better)` +
  `${sdcpp ? `; sd.cpp: ${sdcppThreads} threads` : ''}\n`);
console.log(`| measure | sdtorch | ${peers.map((p) => `${label(p)} | ratio`).join(' | ')} |\n|---|---|${peers.map(() => '---|---|').join('')}\n` + rows.join('\n'));

// sd.cpp's own stage times (its log), medians: where its image time goes, and its weight load apart.
const sdcppRows = [];
for (const m of ['image256', 'image512']) {
  for (const p of peers.filter((q) => q.startsWith('sdcpp-') && results[m]?.[q])) {
    const med = (k) => median(results[m][p].map((r) => r[k] ?? NaN)).toFixed(2);
    sdcppRows.push(`| ${m.slice(5)}x${m.slice(5)} | ${label(p)} | ${med('params_mb')} MB | ${med('load_tensors_s')} s | ${med('cond_s')} s | ` +
      `${med('sampling_s')} s | ${med('decode_s')} s | ${med('seconds')} s |`);
  }
}
if (sdcppRows.length) {
  console.log('\n| sd.cpp stages | | weights in memory | loading them | text encoding | sampling | VAE decode | image |\n' +
    '|---|---|---|---|---|---|---|---|\n' +
    sdcppRows.join('\n'));
}
