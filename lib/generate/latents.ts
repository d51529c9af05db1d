// Where sampling starts: txt2img noise, img2img's noised image latents (from an image or from
// latents), or inpainting's. Noise is drawn on the CPU generator in diffusers' order and shapes
// (same seed, same image on every device); latent math runs in float32 on the compute device.
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

/** A VAE posterior sample in UNet space, latentScale·(mean + exp(logvar/2)·n): one randn(mean.shape) draw (diffusers' latent_dist.sample). */
function posterior(family: Family, moments: Tensor, generator: Generator, device: string): Tensor {
  const [mean, logvar] = moments.to(device, 'float32').chunk(2, 1);
  return mean!.add(logvar!.mul(0.5).exp().mul(generator.randn(mean!.shape).to(device))).mul(family.latentScale);
}

const repeat = (z: Tensor, batch: number): Tensor => (batch === 1 ? z : Tensor.cat(Array<Tensor>(batch).fill(z)));

/** img2img's second draw: `init` [batch, C, h, w] in UNet space noised to the start step (diffusers' add_noise). */
function noisedStart(sampler: Sampler, opts: SamplerOptions, generator: Generator, device: string, init: Tensor): Tensor {
  return sampler.addNoise(init, generator.randn(init.shape).to(device), opts);
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
  return noisedStart(sampler, opts, generator, device, repeat(posterior(family, moments, generator, device), batch));
}

/**
 * img2img from latents already in UNet space [batch, C, h, w] (hires fix's latent upscale): no
 * posterior draw, only img2img's second one (the noise), through the same noising as img2imgStart.
 */
export function latentsImg2imgStart(
  family: Family, sampler: Sampler, opts: SamplerOptions, generator: Generator, device: string,
  batch: number, latents: Tensor,
): Tensor {
  return noisedStart(sampler, opts, generator, device, checkedLatents(family, batch, latents).to(device, 'float32'));
}

/** initLatents checked: [batch, latent channels, h, w]. */
export function checkedLatents(family: Family, batch: number, latents: Tensor): Tensor {
  const [b, c] = latents.shape;
  if (latents.shape.length !== 4 || c !== family.latentChannels) throw new RangeError(`generate(): initLatents must be [B, ${family.latentChannels}, h, w] latents, got [${latents.shape.join(', ')}]`);
  if (b !== batch) throw new RangeError(`generate(): initLatents holds ${b} latents for ${batch} images`);
  return latents;
}

export interface InpaintStart {
  /** The starting latents [batch, C, h, w]. */
  x: Tensor;
  /** The starting noise (a 4-channel UNet's steps noise the image latents with it again). */
  noise: Tensor;
  /** The image's latents, repeated to the batch (drawn with a 4-channel UNet, or strength < 1). */
  imageLatents: Tensor | undefined;
  /** The masked image's latents, repeated to the batch (9-channel UNets). */
  maskedLatents: Tensor | undefined;
}

/**
 * Inpainting starts, in the order diffusers' StableDiffusionInpaintPipeline draws (prepare_latents,
 * then prepare_mask_latents), from the VAE moments [1, 2C, h, w] of the image (`image`, needed with
 * a 4-channel UNet or strength < 1) and of the masked image (`masked`, 9-channel UNets):
 * 1. the image's posterior sample [1, C, h, w], when the UNet has 4 channels or strength < 1;
 * 2. the noise [batch, C, h, w]: x = noise·init_noise_sigma at strength 1, else the image latents
 *    noised to the first step;
 * 3. the masked image's posterior sample [1, C, h, w], drawn with a 4-channel UNet too (diffusers
 *    encodes it there and does not use it; the draw alone is made here, no VAE call).
 */
export function inpaintStart(
  family: Family, sampler: Sampler, opts: SamplerOptions, generator: Generator, device: string,
  batch: number, size: Size, moments: { image?: Tensor; masked?: Tensor },
): InpaintStart {
  const f = family.vaeScaleFactor;
  const shape = [batch, family.latentChannels, size.height / f, size.width / f];
  const nine = family.unetInChannels > family.latentChannels;
  const full = (opts.strength ?? 1) === 1;
  const needImage = !nine || !full;
  if (needImage && !moments.image) throw new Error('inpaintStart(): the image moments are needed with a 4-channel UNet or strength < 1');
  if (nine && !moments.masked) throw new Error("inpaintStart(): a 9-channel UNet needs the masked image's moments");
  const imageLatents = needImage ? repeat(posterior(family, moments.image!, generator, device), batch) : undefined;
  const noise = generator.randn(shape).to(device);
  const x = full ? sampler.init(noise, opts) : sampler.addNoise(imageLatents!, noise, opts);
  let maskedLatents: Tensor | undefined;
  if (nine) maskedLatents = repeat(posterior(family, moments.masked!, generator, device), batch);
  else generator.randn([1, ...shape.slice(1)]);
  return { x, noise, imageLatents, maskedLatents };
}
