// Image files <-> [-1, 1] tensors, as diffusers' VaeImageProcessor makes them (sharp decodes).
import { open } from 'node:fs/promises';
import sharp, { type Metadata } from 'sharp';
import { Tensor } from '../tensor';
import { roundHalfEven } from '../util/round';
import { resizeLanczos, type RgbImage } from './lanczos';

export type { RgbImage } from './lanczos';

export interface Size {
  width: number;
  height: number;
}

// ---------------------------------------------------------------------------------------------
// Decoding: what `diffusers.utils.load_image(file)` then `VaeImageProcessor.preprocess` give.

/**
 * Reads an image (any format sharp reads: PNG, JPEG, WebP, AVIF, GIF, TIFF, ...) into a float32
 * [1, 3, H, W] tensor in [-1, 1], as diffusers prepares an img2img input:
 * - pixels as `load_image` gives them: EXIF orientation applied (`ImageOps.exif_transpose`), then
 *   PIL's `convert("RGB")`: alpha is dropped, not composited; grey is repeated into R, G and B;
 *   embedded ICC profiles are ignored; CMYK uses PIL's naive formula; 16-bit samples keep their
 *   high byte (value >> 8) as PIL does for RGB(A) and grey+alpha, and 16-bit grey without alpha is
 *   clipped to 255 as PIL's "I;16" -> RGB does (32768 -> 255, 200 -> 200);
 * - without `size`, width and height are rounded down to multiples of 8 (`get_default_height_width`)
 *   and, if that changed them, resized with PIL's Lanczos; with `size`, resized to it;
 * - values `x / 255 * 2 - 1` in float32, as `normalize(pil_to_numpy(image))`.
 * Resizing reimplements Pillow's Lanczos (below) rather than calling sharp's: libvips' lanczos3
 * differs from PIL's by up to ~40 levels on downscales and far more on upscales.
 */
export async function loadImage(input: string | Buffer, size?: Size): Promise<Tensor> {
  const img = await decodeRgb(input);
  if (size !== undefined && !(isMultipleOf8(size.width) && isMultipleOf8(size.height)))
    throw new RangeError(`loadImage(): size must be positive multiples of 8, got ${size.width}x${size.height}`);
  const target = size ?? { width: img.width - (img.width % 8), height: img.height - (img.height % 8) };
  if (target.width === 0 || target.height === 0)
    throw new RangeError(`loadImage(): the image is ${img.width}x${img.height}; it must be at least 8x8`);
  return rgbToTensor(resizeLanczos(img, target.width, target.height));
}

const isMultipleOf8 = (n: number) => Number.isInteger(n) && n > 0 && n % 8 === 0;

/** An image file's pixels as `load_image` gives them (see loadImage), at the file's own size. */
export async function decodeRgb(input: string | Buffer): Promise<RgbImage> {
  try {
    const options = { autoOrient: true, ignoreIcc: true } as const;
    const meta = await sharp(input).metadata();
    if (meta.space === 'grey16' && !(await hasAlphaChannel(input, meta))) {
      // PIL opens 16-bit grey as mode "I;16" and converts it to RGB by clipping each value to 255
      // (not by keeping the high byte, as it does for 16-bit RGB(A) and grey+alpha).
      const { data, info } = await sharp(input, options).toColourspace('grey16').extractChannel(0).raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
      const grey = new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
      const rgb = new Uint8Array(grey.length * 3);
      for (let i = 0; i < grey.length; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = Math.min(grey[i]!, 255);
      return { data: rgb, width: info.width, height: info.height };
    }
    if (meta.space === 'cmyk') {
      const { data, info } = await sharp(input, options).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer({ resolveWithObject: true });
      return { data: cmykToRgb(data, info.channels), width: info.width, height: info.height };
    }
    const { data, info } = await sharp(input, options)
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (e) {
    const what = typeof input === 'string' ? input : 'image buffer';
    throw new Error(`cannot read ${what}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Whether an image stores an alpha channel. A PNG's colour type says it (4 and 6 do; a tRNS chunk
 * on a grey image, which libvips reports as alpha, is not one for PIL); other formats: as sharp says.
 */
async function hasAlphaChannel(input: string | Buffer, meta: Metadata): Promise<boolean> {
  if (meta.format !== 'png') return meta.channels === 2 || meta.channels === 4;
  let head: Uint8Array = typeof input === 'string' ? Buffer.alloc(0) : input;
  if (typeof input === 'string') {
    const fh = await open(input, 'r');
    try {
      head = (await fh.read(Buffer.alloc(26), 0, 26, 0)).buffer;
    } finally {
      await fh.close();
    }
  }
  const colourType = head[25]; // IHDR: signature 8, length 4, type 4, width 4, height 4, depth 1, colour type 1
  return colourType === 4 || colourType === 6;
}

/** PIL's naive CMYK -> RGB (Convert.c cmyk2rgb), not sharp's ICC transform. */
function cmykToRgb(cmyk: Uint8Array, channels: number): Uint8Array {
  const n = cmyk.length / channels;
  const rgb = new Uint8Array(n * 3);
  const mulDiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let i = 0; i < n; i++) {
    const nk = 255 - cmyk[i * channels + 3]!;
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = nk - mulDiv255(cmyk[i * channels + c]!, nk);
  }
  return rgb;
}

// 8-bit value -> float32(float32(v / 255) * 2 - 1), numpy's float32 arithmetic.
const TO_UNIT = Float32Array.from({ length: 256 }, (_, v) => Math.fround(Math.fround(v / 255) * 2 - 1));

/** 8-bit RGB -> float32 [1, 3, H, W] in [-1, 1], as diffusers' normalize(pil_to_numpy(image)). */
export function rgbToTensor({ data, width, height }: RgbImage): Tensor {
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    out[i] = TO_UNIT[data[3 * i]!]!;
    out[plane + i] = TO_UNIT[data[3 * i + 1]!]!;
    out[2 * plane + i] = TO_UNIT[data[3 * i + 2]!]!;
  }
  return Tensor.from(out, [1, 3, height, width]);
}

// ---------------------------------------------------------------------------------------------
// Encoding: what `VaeImageProcessor.postprocess(images, output_type="pil")` gives.

/**
 * [B, 3, H, W] images in about [-1, 1] (any device or float dtype) -> 8-bit RGB, as diffusers'
 * postprocess: `(x * 0.5 + 0.5).clamp(0, 1)` in the tensor's own dtype, then in float32
 * `(x * 255).round().astype("uint8")` with numpy's round-half-to-even.
 */
export function toImageData(images: Tensor): RgbImage[] {
  const [batch, channels, height, width] = images.shape;
  if (images.shape.length !== 4 || channels !== 3)
    throw new RangeError(`toImageData(): expected images of shape [B, 3, H, W], got [${images.shape.join(', ')}]`);
  const half = images.mul(0.5);
  const shifted = half.add(0.5);
  const clamped = shifted.clamp(0, 1);
  const cpu = clamped.to('cpu', 'float32');
  const values = cpu.toArray() as Float32Array;
  for (const t of [half, shifted, clamped, cpu]) t.dispose();

  const plane = height! * width!;
  return Array.from({ length: batch! }, (_, b) => {
    const data = new Uint8Array(plane * 3);
    for (let c = 0; c < 3; c++) {
      const src = (b * 3 + c) * plane;
      for (let i = 0; i < plane; i++) data[i * 3 + c] = roundHalfEven(Math.fround(values[src + i]! * 255));
    }
    return { data, width: width!, height: height! };
  });
}
