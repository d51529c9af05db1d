// Same inputs, same bits, whatever else the machine runs: thread counts are pinned at module init
// (native/addon/threads.cc), so neither other processes' load nor OpenMP's / MKL's dynamic modes
// change how kernels split their work.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import * as sd from '../lib';
import { native } from '../lib/native/load';
import { REPO_ROOT, tmpDir } from './helpers';
import { tinyCheckpoint } from './tiny';
import { ensureWeights } from './weights';

/** Busy child processes, each stopping by itself after `ms` (a spin loop never runs timers). */
function burners(n: number, ms = 120_000) {
  const kids = Array.from({ length: n }, () =>
    spawn(process.execPath, ['-e', `const end = Date.now() + ${ms}; while (Date.now() < end) {}`], { stdio: 'ignore' }),
  );
  return () => kids.forEach((k) => k.kill('SIGKILL'));
}

// One UNet forward in a fresh process: weights, then inputs x/t/ctx from a file, output to a file.
const CHILD = `
const sd = require(process.argv[1]);
(async () => {
  const [, , weights, inputs, out] = process.argv;
  const pipe = await sd.loadPipeline(weights, { device: 'cpu', dtype: 'float32' });
  const i = await sd.loadTensors(inputs);
  await sd.saveTensors(out, { y: await pipe.unet.forward(i.x, i.t, i.ctx) }, { overwrite: true });
})().catch((e) => { console.error(e); process.exit(1); });
`;

const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;

/**
 * The UNet output of a child process that lets OpenMP and MKL adapt their thread counts
 * (OMP_DYNAMIC, MKL_DYNAMIC) while asking for as many threads as this process uses, confined to one
 * CPU when taskset is there: libgomp's dynamic mode then runs every team with 1 thread, deterministically.
 */
async function adaptiveChild(weights: string, x: sd.Tensor, t: sd.Tensor, ctx: sd.Tensor, dir: string): Promise<sd.Tensor> {
  const inputs = path.join(dir, 'inputs.safetensors');
  const out = path.join(dir, 'out.safetensors');
  await sd.saveTensors(inputs, { x, t, ctx }, { overwrite: true });
  const threads = String(native().systemInfo().threads);
  const env = { ...process.env, OMP_DYNAMIC: 'true', MKL_DYNAMIC: 'true', OMP_NUM_THREADS: threads, MKL_NUM_THREADS: threads };
  const cmd = [process.execPath, '-e', CHILD, path.join(REPO_ROOT, 'dist'), weights, inputs, out];
  const r = hasTaskset ? spawnSync('taskset', ['-c', '0', ...cmd], { env, encoding: 'utf8' }) : spawnSync(cmd[0], cmd.slice(1), { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return (await sd.loadTensors(out)).y;
}

describe('reproducibility under load: thread counts do not adapt', function () {
  let dir: string;
  let cleanup: () => void;
  before(() => ({ dir, cleanup } = tmpDir()));
  after(() => cleanup());

  it('the tiny UNet gives the same bits at rest and while two other processes burn CPU', async function () {
    const pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    try {
      const ctx = await pipe.textEncoder.forward(pipe.tokenizer.encode(['a cat', 'a dog']));
      const x = sd.randn([2, 4, 64, 64], new sd.Generator(7));
      const atRest = await pipe.unet.forward(x, 500, ctx);
      const stop = burners(2);
      let busy: sd.Tensor;
      try {
        await new Promise((r) => setTimeout(r, 300)); // let them start
        busy = await pipe.unet.forward(x, 500, ctx);
      } finally {
        stop();
      }
      assert.equal(busy.sub(atRest).norm(), 0);
      // and a process that lets OpenMP and MKL pick their own thread counts agrees
      const t = sd.Tensor.from([500, 500], [2]);
      assert.equal((await adaptiveChild(await tinyCheckpoint(), x, t, ctx, dir)).sub(atRest).norm(), 0);
    } finally {
      pipe.dispose();
    }
  });

  it('the full-size SD 1.5 UNet: a process with OMP_DYNAMIC/MKL_DYNAMIC on one busy CPU gives the same bits', async function () {
    const w = ensureWeights();
    const pipe = await sd.loadPipeline(w.safetensors, { device: 'cpu', dtype: 'float32' });
    try {
      const ref = await sd.loadTensors(path.join(REPO_ROOT, 'test', 'fixtures', 'reference-1234.safetensors'));
      const [x, t, ctx] = [ref['unet.x']!, ref['unet.t']!, ref['unet.ctx']!];
      const here = await pipe.unet.forward(x, t, ctx);
      const there = await adaptiveChild(w.safetensors, x, t, ctx, dir);
      assert.equal(there.sub(here).norm(), 0, `relative difference ${there.sub(here).norm() / here.norm()}`);
    } finally {
      pipe.dispose();
    }
  });
});
