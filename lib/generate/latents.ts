// Where sampling starts: txt2img noise, or img2img's noised image latents. Noise is drawn on the
// CPU generator in diffusers' order and shapes (same seed, same image on every device); latent
// math runs in float32 on the compute device.
import type { Size } from '../image/io';
import type { Family } from '../models/family';
import type { Sampler, SamplerOptions } from '../sampling/registry';
import { Tensor, type Generator } from '../tensor';

/** txt2img: unit noise [batch, C, H/f, W/f] (or the caller's `latents`) scaled for the sampler. */
export function txt2imgStart(
  family: Family, sampler: Sampler, opts: SamplerOptions, generator: Generator, device: string,
  batch: number, size: Size, latents?: Tensor,
): Tensor {
  const f = family.vaeScaleFactor;
  const shape = [batch, family.latentChannels, size.height / f, size.width / f];
  const noise = latents ?? generator.randn(shape);
  if (latents && noise.shape.join() !== shape.join())
    throw new RangeError(`generate(): latents must have shape [${shape.join(', ')}], got [${noise.shape.join(', ')}]`);
  return sampler.init(noise.to(device, 'float32'), opts);
}

/**
 * img2img: the VAE posterior sample of the image (moments = cat(mean, logvar) [1, 2C, h, w]),
 * scaled into UNet space and repeated `batch` times, then noised to the start step: two draws,
 * in this order, as diffusers' StableDiffusionImg2ImgPipeline.
 */
export function img2imgStart(
  family: Family, sampler: Sampler, opts: SamplerOptions, generator: Generator, device: string,
  batch: number, moments: Tensor,
): Tensor {
  const [mean, logvar] = moments.to(device, 'float32').chunk(2, 1);
  const z = mean!.add(logvar!.mul(0.5).exp().mul(generator.randn(mean!.shape).to(device))).mul(family.latentScale);
  const init = Tensor.cat(Array<Tensor>(batch).fill(z));
  return sampler.addNoise(init, generator.randn(init.shape).to(device), opts);
}

/** img2img from latents already in UNet space (hires fix's latent upscale): only the second draw. */
export function latentsImg2imgStart(sampler: Sampler, opts: SamplerOptions, generator: Generator, device: string, batch: number, latents: Tensor): Tensor {
  if (latents.shape[0] !== batch) throw new RangeError(`generate(): initLatents holds ${latents.shape[0]} latents for ${batch} images`);
  const init = latents.to(device, 'float32');
  return sampler.addNoise(init, generator.randn(init.shape).to(device), opts);
}
