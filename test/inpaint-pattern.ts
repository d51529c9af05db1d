// An inpainting job whose answer can be checked pixel for pixel, shared by the server tests: a
// patterned 32x32 image (a kept pixel cannot pass for a generated one) and a mask repainting the
// square [8, 16)².
import assert from 'node:assert/strict';
import sharp from 'sharp';

/** A w×h PNG whose pixel (x, y) is rgb(x, y). */
export function rgbPng(w: number, h: number, rgb: (x: number, y: number) => [number, number, number]): Promise<Buffer> {
  const data = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(rgb(x, y), (y * w + x) * 3);
  return sharp(data, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

export const INPAINT = {
  pattern: (x: number, y: number): [number, number, number] => [(x * 37 + y * 11) % 251, (x * 5 + y * 53) % 241, (x * y + 17) % 239],
  inside: (x: number, y: number) => x >= 8 && x < 16 && y >= 8 && y < 16,
  init: () => rgbPng(32, 32, INPAINT.pattern),
  mask: () => rgbPng(32, 32, (x, y) => (INPAINT.inside(x, y) ? [255, 255, 255] : [0, 0, 0])),
};

/** The answer to INPAINT's job (PNG bytes or base64): every pixel outside the mask is the original's, most inside it are new. */
export async function assertOverlay(image: string | Buffer, what: string): Promise<void> {
  const bytes = typeof image === 'string' ? Buffer.from(image, 'base64') : image;
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height], [32, 32]);
  let changed = 0;
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      const px = [...data.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3)];
      if (!INPAINT.inside(x, y)) assert.deepEqual(px, INPAINT.pattern(x, y), `${what}: pixel (${x}, ${y}) outside the mask changed`);
      else if (px.join() !== INPAINT.pattern(x, y).join()) changed++;
    }
  }
  assert.ok(changed > 32, `${what}: only ${changed} of the 64 masked pixels repainted`);
}
