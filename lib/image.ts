// Image IO: image files <-> [-1, 1] tensors as diffusers' VaeImageProcessor makes them, PNGs with
// A1111's "parameters" infotext, and the file helpers the CLI writes its outputs with.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, lstatSync } from 'node:fs';
import { link, lstat, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { cacheDir } from './libtorch';
import { Tensor } from './tensor';

/** 8-bit RGB pixels, row-major HWC (`data.length === width * height * 3`). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

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
 *   high byte (value >> 8) as PIL does for RGB(A) and LA, though PIL clips 16-bit grey to 255;
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

async function decodeRgb(input: string | Buffer): Promise<RgbImage> {
  try {
    const options = { autoOrient: true, ignoreIcc: true } as const;
    if ((await sharp(input).metadata()).space === 'cmyk') {
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

function rgbToTensor({ data, width, height }: RgbImage): Tensor {
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
// Pillow's `Image.resize(size, Image.LANCZOS)` for 8-bit RGB, bit for bit (libImaging/Resample.c):
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

function lanczosTaps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const size = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * size);
  const w = new Float64Array(size);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
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

function resizeLanczos(img: RgbImage, width: number, height: number): RgbImage {
  let { data, width: w, height: h } = img;
  if (width !== w) {
    const t = lanczosTaps(w, width);
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
  if (height !== h) {
    const t = lanczosTaps(h, height);
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

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 === 1 ? r - 1 : r;
}

// ---------------------------------------------------------------------------------------------
// PNG with text chunks.

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One PNG chunk: length, type, data, CRC. */
export function pngChunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(data.length + 12);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/**
 * A text chunk as Pillow's `PngInfo.add_text` (used by A1111) writes it: tEXt when the text is
 * Latin-1, else an uncompressed iTXt in UTF-8.
 */
function textChunk(keyword: string, text: string): Buffer {
  if (text.includes('\0')) throw new TypeError('PNG text cannot contain NUL characters');
  const key = Buffer.from(`${keyword}\0`, 'latin1');
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\xff]*$/.test(text)) return pngChunk('tEXt', Buffer.concat([key, Buffer.from(text, 'latin1')]));
  // compression flag 0, method 0, empty language tag and translated keyword (each NUL-terminated)
  return pngChunk('iTXt', Buffer.concat([key, Buffer.from([0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

/** Encodes 8-bit RGB pixels as PNG, with the infotext (if any) in a "parameters" text chunk before IDAT. */
export async function encodePng(img: RgbImage, infotext?: string): Promise<Buffer> {
  const { data, width, height } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || data.length !== width * height * 3)
    throw new RangeError(`encodePng(): expected ${width}x${height}x3 = ${width * height * 3} bytes of RGB, got ${data.length}`);
  const png = await sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
  if (infotext === undefined) return png;
  const idat = chunkOffsets(png).find((c) => c.type === 'IDAT');
  if (idat === undefined) throw new Error('encodePng(): sharp produced a PNG without IDAT');
  return Buffer.concat([png.subarray(0, idat.start), textChunk('parameters', infotext), png.subarray(idat.start)]);
}

interface ChunkInfo {
  type: string;
  start: number; // offset of the length field
  data: Buffer;
  crcOk: boolean;
}

/** The chunks of a PNG, stopping at IEND or at the first truncated chunk. */
function chunkOffsets(png: Buffer): ChunkInfo[] {
  if (png.length < 8 || !png.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG file (bad signature)');
  const chunks: ChunkInfo[] = [];
  for (let pos = 8; pos + 12 <= png.length; ) {
    const length = png.readUInt32BE(pos);
    const end = pos + 12 + length;
    if (end > png.length) break;
    const type = png.toString('latin1', pos + 4, pos + 8);
    const data = png.subarray(pos + 8, pos + 8 + length);
    chunks.push({ type, start: pos, data, crcOk: crc32(png.subarray(pos + 4, pos + 8 + length)) === png.readUInt32BE(pos + 8 + length) });
    if (type === 'IEND') break;
    pos = end;
  }
  return chunks;
}

const MAX_TEXT = 64 << 20;

function decodeTextChunk(type: string, data: Buffer): [string, string] | undefined {
  const nul = data.indexOf(0);
  if (nul < 1 || nul > 79) return undefined;
  const keyword = data.toString('latin1', 0, nul);
  const rest = data.subarray(nul + 1);
  if (type === 'tEXt') return [keyword, rest.toString('latin1')];
  if (type === 'zTXt') return rest[0] === 0 ? [keyword, inflateSync(rest.subarray(1), { maxOutputLength: MAX_TEXT }).toString('latin1')] : undefined;
  // iTXt: compression flag, method, language tag\0, translated keyword\0, text
  const lang = rest.indexOf(0, 2);
  const translated = lang < 0 ? -1 : rest.indexOf(0, lang + 1);
  if (translated < 0) return undefined;
  const body = rest.subarray(translated + 1);
  if (rest[0] === 0) return [keyword, body.toString('utf8')];
  return rest[0] === 1 && rest[1] === 0 ? [keyword, inflateSync(body, { maxOutputLength: MAX_TEXT }).toString('utf8')] : undefined;
}

/**
 * The tEXt, zTXt and iTXt entries of a PNG, keyword -> text (a later chunk wins, as in PIL's
 * `Image.info`). Tolerant: chunks with a bad CRC or that do not decode are skipped, reading stops
 * at a truncated chunk. Throws only when the bytes are not a PNG at all.
 */
export function readPngText(png: Uint8Array): Record<string, string> {
  const text: Record<string, string> = {};
  for (const chunk of chunkOffsets(Buffer.from(png.buffer, png.byteOffset, png.byteLength))) {
    if (!chunk.crcOk || (chunk.type !== 'tEXt' && chunk.type !== 'zTXt' && chunk.type !== 'iTXt')) continue;
    try {
      const entry = decodeTextChunk(chunk.type, chunk.data);
      if (entry !== undefined && entry[0] !== '__proto__') text[entry[0]] = entry[1];
    } catch {
      // a corrupt compressed chunk: skip it
    }
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// A1111 infotext ("parameters").

export interface InfotextParams {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  /** A1111 display name, e.g. "Euler a", "DPM++ 2M Karras". */
  sampler: string;
  cfgScale: number;
  seed: number | bigint;
  width: number;
  height: number;
  /** First 10 hex digits of the checkpoint's sha256 (see modelHash). */
  modelHash?: string;
  /** Checkpoint name, conventionally the file name without extension. */
  modelName?: string;
  /** img2img: "Denoising strength". */
  strength?: number;
  /** Written (with batchPos) only when 2 or more, as older A1111 did. */
  batchSize?: number;
  batchPos?: number;
  /** More "key: value" pairs, appended in order (A1111's extra_generation_params). */
  extra?: Record<string, string | number>;
}

/** A1111's `quote`: values with a comma, colon or newline become JSON strings. */
const quote = (v: string) => (/[,:\n]/.test(v) ? JSON.stringify(v) : v);

/**
 * The A1111 infotext, laid out as its `create_infotext`:
 * `prompt\nNegative prompt: ...\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512,
 * Model hash: abcdef1234, Model: name` (the negative line only when non-empty; numbers as Python
 * prints them: 7, 7.5).
 */
export function formatInfotext(p: InfotextParams): string {
  const batched = p.batchSize !== undefined && p.batchSize >= 2;
  const params: [string, string | number | bigint | undefined][] = [
    ['Steps', p.steps],
    ['Sampler', p.sampler],
    ['CFG scale', p.cfgScale],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.modelName],
    ['Batch size', batched ? p.batchSize : undefined],
    ['Batch pos', batched ? p.batchPos : undefined],
    ['Denoising strength', p.strength],
    ...Object.entries(p.extra ?? {}),
  ];
  const line = params
    .filter((kv): kv is [string, string | number | bigint] => kv[1] !== undefined && kv[1] !== '')
    .map(([k, v]) => (k === v ? k : `${k}: ${quote(String(v))}`))
    .join(', ');
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${line}`.trim();
}

export interface ParsedInfotext {
  prompt: string;
  negativePrompt: string;
  /** The "key: value" pairs of the last line, unquoted, e.g. { Steps: "20", Sampler: "Euler a", Size: "512x512" }. */
  params: Record<string, string>;
}

const PARAM = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/gu;

/** Parses an A1111 infotext as its `parse_generation_parameters` does. */
export function parseInfotext(text: string): ParsedInfotext {
  const lines = text.trim().split('\n');
  let last = lines.pop() ?? '';
  if ([...last.matchAll(PARAM)].length < 3) {
    lines.push(last);
    last = '';
  }
  let prompt = '';
  let negativePrompt = '';
  let inNegative = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith('Negative prompt:')) {
      inNegative = true;
      line = line.slice(16).trim();
    }
    if (inNegative) negativePrompt += (negativePrompt === '' ? '' : '\n') + line;
    else prompt += (prompt === '' ? '' : '\n') + line;
  }
  const params: Record<string, string> = {};
  for (const [, key, value] of last.matchAll(PARAM)) {
    if (key === undefined || value === undefined || key === '__proto__') continue;
    params[key] = unquote(value);
  }
  return { prompt, negativePrompt, params };
}

function unquote(v: string): string {
  if (v.length < 2 || !v.startsWith('"') || !v.endsWith('"')) return v;
  try {
    const parsed: unknown = JSON.parse(v);
    return typeof parsed === 'string' ? parsed : v;
  } catch {
    return v;
  }
}

// ---------------------------------------------------------------------------------------------
// Files.

const hashes = new Map<string, Promise<string>>();
const hashFile = () => path.join(cacheDir(), 'model-hashes.json');

async function knownHashes(): Promise<Record<string, string>> {
  try {
    return JSON.parse(await readFile(hashFile(), 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

/** Adds one hash to the file of known ones (the newest 200), atomically. */
async function rememberHash(key: string, hash: string): Promise<void> {
  const all = { ...(await knownHashes()), [key]: hash };
  await mkdir(path.dirname(hashFile()), { recursive: true });
  await writeFileAtomic(hashFile(), Buffer.from(JSON.stringify(Object.fromEntries(Object.entries(all).slice(-200)))), { overwrite: true });
}

function sha256Prefix(file: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file, { highWaterMark: 1 << 22 })
      .on('data', (chunk) => h.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex').slice(0, 10)));
  });
}

/**
 * A1111's short model hash: the first 10 hex digits of the file's sha256, streamed (checkpoints are
 * gigabytes). Remembered per (path, size, mtime) in memory and in the cache's model-hashes.json,
 * so a new process (each CLI run) does not read the whole file again.
 */
export async function modelHash(file: string): Promise<string> {
  const full = path.resolve(file);
  const st = await stat(full);
  const key = `${full}\0${st.size}\0${st.mtimeMs}`;
  let hash = hashes.get(key);
  if (hash === undefined) {
    hash = (async () => {
      const known = (await knownHashes())[key];
      if (typeof known === 'string' && /^[0-9a-f]{10}$/.test(known)) return known;
      const fresh = await sha256Prefix(full);
      // A cache that cannot be written (read-only home) costs the next process a re-read, nothing more.
      await rememberHash(key, fresh).catch(() => undefined);
      return fresh;
    })();
    hashes.set(key, hash);
    hash.catch(() => hashes.delete(key));
  }
  return hash;
}

export interface WriteOptions {
  /** Replace an existing file (default false: an existing file is an error with code EEXIST). */
  overwrite?: boolean;
}

/**
 * Writes `data` to `file` atomically: a temporary file in the same directory, flushed, then
 * renamed (or, without overwrite, hard-linked so that an existing file is never replaced). No
 * temporary file is left behind, whatever happens.
 */
export async function writeFileAtomic(file: string, data: Uint8Array | string, options: WriteOptions = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (options.overwrite) await rename(tmp, file);
    else await publishNew(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

async function publishNew(tmp: string, file: string): Promise<void> {
  try {
    await link(tmp, file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw exists(file, e);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
    // no hard links on this filesystem: check, then rename (not race-free, but never clobbers knowingly)
    if (await lstat(file).then(() => true, () => false)) throw exists(file);
    await rename(tmp, file);
  }
}

const exists = (file: string, cause?: unknown) =>
  Object.assign(new Error(`${file} already exists; choose another name or allow overwriting`, { cause }), { code: 'EEXIST', path: file });

/** The first of `name.png`, `name-1.png`, `name-2.png`, ... that does not exist yet. */
export function uniquePath(file: string): string {
  const ext = path.extname(file);
  const stem = file.slice(0, file.length - ext.length);
  for (let i = 0; ; i++) {
    const candidate = i === 0 ? file : `${stem}-${i}${ext}`;
    try {
      lstatSync(candidate);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return candidate;
      throw e;
    }
  }
}
