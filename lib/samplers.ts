// Samplers as plain functions, k-diffusion style, and a registry by name. Each one walks a Schedule
// (lib/schedules.ts) and reproduces the diffusers scheduler of DESIGN.md's table step for step: the
// same model inputs and timesteps, the same noise draws from the generator, the same final latents.
import type { Generator, Tensor } from './tensor';
import {
  alphasCumprod,
  kdiffusionSchedule,
  leadingSchedule,
  multistepSchedule,
  plmsSchedule,
  TRAIN_STEPS,
  type Schedule,
  type ScheduleName,
} from './schedules';

export type { Schedule, ScheduleName } from './schedules';

// The guided model: eps prediction for UNet input `x` at (possibly fractional) timestep t. The
// pipeline's denoiser does CFG and batching; samplers never see a UNet.
export type EpsModel = (x: Tensor, t: number) => Promise<Tensor>;

export interface SamplerOptions {
  steps: number;
  schedule?: ScheduleName;
  /** Ancestral/SDE noise is drawn from it with randn(x.shape), where and when diffusers draws it. */
  generator: Generator;
  /** img2img: 1 = full txt2img; runs the last int(steps·strength) steps, as diffusers' img2img pipeline does. */
  strength?: number;
  /** After each model evaluation (i from 1 to total). */
  onStep?: (i: number, total: number) => void | Promise<void>;
  /** Checked before each model evaluation; sample() then rejects with signal.reason. */
  signal?: AbortSignal;
}

export interface Sampler {
  /** Starting latents from unit noise for txt2img: noise × init_noise_sigma. */
  init(noise: Tensor, opts: SamplerOptions): Tensor;
  /** img2img start: diffusers' scheduler.add_noise(latents, noise, first timestep). */
  addNoise(latents: Tensor, noise: Tensor, opts: SamplerOptions): Tensor;
  /** Runs the loop from the starting latents; returns the final latents. */
  sample(model: EpsModel, x: Tensor, opts: SamplerOptions): Promise<Tensor>;
  /** Number of model evaluations sample() will make. */
  evaluations(opts: SamplerOptions): number;
}

// ---------------------------------------------------------------------------------------------
// Denoisers and helpers

/** D(x; σ, t): the model's estimate of the clean latents. */
type Denoiser = (x: Tensor, sigma: number, t: number) => Promise<Tensor>;

/** One run of a sampler: its schedule, the step img2img enters at, and the noise generator. */
interface Walk extends Schedule {
  from: number;
  generator: Generator;
}

/** Karras et al. 2022's VE denoiser over an eps model: D(x; σ) = x − σ·ε(x/√(σ²+1), t). */
const veDenoiser =
  (eps: EpsModel): Denoiser =>
  async (x, sigma, t) =>
    x.sub((await eps(x.div(Math.sqrt(sigma * sigma + 1)), t)).mul(sigma));

/** Data prediction for VP latents x = α·x0 + σ_t·ε (α = 1/√(1+σ²), σ_t = σα): x0 = (x − σ_t·ε(x, t))/α. */
const vpDenoiser =
  (eps: EpsModel): Denoiser =>
  async (x, sigma, t) => {
    const { alpha, sigmaT } = vp(sigma);
    return x.sub((await eps(x, t)).mul(sigmaT)).div(alpha);
  };

/** VP coefficients of σ and the half log-SNR λ = log(α/σ_t). */
function vp(sigma: number): { alpha: number; sigmaT: number; lambda: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const sigmaT = sigma * alpha;
  return { alpha, sigmaT, lambda: Math.log(alpha) - Math.log(sigmaT) };
}

/**
 * The ancestral split of a step σ → σ_next: down to σ_down deterministically, then up by fresh noise
 * σ_up (float32 values, as diffusers stores them). diffusers computes σ_down = √(σ_next² − σ_up²) in
 * float32, which cancels when σ_next ≪ σ; the exact value here differs from it by that rounding only.
 */
function ancestral(sigma: number, next: number): { up: number; down: number } {
  const up = Math.sqrt((next * next * (sigma * sigma - next * next)) / (sigma * sigma));
  return { up: Math.fround(up), down: Math.fround(Math.sqrt(next * next - up * up)) };
}

/** The geometric mean of two σ (exp of the midpoint in log σ), as float32. */
const logMidpoint = (a: number, b: number): number => Math.fround(Math.sqrt(a * b));

/** Standard normal noise shaped like x, drawn on the CPU generator as diffusers' randn_tensor does. */
function randnLike(x: Tensor, generator: Generator): Tensor {
  const noise = generator.randn(x.shape);
  return noise.device === x.device && noise.dtype === x.dtype ? noise : noise.to(x.device, x.dtype);
}

/** ᾱ_t, or `final` for t < 0 (past the last step). */
const abar = (t: number, final: number): number => (t >= 0 ? alphasCumprod[t] : final);

// ---------------------------------------------------------------------------------------------
// Samplers over ᾱ_t (integer timesteps, eps model called on x as is)

/** DDPM ancestral sampling (Ho et al. 2020, arXiv:2006.11239), "fixed_small" variance. */
async function ddpm(eps: EpsModel, x: Tensor, { timesteps, from, generator }: Walk): Promise<Tensor> {
  for (let i = from; i < timesteps.length; i++) {
    const t = timesteps[i];
    const e = await eps(x, t);
    const a = alphasCumprod[t];
    const aPrev = abar(i + 1 < timesteps.length ? timesteps[i + 1] : -1, 1);
    const alpha = a / aPrev;
    const x0 = x.sub(e.mul(Math.sqrt(1 - a))).div(Math.sqrt(a));
    // the posterior q(x_prev | x, x0): mean (eq. 7), then the variance β̃ as noise
    x = x0.mul((Math.sqrt(aPrev) * (1 - alpha)) / (1 - a)).add(x.mul((Math.sqrt(alpha) * (1 - aPrev)) / (1 - a)));
    const variance = Math.max(((1 - aPrev) / (1 - a)) * (1 - alpha), 1e-20);
    if (t > 0) x = x.add(randnLike(e, generator).mul(Math.sqrt(variance)));
  }
  return x;
}

/** DDIM, deterministic (Song et al. 2020, arXiv:2010.02502, η = 0). */
async function ddim(eps: EpsModel, x: Tensor, { steps, timesteps, from }: Walk): Promise<Tensor> {
  const stride = Math.floor(TRAIN_STEPS / steps);
  for (let i = from; i < timesteps.length; i++) {
    const t = timesteps[i];
    const e = await eps(x, t);
    const a = alphasCumprod[t];
    const aPrev = abar(t - stride, alphasCumprod[0]);
    const x0 = x.sub(e.mul(Math.sqrt(1 - a))).div(Math.sqrt(a));
    x = x0.mul(Math.sqrt(aPrev)).add(e.mul(Math.sqrt(1 - aPrev)));
  }
  return x;
}

/**
 * PLMS (Liu et al. 2022, arXiv:2202.09778, "pseudo linear multistep"): Adams–Bashforth on ε over
 * the last ≤ 4 outputs; the first step is redone with the mean of two outputs, as diffusers' PNDM does.
 */
async function plms(eps: EpsModel, x: Tensor, { steps, timesteps, from }: Walk): Promise<Tensor> {
  const stride = Math.floor(TRAIN_STEPS / steps);
  const es: Tensor[] = [];
  let start = x;
  for (let i = from; i < timesteps.length; i++) {
    const e = await eps(x, timesteps[i]);
    const redo = i - from === 1; // the second call revisits the first step from its start
    const t = redo ? timesteps[i] + stride : timesteps[i];
    if (!redo) {
      es.push(e);
      if (es.length > 4) es.shift();
    }
    let ePrime: Tensor;
    if (es.length === 1 && !redo) {
      ePrime = e;
      start = x;
    } else if (es.length === 1) {
      ePrime = e.add(es[0]).div(2);
      x = start;
    } else if (es.length === 2) ePrime = es[1].mul(3).sub(es[0]).div(2);
    else if (es.length === 3) ePrime = es[2].mul(23).sub(es[1].mul(16)).add(es[0].mul(5)).div(12);
    else ePrime = es[3].mul(55).sub(es[2].mul(59)).add(es[1].mul(37)).sub(es[0].mul(9)).mul(1 / 24);
    x = pndmTransfer(x, t, t - stride, ePrime);
  }
  return x;
}

/** PNDM's transfer φ(x_t, ε, t → t_prev) (Liu et al. 2022, eq. 11). */
function pndmTransfer(x: Tensor, t: number, prev: number, e: Tensor): Tensor {
  const a = alphasCumprod[t];
  const aPrev = abar(prev, alphasCumprod[0]);
  const denom = a * Math.sqrt(1 - aPrev) + Math.sqrt(a * (1 - a) * aPrev);
  return x.mul(Math.sqrt(aPrev / a)).sub(e.mul(aPrev - a).div(denom));
}

// ---------------------------------------------------------------------------------------------
// Samplers over σ (VE latents, denoiser D(x; σ, t))

/** Euler's method on the probability-flow ODE (Karras et al. 2022, arXiv:2206.00364, Alg. 2 without churn). */
async function euler(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
  for (let i = from; i < timesteps.length; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    x = x.add(d.mul(sigmas[i + 1] - sigmas[i]));
  }
  return x;
}

/** Ancestral Euler (k-diffusion's sample_euler_ancestral, η = 1; Song et al. 2021 ancestral step). */
async function eulerAncestral(model: Denoiser, x: Tensor, { sigmas, timesteps, from, generator }: Walk): Promise<Tensor> {
  for (let i = from; i < timesteps.length; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    const { up, down } = ancestral(sigmas[i], sigmas[i + 1]);
    x = x.add(d.mul(down - sigmas[i]));
    x = x.add(randnLike(x, generator).mul(up));
  }
  return x;
}

/** Heun's second-order method (Karras et al. 2022, arXiv:2206.00364, Alg. 1); Euler on the last step. */
async function heun(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
  for (let i = from; i < timesteps.length; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    const dt = sigmas[i + 1] - sigmas[i];
    if (sigmas[i + 1] === 0) {
      x = x.add(d.mul(dt));
      continue;
    }
    const x2 = x.add(d.mul(dt));
    const d2 = x2.sub(await model(x2, sigmas[i + 1], timesteps[i + 1])).div(sigmas[i + 1]);
    x = x.add(d.add(d2).div(2).mul(dt));
  }
  return x;
}

/** DPM-Solver-2 as in k-diffusion (Lu et al. 2022, arXiv:2206.00927; midpoint at the geometric mean of σ). */
async function dpm2(model: Denoiser, x: Tensor, { sigmas, timesteps, from, sigmaToT }: Walk): Promise<Tensor> {
  for (let i = from; i < timesteps.length; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    if (sigmas[i + 1] === 0) {
      x = x.add(d.mul(sigmas[i + 1] - sigmas[i]));
      continue;
    }
    const mid = logMidpoint(sigmas[i], sigmas[i + 1]);
    const x2 = x.add(d.mul(mid - sigmas[i]));
    const d2 = x2.sub(await model(x2, mid, sigmaToT(mid))).div(mid);
    x = x.add(d2.mul(sigmas[i + 1] - sigmas[i]));
  }
  return x;
}

/** Ancestral DPM-Solver-2 (k-diffusion's sample_dpm_2_ancestral, η = 1); no noise on the last step. */
async function dpm2Ancestral(model: Denoiser, x: Tensor, { sigmas, timesteps, from, generator, sigmaToT }: Walk): Promise<Tensor> {
  for (let i = from; i < timesteps.length; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    if (sigmas[i + 1] === 0) {
      x = x.add(d.mul(sigmas[i + 1] - sigmas[i]));
      continue;
    }
    const { up, down } = ancestral(sigmas[i], sigmas[i + 1]);
    const mid = logMidpoint(sigmas[i], down);
    const x2 = x.add(d.mul(mid - sigmas[i]));
    const d2 = x2.sub(await model(x2, mid, sigmaToT(mid))).div(mid);
    x = x.add(d2.mul(down - sigmas[i]));
    x = x.add(randnLike(x, generator).mul(up));
  }
  return x;
}

/** Linear multistep (k-diffusion's sample_lms): Adams–Bashforth in σ over the last ≤ 4 derivatives. */
async function lms(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
  const ds: Tensor[] = []; // newest first
  for (let i = from; i < timesteps.length; i++) {
    ds.unshift(x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]));
    ds.length = Math.min(ds.length, 4);
    // diffusers takes the order from the absolute step, so an img2img run starts at a high order
    // with a single derivative: only the terms that have one are summed.
    const order = Math.min(i + 1, 4);
    let step = ds[0].mul(lmsCoefficient(sigmas, i, order, 0));
    for (let j = 1; j < Math.min(order, ds.length); j++) step = step.add(ds[j].mul(lmsCoefficient(sigmas, i, order, j)));
    x = x.add(step);
  }
  return x;
}

/**
 * ∫ from σ_i to σ_{i+1} of the Lagrange basis polynomial through σ_i, …, σ_{i−order+1} that is 1 at
 * σ_{i−j}: a polynomial of degree ≤ 3, so 2-point Gauss–Legendre quadrature is exact.
 */
function lmsCoefficient(sigmas: number[], i: number, order: number, j: number): number {
  const basis = (tau: number): number => {
    let p = 1;
    for (let k = 0; k < order; k++) if (k !== j) p *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k]);
    return p;
  };
  const mid = (sigmas[i] + sigmas[i + 1]) / 2;
  const half = (sigmas[i + 1] - sigmas[i]) / 2;
  const node = half / Math.sqrt(3);
  return half * (basis(mid - node) + basis(mid + node));
}

// ---------------------------------------------------------------------------------------------
// Multistep samplers over data predictions (VP latents, x0 = D(x; σ, t))

/** DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095), midpoint; first order on the first and last step. */
async function dpmpp2m(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
  let prev: Tensor | undefined;
  for (let i = from; i < timesteps.length; i++) {
    const x0 = await model(x, sigmas[i], timesteps[i]);
    const s = vp(sigmas[i]);
    const t = vp(sigmas[i + 1]);
    const h = t.lambda - s.lambda;
    const c = t.alpha * (Math.exp(-h) - 1);
    x = x.mul(t.sigmaT / s.sigmaT).sub(x0.mul(c));
    if (prev && i < timesteps.length - 1) {
      const r = (s.lambda - vp(sigmas[i - 1]).lambda) / h;
      x = x.sub(x0.sub(prev).mul(1 / r).mul(0.5 * c));
    }
    prev = x0;
  }
  return x;
}

/** DPM-Solver++(2M) SDE (Lu et al. 2022, arXiv:2211.01095), midpoint; noise drawn on every step. */
async function dpmpp2mSde(model: Denoiser, x: Tensor, { sigmas, timesteps, from, generator }: Walk): Promise<Tensor> {
  let prev: Tensor | undefined;
  for (let i = from; i < timesteps.length; i++) {
    const x0 = await model(x, sigmas[i], timesteps[i]);
    const noise = randnLike(x0, generator);
    const s = vp(sigmas[i]);
    const t = vp(sigmas[i + 1]);
    const h = t.lambda - s.lambda;
    const c = t.alpha * (1 - Math.exp(-2 * h));
    let next = x.mul((t.sigmaT / s.sigmaT) * Math.exp(-h)).add(x0.mul(c));
    if (prev && i < timesteps.length - 1) {
      const r = (s.lambda - vp(sigmas[i - 1]).lambda) / h;
      next = next.add(x0.sub(prev).mul(1 / r).mul(0.5 * c));
    }
    x = next.add(noise.mul(t.sigmaT * Math.sqrt(1 - Math.exp(-2 * h))));
    prev = x0;
  }
  return x;
}

/**
 * UniPC (Zhao et al. 2023, arXiv:2302.04867): UniP-2 predictor and UniC corrector, B(h) = e^h − 1
 * ("bh2"), data prediction; orders warm up from 1 and drop to 1 on the last step.
 */
async function unipc(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
  const n = timesteps.length;
  const ms: Tensor[] = []; // data predictions of the last two steps, newest last
  let last: Tensor | undefined; // the predictor's input of the previous step
  let order = 1;
  for (let i = from; i < n; i++) {
    const m = await model(x, sigmas[i], timesteps[i]);
    if (last) x = uniC(last, m, ms, sigmas, i, order);
    ms.push(m);
    ms.splice(0, ms.length - 2);
    order = Math.min(2, n - i, i - from + 1);
    last = x;
    x = uniP(x, ms, sigmas, i, order);
  }
  return x;
}

/** The UniPC update from σ_s0 to σ_t: σ_t/σ_s0·x − α_t(e^{−h} − 1)·m0, and h = λ_t − λ_s0. */
function uniBase(x: Tensor, m0: Tensor, sigmaS0: number, sigmaT: number): { base: Tensor; h: number; alpha: number } {
  const s = vp(sigmaS0);
  const t = vp(sigmaT);
  const h = t.lambda - s.lambda;
  return { base: x.mul(t.sigmaT / s.sigmaT).sub(m0.mul(t.alpha * Math.expm1(-h))), h, alpha: t.alpha };
}

/** UniP-p (order p ≤ 2) from step i to i + 1; ρ = 1/2 for p = 2. */
function uniP(x: Tensor, ms: Tensor[], sigmas: number[], i: number, order: number): Tensor {
  const m0 = ms[ms.length - 1];
  const { base, h, alpha } = uniBase(x, m0, sigmas[i], sigmas[i + 1]);
  if (order === 1) return base;
  const rk = (vp(sigmas[i - 1]).lambda - vp(sigmas[i]).lambda) / h;
  const d1 = ms[0].sub(m0).div(rk);
  return base.sub(d1.mul(0.5).mul(alpha * Math.expm1(-h)));
}

/** UniC-p: corrects the step i − 1 → i that produced x_i, using the new data prediction m at step i. */
function uniC(last: Tensor, m: Tensor, ms: Tensor[], sigmas: number[], i: number, order: number): Tensor {
  const m0 = ms[ms.length - 1];
  const { base, h, alpha } = uniBase(last, m0, sigmas[i - 1], sigmas[i]);
  const hh = -h;
  const bh = Math.expm1(hh);
  // b_k = k!·φ_{k+1}(hh)/B(h): φ_2 = (e^hh − 1)/hh − 1, φ_{k+1} = φ_k/hh − 1/k!
  const phi2 = Math.expm1(hh) / hh - 1;
  let correction = m.sub(m0).mul(0.5); // p = 1: ρ = 1/2
  if (order === 2) {
    const b1 = phi2 / bh;
    const b2 = (2 * (phi2 / hh - 1 / 2)) / bh;
    const rk = (vp(sigmas[i - 2]).lambda - vp(sigmas[i - 1]).lambda) / h;
    // solve [[1, 1], [rk, 1]]·ρ = b
    const rho0 = (b1 - b2) / (1 - rk);
    const rho1 = b1 - rho0;
    const d1 = ms[0].sub(m0).div(rk);
    correction = d1.mul(rho0).add(m.sub(m0).mul(rho1));
  }
  return base.sub(correction.mul(alpha * bh));
}

// ---------------------------------------------------------------------------------------------
// Registry

interface Spec {
  /** The A1111 display name. */
  label: string;
  /** The diffusers scheduler this reproduces. */
  diffusers: string;
  /** Whether diffusers offers use_karras_sigmas for it. */
  karras: boolean;
  /** 've': latents x0 + σ·ε, the model sees x/√(σ²+1); 'vp': α·x0 + σ_t·ε, the model sees x. */
  space: 've' | 'vp';
  /** Model evaluations per step (the last step of a two-stage method makes one). */
  evals: 1 | 2;
  schedule(steps: number, schedule: ScheduleName): Schedule;
  run(model: EpsModel, x: Tensor, walk: Walk): Promise<Tensor>;
}

const kSpec = (
  label: string,
  diffusers: string,
  run: (m: Denoiser, x: Tensor, w: Walk) => Promise<Tensor>,
  { evals = 1, karras = true, roundKarras = false }: { evals?: 1 | 2; karras?: boolean; roundKarras?: boolean } = {},
): Spec => ({
  label,
  diffusers,
  karras,
  space: 've',
  evals,
  schedule: (steps, schedule) => kdiffusionSchedule(steps, schedule, roundKarras),
  run: (m, x, w) => run(veDenoiser(m), x, w),
});

const multistepSpec = (label: string, diffusers: string, run: (m: Denoiser, x: Tensor, w: Walk) => Promise<Tensor>): Spec => ({
  label,
  diffusers,
  karras: true,
  space: 'vp',
  evals: 1,
  schedule: multistepSchedule,
  run: (m, x, w) => run(vpDenoiser(m), x, w),
});

const discreteSpec = (label: string, diffusers: string, schedule: (steps: number) => Schedule, run: Spec['run']): Spec => ({
  label,
  diffusers,
  karras: false,
  space: 'vp',
  evals: 1,
  schedule,
  run,
});

const SPECS = {
  ddpm: discreteSpec('DDPM', 'DDPMScheduler', leadingSchedule, ddpm),
  ddim: discreteSpec('DDIM', 'DDIMScheduler', leadingSchedule, ddim),
  pndm: discreteSpec('PLMS', 'PNDMScheduler', plmsSchedule, plms),
  euler: kSpec('Euler', 'EulerDiscreteScheduler', euler),
  euler_a: kSpec('Euler a', 'EulerAncestralDiscreteScheduler', eulerAncestral, { karras: false }),
  heun: kSpec('Heun', 'HeunDiscreteScheduler', heun, { evals: 2 }),
  lms: kSpec('LMS', 'LMSDiscreteScheduler', lms),
  dpm2: kSpec('DPM2', 'KDPM2DiscreteScheduler', dpm2, { evals: 2, roundKarras: true }),
  dpm2_a: kSpec('DPM2 a', 'KDPM2AncestralDiscreteScheduler', dpm2Ancestral, { evals: 2, roundKarras: true }),
  dpmpp_2m: multistepSpec('DPM++ 2M', 'DPMSolverMultistepScheduler', dpmpp2m),
  dpmpp_2m_sde: multistepSpec('DPM++ 2M SDE', 'DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")', dpmpp2mSde),
  unipc: multistepSpec('UniPC', 'UniPCMultistepScheduler', unipc),
} satisfies Record<string, Spec>;

export type SamplerName = keyof typeof SPECS;
export const samplerNames: string[] = Object.keys(SPECS);
const karrasNames = (): string => samplerNames.filter((n) => SPECS[n as SamplerName].karras).join(', ');

function check(name: SamplerName, opts: SamplerOptions): { schedule: Schedule; from: number } {
  const { steps, strength = 1 } = opts;
  const scheduleName = opts.schedule ?? 'default';
  if (scheduleName !== 'default' && scheduleName !== 'karras') {
    throw new TypeError(`unknown schedule '${String(scheduleName)}': use 'default' or 'karras'`);
  }
  if (scheduleName === 'karras' && !SPECS[name].karras) {
    throw new Error(
      `sampler '${name}' has no karras schedule (diffusers' ${SPECS[name].diffusers} has no use_karras_sigmas): ` +
        `use schedule 'default', or one of the samplers that have it: ${karrasNames()}`,
    );
  }
  if (!Number.isInteger(steps) || steps < 1 || steps > TRAIN_STEPS) {
    throw new RangeError(`steps must be an integer from 1 to ${TRAIN_STEPS}, got ${steps}`);
  }
  if (!(strength > 0 && strength <= 1)) throw new RangeError(`strength must be in (0, 1], got ${strength}`);
  // diffusers' img2img: init_timestep = min(int(steps·strength), steps); t_start = steps − init_timestep
  const kept = Math.min(Math.floor(steps * strength), steps);
  if (kept < 1) {
    throw new RangeError(`strength ${strength} leaves no step of ${steps} to run (int(steps·strength) = 0): raise strength or steps`);
  }
  return { schedule: SPECS[name].schedule(steps, scheduleName), from: steps - kept };
}

function makeSampler(name: SamplerName): Sampler {
  const spec: Spec = SPECS[name];
  const count = ({ schedule, from }: { schedule: Schedule; from: number }): number =>
    spec.evals * (schedule.timesteps.length - from) - (spec.evals - 1);
  return {
    init(noise, opts) {
      const { schedule } = check(name, opts);
      return noise.mul(spec.space === 've' ? schedule.sigmas[0] : 1);
    },
    addNoise(latents, noise, opts) {
      const { schedule, from } = check(name, opts);
      const sigma = schedule.sigmas[from];
      if (spec.space === 've') return latents.add(noise.mul(sigma));
      const { alpha, sigmaT } = vp(sigma);
      return latents.mul(alpha).add(noise.mul(sigmaT));
    },
    async sample(model, x, opts) {
      const { schedule, from } = check(name, opts);
      const total = count({ schedule, from });
      let done = 0;
      const counted: EpsModel = async (input, t) => {
        opts.signal?.throwIfAborted();
        const eps = await model(input, t);
        await opts.onStep?.(++done, total);
        return eps;
      };
      return spec.run(counted, x, { ...schedule, from, generator: opts.generator });
    },
    evaluations: (opts) => count(check(name, opts)),
  };
}

const SAMPLERS = Object.fromEntries(samplerNames.map((n) => [n, makeSampler(n as SamplerName)])) as Record<SamplerName, Sampler>;

const normalize = (s: string): string => s.trim().toLowerCase().replace(/\s+/g, ' ');

/** Every accepted name (lowercased): ours, ours + "_karras", A1111's display names with and without " Karras". */
const ALIASES: ReadonlyMap<string, { name: SamplerName; schedule?: ScheduleName }> = new Map(
  (Object.entries(SPECS) as [SamplerName, Spec][]).flatMap(([name, spec]) => {
    const plain = [name, spec.label, ...(name === 'pndm' ? ['PNDM'] : [])].map((a) => [normalize(a), { name }] as const);
    const karras = spec.karras
      ? [`${name}_karras`, `${spec.label} Karras`].map((a) => [normalize(a), { name, schedule: 'karras' as const }] as const)
      : [];
    return [...plain, ...karras];
  }),
);

/**
 * Resolves a sampler by our name ('dpmpp_2m') or A1111's ('DPM++ 2M Karras'), case-insensitively.
 * A name that implies a schedule ("... Karras") conflicts with an explicit other `schedule`.
 */
export function getSampler(name: string, schedule?: string): { sampler: Sampler; schedule: ScheduleName; name: SamplerName; label: string } {
  const hit = ALIASES.get(normalize(name));
  if (!hit) {
    const labels = Object.values(SPECS).flatMap((s: Spec) => (s.karras ? [s.label, `${s.label} Karras`] : [s.label]));
    throw new Error(`unknown sampler '${name}'. Valid names: ${samplerNames.join(', ')} (schedule 'default' or 'karras'), or A1111's: ${labels.map((l) => `"${l}"`).join(', ')}`);
  }
  if (schedule !== undefined && schedule !== 'default' && schedule !== 'karras') {
    throw new TypeError(`unknown schedule '${schedule}': use 'default' or 'karras'`);
  }
  if (hit.schedule && schedule !== undefined && schedule !== hit.schedule) {
    throw new Error(`sampler '${name}' already selects the ${hit.schedule} schedule; the schedule '${schedule}' contradicts it: pass '${hit.schedule}' or no schedule`);
  }
  const resolved: ScheduleName = hit.schedule ?? (schedule as ScheduleName | undefined) ?? 'default';
  const spec: Spec = SPECS[hit.name];
  if (resolved === 'karras' && !spec.karras) {
    throw new Error(
      `sampler '${hit.name}' has no karras schedule (diffusers' ${spec.diffusers} has no use_karras_sigmas): ` +
        `use schedule 'default', or one of the samplers that have it: ${karrasNames()}`,
    );
  }
  return { sampler: SAMPLERS[hit.name], schedule: resolved, name: hit.name, label: resolved === 'karras' ? `${spec.label} Karras` : spec.label };
}
