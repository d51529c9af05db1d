'use strict';
// The stable-diffusion.cpp side of scripts/benchmark.js: runs its CLI (sd-cli, built by
// scripts/bench/sdcpp.sh) once and prints a JSON line on stdout.
//   node scripts/bench/sdcpp-side.js MODE WEIGHTS BIN TYPE THREADS [EXTRA_ARGS_JSON]
//   MODE image256 | image512; TYPE f32 | f16 (sd-cli --type: the weights are converted at load)
// The settings are the other sides': the same prompt and negative prompt, Euler (not ancestral),
// BENCH_STEPS steps (default 20), CFG 7.5, seed 1; sd-cli's own default scheduler (discrete).
// --eager-load: sd-cli otherwise reads (and converts) each network's weights on its first use,
// inside the image time; loaded up front, the image time is the image alone.
// seconds: sd-cli's "generate_image completed in" (text encoding, sampling, VAE decode), as the
// other sides time generate() / the pipeline call; the stage times are its own log lines.
// process_s and peak_rss_mb: the whole sd-cli process, by GNU time (the CLI reports neither).
// SDCPP_LOG=FILE appends sd-cli's log there.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function main(mode, weights, bin, type, threads, extra = '[]') {
  if (!/^image\d+$/.test(mode)) throw new Error(`sd.cpp side: mode ${mode} (only imageN: sd-cli runs whole images)`);
  const side = mode.slice(5);
  const steps = process.env.BENCH_STEPS ?? '20';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdcpp-bench-'));
  const timeFile = path.join(dir, 'time.txt');
  const image = path.join(dir, 'out.png');
  const args = ['-m', weights, '--type', type, '-t', String(threads), '--eager-load',
    '-p', 'a photo of a cat', '-n', 'blurry', '--sampling-method', 'euler', '--steps', steps, '--cfg-scale', '7.5',
    '-W', side, '-H', side, '-s', '1', '-o', image, ...JSON.parse(extra)];
  try {
    const r = spawnSync('/usr/bin/time', ['-o', timeFile, '-f', '%e %M', bin, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
    const log = `${r.stdout}\n${r.stderr}`;
    if (process.env.SDCPP_LOG) fs.appendFileSync(process.env.SDCPP_LOG, `# sd-cli ${args.join(' ')}\n${log}\n`);
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`sd-cli failed (status ${r.status}):\n${log.slice(-4000)}`);
    const num = (re) => { const m = re.exec(log); return m ? Number(m[1]) : null; };
    const all = (re) => [...log.matchAll(re)].reduce((s, m) => s + Number(m[1]), 0);
    // That it read our file as what it is: SD 1.x, every tensor of the asked type.
    const version = /Version: (.+?)\s*$/m.exec(log)?.[1];
    if (version !== 'SD 1.x') throw new Error(`sd-cli took the file for ${version ?? 'nothing'}:\n${log.slice(-4000)}`);
    if (!fs.existsSync(image)) throw new Error(`sd-cli wrote no image:\n${log.slice(-4000)}`);
    const [wall, maxKb] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
    const out = {
      impl: `sdcpp-${type}`, mode, steps: Number(steps), threads: Number(threads), version,
      // the file's types (logged before conversion); params_mb is after it (f16: about half of f32's)
      file_weight_types: /Weight type stat:\s*(.+?)\s*$/m.exec(log)?.[1],
      params_mb: num(/total params memory size = ([\d.]+)MB/),
      load_tensors_s: all(/loading tensors completed, taking ([\d.]+)s/g),
      cond_s: num(/get_learned_condition completed, taking ([\d.]+)s/),
      sampling_s: num(/sampling completed, taking ([\d.]+)s/),
      decode_s: num(/decode_first_stage completed, taking ([\d.]+)s/),
      seconds: num(/generate_image completed in ([\d.]+)s/),
      process_s: wall,
      peak_rss_mb: maxKb / 1024,
    };
    if (out.seconds === null) throw new Error(`no "generate_image completed" line in sd-cli's log:\n${log.slice(-4000)}`);
    console.log(JSON.stringify(out));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

try {
  main(...process.argv.slice(2));
} catch (e) {
  console.error(e);
  process.exit(1);
}
