// Inpainting masks as diffusers and AUTOMATIC1111 prepare them: grey conversion (PIL), A1111's
// mask blur (OpenCV's Gaussian), binarization at 50% (diffusers' VaeImageProcessor), the mask's
// bounding box and A1111's "Only masked" crop region (modules/masking.py), and the latent-size
// mask (torch's nearest interpolation).
import { roundHalfEven } from '../util/round';
import type { RgbImage } from './lanczos';

/** 8-bit single-channel pixels, row-major (`data.length === width * height`). */
export interface GreyImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** A pixel rectangle: columns [x1, x2), rows [y1, y2). */
export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** PIL's convert("L") of RGB: L = (19595·R + 38470·G + 7471·B + 2^15) >> 16 (ITU-R 601-2 luma, Convert.c rgb2l). */
export function toGrey({ data, width, height }: RgbImage): GreyImage {
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = (data[3 * i]! * 19595 + data[3 * i + 1]! * 38470 + data[3 * i + 2]! * 7471 + 0x8000) >>> 16;
  return { data: out, width, height };
}

/** Grey repeated into R, G and B (PIL's convert("RGB") of "L"). */
export function greyToRgb({ data, width, height }: GreyImage): RgbImage {
  const out = new Uint8Array(data.length * 3);
  for (let i = 0; i < data.length; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = data[i]!;
  return { data: out, width, height };
}

/** The first channel of RGB pixels (for grey images carried as RGB through RGB-only operations). */
export function firstChannel({ data, width, height }: RgbImage): GreyImage {
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = data[3 * i]!;
  return { data: out, width, height };
}

/**
 * A1111's mask blur (processing.py, StableDiffusionProcessingImg2Img.init): cv2.GaussianBlur with
 * kernel (k, 1) then (1, k), k = 2·⌊2.5·r + 0.5⌋ + 1, σ = r; 0 leaves the mask as it is. OpenCV's
 * bit-exact 8-bit path (imgproc/src/smooth.dispatch.cpp, GaussianBlurFixedPoint): kernel weights
 * in 1/256 units, each pass rounds (Σ w·p + 128) >> 8, borders BORDER_REFLECT_101.
 */
export function blurMask(img: GreyImage, radius: number): GreyImage {
  if (radius <= 0) return img;
  const kernel = gaussianKernel(2 * Math.trunc(2.5 * radius + 0.5) + 1, radius);
  return blurPass(blurPass(img, kernel, true), kernel, false);
}

/**
 * OpenCV's 8-bit Gaussian kernel: getGaussianKernelBitExact(n, σ) in double, quantized to 1/256
 * with error diffusion from the outer taps inward (getGaussianKernelFixedPoint_ED); the centre
 * takes what makes the weights sum to 256.
 */
function gaussianKernel(n: number, sigma: number): number[] {
  const half = (n - 1) / 2;
  const scale = -0.125 / (sigma * sigma);
  const values: number[] = [];
  let sum = 0;
  for (let i = 0, x = 1 - n; i < half; i++, x += 2) {
    const t = Math.exp(x * x * scale); // x = 2·(i − half): exp(−(i − half)²/(2σ²))
    values.push(t);
    sum += t;
  }
  sum = sum * 2 + 1;
  const mul = 1 / sum;
  let err = 0;
  const fixed = values.map((v) => {
    const adjusted = v * mul * 256 + err;
    const q = roundHalfEven(adjusted);
    err = adjusted - q;
    return q;
  });
  const side = fixed.reduce((a, b) => a + b, 0);
  return [...fixed, 256 - 2 * side, ...fixed.slice().reverse()];
}

/** OpenCV's borderInterpolate for BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba), repeated for kernels longer than the image. */
function reflect101(p: number, len: number): number {
  if (len === 1) return 0;
  while (p < 0 || p >= len) p = p < 0 ? -p : 2 * len - 2 - p;
  return p;
}

function blurPass({ data, width, height }: GreyImage, kernel: number[], horizontal: boolean): GreyImage {
  const r = (kernel.length - 1) / 2;
  const out = new Uint8Array(data.length);
  const [len, lines] = horizontal ? [width, height] : [height, width];
  const at = (line: number, i: number) => (horizontal ? line * width + i : i * width + line);
  for (let line = 0; line < lines; line++) {
    for (let i = 0; i < len; i++) {
      let acc = 128;
      for (let j = 0; j < kernel.length; j++) acc += kernel[j]! * data[at(line, reflect101(i + j - r, len))]!;
      out[at(line, i)] = Math.min(acc >> 8, 255);
    }
  }
  return { data: out, width, height };
}

/** diffusers' VaeImageProcessor.binarize of a grey mask: 1 where value/255 ≥ 0.5 (≥ 128), else 0. */
export function binarize({ data }: GreyImage): Uint8Array {
  return data.map((v) => (v >= 128 ? 1 : 0));
}

/** PIL's Image.getbbox: the smallest box holding every non-zero pixel, or undefined when there is none. */
export function nonZeroBox({ data, width, height }: GreyImage): Box | undefined {
  let x1 = width;
  let y1 = height;
  let x2 = 0;
  let y2 = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[y * width + x] === 0) continue;
      x1 = Math.min(x1, x);
      x2 = Math.max(x2, x + 1);
      y1 = Math.min(y1, y);
      y2 = Math.max(y2, y + 1);
    }
  }
  return x2 > 0 ? { x1, y1, x2, y2 } : undefined;
}

/**
 * A1111's crop region for "Only masked" (masking.py get_crop_region_v2 then expand_crop_region):
 * the box grown by `pad` pixels on each side (within the image), then grown on its short side to
 * the width:height ratio of the processing size, centred, shifted back inside the image where it
 * overhangs (and cut to the image when the image is too small for that ratio).
 */
export function cropRegion(box: Box, pad: number, processing: { width: number; height: number }, image: { width: number; height: number }): Box {
  let { x1, y1, x2, y2 } = { x1: Math.max(box.x1 - pad, 0), y1: Math.max(box.y1 - pad, 0), x2: Math.min(box.x2 + pad, image.width), y2: Math.min(box.y2 + pad, image.height) };
  const ratioCrop = (x2 - x1) / (y2 - y1);
  const ratioProcessing = processing.width / processing.height;
  const grow = (lo: number, hi: number, desired: number, limit: number): [number, number] => {
    const diff = Math.trunc(desired - (hi - lo));
    lo -= Math.floor(diff / 2);
    hi += diff - Math.floor(diff / 2);
    if (hi >= limit) {
      lo -= hi - limit;
      hi = limit;
    }
    if (lo < 0) {
      hi -= lo;
      lo = 0;
    }
    return [lo, Math.min(hi, limit)];
  };
  if (ratioCrop > ratioProcessing) [y1, y2] = grow(y1, y2, (x2 - x1) / ratioProcessing, image.height);
  else [x1, x2] = grow(x1, x2, (y2 - y1) * ratioProcessing, image.width);
  return { x1, y1, x2, y2 };
}

/**
 * torch.nn.functional.interpolate(mask, size=(h, w)) (mode "nearest"): output pixel (i, j) takes
 * input (⌊i·H/h⌋, ⌊j·W/w⌋), the scale computed in float32 as torch does. Values as float32.
 */
export function nearest(bits: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Float32Array {
  const sx = Math.fround(width / outWidth);
  const sy = Math.fround(height / outHeight);
  const out = new Float32Array(outWidth * outHeight);
  for (let i = 0; i < outHeight; i++) {
    const y = Math.min(Math.floor(Math.fround(i * sy)), height - 1);
    for (let j = 0; j < outWidth; j++) out[i * outWidth + j] = bits[y * width + Math.min(Math.floor(Math.fround(j * sx)), width - 1)]!;
  }
  return out;
}
