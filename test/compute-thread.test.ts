// Every async call of the addon runs on its one compute thread (native/addon/threads.h): calls made
// at once all settle, each with what it gives alone; a failure inside one comes back as that call's
// rejection and leaves the thread serving the next.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../lib';
import { REPO_ROOT, relErrTensor } from './helpers';
import { tinyCheckpoint } from './tiny';

describe('the compute thread', function () {
  let pipe: sd.Pipeline;
  const g = new sd.Generator(3);
  const inputs = Array.from({ length: 6 }, () => g.randn([2, 4, 8, 8]));
  const t = sd.Tensor.from(new Float32Array([700, 300]), [2]);
  const context = g.randn([2, 77, 32]);

  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
  });
  after(() => pipe?.dispose());

  it('calls made at once all settle with the results they give one at a time; a failing one rejects alone', async function () {
    const alone: sd.Tensor[] = [];
    for (const x of inputs) alone.push(await pipe.unet.forward(x, t, context));
    const missing = '/nonexistent/sdtorch-compute-thread.safetensors';
    const settled = await Promise.allSettled([
      ...inputs.slice(0, 3).map((x) => pipe.unet.forward(x, t, context)),
      sd.loadTensors(missing), // fails inside the job: the file is opened there
      ...inputs.slice(3).map((x) => pipe.unet.forward(x, t, context)),
      pipe.vae.decode(g.randn([1, 4, 8, 8])),
    ]);
    assert.equal(settled[3]!.status, 'rejected');
    assert.match(String((settled[3] as PromiseRejectedResult).reason?.message), /nonexistent/);
    const outputs = settled.filter((_, i) => i !== 3);
    for (const [i, r] of outputs.entries()) assert.equal(r.status, 'fulfilled', `call ${i}: ${String((r as PromiseRejectedResult).reason)}`);
    for (const [i, x] of alone.entries()) {
      const got = (outputs[i] as PromiseFulfilledResult<sd.Tensor>).value;
      assert.equal(relErrTensor(got, x), 0, `call ${i} differs from the same call alone`);
    }
    assert.deepEqual((outputs[6] as PromiseFulfilledResult<sd.Tensor>).value.shape.slice(0, 2), [1, 3], 'the decode');
  });

  it('serves calls after a failure', async function () {
    await assert.rejects(sd.loadTensors('/nonexistent/again.safetensors'));
    const out = await pipe.unet.forward(inputs[0]!, t, context);
    assert.deepEqual(out.shape, [2, 4, 8, 8]);
  });

  // Each environment (the main thread, each worker thread) has its own JS classes; a static one was
  // the last environment's, and the main thread's next call aborted the process.
  it('worker threads use the addon beside the main thread, at once and after one exits', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-workers-'));
    const script = path.join(dir, 'workers.js');
    fs.writeFileSync(script, `
      const { Worker, isMainThread, parentPort } = require('node:worker_threads');
      const sd = require(${JSON.stringify(path.join(REPO_ROOT, 'dist'))});
      const count = async () => Object.keys(await sd.loadTensors(${JSON.stringify(await tinyCheckpoint())})).length;
      const worker = () => new Promise((ok, fail) => {
        const w = new Worker(__filename);
        w.on('message', ok);
        w.on('error', fail);
      });
      if (!isMainThread) count().then((n) => parentPort.postMessage(n));
      else (async () => {
        const together = await Promise.all([count(), worker(), worker()]);
        const after = await count(); // the workers have exited
        console.log(JSON.stringify([...together, after]));
      })();`);
    try {
      const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
      const counts = JSON.parse(r.stdout.trim().split('\n').pop()!) as number[];
      assert.equal(counts.length, 4);
      assert.ok(counts[0]! > 0 && counts.every((n) => n === counts[0]), r.stdout);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
