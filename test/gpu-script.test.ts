// scripts/bench/gpu.sh, the one-run GPU check of issue #16, in its CPU mode: the same steps
// (load check, correctness against cpu/float32, speed runs, the JSON summary) on a tiny random
// model, so the script is known to work before a GPU machine runs it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers';
import { tinyCheckpoint } from './tiny';
import { repoRoot } from './weights';

const script = (name: string) => path.join(repoRoot, 'scripts', 'bench', name);

describe('scripts/bench/gpu.sh (CPU mode)', function () {
  this.timeout(180000);

  it('the bundle script and the GPU script parse', function () {
    for (const s of ['gpu.sh', 'gpu-bundle.sh']) {
      const r = spawnSync('bash', ['-n', script(s)], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${s}: ${r.stderr}`);
    }
  });

  it('checks and times sdtorch on the CPU and writes one JSON summary', async function () {
    assert.ok(fs.existsSync(path.join(repoRoot, 'dist', 'index.js')), 'dist/ is missing: run npm run build:ts first');
    const weights = await tinyCheckpoint();
    const { dir, cleanup } = tmpDir('sdtorch-gpu-sh-');
    try {
      const out = path.join(dir, 'out');
      const r = spawnSync('bash', [script('gpu.sh')], {
        cwd: repoRoot, encoding: 'utf8', timeout: 170000,
        env: { ...process.env, GPU_SH_DEVICE: 'cpu', GPU_SH_WEIGHTS: weights, GPU_SH_DIFFUSERS: 'none', GPU_SH_WORK: path.join(dir, 'work'), OUT: out,
          GPU_SH_CHECK_SIZE: '32', GPU_SH_SIZE: '32' },
      });
      assert.equal(r.status, 0, `gpu.sh failed:\n${r.stdout}\n${r.stderr}`);
      const summary = JSON.parse(fs.readFileSync(path.join(out, 'gpu.json'), 'utf8'));
      // The summary is also the last line printed.
      assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').pop()!), summary);
      assert.equal(summary.device, 'cpu');
      assert.equal(summary.sdtorch.cudaAvailable, false);
      assert.equal(summary.correctness.ok, true);
      assert.equal(summary.correctness['cpu/float32_vs_cpu/float32'].rel_err, 0);
      assert.equal(summary.correctness['cpu/float32_vs_cpu/float32'].finite, true);
      const s = summary.speed.sdtorch;
      assert.equal(s.steps, 2);
      for (const b of [1, 2]) {
        assert.equal(s[`b${b}_n`], 1);
        assert.ok(s[`b${b}_it_s`] > 0, `b${b}_it_s: ${s[`b${b}_it_s`]}`);
      }
      assert.ok(summary.notes.some((n: string) => /diffusers is not importable/.test(n)));
      for (const k of ['unpack', 'check', 'speed', 'total']) assert.equal(typeof summary.timings_s[k], 'number', k);
    } finally {
      cleanup();
    }
  });
});
