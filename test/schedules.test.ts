import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resolveOptions } from '../lib/generate/options';
import { parameterized, rescaleGuidance } from '../lib/sampling/denoiser';
import { getSampler, resolveSampler, samplerNames, type Model, type SamplerOptions, type ScheduleName } from '../lib/sampling/registry';
import { noiseSchedule, rescaleZeroTerminalSnr, scaledLinearBetas, type TimestepSpacing } from '../lib/sampling/schedules';
import { Generator, Tensor } from '../lib/tensor';
import { relErrTensor as relError } from './helpers';

// diffusers' schedules with timestep spacing, zero terminal SNR and v-prediction (and k-diffusion's
// samplers on diffusers' Euler schedules), and its rescale_noise_cfg, made by
// scripts/make_schedule_fixture.py (see its docstring).
interface Case {
  sampler: string;
  schedule: ScheduleName;
  spacing: TimestepSpacing;
  zeroTerminalSnr: boolean;
  prediction: 'epsilon' | 'v';
  mode: 'txt2img' | 'img2img';
  steps: number;
  strength: number;
  seed: number;
  timesteps: number[];
  startNorm: number;
  final: string;
}
interface Fixture {
  shape: number[];
  tensors: Record<string, { shape: number[]; data: string }>;
  tables: Record<'default' | 'zeroSnr' | 'zeroSnrClamped' | 'sqrtAlphasCumprod' | 'betasZeroSnr', string>;
  rescale: Array<{ scale: number; phi: number; out: string }>;
  cases: Case[];
}

const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'schedule-reference.json'), 'utf8')) as Fixture;
const floats = (b64: string): Float32Array => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};
const stored = (name: string): Tensor => Tensor.from(floats(fixture.tensors[name]!.data), fixture.tensors[name]!.shape);

/** The fixture's toy network: out(x_in, t) = 0.5·tanh(x_in) + (0.2·t/1000)·c in float32, read as `prediction`. */
function toyModel(prediction: 'epsilon' | 'v', seen: number[]): Model {
  const c = floats(fixture.tensors['c']!.data);
  return parameterized(prediction, async (x, t) => {
    seen.push(t);
    const xs = x.toArray() as Float32Array;
    const k = Math.fround((0.2 * t) / 1000);
    const out = new Float32Array(xs.length);
    for (let i = 0; i < xs.length; i++) out[i] = Math.fround(0.5 * Math.fround(Math.tanh(xs[i]!))) + Math.fround(k * c[i]!);
    return Tensor.from(out, x.shape);
  });
}

describe('training schedules against diffusers', () => {
  // Bit for bit, except that the rescaling takes √ᾱ with torch's vectorized float32 sqrt, which is
  // not always correctly rounded: 182 of the 1000 √ᾱ differ in the last bit, which moves rescaled
  // ᾱ near t = 999 (where ᾱ is tiny) by up to 64 ulps.
  const check = (ours: readonly number[], theirs: string, what: string, ulps = 0) => {
    const ref = floats(theirs);
    assert.equal(ours.length, ref.length);
    ours.forEach((a, t) => assert.ok(Math.abs(a - ref[t]!) <= ulps * 2 ** -24 * Math.max(a, 2 ** -24), `${what}: ᾱ_${t} ${a} vs ${ref[t]}`));
  };
  it("SD's scaled_linear ᾱ_t, bit for bit", () => check(noiseSchedule(false).alphasCumprod, fixture.tables.default, 'default'));
  it("rescale_zero_terminal_snr bit for bit given torch's √ᾱ", () => {
    const inputs = noiseSchedule(false).alphasCumprod;
    const roots = floats(fixture.tables.sqrtAlphasCumprod);
    const torchSqrt = new Map(inputs.map((a, t) => [a, roots[t]!]));
    const ours = rescaleZeroTerminalSnr(scaledLinearBetas(), (x) => torchSqrt.get(x)!);
    const ref = floats(fixture.tables.betasZeroSnr);
    ours.forEach((b, t) => assert.equal(b, ref[t], `β_${t}`));
    assert.equal(ours[999], 1);
  });
  it('rescale_betas_zero_snr as DDIM/DDPM keep it (ᾱ_999 = 0, σ_999 = ∞)', () => {
    const s = noiseSchedule(true, false);
    check(s.alphasCumprod, fixture.tables.zeroSnr, 'zero SNR', 65);
    assert.equal(s.alphasCumprod[999], 0);
    assert.equal(s.sigmas[999], Infinity);
  });
  it('rescale_betas_zero_snr as the σ-based classes keep it (ᾱ_999 = 2^-24, σ_999 ≈ 4096)', () => {
    const s = noiseSchedule(true, true);
    check(s.alphasCumprod, fixture.tables.zeroSnrClamped, 'clamped', 65);
    assert.equal(s.alphasCumprod[999], 2 ** -24);
    assert.ok(Math.abs(s.sigmas[999]! - 4096) < 1e-3);
  });
});

describe('spacing, zero terminal SNR and v-prediction against diffusers (toy model)', () => {
  const worst = new Map<string, number>();
  after(() => {
    const rows = [...worst].map(([k, v]) => `    ${k.padEnd(34)} ${v.toExponential(2)}`);
    console.log(`  sampler/spacing/zsnr/schedule/prediction   max ‖ours−ref‖/‖ref‖\n${rows.join('\n')}`);
  });
  for (const name of samplerNames) {
    describe(name, () => {
      for (const c of fixture.cases.filter((k) => k.sampler === name)) {
        const title = `${c.spacing}${c.zeroTerminalSnr ? ' zsnr' : ''} ${c.schedule} ${c.prediction} ${c.mode} ${c.steps} steps`;
        it(title, async () => {
          const { sampler } = getSampler(c.sampler, c.schedule);
          const generator = new Generator(c.seed);
          const opts: SamplerOptions = {
            steps: c.steps, schedule: c.schedule, generator, timestepSpacing: c.spacing, zeroTerminalSnr: c.zeroTerminalSnr, prediction: c.prediction,
            ...(c.mode === 'img2img' ? { strength: c.strength } : {}),
          };
          const noise = generator.randn(fixture.shape);
          const x = c.mode === 'txt2img' ? sampler.init(noise, opts) : sampler.addNoise(stored('image'), noise, opts);
          assert.ok(Math.abs(x.norm() / c.startNorm - 1) < 1e-6, `starting latents: norm ${x.norm()} vs ${c.startNorm}`);
          const seen: number[] = [];
          const out = await sampler.sample(toyModel(c.prediction, seen), x, opts);
          assert.equal(seen.length, c.timesteps.length, `model calls: ours ${seen.map((t) => t.toFixed(2))} vs ${c.timesteps}`);
          // DPM2 a's midpoint timesteps: see samplers.test.ts (float32 cancellation in diffusers' σ_down)
          seen.forEach((t, i) => assert.ok(Math.abs(t - c.timesteps[i]!) < (c.sampler === 'dpm2_a' && i % 2 === 1 ? 2e-2 : 1e-3), `timestep ${i}: ${t} vs ${c.timesteps[i]}`));
          const err = relError(out, Tensor.from(floats(c.final), fixture.shape));
          const key = `${c.sampler}/${c.spacing}/${c.zeroTerminalSnr ? 'zsnr' : '-'}/${c.schedule}/${c.prediction}`;
          worst.set(key, Math.max(worst.get(key) ?? 0, err));
          // With zero terminal SNR the first σ is ≈ 4096 and a first step down to σ ≈ 1 cancels in
          // float32: diffusers' own result is 1.5e-4 from its float64 value on 3 steps (euler, linspace, v).
          assert.ok(err < (c.zeroTerminalSnr ? 3e-4 : 1e-4), `relative error ${err}`);
        });
      }
    });
  }

  it('covers every sampler and spacing, with zero terminal SNR exactly where diffusers has it', () => {
    for (const name of samplerNames) for (const s of ['leading', 'linspace', 'trailing']) assert.ok(fixture.cases.some((c) => c.sampler === name && c.spacing === s), `${name}/${s}`);
    const zsnr = samplerNames.filter((n) => fixture.cases.some((c) => c.sampler === n && c.zeroTerminalSnr));
    assert.deepEqual(zsnr, ['ddpm', 'ddim', 'euler', 'euler_a', 'dpmpp_2m', 'dpmpp_2m_sde', 'unipc', 'dpmpp_2s_a', 'dpmpp_sde', 'dpmpp_3m_sde', 'lcm']);
    // the σ spreads with every spacing and both predictions, where the sampler takes them
    for (const name of samplerNames.filter((n) => !['ddpm', 'ddim', 'pndm', 'lcm'].includes(n)))
      for (const schedule of ['karras', 'exponential', 'beta'])
        for (const s of ['leading', 'linspace', 'trailing'])
          for (const p of ['epsilon', 'v']) assert.ok(fixture.cases.some((c) => c.sampler === name && c.schedule === schedule && c.spacing === s && c.prediction === p), `${name}/${schedule}/${s}/${p}`);
  });
});

describe('the sampling validator', () => {
  it('keeps each sampler’s diffusers spacing by default', () => {
    assert.equal(getSampler('ddim').defaultSpacing, 'leading');
    assert.equal(getSampler('pndm').defaultSpacing, 'leading');
    assert.equal(getSampler('euler').defaultSpacing, 'linspace');
    assert.equal(getSampler('unipc').defaultSpacing, 'linspace');
  });

  it('refuses zero terminal SNR where the diffusers class has no rescale_betas_zero_snr, naming those that have it', () => {
    for (const name of ['pndm', 'heun', 'lms', 'dpm2', 'dpm2_a', 'deis'])
      assert.throws(() => resolveSampler(name, { steps: 10, zeroTerminalSnr: true, prediction: 'v' }), (e: Error) => e.message.includes(`'${name}' cannot use zero terminal SNR`) && e.message.includes('euler_a'));
  });

  it('refuses an epsilon model on a step at ᾱ = 0, allows it where the schedule never reaches it', () => {
    assert.throws(() => resolveSampler('ddim', { steps: 10, zeroTerminalSnr: true, timestepSpacing: 'trailing' }), /starts at ᾱ = 0.*v-prediction/);
    assert.throws(() => resolveSampler('ddpm', { steps: 10, zeroTerminalSnr: true, timestepSpacing: 'linspace', prediction: 'epsilon' }), /ᾱ = 0/);
    resolveSampler('ddim', { steps: 10, zeroTerminalSnr: true, timestepSpacing: 'trailing', prediction: 'v' });
    resolveSampler('ddim', { steps: 10, zeroTerminalSnr: true, timestepSpacing: 'leading' });
    resolveSampler('euler', { steps: 10, zeroTerminalSnr: true, timestepSpacing: 'trailing' });
    // img2img that starts below the top step never meets ᾱ = 0
    resolveSampler('ddim', { steps: 10, zeroTerminalSnr: true, timestepSpacing: 'trailing', strength: 0.5 });
  });

  it("sgm_uniform walks 'trailing' even where the model's scheduler config says 'leading' (SDXL); an explicit other spacing is refused", () => {
    const sdxl = { prediction: 'epsilon', unetInChannels: 4, latentChannels: 4, timestepSpacing: 'leading' } as const;
    const r = resolveOptions({ prompt: 'a', sampler: 'Euler a', schedule: 'SGM Uniform', steps: 10 }, sdxl);
    assert.deepEqual([r.sampler.schedule, r.sampler.label, r.sampler.defaultSpacing, r.timestepSpacing], ['sgm_uniform', 'Euler a SGM Uniform', 'trailing', undefined]);
    const k = resolveOptions({ prompt: 'a', sampler: 'Euler a', schedule: 'karras', steps: 10 }, sdxl);
    assert.deepEqual([k.sampler.defaultSpacing, k.timestepSpacing], ['leading', 'leading']);
    assert.throws(() => resolveOptions({ prompt: 'a', sampler: 'euler', schedule: 'sgm_uniform', timestepSpacing: 'linspace', steps: 10 }, sdxl), /generate\(\): schedule 'sgm_uniform' is the 'trailing' timestep spacing/);
  });

  it("refuses step counts for which diffusers' trailing spacing adds a timestep of −1", () => {
    assert.throws(() => resolveSampler('ddim', { steps: 61, timestepSpacing: 'trailing' }), /trailing' spacing with 61 steps.*60 or 62 steps/);
    assert.throws(() => resolveSampler('euler', { steps: 103, timestepSpacing: 'trailing' }), /103 steps/);
    resolveSampler('euler', { steps: 60, timestepSpacing: 'trailing' });
  });

  it('refuses timesteps past the last trained one and unknown spacings or predictions', () => {
    assert.throws(() => resolveSampler('ddim', { steps: 1000 }), /past the last trained one/);
    assert.throws(() => resolveSampler('euler', { steps: 1000, timestepSpacing: 'leading' }), /past the last trained one/);
    assert.throws(() => resolveSampler('euler', { steps: 10, timestepSpacing: 'even' as TimestepSpacing }), /unknown timestep spacing 'even'.*'trailing'/);
    assert.throws(() => resolveSampler('euler', { steps: 10, prediction: 'x0' as 'v' }), /unknown prediction 'x0'/);
    assert.throws(() => resolveSampler('euler', { steps: 10, zeroTerminalSnr: 1 as unknown as boolean }), /zeroTerminalSnr must be true or false/);
  });
});

describe('guidance rescale against diffusers rescale_noise_cfg', () => {
  const cond = stored('cond');
  const uncond = stored('uncond');
  for (const r of fixture.rescale) {
    it(`scale ${r.scale}, φ ${r.phi}`, () => {
      const cfg = uncond.add(cond.sub(uncond).mul(r.scale));
      const out = rescaleGuidance(cfg, cond, r.phi);
      const err = relError(out, Tensor.from(floats(r.out), cond.shape));
      assert.ok(err < 1e-6, `relative error ${err}`);
    });
  }
});
