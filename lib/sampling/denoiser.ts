// UNet -> the Model samplers call: classifier-free guidance (with guidance rescale) over a context
// that may change from step to step (prompt editing), in the network's own output space, and the
// conversions of that output into x̂0, ε̂ and D. The only place that knows what the network predicts
// (ε or v) and how conditional and unconditional halves, and inpainting's extra channels, meet the UNet.
import type { UNet } from '../models/networks';
import { Tensor } from '../tensor';
import type { Model, NoiseLevel, Prediction } from './samplers';

export type { Prediction } from './samplers';

/**
 * The contexts for one model evaluation: cond [B, T, W], uncond [B, T', W] or null (no guidance);
 * SDXL also their pooled text [B, P] (the UNet's textEmbeds).
 */
export interface StepContext {
  cond: Tensor;
  uncond: Tensor | null;
  condPooled?: Tensor;
  uncondPooled?: Tensor | null;
}

/**
 * How a prompt and a negative prompt of different lengths meet (A1111's settings): false (its
 * default) runs them through separate UNet calls, each at its own length; true pads the shorter
 * with encodings of the empty prompt ("pad_cond_uncond"); 'v0' repeats the negative's last vector
 * or cuts it to the prompt's length ("pad_cond_uncond_v0").
 */
export type PadCondUncond = boolean | 'v0';

/**
 * A network output F read as ε or v (Salimans & Ho 2022, arXiv:2202.00512: v = α·ε − σ_t·x0 for
 * x = α·x0 + σ_t·ε, α² + σ_t² = 1), as diffusers' schedulers read their `model_output`:
 * - x̂0 = (x − σ_t·ε)/α, or α·x − σ_t·v;
 * - ε̂ = ε, or α·v + σ_t·x;
 * - VE latents x_ve = x0 + σ·ε whose UNet input is c_in·x_ve, c_in = 1/√(σ²+1) (α = c_in,
 *   σ_t = σ·c_in): D = x_ve − σ·ε, or x_ve/(σ²+1) − σ/√(σ²+1)·v, i.e. D = c_skip·x_ve + c_out·F with
 *   (c_skip, c_out) = (1, −σ) or (1/(σ²+1), −σ/√(σ²+1)) (k-diffusion's external.py,
 *   DiscreteEpsDDPMDenoiser / DiscreteVDDPMDenoiser; diffusers' EulerDiscreteScheduler.step). The
 *   v form follows from ε̂ = α·v + σ_t·c_in·x_ve: x_ve − σ·ε̂ = x_ve(1 − σ²/(σ²+1)) − σ/√(σ²+1)·v.
 * Each formula is evaluated in the order diffusers evaluates it, so an ε model gives the same
 * numbers as before this adapter existed.
 */
export function parameterized(prediction: Prediction, output: Model['output']): Model {
  if (prediction === 'epsilon') {
    return {
      output,
      x0: (out, x, { alpha, sigmaT }) => x.sub(out.mul(sigmaT)).div(alpha),
      eps: (out) => out,
      denoised: (out, x, sigma) => x.sub(out.mul(sigma)),
    };
  }
  if (prediction !== 'v') throw new TypeError(`unknown prediction '${String(prediction)}': use 'epsilon' or 'v'`);
  return {
    output,
    x0: (out, x, { alpha, sigmaT }: NoiseLevel) => x.mul(alpha).sub(out.mul(sigmaT)),
    eps: (out, x, { alpha, sigmaT }: NoiseLevel) => out.mul(alpha).add(x.mul(sigmaT)),
    denoised: (out, x, sigma) => out.mul(-sigma / Math.sqrt(sigma * sigma + 1)).add(x.div(sigma * sigma + 1)),
  };
}

export interface GuidanceOptions {
  /** Classifier-free guidance scale s; ≤ 1 runs the conditional pass only (no negative prompt). */
  cfgScale: number;
  /** Guidance rescale φ in [0, 1] (0: off). */
  rescale?: number;
  /** What the UNet predicts (default 'epsilon'). */
  prediction?: Prediction;
  pad?: PadCondUncond;
  /** The empty prompt's encoding [1, 77, W] (padCondUncond true). */
  empty?: Tensor;
  /** Inpainting UNets: [B, C', h, w] joined to every input along channels (mask and masked-image latents). */
  concat?: Tensor;
  /** SDXL: the size/crop/score numbers [B, n] of the conditional and unconditional halves (the UNet's timeIds). */
  timeIds?: { cond: Tensor; uncond: Tensor };
}

/**
 * The guided Model over a UNet. F = F_u + s·(F_c − F_u) (Ho & Salimans 2022, arXiv:2207.12598) in
 * the network's output space (v for v models), then, with `rescale` φ, rescaled as diffusers'
 * rescale_noise_cfg (Lin et al. 2023, arXiv:2305.08891, eq. 15–16): F ← φ·F·std(F_c)/std(F) +
 * (1 − φ)·F, std per batch row over all other dims (unbiased, as torch.std). The contexts of
 * evaluation i come from `contextAt(i)` (i counts model evaluations from 0, as A1111's
 * CFGDenoiser.step does); equal lengths go through one batched UNet call [uncond; cond], with
 * `concat` doubled to match.
 */
export function guidedModel(unet: UNet, contextAt: (evaluation: number) => StepContext, o: GuidanceOptions): Model {
  // Samplers keep float32 latents; a fp16/bf16 UNet's output is widened back to them.
  const widen = (out: Tensor, x: Tensor) => (out.dtype === x.dtype ? out : out.to(undefined, x.dtype));
  const phi = o.rescale ?? 0;
  const concat = o.concat;
  const both = concat ? Tensor.cat([concat, concat]) : undefined;
  const ids = o.timeIds;
  const bothIds = ids ? Tensor.cat([ids.uncond, ids.cond]) : undefined;
  // vector: SDXL's [pooled text, time ids] of the rows this call takes.
  const forward = (x: Tensor, t: number, context: Tensor, extra = concat, vector?: { textEmbeds: Tensor; timeIds: Tensor }) =>
    unet.forward(x, t, { context, ...(extra ? { concat: extra } : {}), ...(vector ?? {}) });
  const vector = (pooled: Tensor | null | undefined, timeIds: Tensor | undefined) => (pooled && timeIds ? { textEmbeds: pooled, timeIds } : undefined);
  let evaluation = 0;
  let joined: { from: StepContext; both: Tensor; pooled: Tensor | undefined } | undefined;
  return parameterized(o.prediction ?? 'epsilon', async (x, t) => {
    const step = contextAt(evaluation++);
    if (!step.uncond) return widen(await forward(x, t, step.cond, concat, vector(step.condPooled, ids?.cond)), x);
    const [cond, uncond] = padPair(step.cond, step.uncond, o.pad ?? false, o.empty);
    let u: Tensor;
    let c: Tensor;
    if (cond.shape[1] === uncond.shape[1]) {
      if (joined?.from !== step) {
        const pooled = step.condPooled && step.uncondPooled ? Tensor.cat([step.uncondPooled, step.condPooled]) : undefined;
        joined = { from: step, both: Tensor.cat([uncond, cond]), pooled };
      }
      [u, c] = (await forward(Tensor.cat([x, x]), t, joined.both, both, vector(joined.pooled, bothIds))).chunk(2) as [Tensor, Tensor];
    } else {
      u = await forward(x, t, uncond, concat, vector(step.uncondPooled, ids?.uncond));
      c = await forward(x, t, cond, concat, vector(step.condPooled, ids?.cond));
    }
    const guided = u.add(c.sub(u).mul(o.cfgScale));
    return widen(phi > 0 ? rescaleGuidance(guided, c, phi) : guided, x);
  });
}

/**
 * diffusers' rescale_noise_cfg: cfg·(φ·std(cond)/std(cfg) + 1 − φ), the standard deviations per
 * batch row over all other dims (Bessel-corrected, as torch.std), computed in float64.
 */
export function rescaleGuidance(cfg: Tensor, cond: Tensor, phi: number): Tensor {
  const rows = Array.from({ length: cfg.shape[0]! }, (_, b) => {
    const row = cfg.slice(0, b, b + 1);
    const ratio = std(cond.slice(0, b, b + 1)) / std(row);
    return row.mul(phi * ratio + (1 - phi));
  });
  return rows.length === 1 ? rows[0]! : Tensor.cat(rows);
}

/** The unbiased standard deviation of all elements, in float64. */
function std(t: Tensor): number {
  const wide = t.to(undefined, 'float64');
  const n = wide.numel;
  return wide.sub(wide.sum() / n).norm() / Math.sqrt(n - 1);
}

/** Repeats the last token vector of ctx [B, T, W] until it has `tokens` tokens. */
export function extendByLast(ctx: Tensor, tokens: number): Tensor {
  const have = ctx.shape[1]!;
  if (have >= tokens) return ctx;
  const last = ctx.slice(1, have - 1, have);
  return Tensor.cat([ctx, ...Array<Tensor>(tokens - have).fill(last)], 1);
}

function padPair(cond: Tensor, uncond: Tensor, pad: PadCondUncond, empty?: Tensor): [Tensor, Tensor] {
  const tc = cond.shape[1]!;
  const tu = uncond.shape[1]!;
  if (tc === tu || pad === false) return [cond, uncond];
  if (pad === 'v0') return [cond, tu < tc ? extendByLast(uncond, tc) : uncond.slice(1, 0, tc)];
  // Whole empty-prompt chunks [1, 77, W] appended to the shorter (A1111's pad_cond).
  if (!empty) throw new Error('padCondUncond needs the empty prompt encoding');
  const repeats = Math.trunc((tc - tu) / empty.shape[1]!);
  const padWith = (ctx: Tensor, n: number) => {
    const rows = Tensor.cat(Array<Tensor>(ctx.shape[0]!).fill(empty));
    return Tensor.cat([ctx, ...Array<Tensor>(n).fill(rows)], 1);
  };
  return repeats < 0 ? [padWith(cond, -repeats), uncond] : repeats > 0 ? [cond, padWith(uncond, repeats)] : [cond, uncond];
}
