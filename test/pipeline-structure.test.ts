// The pipeline's structure, on the tiny model: the family record comes from the checkpoint, the
// UNet takes one conditioning object, a whole job is validated before any work, and concurrent
// jobs on one pipeline run one at a time.
import assert from 'node:assert/strict';
import * as sd from '../lib';
import { tinyCheckpoint } from './tiny';

describe('pipeline structure (tiny model)', function () {
  let pipe: sd.Pipeline;
  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
  });
  after(() => pipe?.dispose());

  it("the family record is the checkpoint's own (read from the native preset row)", function () {
    const f = pipe.family;
    assert.equal(f.name, 'tiny');
    assert.equal(f.latentChannels, 4);
    assert.equal(f.unetInChannels, 4);
    assert.equal(f.latentScale, 0.18215);
    assert.equal(f.prediction, 'epsilon');
    assert.equal(f.vaeScaleFactor, 2); // the tiny VAE has two levels
    assert.equal(pipe.vaeScale, 2);
    assert.equal(f.contextDim, 32);
    assert.deepEqual(f.textEncoders, [{ width: 32, maxTokens: 77, vocab: 49408, layers: 2, padToken: 49407, projection: 0 }]);
    assert.deepEqual(f.timeIds, []); // no SDXL vector conditioning
    assert.equal(f.zeroEmptyNegative, false);
    assert.equal(f.timestepSpacing, null); // each sampler's own default
    assert.ok(Object.isFrozen(f));
  });

  it('unet.forward takes a context tensor or one conditioning object; errors use the model\'s own numbers', async function () {
    const ctx = await pipe.textEncoder.forward(pipe.tokenizer.encode('a cat'));
    const x = sd.randn([1, 4, 8, 8], new sd.Generator(3));
    const a = await pipe.unet.forward(x, 300, ctx);
    const b = await pipe.unet.forward(x, 300, { context: ctx });
    assert.equal(a.sub(b).norm(), 0);
    await assert.rejects(pipe.unet.forward(x, 300, sd.randn([1, 77, 768], new sd.Generator(1))), /context must have shape \[B, tokens, 32\] \(width 32\), got width 768/);
    await assert.rejects(pipe.unet.forward(sd.randn([1, 3, 8, 8], new sd.Generator(1)), 300, ctx), /x must have 4 channels/);
    await assert.rejects(pipe.unet.forward(x, 300, { context: ctx, textEmbeds: sd.randn([1, 8], new sd.Generator(1)) }), /UNet takes no vector conditioning: leave textEmbeds and timeIds out/);
    await assert.rejects(pipe.unet.forward(x, 300, { context: ctx, concat: sd.randn([1, 5, 8, 8], new sd.Generator(1)) }), /UNet takes no concat \(it is not an inpainting model\)/);
    await assert.rejects(pipe.unet.forward(x, NaN, ctx), /t must be finite/);
    await assert.rejects(pipe.vae.decode(sd.randn([1, 3, 8, 8], new sd.Generator(1))), /latents must have 4 channels/);
  });

  it('a whole job is validated before any network runs', async function () {
    const calls: string[] = [];
    const spy = Object.create(pipe) as sd.Pipeline;
    const encoder = pipe.textEncoder;
    const watched = { forward: (...a: Parameters<typeof encoder.forward>) => (calls.push('text'), encoder.forward(...a)), to: encoder.to.bind(encoder) };
    Object.defineProperty(spy, 'textEncoder', { value: watched });
    Object.defineProperty(spy, 'textEncoders', { value: [watched] });
    const base = { prompt: 'a cat', width: 16, height: 16, decode: false } as const;
    await assert.rejects(spy.generate({ ...base, steps: 1001 }), /generate\(\): steps must be an integer from 1 to 1000, got 1001/);
    await assert.rejects(spy.generate({ ...base, steps: 3, strength: 0.2, image: Buffer.from('x') }), /leaves no step/);
    await assert.rejects(spy.generate({ ...base, schedule: 'polyexponential' as 'karras' }), /unknown schedule 'polyexponential'/);
    await assert.rejects(spy.generate({ ...base, sampler: 'DDIM', schedule: 'karras' }), /no karras schedule/);
    await assert.rejects(spy.generate({ ...base, sampler: 'LCM', steps: 51 }), /'lcm' takes at most 50 steps/);
    assert.deepEqual(calls, []);
    // and a valid job does run the encoder
    await spy.generate({ ...base, steps: 1 });
    assert.ok(calls.length > 0);
  });

  it('concurrent generate() calls on one pipeline give exactly the latents of sequential calls', async function () {
    const job = (seed: number) => ({ prompt: `a cat ${seed}`, width: 16, height: 16, steps: 3, seed, sampler: 'euler_a', decode: false, idleDevice: 'cpu' });
    const sequential: sd.Tensor[] = [];
    for (const seed of [1, 2, 3]) sequential.push((await pipe.generate(job(seed))).latents);
    const order: number[] = [];
    const concurrent = await Promise.all([1, 2, 3].map((seed) => pipe.generate({ ...job(seed), onProgress: () => order.push(seed) })));
    for (const [i, r] of concurrent.entries()) assert.equal(r.latents.sub(sequential[i]!).norm(), 0, `job ${i + 1}`);
    // every step of a job is reported before any of the next: they never interleave
    assert.deepEqual(order, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
    // a failing job does not block the queue
    const bad = pipe.generate({ ...job(4), latents: sd.randn([1, 4, 1, 1], new sd.Generator(1)) });
    const after = pipe.generate(job(1));
    await assert.rejects(bad, /latents must have shape/);
    assert.equal((await after).latents.sub(sequential[0]!).norm(), 0);
  });
});
