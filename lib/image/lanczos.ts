// Pillow's `Image.resize(size, Image.LANCZOS)` for 8-bit RGB, bit for bit.

/** 8-bit RGB pixels, row-major HWC (`data.length === width * height * 3`). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

// a=3 Lanczos widened by the scale when shrinking, 22-bit fixed-point weights, a horizontal pass
// rounded to 8 bits, then a vertical pass. (PIL's `reducing_gap` pre-shrink is off in diffusers.)

const PRECISION_BITS = 22;

const sinc = (x: number) => (x === 0 ? 1 : Math.sin(x * Math.PI) / (x * Math.PI));
const lanczos = (x: number) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);

interface Taps {
  size: number; // taps per output pixel
  first: Int32Array; // first input index of each output pixel
  count: Int32Array; // taps used by each output pixel
  weights: Int32Array; // fixed-point weights, `size` per output pixel
}

/** Taps for resampling the input span [in0, in1) (the whole input by default) to outSize pixels. */
function lanczosTaps(inSize: number, outSize: number, in0 = 0, in1 = inSize): Taps {
  const scale = (in1 - in0) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const size = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * size);
  const w = new Float64Array(size);
  for (let o = 0; o < outSize; o++) {
    const center = in0 + (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    let total = 0;
    for (let i = 0; i < n; i++) total += w[i] = lanczos((i + lo - center + 0.5) / filterScale);
    for (let i = 0; i < n; i++) {
      const k = (total !== 0 ? w[i]! / total : w[i]!) * (1 << PRECISION_BITS);
      weights[o * size + i] = Math.trunc(k < 0 ? k - 0.5 : k + 0.5);
    }
    first[o] = lo;
    count[o] = n;
  }
  return { size, first, count, weights };
}

const clip8 = (acc: number) => Math.min(Math.max(acc >> PRECISION_BITS, 0), 255);
const HALF = 1 << (PRECISION_BITS - 1);

/**
 * Resizes to width x height; `box` [x0, y0, x1, y1] picks the source region as PIL's `box`
 * argument does (default: the whole image; a zero-size box samples around its edge).
 */
export function resizeLanczos(img: RgbImage, width: number, height: number, box: [number, number, number, number] = [0, 0, img.width, img.height]): RgbImage {
  let { data, width: w, height: h } = img;
  const [x0, y0, x1, y1] = box;
  if (width !== w || x0 !== 0 || x1 !== w) {
    const t = lanczosTaps(w, width, x0, x1);
    const out = new Uint8Array(width * h * 3);
    for (let y = 0; y < h; y++) {
      const row = y * w * 3;
      for (let x = 0; x < width; x++) {
        let r = HALF, g = HALF, b = HALF;
        const base = x * t.size;
        for (let i = 0, p = row + t.first[x]! * 3; i < t.count[x]!; i++, p += 3) {
          const k = t.weights[base + i]!;
          r += data[p]! * k;
          g += data[p + 1]! * k;
          b += data[p + 2]! * k;
        }
        const q = (y * width + x) * 3;
        out[q] = clip8(r);
        out[q + 1] = clip8(g);
        out[q + 2] = clip8(b);
      }
    }
    data = out;
    w = width;
  }
  if (height !== h || y0 !== 0 || y1 !== h) {
    const t = lanczosTaps(h, height, y0, y1);
    const out = new Uint8Array(w * height * 3);
    const stride = w * 3;
    for (let y = 0; y < height; y++) {
      const base = y * t.size;
      for (let c = 0; c < stride; c++) {
        let acc = HALF;
        for (let i = 0, p = t.first[y]! * stride + c; i < t.count[y]!; i++, p += stride) acc += data[p]! * t.weights[base + i]!;
        out[y * stride + c] = clip8(acc);
      }
    }
    data = out;
    h = height;
  }
  return { data, width: w, height: h };
}
