// Samplers as plain functions, k-diffusion style (maths only; names and validation are in
// registry.ts). Each one walks a Schedule (schedules.ts) and reproduces the diffusers scheduler of
// DESIGN.md's table step for step: the same model inputs and timesteps, the same noise draws from
// the generator, the same final latents; where diffusers has no class (DPM++ 2S a, DPM++ SDE,
// DPM++ 3M SDE, and Euler a on a σ spread), k-diffusion's definition over the schedule's σ list.
// Samplers never ask what the network predicts: they ask the Model for the quantity their update
// needs (x̂0, ε̂ or D), and the Model converts (denoiser.ts).
import type { Generator, Tensor } from '../tensor';
import { sigmaAt, TRAIN_STEPS, type NoiseSchedule, type Schedule, type ScheduleName, type TimestepSpacing } from './schedules';

export type { Schedule, ScheduleName, TimestepSpacing } from './schedules';

/** What the network predicts: the noise ε (SD 1.x, SD 2 base) or the velocity v = α·ε − σ_t·x0 (SD 2 768-v). */
export type Prediction = 'epsilon' | 'v';

/** Where a VP model input lies: x = α·x0 + σ_t·ε, α = √ᾱ_t, σ_t = √(1 − ᾱ_t) (α = 0, σ_t = 1 at zero SNR). */
export interface NoiseLevel {
  alpha: number;
  sigmaT: number;
}

/**
 * The guided network as samplers see it (k-diffusion's external.py role): its raw output, and the
 * exact conversions of an output into the quantities samplers use. The pipeline's denoiser does CFG
 * and batching; samplers never see a UNet, nor which parameterization it has.
 */
export interface Model {
  /** The guided network output F(x, t) (ε or v) for UNet input x at (possibly fractional) timestep t. */
  output(x: Tensor, t: number): Promise<Tensor>;
  /** x̂0 from an output F at VP input x (diffusers' pred_original_sample). */
  x0(out: Tensor, x: Tensor, level: NoiseLevel): Tensor;
  /** ε̂ from an output F at VP input x (diffusers' pred_epsilon). */
  eps(out: Tensor, x: Tensor, level: NoiseLevel): Tensor;
  /** D(x; σ) for VE latents x = x0 + σ·ε whose UNet input was x/√(σ²+1) (Karras et al. 2022's denoiser). */
  denoised(out: Tensor, x: Tensor, sigma: number): Tensor;
}

/**
 * diffusers' 4-channel inpainting (StableDiffusionInpaintPipeline with a 4-channel UNet): after
 * each update that leaves x at the noise level of step k, the unmasked latents are replaced by the
 * image latents noised to that level; after the last update, by the image latents themselves.
 */
export interface Inpaint {
  /** Image latents [B, C, h, w] in UNet space. */
  latents: Tensor;
  /** The starting noise [B, C, h, w] (the same draw noises the image at every step). */
  noise: Tensor;
  /** [B or 1, 1, h, w]: 1 = repaint, 0 = keep. */
  mask: Tensor;
}

export interface SamplerOptions {
  steps: number;
  schedule?: ScheduleName;
  /** diffusers' timestep_spacing; default: what the sampler's diffusers class uses (see registry). */
  timestepSpacing?: TimestepSpacing;
  /** diffusers' rescale_betas_zero_snr (Lin et al. 2023); default false. */
  zeroTerminalSnr?: boolean;
  /** What the model predicts; checked against the schedule (an ε model cannot step from ᾱ = 0). Default 'epsilon'. */
  prediction?: Prediction;
  /** Ancestral/SDE noise is drawn from it with randn(x.shape), where and when diffusers draws it. */
  generator: Generator;
  /** img2img: 1 = full txt2img; runs the last int(steps·strength) steps, as diffusers' img2img pipeline does. */
  strength?: number;
  /**
   * Stop early: run only the steps whose timestep is ≥ round(1000·(1 − denoisingEnd)), and return
   * the latents still noisy at the next step's level (diffusers' SDXL denoising_end, for a refiner
   * to continue). In (0, 1).
   */
  denoisingEnd?: number;
  /**
   * Start late from latents already at that level: run only the steps whose timestep is below
   * round(1000·(1 − denoisingStart)) (diffusers' SDXL img2img denoising_start; strength is not used). In (0, 1).
   */
  denoisingStart?: number;
  /** 4-channel inpainting: keep the unmasked latents after each step, as diffusers does. */
  inpaint?: Inpaint;
  /**
   * After each model evaluation (i from 1 to total); `denoised()` computes that evaluation's
   * estimate of the clean latents x̂0 (the Model's x0 of its output; for previews), valid during the call.
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
  sample(model: Model, x: Tensor, opts: SamplerOptions): Promise<Tensor>;
  /** Number of model evaluations sample() will make (counting needs no generator). */
  evaluations(opts: Omit<SamplerOptions, 'generator'> & { generator?: Generator }): number;
}

// ---------------------------------------------------------------------------------------------
// Denoisers and helpers

/** D(x; σ, t): the model's estimate of the clean latents. */
export type Denoiser = (x: Tensor, sigma: number, t: number) => Promise<Tensor>;

/** One run of a sampler: its schedule, the step img2img enters at, the step it stops before, and the noise generator. */
export interface Walk extends Schedule {
  from: number;
  to: number;
  generator: Generator;
  /** Inpainting: x at the noise level of step k with the unmasked latents put back (k = timesteps.length: σ = 0, the clean latents). */
  blend?: (x: Tensor, k: number) => Tensor;
}

/** Karras et al. 2022's VE denoiser over a model that sees x/√(σ²+1) (k-diffusion's DiscreteEpsDDPMDenoiser / DiscreteVDDPMDenoiser). */
export const veDenoiser =
  (model: Model): Denoiser =>
  async (x, sigma, t) =>
    model.denoised(await model.output(x.div(Math.sqrt(sigma * sigma + 1)), t), x, sigma);

/** Data prediction for VP latents x = α·x0 + σ_t·ε (α = 1/√(1+σ²), σ_t = σα), the model sees x as is. */
export const vpDenoiser =
  (model: Model): Denoiser =>
  async (x, sigma, t) =>
    model.x0(await model.output(x, t), x, vp(sigma));

/** VP coefficients of σ and the half log-SNR λ = log(α/σ_t); σ = ∞ (zero SNR) gives α = 0, σ_t = 1. */
export function vp(sigma: number): { alpha: number; sigmaT: number; lambda: number } {
  if (sigma === Infinity) return { alpha: 0, sigmaT: 1, lambda: -Infinity };
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const sigmaT = sigma * alpha;
  return { alpha, sigmaT, lambda: Math.log(alpha) - Math.log(sigmaT) };
}

/**
 * The noise level of the model input at a (possibly fractional) timestep t of `train`: every
 * sampler's model input is α·x0 + σ_t·ε there (VE latents reach the model as x/√(σ²+1)), so
 * Model.x0(out, input, levelAt(train, t)) is the clean-latents estimate of any evaluation.
 */
export const levelAt = (train: NoiseSchedule, t: number): NoiseLevel => vp(sigmaAt(t, train));

/** The level of ᾱ as diffusers' discrete schedulers use it: α = √ᾱ, σ_t = √(1 − ᾱ). */
const level = (abar: number): NoiseLevel => ({ alpha: Math.sqrt(abar), sigmaT: Math.sqrt(1 - abar) });

/**
 * The ancestral split of a step σ → σ_next: down to σ_down deterministically, then up by fresh noise
 * σ_up (float32 values, as diffusers stores them). diffusers computes σ_down = √(σ_next² − σ_up²) in
 * float32, which cancels when σ_next ≪ σ; the exact value here differs from it by that rounding only.
 */
function ancestral(sigma: number, next: number): { up: number; down: number } {
  const up = Math.sqrt((next * next * (sigma * sigma - next * next)) / (sigma * sigma));
  return { up: Math.fround(up), down: Math.fround(Math.sqrt(next * next - up * up)) };
}

/** k-diffusion's get_ancestral_step (η = 1) in float64: σ_up = min(σ_next, √(σ_next²(σ² − σ_next²)/σ²)), σ_down = √(σ_next² − σ_up²). */
function ancestralStep(sigma: number, next: number): { up: number; down: number } {
  const up = Math.min(next, Math.sqrt((next * next * (sigma * sigma - next * next)) / (sigma * sigma)));
  return { up, down: Math.sqrt(next * next - up * up) };
}

/** The geometric mean of two σ (exp of the midpoint in log σ), as float32. */
const logMidpoint = (a: number, b: number): number => Math.fround(Math.sqrt(a * b));

/** Standard normal noise shaped like x, drawn on the CPU generator as diffusers' randn_tensor does. */
function randnLike(x: Tensor, generator: Generator): Tensor {
  const noise = generator.randn(x.shape);
  return noise.device === x.device && noise.dtype === x.dtype ? noise : noise.to(x.device, x.dtype);
}

/** ᾱ_t of the walk's training schedule, or `final` for t < 0 (past the last step). */
const abar = (train: NoiseSchedule, t: number, final: number): number => (t >= 0 ? train.alphasCumprod[t] : final);

/** x with the unmasked latents put back at step k's level (k = timesteps.length: the clean latents), when inpainting. */
const keep = ({ blend }: Walk, x: Tensor, k: number): Tensor => (blend ? blend(x, k) : x);

// ---------------------------------------------------------------------------------------------
// Samplers over ᾱ_t (integer timesteps, eps model called on x as is)

/** DDPM ancestral sampling (Ho et al. 2020, arXiv:2006.11239), "fixed_small" variance. */
export async function ddpm(model: Model, x: Tensor, walk: Walk): Promise<Tensor> {
  const { timesteps, from, to, generator, train } = walk;
  for (let i = from; i < to; i++) {
    const t = timesteps[i];
    const out = await model.output(x, t);
    const a = train.alphasCumprod[t];
    const aPrev = abar(train, i + 1 < timesteps.length ? timesteps[i + 1] : -1, 1);
    const alpha = a / aPrev;
    const x0 = model.x0(out, x, level(a));
    // the posterior q(x_prev | x, x0): mean (eq. 7), then the variance β̃ as noise
    x = x0.mul((Math.sqrt(aPrev) * (1 - alpha)) / (1 - a)).add(x.mul((Math.sqrt(alpha) * (1 - aPrev)) / (1 - a)));
    const variance = Math.max(((1 - aPrev) / (1 - a)) * (1 - alpha), 1e-20);
    if (t > 0) x = x.add(randnLike(out, generator).mul(Math.sqrt(variance)));
    x = keep(walk, x, i + 1);
  }
  return x;
}

/**
 * Latent Consistency Models (Luo et al. 2023, arXiv:2310.04378; diffusers' LCMScheduler): each step
 * maps x to the consistency function's clean estimate c_skip·x + c_out·x̂0, with the boundary
 * scalings c_skip = σ_d²/((10t)² + σ_d²), c_out = 10t/√((10t)² + σ_d²), σ_d = 0.5 (timestep_scaling
 * 10), then noises it afresh to the next timestep's ᾱ with a draw from the generator (every step but
 * the last, which returns the estimate).
 */
export async function lcm(model: Model, x: Tensor, walk: Walk): Promise<Tensor> {
  const { timesteps, from, to, generator, train } = walk;
  const sigmaData2 = 0.25;
  for (let i = from; i < to; i++) {
    const t = timesteps[i];
    const out = await model.output(x, t);
    const scaled = t * 10;
    const cSkip = sigmaData2 / (scaled * scaled + sigmaData2);
    const cOut = scaled / Math.sqrt(scaled * scaled + sigmaData2);
    const denoised = model.x0(out, x, level(train.alphasCumprod[t])).mul(cOut).add(x.mul(cSkip));
    if (i === timesteps.length - 1) x = denoised;
    else {
      const aPrev = train.alphasCumprod[timesteps[i + 1]];
      x = denoised.mul(Math.sqrt(aPrev)).add(randnLike(out, generator).mul(Math.sqrt(1 - aPrev)));
    }
    x = keep(walk, x, i + 1);
  }
  return x;
}

/** DDIM, deterministic (Song et al. 2020, arXiv:2010.02502, η = 0); the previous timestep is t − ⌊1000/steps⌋ for every spacing, as diffusers' DDIMScheduler. */
export async function ddim(model: Model, x: Tensor, walk: Walk): Promise<Tensor> {
  const { steps, timesteps, from, to, train } = walk;
  const stride = Math.floor(TRAIN_STEPS / steps);
  for (let i = from; i < to; i++) {
    const t = timesteps[i];
    const out = await model.output(x, t);
    const lv = level(train.alphasCumprod[t]);
    const aPrev = abar(train, t - stride, train.alphasCumprod[0]);
    const x0 = model.x0(out, x, lv);
    x = x0.mul(Math.sqrt(aPrev)).add(model.eps(out, x, lv).mul(Math.sqrt(1 - aPrev)));
    x = keep(walk, x, i + 1);
  }
  return x;
}

/**
 * PLMS (Liu et al. 2022, arXiv:2202.09778, "pseudo linear multistep"): Adams–Bashforth over the
 * last ≤ 4 outputs; the first step is redone with the mean of two outputs, as diffusers' PNDM does.
 * As there, the outputs are combined as the network gives them and the combination is read as ε at
 * the transfer's own x and ᾱ_t.
 */
export async function plms(model: Model, x: Tensor, walk: Walk): Promise<Tensor> {
  const { steps, timesteps, from, to, train } = walk;
  const stride = Math.floor(TRAIN_STEPS / steps);
  const outs: Tensor[] = [];
  let start = x;
  for (let i = from; i < to; i++) {
    const out = await model.output(x, timesteps[i]);
    const redo = i - from === 1; // the second call revisits the first step from its start
    const t = redo ? timesteps[i] + stride : timesteps[i];
    if (!redo) {
      outs.push(out);
      if (outs.length > 4) outs.shift();
    }
    let combined: Tensor;
    if (outs.length === 1 && !redo) {
      combined = out;
      start = x;
    } else if (outs.length === 1) {
      combined = out.add(outs[0]).div(2);
      x = start;
    } else if (outs.length === 2) combined = outs[1].mul(3).sub(outs[0]).div(2);
    else if (outs.length === 3) combined = outs[2].mul(23).sub(outs[1].mul(16)).add(outs[0].mul(5)).div(12);
    else combined = outs[3].mul(55).sub(outs[2].mul(59)).add(outs[1].mul(37)).sub(outs[0].mul(9)).mul(1 / 24);
    const a = train.alphasCumprod[t];
    x = pndmTransfer(x, a, abar(train, t - stride, train.alphasCumprod[0]), model.eps(combined, x, level(a)));
    x = keep(walk, x, i + 1);
  }
  return x;
}

/** PNDM's transfer φ(x_t, ε, t → t_prev) (Liu et al. 2022, eq. 11), from ᾱ_t to ᾱ_prev. */
function pndmTransfer(x: Tensor, a: number, aPrev: number, e: Tensor): Tensor {
  const denom = a * Math.sqrt(1 - aPrev) + Math.sqrt(a * (1 - a) * aPrev);
  return x.mul(Math.sqrt(aPrev / a)).sub(e.mul(aPrev - a).div(denom));
}

// ---------------------------------------------------------------------------------------------
// Samplers over σ (VE latents, denoiser D(x; σ, t))

/** Euler's method on the probability-flow ODE (Karras et al. 2022, arXiv:2206.00364, Alg. 2 without churn). */
export async function euler(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to } = walk;
  for (let i = from; i < to; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    x = keep(walk, x.add(d.mul(sigmas[i + 1] - sigmas[i])), i + 1);
  }
  return x;
}

/** Ancestral Euler (k-diffusion's sample_euler_ancestral, η = 1; Song et al. 2021 ancestral step). */
export async function eulerAncestral(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to, generator } = walk;
  for (let i = from; i < to; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    const { up, down } = ancestral(sigmas[i], sigmas[i + 1]);
    x = x.add(d.mul(down - sigmas[i]));
    x = keep(walk, x.add(randnLike(x, generator).mul(up)), i + 1);
  }
  return x;
}

/**
 * Heun's second-order method (Karras et al. 2022, arXiv:2206.00364, Alg. 1); Euler on the last step.
 * Inpainting keeps the unmasked latents after each of the two evaluations, as diffusers' pipeline
 * does after each of HeunDiscreteScheduler's half steps.
 */
export async function heun(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to } = walk;
  for (let i = from; i < to; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    const dt = sigmas[i + 1] - sigmas[i];
    if (sigmas[i + 1] === 0) {
      x = keep(walk, x.add(d.mul(dt)), i + 1);
      continue;
    }
    const x2 = keep(walk, x.add(d.mul(dt)), i + 1);
    const d2 = x2.sub(await model(x2, sigmas[i + 1], timesteps[i + 1])).div(sigmas[i + 1]);
    x = keep(walk, x.add(d.add(d2).div(2).mul(dt)), i + 1);
  }
  return x;
}

/**
 * DPM-Solver-2 as in k-diffusion (Lu et al. 2022, arXiv:2206.00927; midpoint at the geometric mean
 * of σ). Inpainting keeps the unmasked latents after each evaluation at step i + 1's level, the
 * midpoint included (diffusers' KDPM2DiscreteScheduler reports that σ for its first half step).
 */
export async function dpm2(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to, sigmaToT } = walk;
  for (let i = from; i < to; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    if (sigmas[i + 1] === 0) {
      x = keep(walk, x.add(d.mul(sigmas[i + 1] - sigmas[i])), i + 1);
      continue;
    }
    const mid = logMidpoint(sigmas[i], sigmas[i + 1]);
    const x2 = keep(walk, x.add(d.mul(mid - sigmas[i])), i + 1);
    const d2 = x2.sub(await model(x2, mid, sigmaToT(mid))).div(mid);
    x = keep(walk, x.add(d2.mul(sigmas[i + 1] - sigmas[i])), i + 1);
  }
  return x;
}

/** Ancestral DPM-Solver-2 (k-diffusion's sample_dpm_2_ancestral, η = 1); no noise on the last step; inpainting as dpm2. */
export async function dpm2Ancestral(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to, generator, sigmaToT } = walk;
  for (let i = from; i < to; i++) {
    const d = x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]);
    if (sigmas[i + 1] === 0) {
      x = keep(walk, x.add(d.mul(sigmas[i + 1] - sigmas[i])), i + 1);
      continue;
    }
    const { up, down } = ancestral(sigmas[i], sigmas[i + 1]);
    const mid = logMidpoint(sigmas[i], down);
    const x2 = keep(walk, x.add(d.mul(mid - sigmas[i])), i + 1);
    const d2 = x2.sub(await model(x2, mid, sigmaToT(mid))).div(mid);
    x = x.add(d2.mul(down - sigmas[i]));
    x = keep(walk, x.add(randnLike(x, generator).mul(up)), i + 1);
  }
  return x;
}

/**
 * DPM-Solver++(2S) ancestral (Lu et al. 2022, arXiv:2211.01095; k-diffusion's
 * sample_dpmpp_2s_ancestral, η = 1, s_noise = 1): a second-order single step down to σ_down through
 * the log-σ midpoint, then fresh noise σ_up from the generator (not on the last step, which is
 * Euler's). Inpainting keeps the unmasked latents after each whole step.
 */
export async function dpmpp2sAncestral(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to, generator, sigmaToT } = walk;
  for (let i = from; i < to; i++) {
    const sigma = sigmas[i];
    const denoised = await model(x, sigma, timesteps[i]);
    const { up, down } = ancestralStep(sigma, sigmas[i + 1]);
    if (down === 0) x = x.add(x.sub(denoised).div(sigma).mul(down - sigma));
    else {
      // in t = −log σ: h = t_next − t, the midpoint s = t + h/2
      const h = Math.log(sigma / down);
      const mid = Math.sqrt(sigma * down);
      const x2 = x.mul(mid / sigma).sub(denoised.mul(Math.expm1(-h / 2)));
      const denoised2 = await model(x2, mid, sigmaToT(mid));
      x = x.mul(down / sigma).sub(denoised2.mul(Math.expm1(-h)));
    }
    if (sigmas[i + 1] > 0) x = x.add(randnLike(x, generator).mul(up));
    x = keep(walk, x, i + 1);
  }
  return x;
}

/**
 * DPM-Solver++ SDE (Lu et al. 2022, arXiv:2211.01095; k-diffusion's sample_dpmpp_sde, r = 1/2,
 * η = 1, s_noise = 1): per step an ancestral half step to the log-σ midpoint, the model there, and
 * an ancestral whole step with (1 − 1/(2r))·D + 1/(2r)·D_mid, which is D_mid alone for r = 1/2;
 * Euler on the last step. The noise of the two half steps is drawn from the generator, in that order, as
 * standard Gaussians: k-diffusion (and A1111) draw it from a Brownian tree, so the same seed gives
 * other images than theirs. Inpainting keeps the unmasked latents after each whole step.
 */
export async function dpmppSde(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to, generator, sigmaToT } = walk;
  for (let i = from; i < to; i++) {
    const sigma = sigmas[i];
    const next = sigmas[i + 1];
    const denoised = await model(x, sigma, timesteps[i]);
    if (next === 0) x = x.add(x.sub(denoised).div(sigma).mul(next - sigma));
    else {
      const mid = Math.sqrt(sigma * next); // σ at t + h/2 in t = −log σ
      const first = ancestralStep(sigma, mid);
      let x2 = x.mul(first.down / sigma).sub(denoised.mul(Math.expm1(Math.log(first.down / sigma))));
      x2 = x2.add(randnLike(x, generator).mul(first.up));
      const denoised2 = await model(x2, mid, sigmaToT(mid));
      const whole = ancestralStep(sigma, next);
      x = x.mul(whole.down / sigma).sub(denoised2.mul(Math.expm1(Math.log(whole.down / sigma))));
      x = x.add(randnLike(x, generator).mul(whole.up));
    }
    x = keep(walk, x, i + 1);
  }
  return x;
}

/**
 * DPM-Solver++(3M) SDE (Lu et al. 2022, arXiv:2211.01095; k-diffusion's sample_dpmpp_3m_sde, η = 1,
 * s_noise = 1): the exponential integrator over h_η = 2h with first and second divided differences
 * of the last three estimates (orders 1, 2, 3 as they come), plus σ_next·√(1 − e^(−2h)) of fresh
 * noise from the generator; the last step returns the estimate. diffusers'
 * DPMSolverMultistepScheduler(sde-dpmsolver++, solver_order=3) is another method: its second-order
 * start and the sign of its ½ in the D2 coefficient differ from k-diffusion's, which A1111 users run.
 * k-diffusion draws the noise from a Brownian tree; here it is seeded Gaussian, so images differ
 * from A1111's for the same seed.
 */
export async function dpmpp3mSde(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to, generator } = walk;
  let d1: Tensor | undefined; // the previous estimate, and the one before it
  let d2: Tensor | undefined;
  let h1: number | undefined; // the previous step's h, and the one before
  let h2: number | undefined;
  for (let i = from; i < to; i++) {
    const sigma = sigmas[i];
    const next = sigmas[i + 1];
    const denoised = await model(x, sigma, timesteps[i]);
    let h = h1;
    if (next === 0) x = denoised;
    else {
      h = Math.log(sigma / next);
      const hEta = 2 * h;
      x = x.mul(Math.exp(-hEta)).add(denoised.mul(-Math.expm1(-hEta)));
      const phi2 = Math.expm1(-hEta) / hEta + 1;
      if (h2 !== undefined && d1 && d2 && h1 !== undefined) {
        const r0 = h1 / h;
        const r1 = h2 / h;
        const d10 = denoised.sub(d1).div(r0);
        const d11 = d1.sub(d2).div(r1);
        const dd1 = d10.add(d10.sub(d11).mul(r0 / (r0 + r1)));
        const dd2 = d10.sub(d11).div(r0 + r1);
        const phi3 = phi2 / hEta - 0.5;
        x = x.add(dd1.mul(phi2)).sub(dd2.mul(phi3));
      } else if (h1 !== undefined && d1) {
        x = x.add(denoised.sub(d1).div(h1 / h).mul(phi2));
      }
      x = x.add(randnLike(x, generator).mul(next * Math.sqrt(-Math.expm1(-2 * h))));
    }
    x = keep(walk, x, i + 1);
    [d1, d2] = [denoised, d1];
    [h1, h2] = [h, h1];
  }
  return x;
}

/** Linear multistep (k-diffusion's sample_lms): Adams–Bashforth in σ over the last ≤ 4 derivatives. */
export async function lms(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to } = walk;
  const ds: Tensor[] = []; // newest first
  for (let i = from; i < to; i++) {
    ds.unshift(x.sub(await model(x, sigmas[i], timesteps[i])).div(sigmas[i]));
    ds.length = Math.min(ds.length, 4);
    // diffusers takes the order from the absolute step, so an img2img run starts at a high order
    // with a single derivative: only the terms that have one are summed.
    const order = Math.min(i + 1, 4);
    let step = ds[0].mul(lmsCoefficient(sigmas, i, order, 0));
    for (let j = 1; j < Math.min(order, ds.length); j++) step = step.add(ds[j].mul(lmsCoefficient(sigmas, i, order, j)));
    x = keep(walk, x.add(step), i + 1);
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
export async function dpmpp2m(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to } = walk;
  let prev: Tensor | undefined;
  for (let i = from; i < to; i++) {
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
    x = keep(walk, x, i + 1);
    prev = x0;
  }
  return x;
}

/** DPM-Solver++(2M) SDE (Lu et al. 2022, arXiv:2211.01095), midpoint; noise drawn on every step. */
export async function dpmpp2mSde(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to, generator } = walk;
  let prev: Tensor | undefined;
  for (let i = from; i < to; i++) {
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
    x = keep(walk, next.add(noise.mul(t.sigmaT * Math.sqrt(1 - Math.exp(-2 * h)))), i + 1);
    prev = x0;
  }
  return x;
}

/**
 * DEIS, multistep, order 2 (Zhang & Chen 2022, arXiv:2204.13902; diffusers' DEISMultistepScheduler,
 * "logrho"): the exponential integrator in ε over ρ = σ_t/α (= the VE σ), with ε̂ extrapolated by
 * the Lagrange polynomial in log ρ through the last two steps and integrated exactly; first order
 * (DDIM) on the first step, and on the last when the walk has under 15 steps.
 */
export async function deis(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to } = walk;
  const n = timesteps.length;
  let prev: Tensor | undefined;
  for (let i = from; i < to; i++) {
    const s = vp(sigmas[i]);
    const t = vp(sigmas[i + 1]);
    // diffusers' convert_model_output: ε̂ = (x − α·x̂0)/σ_t
    const eps = x.sub((await model(x, sigmas[i], timesteps[i])).mul(s.alpha)).div(s.sigmaT);
    if (!prev || (i === n - 1 && n < 15)) {
      x = x.mul(t.alpha / s.alpha).sub(eps.mul(t.sigmaT * Math.expm1(t.lambda - s.lambda)));
    } else {
      const [rhoT, rho0, rho1] = [sigmas[i + 1], sigmas[i], sigmas[i - 1]];
      // ∫ of the Lagrange basis polynomial in log ρ that is 1 at log b and 0 at log c
      const ind = (r: number, b: number, c: number) => (r * (-Math.log(c) + Math.log(r) - 1)) / (Math.log(b) - Math.log(c));
      const coef0 = ind(rhoT, rho0, rho1) - ind(rho0, rho0, rho1);
      const coef1 = ind(rhoT, rho1, rho0) - ind(rho0, rho1, rho0);
      x = x.div(s.alpha).add(eps.mul(coef0)).add(prev.mul(coef1)).mul(t.alpha);
    }
    x = keep(walk, x, i + 1);
    prev = eps;
  }
  return x;
}

/**
 * UniPC (Zhao et al. 2023, arXiv:2302.04867): UniP-2 predictor and UniC corrector, B(h) = e^h − 1
 * ("bh2"), data prediction; orders warm up from 1 and drop to 1 on the last step. Inpainting keeps
 * the unmasked latents after each predictor step; as in diffusers, the corrector then recomputes x
 * from the previous input, so the kept latents reach the result through the model's output only.
 */
export async function unipc(model: Denoiser, x: Tensor, walk: Walk): Promise<Tensor> {
  const { sigmas, timesteps, from, to } = walk;
  const n = timesteps.length;
  const ms: Tensor[] = []; // data predictions of the last two steps, newest last
  let last: Tensor | undefined; // the predictor's input of the previous step
  let order = 1;
  for (let i = from; i < to; i++) {
    const m = await model(x, sigmas[i], timesteps[i]);
    if (last) x = uniC(last, m, ms, sigmas, i, order);
    ms.push(m);
    ms.splice(0, ms.length - 2);
    order = Math.min(2, n - i, i - from + 1);
    last = x;
    x = keep(walk, uniP(x, ms, sigmas, i, order), i + 1);
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
