// Inpainting inputs and outputs: the image and mask as the model sees them, and the composition of
// generated images back into the original (pixels only; the latent starts are in latents.ts). The
// mask follows diffusers' StableDiffusionInpaintPipeline (VaeImageProcessor: resized like the
// image, binarized at 50%); blur, "Only masked" and the overlay follow AUTOMATIC1111's
// StableDiffusionProcessingImg2Img.init and apply_overlay.
import { crop, fit, overlay, paste } from '../image/fit';
import { decodeRgb, rgbToTensor, type RgbImage, type Size } from '../image/io';
import { resizeLanczos } from '../image/lanczos';
import { binarize, blurMask, cropRegion, firstChannel, greyToRgb, nearest, nonZeroBox, toGrey, type Box, type GreyImage } from '../image/mask';
import { Tensor } from '../tensor';
import type { InpaintOptions } from './options';

export interface InpaintInputs {
  /** The image the model works on [1, 3, H, W] in [-1, 1] (in 'masked' mode, the crop at width x height). */
  image: Tensor;
  /** The working size (H x W above). */
  size: Size;
  /** 1 = repaint, per working pixel (row-major H x W). */
  bits: Uint8Array;
  /** The image with the pixels to repaint set to 0 (grey), [1, 3, H, W]: diffusers' masked_image. */
  masked(): Tensor;
  /** The mask at latent size [1, 1, H/f, W/f] (nearest), float32. */
  latentMask(factor: number): Tensor;
  /** Generated images at the working size -> the final images (overlay; pasted back in 'masked' mode). */
  finish(images: RgbImage[]): RgbImage[];
}

const fail = (msg: string): never => {
  throw new RangeError(`generate(): ${msg}`);
};

/**
 * The mask as grey levels at width x height. Without blur, diffusers' order: the RGB mask resized
 * (PIL Lanczos), then convert("L"); with blur, A1111's: convert("L"), blur at the mask's own size,
 * then resized.
 */
function softMask(rgb: RgbImage, blur: number, width: number, height: number): GreyImage {
  if (blur === 0) return toGrey(resizeLanczos(rgb, width, height));
  const blurred = blurMask(toGrey(rgb), blur);
  return blurred.width === width && blurred.height === height ? blurred : firstChannel(resizeLanczos(greyToRgb(blurred), width, height));
}

const nothingToRepaint = (where: string) =>
  fail(`the mask has no pixel of 50% grey or more ${where}: nothing to repaint (white = repaint, black = keep)`);

/**
 * Reads and prepares an inpainting job's image and mask, before any model work. `size`: the job's
 * width and height (whole: the image is resized to them when both are given, else rounded down to
 * multiples of 8; masked: the working size, default `defaultSize` square).
 */
export async function prepareInpaint(imageInput: string | Buffer, o: InpaintOptions, size: { width?: number; height?: number }, defaultSize: number): Promise<InpaintInputs> {
  const [original, maskRgb] = await Promise.all([decodeRgb(imageInput), decodeRgb(o.mask)]);
  if (o.area === 'whole') {
    const target = size.width && size.height ? { width: size.width, height: size.height } : { width: original.width - (original.width % 8), height: original.height - (original.height % 8) };
    if (target.width === 0 || target.height === 0) fail(`the image is ${original.width}x${original.height}; it must be at least 8x8`);
    const work = resizeLanczos(original, target.width, target.height);
    const soft = softMask(maskRgb, o.maskBlur, target.width, target.height);
    const bits = binarize(soft);
    if (!bits.includes(1)) nothingToRepaint(`at the image's size (${target.width}x${target.height})`);
    // A1111's whole-picture overlay mask: the resized mask doubled, so that 50% grey is fully repainted.
    const overlayMask: GreyImage = { ...soft, data: soft.data.map((v) => Math.min(2 * v, 255)) };
    return inputs(work, bits, (images) => images.map((img) => overlay(img, work, overlayMask)));
  }
  const processing = { width: size.width ?? defaultSize, height: size.height ?? defaultSize };
  const soft = softMask(maskRgb, o.maskBlur, original.width, original.height);
  if (!binarize(soft).includes(1)) nothingToRepaint('');
  const region: Box = cropRegion(nonZeroBox(soft)!, o.padding, processing, original);
  const work = fit(crop(original, region), processing.width, processing.height, 'fill');
  const bits = binarize(firstChannel(fit(crop(greyToRgb(soft), region), processing.width, processing.height, 'fill')));
  if (!bits.includes(1)) nothingToRepaint(`once its crop is resized to ${processing.width}x${processing.height}`);
  const w = region.x2 - region.x1;
  const h = region.y2 - region.y1;
  return inputs(work, bits, (images) => images.map((img) => overlay(paste(original, fit(img, w, h, 'crop'), region.x1, region.y1), original, soft)));
}

function inputs(work: RgbImage, bits: Uint8Array, finish: (images: RgbImage[]) => RgbImage[]): InpaintInputs {
  const { width, height } = work;
  const image = rgbToTensor(work);
  return {
    image,
    size: { width, height },
    bits,
    masked: () => image.mul(Tensor.from(Float32Array.from(bits, (b) => 1 - b), [1, 1, height, width])),
    latentMask: (f) => Tensor.from(nearest(bits, width, height, width / f, height / f), [1, 1, height / f, width / f]),
    finish,
  };
}
