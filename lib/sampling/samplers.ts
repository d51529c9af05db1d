// Samplers as plain functions, k-diffusion style (maths only; names and validation are in
// registry.ts). Each one walks a Schedule (schedules.ts) and reproduces the diffusers scheduler of
// DESIGN.md's table step for step: the same model inputs and timesteps, the same noise draws from
// the generator, the same final latents.
import type { Generator, Tensor } from '../tensor';
import { alphasCumprod, sigmaAt, TRAIN_STEPS, type Schedule, type ScheduleName } from './schedules';

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
  /**
   * After each model evaluation (i from 1 to total); `denoised()` computes that evaluation's
   * estimate of the clean latents (for previews), valid during the call.
   */
  onStep?: (i: number, total: number, denoised: () => Tensor) => void | Promise<void>;
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
export type Denoiser = (x: Tensor, sigma: number, t: number) => Promise<Tensor>;

/** One run of a sampler: its schedule, the step img2img enters at, and the noise generator. */
export interface Walk extends Schedule {
  from: number;
  generator: Generator;
}

/** Karras et al. 2022's VE denoiser over an eps model: D(x; σ) = x − σ·ε(x/√(σ²+1), t). */
export const veDenoiser =
  (eps: EpsModel): Denoiser =>
  async (x, sigma, t) =>
    x.sub((await eps(x.div(Math.sqrt(sigma * sigma + 1)), t)).mul(sigma));

/**
 * The clean latents one eps evaluation implies: the model input is √ᾱ·x0 + √(1−ᾱ)·ε in every
 * space (VE latents reach the model as x/√(σ²+1)), so x0 = (input − σ_t·ε)/α at the timestep's σ.
 */
export function predictedX0(input: Tensor, t: number, eps: Tensor): Tensor {
  const { alpha, sigmaT } = vp(sigmaAt(Math.min(Math.max(t, 0), TRAIN_STEPS - 1)));
  return input.sub(eps.mul(sigmaT)).div(alpha);
}

/** Data prediction for VP latents x = α·x0 + σ_t·ε (α = 1/√(1+σ²), σ_t = σα): x0 = (x − σ_t·ε(x, t))/α. */
export const vpDenoiser =
  (eps: EpsModel): Denoiser =>
  async (x, sigma, t) => {
    const { alpha, sigmaT } = vp(sigma);
    return x.sub((await eps(x, t)).mul(sigmaT)).div(alpha);
  };

/** VP coefficients of σ and the half log-SNR λ = log(α/σ_t). */
export function vp(sigma: number): { alpha: number; sigmaT: number; lambda: number } {
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
export async function ddpm(eps: EpsModel, x: Tensor, { timesteps, from, generator }: Walk): Promise<Tensor> {
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
export async function ddim(eps: EpsModel, x: Tensor, { steps, timesteps, from }: Walk): Promise<Tensor> {
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
export async function plms(eps: EpsModel, x: Tensor, { steps, timesteps, from }: Walk): Promise<Tensor> {
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
export async function euler(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
  for (let i = from; i < timesteps.length; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    x = x.add(d.mul(sigmas[i + 1] - sigmas[i]));
  }
  return x;
}

/** Ancestral Euler (k-diffusion's sample_euler_ancestral, η = 1; Song et al. 2021 ancestral step). */
export async function eulerAncestral(model: Denoiser, x: Tensor, { sigmas, timesteps, from, generator }: Walk): Promise<Tensor> {
  for (let i = from; i < timesteps.length; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    const { up, down } = ancestral(sigmas[i], sigmas[i + 1]);
    x = x.add(d.mul(down - sigmas[i]));
    x = x.add(randnLike(x, generator).mul(up));
  }
  return x;
}

/** Heun's second-order method (Karras et al. 2022, arXiv:2206.00364, Alg. 1); Euler on the last step. */
export async function heun(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
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
export async function dpm2(model: Denoiser, x: Tensor, { sigmas, timesteps, from, sigmaToT }: Walk): Promise<Tensor> {
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
export async function dpm2Ancestral(model: Denoiser, x: Tensor, { sigmas, timesteps, from, generator, sigmaToT }: Walk): Promise<Tensor> {
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
export async function lms(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
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
export async function dpmpp2m(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
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
export async function dpmpp2mSde(model: Denoiser, x: Tensor, { sigmas, timesteps, from, generator }: Walk): Promise<Tensor> {
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
export async function unipc(model: Denoiser, x: Tensor, { sigmas, timesteps, from }: Walk): Promise<Tensor> {
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
