// Noise schedules of SD 1.x, built as diffusers builds them: the training ᾱ_t, and for each family
// of samplers the timesteps the model sees with their noise levels σ. Plain functions over float64
// numbers; values diffusers stores as float32 are rounded to float32 (Math.fround) at the same points.
import { roundHalfEven } from '../util/round';

export type ScheduleName = 'default' | 'karras';

/** What a sampler walks: model timesteps t_i with noise levels σ_i (σ = √((1 − ᾱ)/ᾱ)). */
export interface Schedule {
  /** num_inference_steps, as the caller asked. */
  steps: number;
  /** The model timestep of each step. */
  timesteps: number[];
  /** σ of each step, then the final σ (0): one more than timesteps. */
  sigmas: number[];
  /** The model timestep for a σ between two steps (DPM2's midpoints), as this schedule computes it. */
  sigmaToT(sigma: number): number;
}

export const TRAIN_STEPS = 1000;
const f32 = Math.fround;

/** ᾱ_t, t = 0..999, of SD's "scaled_linear" betas: torch.linspace(√0.00085, √0.012, 1000) ** 2 in float32. */
export const alphasCumprod: readonly number[] = (() => {
  const n = TRAIN_STEPS;
  const start = f32(Math.sqrt(0.00085));
  const end = f32(Math.sqrt(0.012));
  const step = f32(f32(end - start) / (n - 1));
  const out: number[] = [];
  let prod = 1; // torch's cumprod accumulates in double
  for (let i = 0; i < n; i++) {
    // torch's CPU linspace: from the start for the first half, from the end for the second (fused multiply-add)
    const sqrtBeta = f32(i < n / 2 ? start + step * i : end - step * (n - 1 - i));
    prod *= f32(1 - f32(sqrtBeta * sqrtBeta));
    out.push(f32(prod));
  }
  return out;
})();

/** σ_t of the training schedule (float32, as diffusers computes it from ᾱ_t). */
export const trainSigmas: readonly number[] = alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
const logSigmas = trainSigmas.map((s) => f32(Math.log(s)));

/** The fractional timestep of σ: linear interpolation in log σ between the two training steps around it. */
export function sigmaToT(sigma: number): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  while (low + 1 < logSigmas.length && logSigmas[low + 1] <= logSigma) low++;
  low = Math.min(low, logSigmas.length - 2);
  const w = Math.min(Math.max((logSigmas[low] - logSigma) / (logSigmas[low] - logSigmas[low + 1]), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** σ at a fractional timestep: linear interpolation of the training σ (numpy.interp). */
export function sigmaAt(t: number): number {
  const j = Math.min(Math.floor(t), TRAIN_STEPS - 1);
  if (j === t) return trainSigmas[j];
  return (trainSigmas[j + 1] - trainSigmas[j]) * (t - j) + trainSigmas[j];
}

/** numpy's round: halves to even. */
/** numpy.linspace(start, stop, n) in float64. */
function linspace(start: number, stop: number, n: number): number[] {
  const step = (stop - start) / (n - 1);
  return Array.from({ length: n }, (_, i) => (n > 1 && i === n - 1 ? stop : i * (n > 1 ? step : 0) + start));
}

/** Karras et al. 2022 (eq. 5): σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7. */
export function karrasSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 7): number[] {
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return linspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Karras σ from sigmaMax down to sigmaMin, with the timesteps the model sees for them. */
function karras(steps: number, sigmaMin: number, sigmaMax: number, timestep: (t: number) => number): Schedule {
  const sigmas = karrasSigmas(steps, sigmaMin, sigmaMax);
  return {
    steps,
    timesteps: sigmas.map((s) => timestep(sigmaToT(s))),
    sigmas: [...sigmas.map(f32), 0],
    sigmaToT,
  };
}

/**
 * The k-diffusion family (Euler, Euler a, Heun, LMS, DPM2, DPM2 a; timestep_spacing "linspace"):
 * default: float32 timesteps from 999 down to 0, σ interpolated; karras: Karras σ with fractional
 * timesteps (float32), which KDPM2's schedulers round to integers (`roundKarras`).
 */
export function kdiffusionSchedule(steps: number, schedule: ScheduleName, roundKarras = false): Schedule {
  const timesteps = linspace(0, TRAIN_STEPS - 1, steps).map(f32).reverse();
  const sigmas = timesteps.map(sigmaAt);
  // Karras σ span the default σ of the first and last step (both σ_0 for a single step)
  if (schedule === 'karras') return karras(steps, sigmas[steps - 1], sigmas[0], roundKarras ? roundHalfEven : f32);
  return { steps, timesteps, sigmas: [...sigmas.map(f32), 0], sigmaToT: (s) => f32(sigmaToT(s)) };
}

/**
 * DPM-Solver and UniPC (timestep_spacing "linspace" over steps + 1 points): default: integer
 * timesteps round(linspace(0, 999, steps + 1)) from the top, without 0; karras: Karras σ, timesteps rounded.
 */
export function multistepSchedule(steps: number, schedule: ScheduleName): Schedule {
  if (schedule === 'karras') return karras(steps, trainSigmas[0], trainSigmas[TRAIN_STEPS - 1], roundHalfEven);
  const timesteps = linspace(0, TRAIN_STEPS - 1, steps + 1).map(roundHalfEven).reverse().slice(0, steps);
  return { steps, timesteps, sigmas: [...timesteps.map((t) => trainSigmas[t]), 0], sigmaToT };
}

/** DDPM and DDIM (timestep_spacing "leading", steps_offset 1): t = k·⌊1000/steps⌋ + 1, from the top. */
export function leadingSchedule(steps: number): Schedule {
  const stride = Math.floor(TRAIN_STEPS / steps);
  const timesteps = Array.from({ length: steps }, (_, k) => (steps - 1 - k) * stride + 1);
  return discrete(steps, timesteps);
}

/** PLMS (PNDM with skip_prk_steps): the leading timesteps with the second one repeated. */
export function plmsSchedule(steps: number): Schedule {
  const leading = leadingSchedule(steps).timesteps;
  return discrete(steps, steps > 1 ? [leading[0], ...leading.slice(1, 2), ...leading.slice(1)] : leading);
}

function discrete(steps: number, timesteps: number[]): Schedule {
  if (timesteps[0] >= TRAIN_STEPS) {
    throw new RangeError(`${steps} steps need timestep ${timesteps[0]}, past the last trained one (${TRAIN_STEPS - 1}): use at most ${TRAIN_STEPS - 1} steps`);
  }
  return { steps, timesteps, sigmas: [...timesteps.map((t) => trainSigmas[t]), 0], sigmaToT };
}
