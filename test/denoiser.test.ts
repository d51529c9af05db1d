// The denoiser adapter: ε and v outputs read as x̂0, ε̂ and D (hand-derived values), classifier-free
// guidance in the network's output space, guidance rescale, and inpainting's extra UNet channels.
import assert from 'node:assert/strict';
import type { UNet } from '../lib/models/networks';
import { guidedModel, parameterized } from '../lib/sampling/denoiser';
import { Tensor } from '../lib/tensor';

const full = (v: number, shape = [1, 1, 2, 2]) => Tensor.from(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(v), shape);
const values = (t: Tensor) => [...(t.toArray() as Float32Array)];
const close = (t: Tensor, want: number, what: string) => values(t).forEach((v) => assert.ok(Math.abs(v - want) < 1e-6, `${what}: ${v} vs ${want}`));

describe('denoiser: what the network predicts', function () {
  // A hand-derived point: α = 0.6, σ_t = 0.8 (σ = σ_t/α = 4/3), x0 = 0.8, ε = 1.9, so that
  // x = α·x0 + σ_t·ε = 2, v = α·ε − σ_t·x0 = 1.14 − 0.64 = 0.5, and the VE latents x/α = 10/3.
  const level = { alpha: 0.6, sigmaT: 0.8 };
  const sigma = 4 / 3;
  const x = full(2);
  const xVe = full(10 / 3);
  const none = async () => full(0);

  it('v: x̂0 = α·x − σ_t·v, ε̂ = α·v + σ_t·x, D = x_ve/(σ²+1) − σ/√(σ²+1)·v', function () {
    const m = parameterized('v', none);
    close(m.x0(full(0.5), x, level), 0.8, 'x0');
    close(m.eps(full(0.5), x, level), 1.9, 'eps');
    close(m.denoised(full(0.5), xVe, sigma), 0.8, 'D');
  });

  it('epsilon: x̂0 = (x − σ_t·ε)/α, ε̂ = ε, D = x_ve − σ·ε: the same point', function () {
    const m = parameterized('epsilon', none);
    close(m.x0(full(1.9), x, level), 0.8, 'x0');
    close(m.eps(full(1.9), x, level), 1.9, 'eps');
    close(m.denoised(full(1.9), xVe, sigma), 0.8, 'D');
  });

  it('v at zero SNR (α = 0, σ_t = 1): x̂0 = −v, ε̂ = x (finite where an ε model has none)', function () {
    const m = parameterized('v', none);
    close(m.x0(full(0.5), x, { alpha: 0, sigmaT: 1 }), -0.5, 'x0');
    close(m.eps(full(0.5), x, { alpha: 0, sigmaT: 1 }), 2, 'eps');
  });

  it('refuses an unknown prediction', function () {
    assert.throws(() => parameterized('sample' as 'v', none), /unknown prediction 'sample'/);
  });
});

describe('denoiser: guidance and extra channels over a UNet', function () {
  /** A stand-in UNet: output = context value (per batch row) + t/1000, recording what it was given. */
  function stub(calls: Array<{ batch: number; concat?: number[] }>): UNet {
    return {
      async forward(xin: Tensor, t: number, cond: { context: Tensor; concat?: Tensor }) {
        const b = xin.shape[0]!;
        calls.push({ batch: b, ...(cond.concat ? { concat: cond.concat.shape } : {}) });
        const ctx = cond.context.toArray() as Float32Array;
        const per = ctx.length / b;
        const plane = xin.numel / b;
        const out = new Float32Array(xin.numel);
        for (let i = 0; i < b; i++) out.fill(ctx[i * per]! + t / 1000 + (cond.concat ? 100 * (cond.concat.toArray() as Float32Array)[0]! : 0), i * plane, (i + 1) * plane);
        return Tensor.from(out, xin.shape);
      },
    } as unknown as UNet;
  }
  const context = (v: number) => full(v, [1, 3, 4]);

  it('guides in v space, then reads the guided v: x̂0 = α·x − σ_t·(v_u + s·(v_c − v_u))', async function () {
    const calls: Array<{ batch: number }> = [];
    const m = guidedModel(stub(calls), () => ({ cond: context(1), uncond: context(0.25) }), { cfgScale: 3, prediction: 'v' });
    const out = await m.output(full(2), 0);
    close(out, 0.25 + 3 * (1 - 0.25), 'guided v');
    close(m.x0(out, full(2), { alpha: 0.6, sigmaT: 0.8 }), 0.6 * 2 - 0.8 * 2.5, 'x0');
    assert.deepEqual(calls.map((c) => c.batch), [2]); // one batched call [uncond; cond]
  });

  it('guidance rescale φ = 1 gives the guided prediction the conditional one’s standard deviation', async function () {
    const unet = {
      async forward(xin: Tensor, _t: number, cond: { context: Tensor }) {
        const c = (cond.context.toArray() as Float32Array)[0]!; // row 0 is the uncond half, row 1 the cond half
        const data = Float32Array.from({ length: xin.numel }, (_, i) => (i < xin.numel / 2 ? c : (cond.context.toArray() as Float32Array)[12]!) * (1 + (i % 4)));
        return Tensor.from(data, xin.shape);
      },
    } as unknown as UNet;
    const m = guidedModel(unet, () => ({ cond: context(1), uncond: context(0.5) }), { cfgScale: 5, rescale: 1 });
    const out = values(await m.output(full(0, [1, 1, 2, 2]), 10));
    // cond = [1, 2, 3, 4] (std 1.291), guided = 0.5·[1..4] + 5·0.5·[1..4] = 3·[1..4], rescaled to std(cond): [1..4]
    out.forEach((v, i) => assert.ok(Math.abs(v - (1 + i)) < 1e-5, `${v} vs ${1 + i}`));
  });

  it('inpainting: concat joins every UNet call, doubled for the batched CFG call, as is for separate calls', async function () {
    const calls: Array<{ batch: number; concat?: number[] }> = [];
    const concat = full(0.01, [2, 5, 2, 2]);
    const batched = guidedModel(stub(calls), () => ({ cond: full(1, [2, 3, 4]), uncond: full(0, [2, 3, 4]) }), { cfgScale: 2, concat });
    close(await batched.output(full(0, [2, 4, 2, 2]), 0), 1 * 2 + 1, 'guided with concat'); // u = 0 + 1, c = 1 + 1
    assert.deepEqual(calls, [{ batch: 4, concat: [4, 5, 2, 2] }]);
    calls.length = 0;
    const apart = guidedModel(stub(calls), () => ({ cond: full(1, [2, 77, 4]), uncond: full(0, [2, 154, 4]) }), { cfgScale: 2, concat });
    await apart.output(full(0, [2, 4, 2, 2]), 0);
    assert.deepEqual(calls, [{ batch: 2, concat: [2, 5, 2, 2] }, { batch: 2, concat: [2, 5, 2, 2] }]);
    calls.length = 0;
    const unguided = guidedModel(stub(calls), () => ({ cond: full(1, [2, 3, 4]), uncond: null }), { cfgScale: 1, concat });
    await unguided.output(full(0, [2, 4, 2, 2]), 0);
    assert.deepEqual(calls, [{ batch: 2, concat: [2, 5, 2, 2] }]);
  });
});
