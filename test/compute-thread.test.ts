// Every async call of the addon runs on its one compute thread (native/addon/threads.h): calls made
// at once all settle, each with what it gives alone; a failure inside one comes back as that call's
// rejection and leaves the thread serving the next.
import assert from 'node:assert/strict';
import * as sd from '../lib';
import { relErrTensor } from './helpers';
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
});
