// UNet -> the guided noise prediction samplers call: classifier-free guidance over a context that
// may change from step to step (prompt editing). The only place that knows how conditional and
// unconditional halves meet the UNet.
import type { UNet } from '../models/networks';
import { Tensor } from '../tensor';
import type { EpsModel } from './samplers';

/** The contexts for one model evaluation: cond [B, T, W], uncond [B, T', W] or null (no guidance). */
export interface StepContext {
  cond: Tensor;
  uncond: Tensor | null;
}

/**
 * How a prompt and a negative prompt of different lengths meet (A1111's settings): false (its
 * default) runs them through separate UNet calls, each at its own length; true pads the shorter
 * with encodings of the empty prompt ("pad_cond_uncond"); 'v0' repeats the negative's last vector
 * or cuts it to the prompt's length ("pad_cond_uncond_v0").
 */
export type PadCondUncond = boolean | 'v0';

/**
 * eps(x, t) = eps_u + s · (eps_c − eps_u) (Ho & Salimans 2022, arXiv:2207.12598), with the
 * contexts of evaluation i from `contextAt(i)` (i counts model evaluations from 0, as A1111's
 * CFGDenoiser.step does). Equal lengths go through one batched UNet call [uncond; cond].
 */
export function guidedEps(unet: UNet, contextAt: (evaluation: number) => StepContext, cfgScale: number, pad: PadCondUncond = false, empty?: Tensor): EpsModel {
  // Samplers keep float32 latents; a fp16/bf16 UNet's output is widened back to them.
  const widen = (eps: Tensor, x: Tensor) => (eps.dtype === x.dtype ? eps : eps.to(undefined, x.dtype));
  let evaluation = 0;
  let joined: { from: StepContext; both: Tensor } | undefined;
  return async (x, t) => {
    const step = contextAt(evaluation++);
    if (!step.uncond) return widen(await unet.forward(x, t, step.cond), x);
    const [cond, uncond] = padPair(step.cond, step.uncond, pad, empty);
    let u: Tensor;
    let c: Tensor;
    if (cond.shape[1] === uncond.shape[1]) {
      if (joined?.from.cond !== step.cond || joined.from.uncond !== step.uncond) joined = { from: step, both: Tensor.cat([uncond, cond]) };
      [u, c] = (await unet.forward(Tensor.cat([x, x]), t, joined.both)).chunk(2) as [Tensor, Tensor];
    } else {
      u = await unet.forward(x, t, uncond);
      c = await unet.forward(x, t, cond);
    }
    return widen(u.add(c.sub(u).mul(cfgScale)), x);
  };
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
