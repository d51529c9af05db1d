import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parameterized } from '../lib/sampling/denoiser';
import { lcm } from '../lib/sampling/samplers';
import { noiseSchedule, sigmaToT } from '../lib/sampling/schedules';
import { getSampler, resolveSampler, samplerNames, type Model, type SamplerOptions, type ScheduleName } from '../lib/sampling/registry';
import { Generator, Tensor } from '../lib/tensor';
import { relErrTensor as relError } from './helpers';

// Reference trajectories of diffusers' schedulers (and of k-diffusion's samplers diffusers has no
// class for, on diffusers' Euler schedules) with a toy eps model, made by
// scripts/make_sampler_fixture.py (see its docstring).
interface Case {
  sampler: string;
  schedule: ScheduleName;
  mode: 'txt2img' | 'img2img';
  shape: number[];
  steps: number;
  strength: number;
  seed: number;
  timesteps: number[];
  startNorm: number;
  final: string;
}
interface Fixture {
  tensors: Record<string, { shape: number[]; data: string }>;
  cases: Case[];
  /** diffusers' LCMScheduler.get_scalings_for_boundary_condition_discrete(t). */
  lcmScalings: { t: number; cSkip: number; cOut: number }[];
}

const FILE = 'sampler-reference.json';
const fixturePath = [path.join(__dirname, 'fixtures', FILE), path.resolve('test', 'fixtures', FILE)].find((p) => fs.existsSync(p));
assert.ok(fixturePath, `${FILE} not found beside the test or under ./test/fixtures (run mocha from the repo root)`);
const fixture = JSON.parse(fs.readFileSync(fixturePath, 'utf8')) as Fixture;

const floats = (b64: string): Float32Array => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};
const stored = (name: string): Tensor => Tensor.from(floats(fixture.tensors[name].data), fixture.tensors[name].shape);

/** The fixture's toy model: eps(x_in, t) = 0.5·tanh(x_in) + (0.2·t/1000)·c, in float32 like torch. */
function toyModel(c: Float32Array, seen: number[]): Model {
  return parameterized('epsilon', async (x, t) => {
    seen.push(t);
    const xs = x.toArray() as Float32Array;
    const k = Math.fround((0.2 * t) / 1000);
    const out = new Float32Array(xs.length);
    for (let i = 0; i < xs.length; i++) out[i] = Math.fround(0.5 * Math.fround(Math.tanh(xs[i]))) + Math.fround(k * c[i]);
    return Tensor.from(out, x.shape);
  });
}

const worst = new Map<string, number>();
const worstT = new Map<string, number>();

describe('samplers against diffusers (toy model)', () => {
  after(() => {
    const rows = [...worst].map(([k, v]) => `    ${k.padEnd(26)} ${v.toExponential(2)}   ${(worstT.get(k) ?? 0).toExponential(2)}`);
    console.log(`  sampler/schedule           max ‖ours−ref‖/‖ref‖ of the final latents, max |t − t_ref|\n${rows.join('\n')}`);
  });

  for (const name of samplerNames) {
    describe(name, () => {
      for (const c of fixture.cases.filter((k) => k.sampler === name)) {
        const title = `${c.schedule} ${c.mode} ${c.steps} steps${c.mode === 'img2img' ? ` strength ${c.strength}` : ''} [${c.shape}]`;
        it(title, async () => {
          const { sampler } = getSampler(c.sampler, c.schedule);
          const key = c.shape.join('x');
          const generator = new Generator(c.seed);
          const opts: SamplerOptions = { steps: c.steps, schedule: c.schedule, generator, ...(c.mode === 'img2img' ? { strength: c.strength } : {}) };
          const noise = generator.randn(c.shape);
          const x = c.mode === 'txt2img' ? sampler.init(noise, opts) : sampler.addNoise(stored(`image.${key}`), noise, opts);
          assert.ok(Math.abs(x.norm() / c.startNorm - 1) < 1e-6, `starting latents: norm ${x.norm()} vs ${c.startNorm}`);

          const seen: number[] = [];
          const out = await sampler.sample(toyModel(floats(fixture.tensors[`c.${key}`].data), seen), x, opts);

          assert.equal(sampler.evaluations(opts), c.timesteps.length, 'evaluations()');
          assert.equal(seen.length, c.timesteps.length, `model calls: ours ${seen.map((t) => t.toFixed(2))} vs ${c.timesteps}`);
          const k = `${c.sampler}/${c.schedule}`;
          seen.forEach((t, i) => {
            const dt = Math.abs(t - c.timesteps[i]);
            worstT.set(k, Math.max(worstT.get(k) ?? 0, dt));
            // DPM2 a's midpoint σ = √(σ·σ_down), σ_down = √(σ_next² − σ_up²): diffusers computes it in
            // float32 with torch's (not correctly rounded) sqrt, and the cancellation turns its last-bit
            // differences into up to ~0.01 of a timestep when σ_next ≪ σ (2 or 3 steps).
            const tolerance = c.sampler === 'dpm2_a' && i % 2 === 1 ? 2e-2 : 1e-3;
            assert.ok(dt < tolerance, `timestep ${i}: ${t} vs ${c.timesteps[i]}`);
          });
          const err = relError(out, Tensor.from(floats(c.final), c.shape));
          worst.set(k, Math.max(worst.get(k) ?? 0, err));
          assert.ok(err < 1e-4, `relative error ${err}`);
        });
      }
    });
  }

  it('covers every sampler with every schedule it takes', () => {
    const all: ScheduleName[] = ['default', 'karras', 'exponential', 'beta', 'sgm_uniform'];
    // the discrete classes step by ᾱ over whole timesteps (spacing only); LCM walks its own timesteps
    const takes = (name: string): ScheduleName[] => (['ddpm', 'ddim', 'pndm'].includes(name) ? ['default', 'sgm_uniform'] : name === 'lcm' ? ['default'] : all);
    const combos = new Set(fixture.cases.map((c) => `${c.sampler}/${c.schedule}`));
    for (const name of samplerNames) {
      assert.deepEqual(all.filter((s) => combos.has(`${name}/${s}`)), takes(name), name);
      for (const s of all) {
        if (takes(name).includes(s)) assert.equal(getSampler(name, s).schedule, s);
        else assert.throws(() => getSampler(name, s), new RegExp(`'${name}' has no ${s} schedule`));
      }
    }
  });
});

describe("LCM's boundary condition", () => {
  // On LCM's own timesteps c_skip ≤ 7e-6 and c_out ≈ 1, too close to show in the loops: a
  // one-step walk ending at t returns c_out·x̂0 + c_skip·x, read here with x̂0 = 0 or x = 0.
  const train = noiseSchedule();
  const shape = [1, 4, 2, 2];
  const estimate = (x0: Tensor): Model => ({ output: async (x) => x, x0: () => x0, eps: (out) => out, denoised: (out) => out });
  const walk = (t: number) => ({ steps: 1, timesteps: [t], sigmas: [train.sigmas[t]!, 0], initSigma: 1, train, sigmaToT: (s: number) => sigmaToT(s, train), from: 0, to: 1, generator: new Generator(0) });
  for (const { t, cSkip, cOut } of fixture.lcmScalings) {
    it(`c_skip and c_out at t = ${t} as diffusers'`, async () => {
      const ones = Tensor.from(new Float32Array(16).fill(1), shape);
      const zeros = ones.mul(0);
      const skip = (await lcm(estimate(zeros), ones, walk(t))).toArray() as Float32Array;
      const out = (await lcm(estimate(ones), zeros, walk(t))).toArray() as Float32Array;
      assert.ok(Math.abs(skip[0]! / cSkip - 1) < 1e-6, `c_skip ${skip[0]} vs ${cSkip}`);
      assert.ok(Math.abs(out[0]! - cOut) < 1e-7, `c_out ${out[0]} vs ${cOut}`);
    });
  }
});

describe('sampler registry', () => {
  it('lists the seventeen samplers', () => {
    assert.deepEqual(samplerNames, [
      'ddpm', 'ddim', 'pndm', 'euler', 'euler_a', 'heun', 'lms', 'dpm2', 'dpm2_a', 'dpmpp_2m', 'dpmpp_2m_sde', 'unipc',
      'dpmpp_2s_a', 'dpmpp_sde', 'dpmpp_3m_sde', 'deis', 'lcm',
    ]);
  });

  it('resolves A1111 display names and aliases', () => {
    const cases: [string, string, string][] = [
      ['Euler a', 'euler_a', 'default'],
      ['Euler', 'euler', 'default'],
      ['Euler Karras', 'euler', 'karras'],
      ['DPM++ 2M', 'dpmpp_2m', 'default'],
      ['DPM++ 2M Karras', 'dpmpp_2m', 'karras'],
      ['DPM++ 2M SDE', 'dpmpp_2m_sde', 'default'],
      ['DPM++ 2M SDE Karras', 'dpmpp_2m_sde', 'karras'],
      ['DPM2', 'dpm2', 'default'],
      ['DPM2 Karras', 'dpm2', 'karras'],
      ['DPM2 a', 'dpm2_a', 'default'],
      ['DPM2 a Karras', 'dpm2_a', 'karras'],
      ['Heun', 'heun', 'default'],
      ['LMS', 'lms', 'default'],
      ['LMS Karras', 'lms', 'karras'],
      ['DDIM', 'ddim', 'default'],
      ['PLMS', 'pndm', 'default'],
      ['UniPC', 'unipc', 'default'],
      ['DDPM', 'ddpm', 'default'],
      ['  dpm++ 2m  karras ', 'dpmpp_2m', 'karras'],
      ['dpmpp_2m_karras', 'dpmpp_2m', 'karras'],
      ['LCM', 'lcm', 'default'],
      ['DEIS', 'deis', 'default'],
      ['DEIS Beta', 'deis', 'beta'],
      ['DPM++ SDE', 'dpmpp_sde', 'default'],
      ['DPM++ SDE Karras', 'dpmpp_sde', 'karras'],
      ['DPM++ 2S a', 'dpmpp_2s_a', 'default'],
      ['DPM++ 2S a Karras', 'dpmpp_2s_a', 'karras'],
      ['DPM++ 3M SDE', 'dpmpp_3m_sde', 'default'],
      ['DPM++ 3M SDE Exponential', 'dpmpp_3m_sde', 'exponential'],
      ['DPM++ 2M SDE Exponential', 'dpmpp_2m_sde', 'exponential'],
      ['Euler a Karras', 'euler_a', 'karras'],
      ['Euler SGM Uniform', 'euler', 'sgm_uniform'],
      ['euler sgmuniform', 'euler', 'sgm_uniform'],
      ['DDIM SGM Uniform', 'ddim', 'sgm_uniform'],
      ['heun_beta', 'heun', 'beta'],
      ['euler_a_sgm_uniform', 'euler_a', 'sgm_uniform'],
    ];
    for (const [alias, name, schedule] of cases) {
      const got = getSampler(alias);
      assert.equal(got.name, name, alias);
      assert.equal(got.schedule, schedule, alias);
      assert.equal(got.sampler, getSampler(name, schedule).sampler, alias);
    }
    assert.equal(getSampler('dpmpp_2m', 'karras').label, 'DPM++ 2M Karras');
    assert.equal(getSampler('euler_a').label, 'Euler a');
    assert.equal(getSampler('dpmpp_3m_sde', 'exponential').label, 'DPM++ 3M SDE Exponential');
    assert.equal(getSampler('euler', 'sgm_uniform').label, 'Euler SGM Uniform');
  });

  it("takes A1111's schedule type labels in any case", () => {
    const cases: [string, string][] = [
      ['Automatic', 'default'], ['automatic', 'default'], ['Karras', 'karras'], ['EXPONENTIAL', 'exponential'], ['Beta', 'beta'],
      ['SGM Uniform', 'sgm_uniform'], ['sgm uniform', 'sgm_uniform'], ['SGMUniform', 'sgm_uniform'], ['sgm_uniform', 'sgm_uniform'],
    ];
    for (const [schedule, name] of cases) assert.equal(getSampler('euler', schedule).schedule, name, schedule);
    assert.equal(getSampler('Euler Karras', 'Karras').schedule, 'karras');
  });

  it('names the valid samplers when a name is unknown', () => {
    assert.throws(() => getSampler('euler_b'), (e: Error) => e instanceof RangeError && /unknown sampler 'euler_b'/.test(e.message) && /euler_a/.test(e.message) && /"DPM\+\+ 2M Karras"/.test(e.message));
  });

  it('refuses σ schedules where the sampler has no σ list, saying why and naming the samplers that have them', () => {
    for (const name of ['ddpm', 'ddim', 'pndm']) {
      for (const schedule of ['karras', 'exponential', 'beta']) {
        assert.throws(
          () => getSampler(name, schedule),
          (e: Error) => e.message.includes(`'${name}' has no ${schedule}`) && /takes no σ list/.test(e.message) && /'default' or 'sgm_uniform'/.test(e.message) && e.message.includes('euler_a'),
        );
      }
    }
    for (const schedule of ['karras', 'sgm_uniform'])
      assert.throws(() => getSampler('lcm', schedule), (e: Error) => e.message.includes(`'lcm' has no ${schedule}`) && /LCMScheduler walks timesteps of its 50 distillation steps/.test(e.message));
    // the same reasons when the schedule comes folded into an A1111 name (an infotext's "LCM" + "SGM Uniform")
    assert.throws(() => getSampler('DDIM Karras'), /'ddim' has no karras .*takes no σ list/);
    assert.throws(() => getSampler('LCM SGM Uniform'), /'lcm' has no sgm_uniform .*50 distillation steps/);
    const { sampler } = getSampler('ddim');
    const opts: SamplerOptions = { steps: 5, schedule: 'karras', generator: new Generator(0) };
    assert.throws(() => sampler.evaluations(opts), /no karras schedule/);
  });

  it('refuses a schedule that contradicts the name, and unknown schedules', () => {
    assert.throws(() => getSampler('DPM++ 2M Karras', 'default'), /already selects the karras schedule/);
    assert.throws(() => getSampler('Euler a Beta', 'exponential'), /already selects the beta schedule/);
    assert.equal(getSampler('DPM++ 2M Karras', 'karras').schedule, 'karras');
    assert.throws(() => getSampler('euler', 'polyexponential'), /unknown schedule 'polyexponential'.*'sgm_uniform'.*"SGM Uniform"/);
    assert.throws(() => getSampler('ddim', 'karras'), (e: Error) => e instanceof RangeError && /sampler 'ddim' has no karras schedule/.test(e.message));
    assert.throws(() => getSampler('euler', 'polyexponential'), RangeError);
  });

  it("sgm_uniform is 'trailing' spacing: another explicit spacing contradicts it", () => {
    assert.equal(getSampler('euler', 'sgm_uniform').defaultSpacing, 'trailing');
    resolveSampler('euler', { steps: 10, schedule: 'sgm_uniform', timestepSpacing: 'trailing' });
    assert.throws(() => resolveSampler('dpmpp_2m', { steps: 10, schedule: 'SGM Uniform', timestepSpacing: 'leading' }), /'sgm_uniform' is the 'trailing' timestep spacing.*contradicts 'leading'/);
  });

  it('LCM takes at most its 50 distillation steps', () => {
    const generator = new Generator(0);
    assert.equal(getSampler('lcm').sampler.evaluations({ steps: 50, generator }), 50);
    assert.throws(() => getSampler('lcm').sampler.evaluations({ steps: 51, generator }), /'lcm' takes at most 50 steps, got 51.*4 to 8/);
  });

  it('checks steps and strength', () => {
    const { sampler } = getSampler('euler');
    const generator = new Generator(0);
    assert.throws(() => sampler.evaluations({ steps: 0, generator }), /steps must be an integer/);
    assert.throws(() => sampler.evaluations({ steps: 2.5, generator }), /steps must be an integer/);
    assert.throws(() => sampler.evaluations({ steps: 10, strength: 0, generator }), /strength must be in/);
    assert.throws(() => sampler.evaluations({ steps: 3, strength: 0.2, generator }), /leaves no step/);
    assert.equal(sampler.evaluations({ steps: 10, strength: 0.6, generator }), 6);
    assert.equal(getSampler('heun').sampler.evaluations({ steps: 10, strength: 0.6, generator }), 11);
    assert.equal(getSampler('pndm').sampler.evaluations({ steps: 10, generator }), 11);
    assert.equal(getSampler('dpmpp_sde').sampler.evaluations({ steps: 10, strength: 0.6, generator }), 11);
    assert.equal(getSampler('dpmpp_2s_a').sampler.evaluations({ steps: 4, generator }), 7);
    assert.equal(getSampler('dpmpp_3m_sde').sampler.evaluations({ steps: 4, generator }), 4);
  });
});

describe('sampling loop', () => {
  const shape = [1, 4, 2, 2];
  const zeros: Model = parameterized('epsilon', async (x) => x.mul(0));

  it('reports progress after each model evaluation', async () => {
    const { sampler } = getSampler('heun');
    const calls: [number, number][] = [];
    const opts: SamplerOptions = { steps: 4, generator: new Generator(1), onStep: (i, total) => void calls.push([i, total]) };
    await sampler.sample(zeros, sampler.init(new Generator(1).randn(shape), opts), opts);
    assert.deepEqual(calls, [1, 2, 3, 4, 5, 6, 7].map((i) => [i, 7]));
  });

  it('stops between steps when aborted', async () => {
    const { sampler } = getSampler('euler_a');
    const controller = new AbortController();
    let calls = 0;
    const model: Model = parameterized('epsilon', async (x) => {
      calls++;
      return x.mul(0);
    });
    const opts: SamplerOptions = {
      steps: 10,
      generator: new Generator(2),
      signal: controller.signal,
      onStep: (i) => {
        if (i === 3) controller.abort(new Error('stop here'));
      },
    };
    await assert.rejects(sampler.sample(model, sampler.init(new Generator(2).randn(shape), opts), opts), /stop here/);
    assert.equal(calls, 3);

    const aborted = AbortSignal.abort();
    await assert.rejects(sampler.sample(model, sampler.init(new Generator(2).randn(shape), opts), { ...opts, signal: aborted }), { name: 'AbortError' });
  });
});
