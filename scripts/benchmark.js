#!/usr/bin/env node
'use strict';
// sdtorch vs diffusers on the same checkpoint and settings, alternating A/B over repeats, each
// measurement in a fresh process; prints a markdown table of medians and ratios (sdtorch / diffusers).
//   node scripts/benchmark.js --weights sd15-random-1234.safetensors --diffusers /path/to/diffusers/src \
//        [--repeats 3] [--modes load,step256,step512,image512]
const { spawnSync } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

const weights = arg('weights');
const diffusers = arg('diffusers');
const repeats = Number(arg('repeats', '3'));
const modes = arg('modes', 'load,step256,step512,image512').split(',');
if (!weights || !diffusers) {
  console.error('usage: benchmark.js --weights FILE --diffusers DIFFUSERS_SRC_DIR [--repeats N] [--modes load,step256,step512,image512]');
  process.exit(2);
}

function once(impl, mode) {
  const t = process.hrtime.bigint();
  const r = impl === 'sdtorch'
    ? spawnSync(process.execPath, [path.join(__dirname, 'bench', 'sdtorch-side.js'), mode, weights], { encoding: 'utf8' })
    : spawnSync('python3', [path.join(__dirname, 'bench', 'diffusers_side.py'), mode, weights], {
        encoding: 'utf8', env: { ...process.env, PYTHONPATH: diffusers, HF_HUB_OFFLINE: '1', TRANSFORMERS_VERBOSITY: 'error' },
      });
  const wall = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`${impl} ${mode} failed:\n${r.stderr}`);
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
if (results.step256) row('one guided UNet step (batch 2), 256x256', 'step256', 'seconds', 's');
if (results.step512) row('one guided UNet step (batch 2), 512x512', 'step512', 'seconds', 's');
for (const m of ['image256', 'image512']) {
  if (!results[m]) continue;
  row(`whole image ${m.slice(5)}x${m.slice(5)}, 20 euler steps, guidance 7.5`, m, 'seconds', 's');
  row(`peak RSS during that run`, m, 'peak_rss_mb', 'MB');
}
console.log(`Machine: ${os.cpus()[0].model}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; ` +
  `medians of ${repeats} alternating runs; ratio = sdtorch / diffusers (lower is better)\n`);
console.log('| measure | sdtorch | diffusers | ratio |\n|---|---|---|---|\n' + rows.join('\n'));
