import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { encodePng, pngChunk, PNG_SIGNATURE, readPngText } from '../lib/image/png';
import { formatInfotext, infotextOptions, parseInfotext } from '../lib/image/infotext';
import { getSampler } from '../lib/sampling/registry';
import { loadImage, toImageData, type RgbImage } from '../lib/image/io';
import { modelHash } from '../lib/models/hash';
import { uniquePath, writeFileAtomic } from '../lib/util/fs';
import { Tensor } from '../lib/tensor';
import { python, REPO_ROOT, tmpDir } from './helpers';

const f = Math.fround;

/** Deterministic pseudo-random bytes. */
function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

// A minimal PNG writer for inputs sharp would not write as is (16-bit, grey+alpha, invisible RGB under alpha 0).
/** colorType: 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA; samples are row-major, interleaved. */
function makePng(width: number, height: number, colorType: 0 | 2 | 4 | 6, bitDepth: 8 | 16, samples: ArrayLike<number>, extra: Buffer[] = []): Buffer {
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colorType];
  const bps = bitDepth / 8;
  const rowBytes = width * channels * bps;
  const raw = Buffer.alloc(height * (rowBytes + 1));
  for (let y = 0; y < height; y++)
    for (let i = 0; i < width * channels; i++) {
      const v = samples[y * width * channels + i]!;
      const at = y * (rowBytes + 1) + 1 + i * bps;
      if (bitDepth === 16) raw.writeUInt16BE(v, at);
      else raw[at] = v;
    }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colorType;
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), ...extra, pngChunk('IDAT', deflateSync(raw)), pngChunk('IEND', new Uint8Array(0))]);
}

/** The tensor's [1,3,H,W] values back as 8-bit HWC (exact for tensors made from 8-bit pixels). */
function pixels(t: Tensor): { data: number[]; width: number; height: number } {
  const [, , height, width] = t.shape as [number, number, number, number];
  const v = t.toArray() as Float32Array;
  const data: number[] = [];
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) data.push(Math.round(((v[c * width * height + i]! + 1) / 2) * 255));
  return { data, width, height };
}

function chunkTypes(png: Buffer): string[] {
  const types: string[] = [];
  for (let pos = 8; pos < png.length; pos += 12 + png.readUInt32BE(pos)) types.push(png.toString('latin1', pos + 4, pos + 8));
  return types;
}

const hasPil = (() => {
  const r = spawnSync('python3', ['-c', 'import PIL, numpy'], { encoding: 'utf8' });
  return r.status === 0;
})();

describe('image', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => (tmp = tmpDir('sdtorch-image-')));
  after(() => tmp.cleanup());

  describe('loadImage', () => {
    it('PNG -> tensor -> toImageData gives back the original pixels exactly', async () => {
      const width = 40, height = 24;
      const data = bytes(width * height * 3, 7);
      const file = path.join(tmp.dir, 'roundtrip.png');
      await sharp(data, { raw: { width, height, channels: 3 } }).png().toFile(file);
      const t = await loadImage(file);
      assert.deepEqual(t.shape, [1, 3, height, width]);
      assert.equal(t.dtype, 'float32');
      const [back] = toImageData(t);
      assert.equal(back!.width, width);
      assert.equal(back!.height, height);
      assert.deepEqual(Buffer.from(back!.data), Buffer.from(data));
      // from a Buffer too
      assert.deepEqual((await loadImage(fs.readFileSync(file))).toArray(), t.toArray());
    });

    it('values are float32(x / 255) * 2 - 1, planar RGB', async () => {
      const width = 16, height = 16; // every 8-bit value once in R, reversed in G, constant in B
      const data = new Uint8Array(width * height * 3);
      for (let i = 0; i < 256; i++) data.set([i, 255 - i, 77], i * 3);
      const t = await loadImage(await sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer());
      const v = t.toArray() as Float32Array;
      for (let i = 0; i < 256; i++) {
        assert.equal(v[i], f(f(i / 255) * 2 - 1));
        assert.equal(v[256 + i], f(f((255 - i) / 255) * 2 - 1));
        assert.equal(v[512 + i], f(f(77 / 255) * 2 - 1));
      }
      assert.equal(v[0], -1);
      assert.equal(v[255], 1);
    });

    it('RGBA: alpha is dropped, not composited (PIL convert("RGB"))', async () => {
      const rgba = [10, 20, 30, 0, 200, 100, 50, 128, 1, 2, 3, 255, 255, 0, 255, 0];
      const file = path.join(tmp.dir, 'rgba.png');
      fs.writeFileSync(file, makePng(8, 8, 6, 8, Array.from({ length: 8 * 8 * 4 }, (_, i) => rgba[i % 16]!)));
      const p = pixels(await loadImage(file)); // pixel i has colour i % 4
      assert.equal(p.width, 8);
      assert.deepEqual(p.data.slice(0, 24), [10, 20, 30, 200, 100, 50, 1, 2, 3, 255, 0, 255, 10, 20, 30, 200, 100, 50, 1, 2, 3, 255, 0, 255]);
    });

    it('grey and grey+alpha become three equal channels; 16-bit samples keep their high byte, 16-bit grey clips', async () => {
      const width = 8, height = 8;
      const grey = Array.from(bytes(64, 3));
      const grey16 = grey.map((v, i) => v * 256 + ((i * 37) % 256));
      const rgb16 = Array.from({ length: 64 * 3 }, (_, i) => ((i * 2654435761) >>> 16) & 0xffff);
      const cases: [string, Buffer, number[]][] = [
        ['grey 8', makePng(width, height, 0, 8, grey), grey.flatMap((v) => [v, v, v])],
        ['grey+alpha 8', makePng(width, height, 4, 8, grey.flatMap((v) => [v, 255 - v])), grey.flatMap((v) => [v, v, v])],
        // PIL opens 16-bit grey as "I;16"; convert("RGB") clips it to 255 (32768 -> 255, 200 -> 200)
        ['grey 16', makePng(width, height, 0, 16, grey16), grey16.flatMap((v) => [Math.min(v, 255), Math.min(v, 255), Math.min(v, 255)])],
        ['grey+alpha 16', makePng(width, height, 4, 16, grey16.flatMap((v) => [v, 0])), grey.flatMap((v) => [v, v, v])],
        ['RGB 16', makePng(width, height, 2, 16, rgb16), rgb16.map((v) => v >> 8)],
        ['RGBA 16', makePng(width, height, 6, 16, rgb16.flatMap((v, i) => (i % 3 === 2 ? [v, 1234] : [v]))), rgb16.map((v) => v >> 8)],
      ];
      for (const [name, png, want] of cases) {
        const t = await loadImage(png);
        assert.deepEqual(t.shape, [1, 3, height, width], name);
        assert.deepEqual(pixels(t).data, want, name);
      }
    });

    it('16-bit, low-bit, palette and tRNS PNGs equal PIL (load_image -> convert("RGB"))', async function () {
      if (!hasPil) this.skip();
      const w = 8, h = 8;
      const vals = Array.from({ length: w * h }, (_, i) => [0, 200, 255, 256, 32768, 65535, 300, 1][i % 8]!);
      const trnsGrey = (v: number) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return pngChunk('tRNS', b); };
      const files: Record<string, Buffer> = {
        'g16.png': makePng(w, h, 0, 16, vals),
        'g16-trns.png': makePng(w, h, 0, 16, vals, [trnsGrey(300)]),
        'ga16.png': makePng(w, h, 4, 16, vals.flatMap((v) => [v, 40000])),
        'rgb16.png': makePng(w, h, 2, 16, vals.flatMap((v, i) => [v, vals[(i + 1) % vals.length]!, vals[(i + 3) % vals.length]!])),
        'rgba16.png': makePng(w, h, 6, 16, vals.flatMap((v, i) => [v, vals[(i + 2) % vals.length]!, 7, 30000])),
        'g8-trns.png': makePng(w, h, 0, 8, vals.map((v) => v & 255), [trnsGrey(200)]),
      };
      for (const [name, buf] of Object.entries(files)) fs.writeFileSync(path.join(tmp.dir, name), buf);
      const want = JSON.parse(python(`
import sys, json, base64, numpy as np
from PIL import Image
print(json.dumps({n: base64.b64encode(np.asarray(Image.open(sys.argv[1] + '/' + n).convert('RGB'), dtype=np.uint8).tobytes()).decode() for n in json.loads(sys.argv[2])}))`,
      [tmp.dir, JSON.stringify(Object.keys(files))])) as Record<string, string>;
      for (const name of Object.keys(files)) {
        const ours = Buffer.from(pixels(await loadImage(path.join(tmp.dir, name))).data);
        assert.ok(ours.equals(Buffer.from(want[name]!, 'base64')), `${name}: pixels differ from PIL`);
      }
      // the same bytes from a Buffer instead of a path
      assert.ok(Buffer.from(pixels(await loadImage(files['g16.png']!)).data).equals(Buffer.from(want['g16.png']!, 'base64')));
    });

    it('a palette PNG with transparency gives its palette colours', async () => {
      const plte = pngChunk('PLTE', Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255]));
      const trns = pngChunk('tRNS', Uint8Array.from([0, 128]));
      const ihdr = Buffer.alloc(13);
      ihdr.writeUInt32BE(8, 0);
      ihdr.writeUInt32BE(8, 4);
      ihdr[8] = 8;
      ihdr[9] = 3;
      const raw = Buffer.alloc(8 * 9);
      for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) raw[y * 9 + 1 + x] = (x + y) % 3;
      const png = Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), plte, trns, pngChunk('IDAT', deflateSync(raw)), pngChunk('IEND', new Uint8Array(0))]);
      const p = pixels(await loadImage(png));
      const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];
      assert.deepEqual(p.data.slice(0, 9), [...colours[0]!, ...colours[1]!, ...colours[2]!]);
    });

    it('sizes that are not multiples of 8 are rounded down and resized; `size` resizes', async () => {
      const solid = await sharp({ create: { width: 45, height: 37, channels: 3, background: { r: 12, g: 34, b: 250 } } }).png().toBuffer();
      const t = await loadImage(solid);
      assert.deepEqual(t.shape, [1, 3, 32, 40]);
      // Lanczos weights sum to one: a flat colour stays exactly flat
      assert.ok(pixels(t).data.every((v, i) => v === [12, 34, 250][i % 3]));
      assert.deepEqual((await loadImage(solid, { width: 64, height: 16 })).shape, [1, 3, 16, 64]);
      assert.deepEqual((await loadImage(solid, { width: 8, height: 8 })).shape, [1, 3, 8, 8]);
    });

    it('rejects sizes that are not positive multiples of 8, and images smaller than 8x8', async () => {
      const png = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#000' } }).png().toBuffer();
      await assert.rejects(loadImage(png, { width: 20, height: 16 }), /multiples of 8/);
      await assert.rejects(loadImage(png, { width: 0, height: 16 }), /multiples of 8/);
      const tiny = await sharp({ create: { width: 7, height: 20, channels: 3, background: '#000' } }).png().toBuffer();
      await assert.rejects(loadImage(tiny), /7x20; it must be at least 8x8/);
    });

    it('applies EXIF orientation, as diffusers.utils.load_image does', async () => {
      const width = 16, height = 8; // left half red, right half blue
      const data = new Uint8Array(width * height * 3);
      for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(x < 8 ? [255, 0, 0] : [0, 0, 255], (y * width + x) * 3);
      const png = await sharp(data, { raw: { width, height, channels: 3 } }).withMetadata({ orientation: 6 }).png().toBuffer();
      assert.equal((await sharp(png).metadata()).orientation, 6);
      const p = pixels(await loadImage(png)); // 90° clockwise: the left half goes to the top
      assert.equal(p.width, 8);
      assert.equal(p.height, 16);
      assert.deepEqual(p.data.slice(0, 3), [255, 0, 0]);
      assert.deepEqual(p.data.slice(-3), [0, 0, 255]);
    });

    it('a file that is missing or not an image is a clear Error', async () => {
      await assert.rejects(loadImage(path.join(tmp.dir, 'nope.png')), (e: Error) => e.message.startsWith('cannot read ') && e.message.includes('nope.png'));
      await assert.rejects(loadImage(Buffer.from('not an image')), /cannot read image buffer/);
    });

    it('equals PIL (load_image, then VaeImageProcessor Lanczos resize) for PNG, JPEG, CMYK, ICC, EXIF inputs', async function () {
      if (!hasPil) this.skip();
      const w = 101, h = 77;
      const smooth = new Uint8Array(w * h * 3);
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
          smooth.set([128 + 120 * Math.sin(x / 5), 128 + 120 * Math.cos(y / 4), (x * 3 + y * 2) % 256], (y * w + x) * 3);
      const noise = bytes(w * h * 3, 11);
      const raw = (d: Uint8Array) => sharp(d, { raw: { width: w, height: h, channels: 3 } });
      const files: Record<string, Buffer> = {
        'smooth.png': await raw(smooth).png().toBuffer(),
        'noise.png': await raw(noise).png().toBuffer(),
        'smooth.jpg': await raw(smooth).jpeg({ quality: 90 }).toBuffer(),
        'cmyk.jpg': await raw(smooth).toColourspace('cmyk').jpeg().toBuffer(),
        'p3.png': await raw(smooth).withIccProfile('p3').png().toBuffer(),
        'exif8.jpg': await raw(noise).withMetadata({ orientation: 8 }).jpeg({ quality: 95 }).toBuffer(),
        'rgba.png': makePng(w, h, 6, 8, Array.from(bytes(w * h * 4, 5))),
      };
      for (const [name, buf] of Object.entries(files)) fs.writeFileSync(path.join(tmp.dir, name), buf);
      const cases: [string, [number, number] | null][] = [
        ['smooth.png', null], ['noise.png', null], ['noise.png', [64, 48]], ['smooth.png', [256, 200]], ['noise.png', [40, 160]],
        ['smooth.jpg', null], ['cmyk.jpg', null], ['p3.png', null], ['exif8.jpg', null], ['rgba.png', [96, 72]],
      ];
      const script = `
import sys, json, base64, numpy as np
from PIL import Image, ImageOps
out = []
for name, size in json.loads(sys.argv[2]):
    im = ImageOps.exif_transpose(Image.open(sys.argv[1] + '/' + name)).convert('RGB')
    w, h = size if size else (im.width - im.width % 8, im.height - im.height % 8)
    if (w, h) != im.size:
        im = im.resize((w, h), resample=Image.LANCZOS)
    out.append(base64.b64encode(np.asarray(im, dtype=np.uint8).tobytes()).decode())
print(json.dumps(out))`;
      const want = JSON.parse(python(script, [tmp.dir, JSON.stringify(cases)])) as string[];
      for (const [i, [name, size]] of cases.entries()) {
        const t = await loadImage(path.join(tmp.dir, name), size ? { width: size[0], height: size[1] } : undefined);
        const ours = Buffer.from(pixels(t).data);
        const ref = Buffer.from(want[i]!, 'base64');
        assert.equal(ours.length, ref.length, `${name} ${size}: size`);
        assert.ok(ours.equals(ref), `${name} ${size}: pixels differ from PIL`);
      }
    });
  });

  describe('toImageData', () => {
    it('rounds (x * 0.5 + 0.5).clamp(0, 1) * 255 half to even, like numpy', () => {
      // (value, expected): ±1 ends, clamping, NaN -> 0, and exact .5 cases 127.5, 200.5, 253.5, 254.5
      const cases: [number, number][] = [
        [-1, 0], [1, 255], [-3, 0], [5, 255], [0, 128], [NaN, 0],
        [0.5725489854812622, 200], [0.9882351756095886, 254], [0.996078372001648, 254],
        [f(3 / 255 * 2 - 1), 3], [f(254 / 255 * 2 - 1), 254],
      ];
      const n = cases.length;
      const data = new Float32Array(3 * n);
      for (const [i, [x]] of cases.entries()) for (let c = 0; c < 3; c++) data[c * n + i] = x;
      const [img] = toImageData(Tensor.from(data, [1, 3, 1, n]));
      assert.equal(img!.width, n);
      assert.equal(img!.height, 1);
      assert.deepEqual(Array.from(img!.data), cases.flatMap(([, want]) => [want, want, want]));
      assert.equal(f(f(f(0.5725489854812622 * 0.5) + 0.5) * 255), 200.5); // the case is really on the boundary
    });

    it('splits a batch into HWC images', () => {
      const data = new Float32Array(2 * 3 * 2 * 2);
      for (let i = 0; i < data.length; i++) data[i] = f((i % 7) / 3 - 1);
      const imgs = toImageData(Tensor.from(data, [2, 3, 2, 2]));
      assert.equal(imgs.length, 2);
      const at = (b: number, c: number, y: number, x: number) => data[((b * 3 + c) * 2 + y) * 2 + x]!;
      const u8 = (x: number) => {
        const v = f(Math.min(Math.max(f(f(x * 0.5) + 0.5), 0), 1) * 255);
        const r = Math.round(v);
        return r - v === 0.5 && r % 2 ? r - 1 : r;
      };
      for (let b = 0; b < 2; b++)
        for (let y = 0; y < 2; y++)
          for (let x = 0; x < 2; x++) for (let c = 0; c < 3; c++) assert.equal(imgs[b]!.data[(y * 2 + x) * 3 + c], u8(at(b, c, y, x)));
    });

    it('computes the affine part in the tensor dtype (float16 as diffusers does)', () => {
      const t = Tensor.from(new Float32Array([-1, 0, 1, -1, 0, 1, -1, 0, 1]), [1, 3, 1, 3]).to('cpu', 'float16');
      assert.deepEqual(Array.from(toImageData(t)[0]!.data), [0, 0, 0, 128, 128, 128, 255, 255, 255]);
    });

    it('equals numpy on random values', function () {
      if (!hasPil) this.skip();
      const n = 4096;
      const data = new Float32Array(3 * n);
      const r = bytes(3 * n * 2, 9);
      for (let i = 0; i < data.length; i++) data[i] = f(((r[2 * i]! * 256 + r[2 * i + 1]!) / 65535) * 2.4 - 1.2);
      const want = python(
        `import sys, numpy as np
x = np.frombuffer(bytes.fromhex(sys.argv[1]), dtype=np.float32).reshape(1, 3, 1, -1)
y = np.clip(x * np.float32(0.5) + np.float32(0.5), 0, 1).transpose(0, 2, 3, 1)
sys.stdout.write((y * 255).round().astype("uint8").tobytes().hex())`,
        [Buffer.from(data.buffer).toString('hex')],
      );
      assert.equal(Buffer.from(toImageData(Tensor.from(data, [1, 3, 1, n]))[0]!.data).toString('hex'), want);
    });

    it('rejects tensors that are not [B, 3, H, W]', () => {
      assert.throws(() => toImageData(Tensor.from(new Float32Array(8), [1, 4, 1, 2])), /\[B, 3, H, W\]/);
      assert.throws(() => toImageData(Tensor.from(new Float32Array(6), [3, 2])), /\[B, 3, H, W\]/);
    });
  });

  describe('encodePng / readPngText', () => {
    const img: RgbImage = { data: bytes(24 * 16 * 3, 5), width: 24, height: 16 };
    const latin1 = 'a café, "quoted"\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 24x16';
    const unicode = '猫 a cat 🐈\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 2, Size: 24x16';

    it('writes the infotext as a tEXt "parameters" chunk before IDAT, and the pixels exactly', async () => {
      const png = await encodePng(img, latin1);
      const types = chunkTypes(png);
      assert.equal(types[0], 'IHDR');
      assert.ok(types.includes('tEXt') && types.indexOf('tEXt') < types.indexOf('IDAT'), types.join());
      assert.deepEqual(readPngText(png), { parameters: latin1 });
      const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height, info.channels], [24, 16, 3]);
      assert.ok(data.equals(Buffer.from(img.data)));
    });

    it('uses iTXt (UTF-8) when the text is not Latin-1', async () => {
      const png = await encodePng(img, unicode);
      assert.ok(chunkTypes(png).includes('iTXt'));
      assert.ok(!chunkTypes(png).includes('tEXt'));
      assert.equal(readPngText(png).parameters, unicode);
    });

    it('PIL reads the same parameters and pixels', async function () {
      if (!hasPil) this.skip();
      const a = path.join(tmp.dir, 'latin1.png');
      const b = path.join(tmp.dir, 'unicode.png');
      fs.writeFileSync(a, await encodePng(img, latin1));
      fs.writeFileSync(b, await encodePng(img, unicode));
      const out = JSON.parse(
        python(
          `import sys, json, numpy as np
from PIL import Image
res = []
for f in sys.argv[1:]:
    im = Image.open(f); im.load()  # load() checks every chunk CRC
    res.append([im.info['parameters'], im.mode, np.asarray(im).tobytes().hex()])
print(json.dumps(res))`,
          [a, b],
        ),
      ) as [string, string, string][];
      assert.deepEqual(out.map((r) => r[0]), [latin1, unicode]);
      for (const [, mode, hex] of out) {
        assert.equal(mode, 'RGB');
        assert.equal(hex, Buffer.from(img.data).toString('hex'));
      }
    });

    it('without infotext: a plain PNG with no text', async () => {
      const png = await encodePng(img);
      assert.deepEqual(readPngText(png), {});
    });

    it('reads zTXt and compressed iTXt, skips chunks with a bad CRC or corrupt data', () => {
      const z = Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), deflateSync(Buffer.from('zipped é', 'latin1'))]);
      const it = Buffer.concat([Buffer.from('Title\0\x01\x00en\0Titel\0', 'latin1'), deflateSync(Buffer.from('ünï 猫', 'utf8'))]);
      const bad = pngChunk('tEXt', Buffer.from('parameters\0evil', 'latin1'));
      bad.writeUInt32BE((bad.readUInt32BE(bad.length - 4) ^ 1) >>> 0, bad.length - 4);
      const corrupt = pngChunk('zTXt', Buffer.from('Broken\0\0not deflate', 'latin1'));
      const png = makePng(1, 1, 2, 8, [1, 2, 3], [
        pngChunk('tEXt', Buffer.from('parameters\0first', 'latin1')),
        pngChunk('zTXt', z),
        pngChunk('iTXt', it),
        bad,
        corrupt,
        pngChunk('tEXt', Buffer.from('parameters\0second', 'latin1')),
        pngChunk('tEXt', Buffer.from('no separator', 'latin1')),
      ]);
      assert.deepEqual(readPngText(png), { parameters: 'second', Comment: 'zipped é', Title: 'ünï 猫' });
    });

    it('reads what it can from a truncated PNG and throws a clear Error for non-PNG bytes', async () => {
      const png = await encodePng(img, latin1);
      const idat = png.indexOf('IDAT') - 4;
      assert.deepEqual(readPngText(png.subarray(0, idat + 20)), { parameters: latin1 });
      assert.throws(() => readPngText(Buffer.from('GIF89a...')), /not a PNG/);
      assert.throws(() => readPngText(new Uint8Array(0)), /not a PNG/);
      assert.deepEqual(readPngText(Buffer.concat([PNG_SIGNATURE, Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2])])), {});
    });

    it('rejects wrong pixel counts and NUL in the text', async () => {
      await assert.rejects(encodePng({ data: new Uint8Array(10), width: 2, height: 2 }), RangeError);
      await assert.rejects(encodePng(img, 'a\0b'), /NUL/);
    });
  });

  describe('formatInfotext / parseInfotext', () => {
    const txt2img = {
      prompt: 'a photo of a cat, 4k',
      negativePrompt: 'blurry, low quality',
      steps: 20,
      sampler: 'Euler a',
      cfgScale: 7,
      seed: 1234,
      width: 512,
      height: 512,
      modelHash: 'cc6cb27103',
      modelName: 'v1-5-pruned-emaonly',
    };

    it('txt2img: A1111 layout', () => {
      assert.equal(
        formatInfotext(txt2img),
        'a photo of a cat, 4k\nNegative prompt: blurry, low quality\n' +
          'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: cc6cb27103, Model: v1-5-pruned-emaonly',
      );
    });

    it('img2img in a batch: Batch size/pos, then Denoising strength; no negative line when empty', () => {
      assert.equal(
        formatInfotext({
          prompt: 'a dog',
          negativePrompt: '',
          steps: 30,
          sampler: 'DPM++ 2M Karras',
          cfgScale: 7.5,
          seed: 42,
          width: 768,
          height: 512,
          strength: 0.6,
          batchSize: 2,
          batchPos: 1,
        }),
        'a dog\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 768x512, Batch size: 2, Batch pos: 1, Denoising strength: 0.6',
      );
      assert.equal(formatInfotext({ ...txt2img, negativePrompt: undefined, modelHash: undefined, modelName: undefined, batchSize: 1, batchPos: 0 }),
        'a photo of a cat, 4k\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512');
    });

    it('quotes values with commas, colons or newlines as JSON (A1111 quote)', () => {
      const text = formatInfotext({ ...txt2img, modelName: 'my, "best": model', extra: { Version: 'sdtorch 0.1.0', 'Clip skip': 2 } });
      assert.ok(text.endsWith(', Model: "my, \\"best\\": model", Version: sdtorch 0.1.0, Clip skip: 2'), text);
    });

    it('parses back what it formats', () => {
      const text = formatInfotext({ ...txt2img, prompt: 'line one,\nline two', modelName: 'a, b: c', strength: 0.75 });
      assert.deepEqual(parseInfotext(text), {
        prompt: 'line one,\nline two',
        negativePrompt: 'blurry, low quality',
        params: {
          Steps: '20',
          Sampler: 'Euler a',
          'CFG scale': '7',
          Seed: '1234',
          Size: '512x512',
          'Model hash': 'cc6cb27103',
          Model: 'a, b: c',
          'Denoising strength': '0.75',
        },
      });
    });

    it('parses A1111 text: multi-line negative, quoted values with escapes, no params line', () => {
      const text =
        'masterpiece, (cat:1.2)\nNegative prompt: ugly,\n  deformed\n' +
        'Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 3, Size: 512x768, Lora hashes: "a: 1, b: \\"2\\"", Version: v1.7.0';
      const p = parseInfotext(text);
      assert.equal(p.prompt, 'masterpiece, (cat:1.2)');
      assert.equal(p.negativePrompt, 'ugly,\ndeformed');
      assert.equal(p.params['Lora hashes'], 'a: 1, b: "2"');
      assert.equal(p.params['Version'], 'v1.7.0');
      assert.equal(p.params['Size'], '512x768');
      assert.deepEqual(parseInfotext('just a prompt'), { prompt: 'just a prompt', negativePrompt: '', params: {} });
    });

    it("folds A1111 1.9+'s Schedule type into a sampler name generate() takes, for every schedule type there is", () => {
      const cases: [string, string | undefined, string, string, string][] = [
        ['DPM++ 2M', 'Karras', 'DPM++ 2M Karras', 'dpmpp_2m', 'karras'],
        ['Euler a', 'Exponential', 'Euler a Exponential', 'euler_a', 'exponential'],
        ['DPM++ SDE', 'Beta', 'DPM++ SDE Beta', 'dpmpp_sde', 'beta'],
        ['DPM++ 3M SDE', 'SGM Uniform', 'DPM++ 3M SDE SGM Uniform', 'dpmpp_3m_sde', 'sgm_uniform'],
        ['LCM', 'Automatic', 'LCM', 'lcm', 'default'],
        ['DEIS', undefined, 'DEIS', 'deis', 'default'],
        ['DPM++ 2S a Karras', undefined, 'DPM++ 2S a Karras', 'dpmpp_2s_a', 'karras'],
      ];
      for (const [sampler, type, folded, name, schedule] of cases) {
        const o = infotextOptions(`a cat\nSteps: 4, Sampler: ${sampler}, ${type ? `Schedule type: ${type}, ` : ''}CFG scale: 1.5, Seed: 1, Size: 64x64`);
        assert.equal(o.sampler, folded);
        const r = getSampler(o.sampler!);
        assert.deepEqual([r.name, r.schedule, r.label], [name, schedule, folded]);
      }
    });
  });

  describe('files', () => {
    it('modelHash: first 10 hex digits of the sha256, recomputed when the file changes', async () => {
      const file = path.join(tmp.dir, 'model.safetensors');
      const a = bytes(3 << 20, 1);
      fs.writeFileSync(file, a);
      const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 10);
      assert.equal(await modelHash(file), sha(a));
      assert.equal(await modelHash(file), sha(a));
      const b = bytes((3 << 20) + 1, 2);
      fs.writeFileSync(file, b);
      assert.equal(await modelHash(file), sha(b));
      await assert.rejects(modelHash(path.join(tmp.dir, 'missing.safetensors')), /ENOENT/);
    });

    it('modelHash: a new process takes the hash from the cache, until the file changes', async () => {
      const file = path.join(tmp.dir, 'remembered.safetensors');
      const a = bytes(1 << 20, 3);
      fs.writeFileSync(file, a);
      const real = createHash('sha256').update(a).digest('hex').slice(0, 10);
      assert.equal(await modelHash(file), real);
      const store = path.join(process.env.SDTORCH_CACHE!, 'model-hashes.json');
      const known = JSON.parse(fs.readFileSync(store, 'utf8')) as Record<string, string>;
      const key = Object.keys(known).find((k) => k.startsWith(`${file}\0`))!;
      assert.equal(known[key], real);
      // Planted in the cache: a fresh process answers with it, so it did not read the file.
      fs.writeFileSync(store, JSON.stringify({ ...known, [key]: 'abcdef0123' }));
      const inChild = () => spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'models', 'hash'))}).modelHash(${JSON.stringify(file)}).then(console.log)`], { encoding: 'utf8' }).stdout.trim();
      assert.equal(inChild(), 'abcdef0123');
      fs.utimesSync(file, new Date(), new Date(Date.now() + 5000));
      assert.equal(inChild(), real);
    });

    it('writeFileAtomic: writes, never clobbers without overwrite, replaces with it, leaves no temp files', async () => {
      const dir = path.join(tmp.dir, 'atomic');
      fs.mkdirSync(dir);
      const file = path.join(dir, 'out.png');
      await writeFileAtomic(file, Buffer.from('one'));
      assert.equal(fs.readFileSync(file, 'utf8'), 'one');
      await assert.rejects(writeFileAtomic(file, Buffer.from('two')), (e: NodeJS.ErrnoException) => e.code === 'EEXIST' && /already exists/.test(e.message));
      assert.equal(fs.readFileSync(file, 'utf8'), 'one');
      await writeFileAtomic(file, 'three', { overwrite: true });
      assert.equal(fs.readFileSync(file, 'utf8'), 'three');
      await assert.rejects(writeFileAtomic(path.join(dir, 'no', 'such', 'dir.png'), 'x'), /ENOENT/);
      assert.deepEqual(fs.readdirSync(dir), ['out.png']);
    });

    it('uniquePath: name.png, name-1.png, name-2.png, ...', () => {
      const dir = path.join(tmp.dir, 'unique');
      fs.mkdirSync(dir);
      const file = path.join(dir, 'cat.png');
      assert.equal(uniquePath(file), file);
      fs.writeFileSync(file, '');
      assert.equal(uniquePath(file), path.join(dir, 'cat-1.png'));
      fs.writeFileSync(path.join(dir, 'cat-1.png'), '');
      fs.writeFileSync(path.join(dir, 'cat-3.png'), '');
      assert.equal(uniquePath(file), path.join(dir, 'cat-2.png'));
      fs.writeFileSync(path.join(dir, 'noext'), '');
      assert.equal(uniquePath(path.join(dir, 'noext')), path.join(dir, 'noext-1'));
    });
  });
});
