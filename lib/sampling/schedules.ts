// Noise schedules of SD, built as diffusers builds them: the training ᾱ_t (optionally rescaled to
// zero terminal SNR), and for each family of samplers the timesteps the model sees with their noise
// levels σ. Plain functions over float64 numbers; values diffusers stores as float32 are rounded to
// float32 (Math.fround) at the same points.
import { roundHalfEven } from '../util/round';

/**
 * σ spreads that replace a schedule's own σ between its first and last (diffusers'
 * use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas; k-diffusion's get_sigmas_karras,
 * get_sigmas_exponential; A1111's Karras, Exponential and Beta schedule types).
 */
export type SigmaSpread = 'karras' | 'exponential' | 'beta';

/**
 * What a sampler walks: 'default', its diffusers class's own timesteps; a σ spread; or
 * 'sgm_uniform', the default with 'trailing' spacing (diffusers' equivalent of A1111's SGM Uniform).
 */
export type ScheduleName = 'default' | SigmaSpread | 'sgm_uniform';
export const SCHEDULE_NAMES: readonly ScheduleName[] = ['default', 'karras', 'exponential', 'beta', 'sgm_uniform'];

/** The σ spread a schedule applies, if any. */
export const spreadOf = (schedule: ScheduleName): SigmaSpread | undefined =>
  schedule === 'default' || schedule === 'sgm_uniform' ? undefined : schedule;

/**
 * How inference timesteps are spread over the 1000 training steps (diffusers' `timestep_spacing`,
 * Lin et al. 2023, arXiv:2305.08891, Table 2): 'linspace' evenly from 999 down to 0; 'leading'
 * k·⌊1000/n⌋ + steps_offset (1); 'trailing' round(1000 − k·1000/n) − 1, which starts at 999.
 */
export type TimestepSpacing = 'leading' | 'linspace' | 'trailing';
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['leading', 'linspace', 'trailing'];

export const TRAIN_STEPS = 1000;
/** SD's scheduler config: steps_offset 1 (the 'leading' timesteps start at 1). */
const STEPS_OFFSET = 1;
const f32 = Math.fround;

/**
 * The training noise schedule a diffusers scheduler class holds: ᾱ_t for t = 0..999 and
 * σ_t = √((1 − ᾱ_t)/ᾱ_t), float32 values. With zero terminal SNR, ᾱ_999 is 0 (σ_999 = ∞) for
 * DDIM and DDPM; the σ-based classes (Euler, Euler a, DPM-Solver, UniPC) store 2^-24 there instead,
 * "close to 0 without being 0 so first sigma is not inf" (σ_999 ≈ 4096).
 */
export interface NoiseSchedule {
  readonly alphasCumprod: readonly number[];
  readonly sigmas: readonly number[];
  /** log σ_t (float32), for σ → t interpolation. */
  readonly logSigmas: readonly number[];
  /** Whether the betas were rescaled to zero terminal SNR. */
  readonly zeroTerminalSnr: boolean;
}

/** What a sampler walks: model timesteps t_i with noise levels σ_i (σ = √((1 − ᾱ)/ᾱ)). */
export interface Schedule {
  /** num_inference_steps, as the caller asked. */
  steps: number;
  /** The model timestep of each step. */
  timesteps: number[];
  /** σ of each step, then the final σ (0): one more than timesteps. */
  sigmas: number[];
  /** The VE samplers' starting noise scale (diffusers' init_noise_sigma): σ_0, or √(σ_0² + 1) with 'leading'. */
  initSigma: number;
  /** The training schedule the timesteps index. */
  train: NoiseSchedule;
  /** The model timestep for a σ between two steps (DPM2's midpoints), as this schedule computes it. */
  sigmaToT(sigma: number): number;
}

/** SD's "scaled_linear" betas: torch.linspace(√0.00085, √0.012, 1000) ** 2 in float32. */
export function scaledLinearBetas(): number[] {
  const n = TRAIN_STEPS;
  const start = f32(Math.sqrt(0.00085));
  const end = f32(Math.sqrt(0.012));
  const step = f32(f32(end - start) / (n - 1));
  // torch's CPU linspace: from the start for the first half, from the end for the second (fused multiply-add)
  return Array.from({ length: n }, (_, i) => {
    const sqrtBeta = f32(i < n / 2 ? start + step * i : end - step * (n - 1 - i));
    return f32(sqrtBeta * sqrtBeta);
  });
}

/**
 * diffusers' rescale_zero_terminal_snr (Lin et al. 2023, arXiv:2305.08891, Algorithm 1), in
 * float32: √ᾱ shifted so that its last value is 0 and scaled so that its first is unchanged; the
 * betas are recovered from the new ᾱ (the last beta becomes 1). `sqrt` is the float32 square root
 * (correctly rounded by default; torch's vectorized one is off by an ulp for some inputs, which
 * moves some rescaled ᾱ by up to 4·10⁻⁶ relative, near t = 999 where ᾱ is tiny).
 */
export function rescaleZeroTerminalSnr(betas: readonly number[], sqrt: (x: number) => number = (x) => f32(Math.sqrt(x))): number[] {
  const sqrtAbar = cumprod(betas.map((b) => f32(1 - b))).map(sqrt);
  const first = sqrtAbar[0];
  const last = sqrtAbar[sqrtAbar.length - 1];
  const scale = f32(first / f32(first - last));
  const abar = sqrtAbar.map((s) => {
    const shifted = f32(f32(s - last) * scale);
    return f32(shifted * shifted);
  });
  return abar.map((a, i) => f32(1 - (i === 0 ? a : f32(a / abar[i - 1]))));
}

/** torch.cumprod over float32 values: float32 results of a double accumulation, as torch's CPU kernel. */
function cumprod(values: readonly number[]): number[] {
  let prod = 1;
  return values.map((v) => f32((prod *= v)));
}

const tables = new Map<string, NoiseSchedule>();

/**
 * The training schedule of SD's scheduler config, made once per variant. `clampTerminal`: the
 * σ-based classes' 2^-24 for the last ᾱ when it is 0 (zero terminal SNR only).
 */
export function noiseSchedule(zeroTerminalSnr = false, clampTerminal = false): NoiseSchedule {
  const key = `${zeroTerminalSnr}/${zeroTerminalSnr && clampTerminal}`;
  let table = tables.get(key);
  if (!table) {
    const betas = zeroTerminalSnr ? rescaleZeroTerminalSnr(scaledLinearBetas()) : scaledLinearBetas();
    const alphasCumprod = cumprod(betas.map((b) => f32(1 - b)));
    if (zeroTerminalSnr && clampTerminal) alphasCumprod[TRAIN_STEPS - 1] = 2 ** -24;
    const sigmas = alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
    table = Object.freeze({ alphasCumprod: Object.freeze(alphasCumprod), sigmas: Object.freeze(sigmas), logSigmas: Object.freeze(sigmas.map((s) => f32(Math.log(s)))), zeroTerminalSnr });
    tables.set(key, table);
  }
  return table;
}

/** The fractional timestep of σ: linear interpolation in log σ between the two training steps around it (diffusers' _sigma_to_t). */
export function sigmaToT(sigma: number, train: NoiseSchedule = noiseSchedule()): number {
  const logSigmas = train.logSigmas;
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  while (low + 1 < logSigmas.length && logSigmas[low + 1] <= logSigma) low++;
  low = Math.min(low, logSigmas.length - 2);
  const w = Math.min(Math.max((logSigmas[low] - logSigma) / (logSigmas[low] - logSigmas[low + 1]), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/** σ at a fractional timestep: linear interpolation of the training σ (numpy.interp, clamped at the ends). */
export function sigmaAt(t: number, train: NoiseSchedule): number {
  const s = train.sigmas;
  if (t <= 0) return s[0];
  if (t >= TRAIN_STEPS - 1) return s[TRAIN_STEPS - 1];
  const j = Math.floor(t);
  if (j === t) return s[j];
  return (s[j + 1] - s[j]) * (t - j) + s[j];
}

/** numpy.linspace(start, stop, n) in float64. */
function linspace(start: number, stop: number, n: number): number[] {
  const step = (stop - start) / (n - 1);
  return Array.from({ length: n }, (_, i) => (n > 1 && i === n - 1 ? stop : i * (n > 1 ? step : 0) + start));
}

/**
 * numpy.arange(start, stop, step) for floats: ⌈(stop − start)/step⌉ values start + i·δ, with
 * δ = (start + step) − start as numpy's fill computes it.
 */
function arange(start: number, stop: number, step: number): number[] {
  const length = Math.max(Math.ceil((stop - start) / step), 0);
  const delta = start + step - start;
  return Array.from({ length }, (_, i) => start + i * delta);
}

/**
 * Descending timesteps of `spacing` as diffusers' set_timesteps computes them (before any cast):
 * linspace(0, 999, n) (by `points` = n or n + 1 for the multistep classes, which drop the last);
 * leading (arange(points)·⌊1000/points⌋).round() + 1; trailing arange(1000, 0, −1000/n).round() − 1.
 */
function spacedTimesteps(spacing: TimestepSpacing, steps: number, points = steps): number[] {
  if (spacing === 'linspace') return linspace(0, TRAIN_STEPS - 1, points).reverse();
  if (spacing === 'leading') {
    const ratio = Math.floor(TRAIN_STEPS / points);
    return Array.from({ length: points }, (_, k) => (points - 1 - k) * ratio + STEPS_OFFSET);
  }
  return arange(TRAIN_STEPS, 0, -TRAIN_STEPS / steps).map((t) => roundHalfEven(t) - 1);
}

/** Karras et al. 2022 (eq. 5): σ_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7. */
export function karrasSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 7): number[] {
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return linspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Exponential σ (k-diffusion's get_sigmas_exponential): evenly spaced in log σ, exp(linspace(log σ_max, log σ_min, n)). */
export function exponentialSigmas(n: number, sigmaMin: number, sigmaMax: number): number[] {
  return linspace(Math.log(sigmaMax), Math.log(sigmaMin), n).map(Math.exp);
}

/**
 * Beta σ (Lee et al. 2024, "Beta Sampling is All You Need", arXiv:2407.12173; diffusers'
 * _convert_to_beta): σ_i = σ_min + F⁻¹(1 − i/(n−1))·(σ_max − σ_min), F the Beta(α, β) CDF, α = β = 0.6.
 */
export function betaSigmas(n: number, sigmaMin: number, sigmaMax: number, alpha = 0.6, beta = 0.6): number[] {
  return linspace(0, 1, n).map((r) => sigmaMin + betaQuantile(1 - r, alpha, beta) * (sigmaMax - sigmaMin));
}

/** n σ of a spread from sigmaMax down to sigmaMin. */
export function spreadSigmas(spread: SigmaSpread, n: number, sigmaMin: number, sigmaMax: number): number[] {
  if (spread === 'karras') return karrasSigmas(n, sigmaMin, sigmaMax);
  return spread === 'exponential' ? exponentialSigmas(n, sigmaMin, sigmaMax) : betaSigmas(n, sigmaMin, sigmaMax);
}

/**
 * The quantile (inverse CDF) of the Beta(a, b) distribution, scipy.stats.beta.ppf: bisection on
 * the regularized incomplete beta function down to adjacent doubles.
 */
export function betaQuantile(q: number, a: number, b: number): number {
  if (q <= 0) return 0;
  if (q >= 1) return 1;
  let lo = 0;
  let hi = 1;
  for (let mid = 0.5; mid > lo && mid < hi; mid = (lo + hi) / 2) {
    if (incompleteBeta(mid, a, b) < q) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** The regularized incomplete beta function I_x(a, b), by its continued fraction (Numerical Recipes §6.4, modified Lentz). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  // the fraction converges fast for x < (a + 1)/(a + b + 2); use I_x(a, b) = 1 − I_{1−x}(b, a) above it
  if (x > (a + 1) / (a + b + 2)) return 1 - incompleteBeta(1 - x, b, a);
  const front = Math.exp(a * Math.log(x) + b * Math.log1p(-x) - logBeta(a, b)) / a;
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  d = 1 / (Math.abs(d) < tiny ? tiny : d);
  let f = d;
  for (let m = 1; m <= 500; m++) {
    for (const num of [(m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m)), -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))]) {
      d = 1 + num * d;
      d = 1 / (Math.abs(d) < tiny ? tiny : d);
      c = 1 + num / c;
      if (Math.abs(c) < tiny) c = tiny;
      f *= c * d;
    }
    if (Math.abs(c * d - 1) < 1e-16) break;
  }
  return front * f;
}

/** log B(a, b) = log Γ(a) + log Γ(b) − log Γ(a + b). */
const logBeta = (a: number, b: number): number => logGamma(a) + logGamma(b) - logGamma(a + b);

/** log Γ(x) for x > 0: Lanczos approximation (g = 7, 9 terms; ~1e-15 relative), reflected below 1/2. */
function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const g = 7;
  const coef = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905,
    -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  const z = x - 1;
  let sum = coef[0];
  for (let i = 1; i < coef.length; i++) sum += coef[i] / (z + i);
  const t = z + g + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** σ of a spread from sigmaMax down to sigmaMin, with the timesteps the model sees for them. */
function spread(train: NoiseSchedule, steps: number, kind: SigmaSpread, sigmaMin: number, sigmaMax: number, timestep: (t: number) => number): Omit<Schedule, 'initSigma'> {
  const sigmas = spreadSigmas(kind, steps, sigmaMin, sigmaMax);
  const toT = (s: number) => sigmaToT(s, train);
  return { steps, timesteps: sigmas.map((s) => timestep(toT(s))), sigmas: [...sigmas.map(f32), 0], train, sigmaToT: toT };
}

/**
 * The k-diffusion family (Euler, Euler a, Heun, LMS, DPM2, DPM2 a, and the k-diffusion samplers
 * diffusers lacks; diffusers' default spacing "linspace"): float32 timesteps of `spacing`, σ
 * interpolated; a σ spread (karras, exponential, beta) between the first and last of those σ,
 * with fractional timesteps (float32), which KDPM2's schedulers round to integers for karras only
 * (`roundKarras`). The starting noise scale is √(σ_0² + 1) with 'leading' (diffusers'
 * init_noise_sigma), σ_0 otherwise. 'sgm_uniform' is the default here; the caller passes 'trailing'.
 */
export function kdiffusionSchedule(train: NoiseSchedule, steps: number, schedule: ScheduleName, spacing: TimestepSpacing = 'linspace', roundKarras = false): Schedule {
  const timesteps = spacedTimesteps(spacing, steps).map(f32);
  const sigmas = timesteps.map((t) => sigmaAt(t, train));
  const kind = spreadOf(schedule);
  // spread σ span the σ of the first and last step (both σ_0 for a single step)
  const walk: Omit<Schedule, 'initSigma'> = kind
    ? spread(train, steps, kind, sigmas[sigmas.length - 1], sigmas[0], kind === 'karras' && roundKarras ? roundHalfEven : f32)
    : { steps, timesteps, sigmas: [...sigmas.map(f32), 0], train, sigmaToT: (s) => f32(sigmaToT(s, train)) };
  const max = walk.sigmas[0];
  return { ...walk, initSigma: spacing === 'leading' ? f32(Math.sqrt(f32(f32(max * max) + 1))) : max };
}

/**
 * DPM-Solver, UniPC and DEIS (diffusers' default spacing "linspace", over steps + 1 points of which
 * the last is dropped; 'leading' likewise): integer timesteps from the top; a σ spread: its σ over
 * the whole training range (spacing plays no part), the model's timesteps rounded for karras and
 * truncated (diffusers' cast to int64) for exponential and beta.
 */
export function multistepSchedule(train: NoiseSchedule, steps: number, schedule: ScheduleName, spacing: TimestepSpacing = 'linspace'): Schedule {
  const kind = spreadOf(schedule);
  if (kind) return { ...spread(train, steps, kind, train.sigmas[0], train.sigmas[TRAIN_STEPS - 1], kind === 'karras' ? roundHalfEven : Math.trunc), initSigma: 1 };
  const timesteps = spacing === 'trailing' ? spacedTimesteps(spacing, steps) : spacedTimesteps(spacing, steps, steps + 1).slice(0, steps).map(roundHalfEven);
  return discrete(train, steps, timesteps);
}

/**
 * DEIS (DEISMultistepScheduler): the multistep timesteps and σ, but the walk ends at the training
 * schedule's smallest σ (σ at t = 0) rather than 0, or, with a σ spread, at its own last σ again
 * (so that its last step moves nothing), as diffusers builds it.
 */
export function deisSchedule(train: NoiseSchedule, steps: number, schedule: ScheduleName, spacing: TimestepSpacing = 'linspace'): Schedule {
  const walk = multistepSchedule(train, steps, schedule, spacing);
  const last = spreadOf(schedule) ? walk.sigmas[steps - 1] : train.sigmas[0];
  return { ...walk, sigmas: [...walk.sigmas.slice(0, steps), last] };
}

/** LCMScheduler's original_inference_steps: the timesteps of the distillation's 50-step schedule. */
export const LCM_ORIGINAL_STEPS = 50;

/**
 * LCM (Luo et al. 2023, arXiv:2310.04378; diffusers' LCMScheduler): of the 50 distillation
 * timesteps k·20 − 1 (k = 50 … 1), those at indices ⌊i·50/steps⌋. Timestep spacing plays no part.
 */
export function lcmSchedule(train: NoiseSchedule, steps: number): Schedule {
  const k = Math.floor(TRAIN_STEPS / LCM_ORIGINAL_STEPS);
  const origin = Array.from({ length: LCM_ORIGINAL_STEPS }, (_, i) => (LCM_ORIGINAL_STEPS - i) * k - 1);
  const stride = LCM_ORIGINAL_STEPS / steps; // numpy.linspace(0, 50, steps, endpoint=False)
  return discrete(train, steps, Array.from({ length: steps }, (_, i) => origin[Math.floor(i * stride)]));
}

/** DDPM and DDIM (diffusers' default spacing "leading", steps_offset 1): integer timesteps from the top. */
export function ddimSchedule(train: NoiseSchedule, steps: number, spacing: TimestepSpacing = 'leading'): Schedule {
  return discrete(train, steps, spacedTimesteps(spacing, steps).map(roundHalfEven));
}

/** PLMS (PNDM with skip_prk_steps; default spacing "leading"): the timesteps with the second one repeated. */
export function plmsSchedule(train: NoiseSchedule, steps: number, spacing: TimestepSpacing = 'leading'): Schedule {
  const ts = ddimSchedule(train, steps, spacing).timesteps;
  return discrete(train, steps, steps > 1 ? [ts[0], ts[1], ...ts.slice(1)] : ts);
}

function discrete(train: NoiseSchedule, steps: number, timesteps: number[]): Schedule {
  return { steps, timesteps, sigmas: [...timesteps.map((t) => train.sigmas[t] ?? NaN), 0], initSigma: 1, train, sigmaToT: (s) => sigmaToT(s, train) };
}

/**
 * Why a schedule cannot be walked as diffusers walks it, or undefined: a timestep past the last
 * trained one (too many 'leading' steps), or numpy's float arange giving 'trailing' one timestep
 * too many (the last one −1) for some step counts.
 */
export function scheduleProblem(s: Schedule, spacing: TimestepSpacing): string | undefined {
  const top = Math.max(...s.timesteps);
  if (top > TRAIN_STEPS - 1) return `${s.steps} steps need timestep ${top}, past the last trained one (${TRAIN_STEPS - 1}): use at most ${TRAIN_STEPS - 1} steps`;
  if (spacing === 'trailing' && s.timesteps.some((t) => t < 0)) {
    const near = [s.steps - 1, s.steps + 1].filter((n) => n >= 1);
    return `'trailing' spacing with ${s.steps} steps gives an extra timestep of −1 in diffusers (numpy's float arange rounding): use ${near.join(' or ')} steps, or another spacing`;
  }
  return undefined;
}
