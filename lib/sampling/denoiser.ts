// UNet -> the guided noise prediction samplers call: classifier-free guidance with the
// unconditional and conditional halves batched through one UNet call.
import type { UNet } from '../models/networks';
import type { EpsModel } from './samplers';
import { Tensor } from '../tensor';

/**
 * eps(x, t) = eps_u + s * (eps_c - eps_u) for context [B,77,768] and uncond [B,77,768];
 * with no uncond (guidance off) it is the plain conditional prediction.
 */
export function guidedEps(unet: UNet, context: Tensor, uncond: Tensor | null, cfgScale: number): EpsModel {
  // Samplers keep float32 latents; a fp16/bf16 UNet's output is widened back to them.
  const widen = (eps: Tensor, x: Tensor) => (eps.dtype === x.dtype ? eps : eps.to(undefined, x.dtype));
  if (!uncond) return async (x, t) => widen(await unet.forward(x, t, context), x);
  const both = Tensor.cat([uncond, context]);
  return async (x, t) => {
    const [u, c] = (await unet.forward(Tensor.cat([x, x]), t, both)).chunk(2);
    return widen(u!.add(c!.sub(u!).mul(cfgScale)), x);
  };
}
