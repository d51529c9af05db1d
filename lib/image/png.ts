// PNG files with text chunks (A1111 keeps its infotext in a "parameters" tEXt/iTXt chunk).
import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import type { RgbImage } from './io';

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

/** The PNG with its `keyword` text chunks replaced by one holding `text` (before IDAT). */
export function setPngText(png: Buffer, keyword: string, text: string): Buffer {
  const chunks = chunkOffsets(png);
  const idat = chunks.find((c) => c.type === 'IDAT');
  if (idat === undefined) throw new Error('setPngText(): a PNG without IDAT');
  const keep = (c: ChunkInfo) => !((c.type === 'tEXt' || c.type === 'iTXt' || c.type === 'zTXt') && c.data.toString('latin1', 0, c.data.indexOf(0)) === keyword);
  const whole = (c: ChunkInfo) => png.subarray(c.start, c.start + 12 + c.data.length);
  const before = chunks.filter((c) => c.start < idat.start && keep(c)).map(whole);
  const after = chunks.filter((c) => c.start >= idat.start && keep(c)).map(whole);
  return Buffer.concat([PNG_SIGNATURE, ...before, textChunk(keyword, text), ...after]);
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
