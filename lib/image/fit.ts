// Pixel-level composition for inpainting, as AUTOMATIC1111 does it: crops, its resize modes "crop
// and resize" / "resize and fill" (modules/images.py resize_image, upscaler None: PIL Lanczos), and
// the overlay that keeps the original pixels outside the mask (processing.py apply_overlay).
import { resizeLanczos, type RgbImage } from './lanczos';
import type { Box, GreyImage } from './mask';

/** The pixels of `box` (PIL's Image.crop inside the image). */
export function crop({ data, width }: RgbImage, box: Box): RgbImage {
  const w = box.x2 - box.x1;
  const h = box.y2 - box.y1;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) out.set(data.subarray(((box.y1 + y) * width + box.x1) * 3, ((box.y1 + y) * width + box.x2) * 3), y * w * 3);
  return { data: out, width: w, height: h };
}

/** `img` copied into `base` with its top-left corner at (x, y) (PIL's paste of an opaque image; the parts outside base are cut). */
export function paste(base: RgbImage, img: RgbImage, x: number, y: number): RgbImage {
  const out = new Uint8Array(base.data);
  for (let row = 0; row < img.height; row++) {
    const by = y + row;
    if (by < 0 || by >= base.height) continue;
    const from = Math.max(0, -x);
    const to = Math.min(img.width, base.width - x);
    if (to > from) out.set(img.data.subarray((row * img.width + from) * 3, (row * img.width + to) * 3), (by * base.width + x + from) * 3);
  }
  return { data: out, width: base.width, height: base.height };
}

/**
 * A1111's resize_image to width x height keeping the aspect ratio: 'crop' (mode 1, "Crop and
 * resize") scales to cover and cuts the overhang, centred; 'fill' (mode 2, "Resize and fill")
 * scales to fit, centred, and fills the sides by stretching the edge rows or columns (PIL resizes
 * from zero-size boxes at the edges).
 */
export function fit(img: RgbImage, width: number, height: number, mode: 'crop' | 'fill'): RgbImage {
  const ratio = width / height;
  const srcRatio = img.width / img.height;
  const wide = mode === 'crop' ? ratio > srcRatio : ratio < srcRatio;
  const srcW = wide ? width : Math.floor((img.width * height) / img.height);
  const srcH = wide ? Math.floor((img.height * width) / img.width) : height;
  const resized = resizeLanczos(img, srcW, srcH);
  const blank: RgbImage = { data: new Uint8Array(width * height * 3), width, height };
  let res = paste(blank, resized, Math.floor(width / 2) - Math.floor(srcW / 2), Math.floor(height / 2) - Math.floor(srcH / 2));
  if (mode === 'fill' && ratio !== srcRatio) {
    if (ratio < srcRatio) {
      const fillH = Math.floor(height / 2) - Math.floor(srcH / 2);
      if (fillH > 0) {
        res = paste(res, stretchRow(resized, 0, width, fillH), 0, 0);
        res = paste(res, stretchRow(resized, resized.height, width, fillH), 0, fillH + srcH);
      }
    } else {
      const fillW = Math.floor(width / 2) - Math.floor(srcW / 2);
      if (fillW > 0) {
        res = paste(res, stretchColumn(resized, 0, fillW, height), 0, 0);
        res = paste(res, stretchColumn(resized, resized.width, fillW, height), fillW + srcW, 0);
      }
    }
  }
  return res;
}

/** PIL's resize to width x height from a zero-height box at the top or bottom edge: a Lanczos blend of the 3 edge rows. */
function stretchRow(img: RgbImage, y: number, width: number, height: number): RgbImage {
  return resizeLanczos(img, width, height, [0, y, img.width, y]);
}

/** The same from a zero-width box at the left or right edge. */
function stretchColumn(img: RgbImage, x: number, width: number, height: number): RgbImage {
  return resizeLanczos(img, width, height, [x, 0, x, img.height]);
}

/**
 * A1111's overlay: the original pixels over the generated ones with opacity 255 − mask (PIL's
 * alpha_composite of an opaque base, AlphaComposite.c integer arithmetic): where the mask is 0 the
 * original is kept exactly, where it is 255 the generated pixel is, and in between they blend
 * (A1111 also round-trips the original through premultiplied RGBa, ±1 level on blurred edges).
 */
export function overlay(generated: RgbImage, original: RgbImage, mask: GreyImage): RgbImage {
  if (generated.width !== original.width || generated.height !== original.height || mask.width !== original.width || mask.height !== original.height)
    throw new RangeError(`overlay(): sizes differ (${generated.width}x${generated.height}, ${original.width}x${original.height}, mask ${mask.width}x${mask.height})`);
  const out = new Uint8Array(generated.data.length);
  for (let i = 0; i < mask.data.length; i++) {
    const a = 255 - mask.data[i]!; // the original's opacity
    for (let c = 0; c < 3; c++) {
      const t = (original.data[3 * i + c]! * a + generated.data[3 * i + c]! * (255 - a)) * 128 + (0x80 << 7);
      out[3 * i + c] = (((t >> 8) + t) >> 8) >> 7;
    }
  }
  return { data: out, width: generated.width, height: generated.height };
}
