#!/usr/bin/env node
'use strict';
// sdtorch vs diffusers on the same checkpoint and settings, alternating A/B over repeats, each
// measurement in a fresh process; prints a markdown table of medians and ratios (sdtorch / diffusers).
//   node scripts/benchmark.js --weights sd15-random-1234.safetensors --diffusers /path/to/diffusers/src \
//        [--repeats 3] [--modes load,step256,step512,image512]
//   node scripts/benchmark.js --family sdxl --weights sdxl-base-random-1234.fp16.safetensors --diffusers ... \
//        [--modes load,step512,step1024]
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
const repeats = Number(arg('repeats', '3'));
const family = arg('family', 'sd15');
const modes = arg('modes', family === 'sdxl' ? 'load,step512,step1024' : 'load,step256,step512,image512').split(',');
const waitRssGb = arg('wait-rss-gb') === undefined ? null : Number(arg('wait-rss-gb'));
if (!weights || !diffusers || !['sd15', 'sdxl'].includes(family) || (family === 'sdxl' && modes.some((m) => m.startsWith('image')))) {
  console.error('usage: benchmark.js --weights FILE --diffusers DIFFUSERS_SRC_DIR [--family sd15|sdxl] [--repeats N] ' +
    '[--modes load,step256,step512,image512 | sdxl: load,step512,step1024] [--wait-rss-gb N]');
  process.exit(2);
}

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
  const t = process.hrtime.bigint();
  const r = impl === 'sdtorch'
    ? spawnSync(process.execPath, [path.join(__dirname, 'bench', 'sdtorch-side.js'), mode, weights, family], { encoding: 'utf8' })
    : spawnSync('python3', [path.join(__dirname, 'bench', 'diffusers_side.py'), mode, weights, family], {
        encoding: 'utf8', env: { ...process.env, PYTHONPATH: diffusers, HF_HUB_OFFLINE: '1', TRANSFORMERS_VERBOSITY: 'error' },
      });
  const wall = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`${impl} ${mode} failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop();
  return { ...JSON.parse(line), wall_s: wall };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const results = {};
for (const mode of modes) {
  for (let i = 0; i < repeats; i++) {
    for (const impl of i % 2 ? ['diffusers', 'sdtorch'] : ['sdtorch', 'diffusers']) {
      const r = once(impl, mode);
      ((results[mode] ??= {})[impl] ??= []).push(r);
      console.error(`${mode} #${i + 1} ${impl}: ${JSON.stringify(r)}`);
    }
  }
}

const rows = [];
const row = (label, mode, key, unit) => {
  const a = median(results[mode].sdtorch.map((r) => r[key]));
  const b = median(results[mode].diffusers.map((r) => r[key]));
  rows.push(`| ${label} | ${a.toFixed(2)} ${unit} | ${b.toFixed(2)} ${unit} | ${(a / b).toFixed(2)}x |`);
};
if (results.load) {
  row('cold start: process start to pipeline ready', 'load', 'load_from_start_s', 's');
  row('load time inside the process', 'load', 'load_s', 's');
  row('peak RSS while loading', 'load', 'load_peak_rss_mb', 'MB');
}
for (const m of ['step256', 'step512', 'step1024']) {
  if (!results[m]) continue;
  row(`one guided UNet step (batch 2), ${m.slice(4)}x${m.slice(4)}`, m, 'seconds', 's');
  if (family === 'sdxl') row('peak RSS of that process (load + 2 steps)', m, 'peak_rss_mb', 'MB');
}
for (const m of ['image256', 'image512']) {
  if (!results[m]) continue;
  row(`whole image ${m.slice(5)}x${m.slice(5)}, 20 euler steps, guidance 7.5`, m, 'seconds', 's');
  row(`peak RSS during that run`, m, 'peak_rss_mb', 'MB');
}
console.log(`Family: ${family}; weights: ${path.basename(weights)}\n`);
console.log(`Machine: ${os.cpus()[0].model}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
  `medians of ${repeats} alternating runs; ratio = sdtorch / diffusers (lower is better)\n`);
console.log('| measure | sdtorch | diffusers | ratio |\n|---|---|---|---|\n' + rows.join('\n'));
