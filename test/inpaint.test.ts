// Inpainting: mask preparation against diffusers' VaeImageProcessor and A1111's OpenCV blur, whole
// runs against diffusers' StableDiffusionInpaintPipeline on the tiny checkpoints
// (scripts/make_inpaint_fixture.py, scripts/make_mask_blur_fixture.py), A1111's "Only masked" and
// overlay, and the errors.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import sharp from 'sharp';
import * as sd from '../lib';
import { prepareInpaint } from '../lib/generate/inpaint';
import { resolveOptions, type GenerateOptions } from '../lib/generate/options';
import { crop, fit, overlay } from '../lib/image/fit';
import { decodeRgb, toImageData, type RgbImage } from '../lib/image/io';
import { resizeLanczos } from '../lib/image/lanczos';
import { blurMask, cropRegion, greyToRgb, toGrey } from '../lib/image/mask';
import { readPngText } from '../lib/image/png';
import { CLIPTokenizer } from '../lib/text/clip-tokenizer';
import { fixture, relErrTensor as relErr } from './helpers';
import { tinyCheckpoint, tinyInpaintCheckpoint } from './tiny';

interface Run {
  channels: 4 | 9;
  sampler: string;
  strength: number;
  steps: number;
  batchSize: number;
  seed: number;
  shape: number[];
  latents: string;
}
const ref = JSON.parse(fs.readFileSync(fixture('inpaint', 'reference.json'), 'utf8')) as {
  height: number; width: number; promptIds: number[]; maskBits: string; maskedImage: string; latentMask: string; runs: Run[];
};
const blurRef = JSON.parse(fs.readFileSync(fixture('inpaint', 'blur-reference.json'), 'utf8')) as { width: number; height: number; blurred: Record<string, string> };
const imagePath = fixture('inpaint', 'image.png');
const maskPath = fixture('inpaint', 'mask.png');
const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64'));
const floats = (b64: string) => {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};
const whole = { mask: maskPath, maskBlur: 0, area: 'whole', padding: 32 } as const;

async function pngPixels(png: Buffer): Promise<RgbImage> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height };
}

describe('inpainting masks against diffusers and A1111', function () {
  it("a mask of another size: resized and binarized as diffusers' VaeImageProcessor, masked image and latent mask as the pipeline", async function () {
    const inputs = await prepareInpaint(imagePath, whole, {}, 512);
    assert.deepEqual(inputs.size, { width: ref.width, height: ref.height });
    assert.deepEqual([...inputs.bits], [...bytes(ref.maskBits)]);
    assert.ok(inputs.bits.includes(0) && inputs.bits.includes(1));
    const masked = inputs.masked();
    assert.deepEqual(masked.shape, [1, 3, ref.height, ref.width]);
    assert.deepEqual([...(masked.toArray() as Float32Array)], [...floats(ref.maskedImage)]);
    const latent = inputs.latentMask(2);
    assert.deepEqual(latent.shape, [1, 1, ref.height / 2, ref.width / 2]);
    assert.deepEqual([...(latent.toArray() as Float32Array)], [...bytes(ref.latentMask)]);
  });

  for (const r of Object.keys(blurRef.blurred)) {
    it(`mask blur ${r}: OpenCV's GaussianBlur as A1111 calls it, bit for bit`, async function () {
      const grey = toGrey(await decodeRgb(maskPath));
      assert.equal(grey.width, blurRef.width);
      const ours = blurMask(grey, Number(r));
      assert.deepEqual([...ours.data], [...bytes(blurRef.blurred[r]!)]);
    });
  }

  it("A1111's crop region: padded bounding box grown to the processing ratio, kept inside the image", function () {
    // masking.py's docstring example: a 128x32 mask region processed at 512x512 becomes 128x128
    assert.deepEqual(cropRegion({ x1: 100, y1: 200, x2: 228, y2: 232 }, 0, { width: 512, height: 512 }, { width: 1024, height: 1024 }), { x1: 100, y1: 152, x2: 228, y2: 280 });
    // padding, then shifted back inside at the top edge
    assert.deepEqual(cropRegion({ x1: 10, y1: 2, x2: 50, y2: 12 }, 4, { width: 64, height: 64 }, { width: 100, height: 100 }), { x1: 6, y1: 0, x2: 54, y2: 48 });
    // an image too small for the ratio: cut to the image
    assert.deepEqual(cropRegion({ x1: 0, y1: 0, x2: 40, y2: 10 }, 0, { width: 64, height: 128 }, { width: 40, height: 30 }), { x1: 0, y1: 0, x2: 40, y2: 30 });
  });

  it("A1111's resize modes keep the requested size; the overlay keeps the original where the mask is 0", function () {
    const img = { data: Uint8Array.from({ length: 30 * 20 * 3 }, (_, i) => (i * 7) % 256), width: 30, height: 20 };
    for (const mode of ['crop', 'fill'] as const) {
      const out = fit(img, 16, 24, mode);
      assert.deepEqual([out.width, out.height], [16, 24]);
    }
    const gen = { data: new Uint8Array(30 * 20 * 3).fill(9), width: 30, height: 20 };
    const mask = { data: Uint8Array.from({ length: 30 * 20 }, (_, i) => (i % 3 === 0 ? 0 : i % 3 === 1 ? 255 : 128)), width: 30, height: 20 };
    const out = overlay(gen, img, mask);
    for (let i = 0; i < 30 * 20; i++) {
      for (let c = 0; c < 3; c++) {
        const want = mask.data[i] === 0 ? img.data[3 * i + c] : mask.data[i] === 255 ? 9 : Math.round((img.data[3 * i + c]! * 127 + 9 * 128) / 255);
        assert.ok(Math.abs(out.data[3 * i + c]! - want!) <= (mask.data[i] === 128 ? 1 : 0), `pixel ${i}`);
      }
    }
    assert.deepEqual(crop(img, { x1: 0, y1: 0, x2: 30, y2: 20 }).data, img.data);
  });
});

describe('generate() inpainting equals diffusers (tiny checkpoints)', function () {
  const prompt = { prompt: 'a cat', negativePrompt: '', cfgScale: 7.5, image: imagePath, mask: maskPath, decode: false } as const;

  it('the prompt is the one the reference encoded', function () {
    assert.deepEqual(CLIPTokenizer.load().encodeIds(['a cat'])[0]!.slice(0, 4), ref.promptIds);
  });

  describe('4-channel UNet: masked img2img', function () {
    let pipe: sd.Pipeline;
    before(async function () {
      pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    });
    after(() => pipe?.dispose());
    for (const r of ref.runs.filter((k) => k.channels === 4)) {
      it(`${r.sampler}, strength ${r.strength}, ${r.steps} steps, batch ${r.batchSize}: final latents within 1e-4`, async function () {
        const res = await pipe.generate({ ...prompt, sampler: r.sampler, steps: r.steps, strength: r.strength, batchSize: r.batchSize, seed: r.seed });
        const err = relErr(res.latents, sd.Tensor.from(floats(r.latents), r.shape));
        assert.ok(err < 1e-4, `relative error ${err}`);
      });
    }
  });

  describe('9-channel UNet: mask and masked-image latents as extra input', function () {
    let pipe: sd.Pipeline | undefined;
    before(async function () {
      pipe = await sd.loadPipeline(await tinyInpaintCheckpoint(), { device: 'cpu' });
      assert.equal(pipe.family.name, 'tiny-inpaint');
    });
    after(() => pipe?.dispose());
    for (const r of ref.runs.filter((k) => k.channels === 9)) {
      it(`${r.sampler}, strength ${r.strength}, ${r.steps} steps, batch ${r.batchSize}: final latents within 1e-4`, async function () {
        assert.equal(pipe!.family.unetInChannels, 9);
        const res = await pipe!.generate({ ...prompt, sampler: r.sampler, steps: r.steps, strength: r.strength, batchSize: r.batchSize, seed: r.seed });
        const err = relErr(res.latents, sd.Tensor.from(floats(r.latents), r.shape));
        assert.ok(err < 1e-4, `relative error ${err}`);
      });
    }
    it('without a mask: a clear error before any work', async function () {
      await assert.rejects(pipe!.generate({ prompt: 'a cat', width: 16, height: 16, steps: 2 }), /inpainting model.*pass image and mask/);
    });
  });
});

describe('generate() inpainting behaviour (tiny model)', function () {
  let pipe: sd.Pipeline;
  let original: RgbImage;
  before(async function () {
    pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    original = await decodeRgb(imagePath);
  });
  after(() => pipe?.dispose());
  const base = { prompt: 'a cat', steps: 3, seed: 7, image: imagePath, mask: maskPath } as const;

  it('whole: the final latents outside the mask are the image latents; original pixels outside the mask, decoded ones inside; infotext as A1111', async function () {
    const res = await pipe.generate({ ...base, maskBlur: 2 });
    // The image latents: the first draw of the seed's generator (diffusers' order), as latents.ts samples the posterior.
    const inputs = await prepareInpaint(imagePath, { ...whole, maskBlur: 2 }, {}, 512);
    const [mean, logvar] = (await pipe.vae.encode(inputs.image)).chunk(2, 1);
    const z = mean!.add(logvar!.mul(0.5).exp().mul(new sd.Generator(7).randn(mean!.shape))).mul(pipe.family.latentScale);
    const m = inputs.latentMask(pipe.vaeScale).toArray() as Float32Array;
    const lat = res.latents.toArray() as Float32Array;
    const img = z.toArray() as Float32Array;
    const plane = m.length;
    let outside = 0;
    for (let c = 0; c < 4; c++) {
      for (let i = 0; i < plane; i++) {
        if (m[i] !== 0) continue;
        outside++;
        assert.equal(lat[c * plane + i], img[c * plane + i], `latent ${c}/${i}`);
      }
    }
    assert.ok(outside > 50);

    const got = await pngPixels(res.images[0]!);
    const gen = toImageData(await pipe.decode(res.latents))[0]!;
    const soft = resizeLanczos(greyToRgb(blurMask(toGrey(await decodeRgb(maskPath)), 2)), got.width, got.height);
    let kept = 0;
    let repainted = 0;
    for (let i = 0; i < got.width * got.height; i++) {
      const mm = Math.min(2 * soft.data[3 * i]!, 255);
      for (let c = 0; c < 3; c++) {
        if (mm === 0) assert.equal(got.data[3 * i + c], original.data[3 * i + c], `kept pixel ${i}`);
        if (mm === 255) assert.equal(got.data[3 * i + c], gen.data[3 * i + c], `repainted pixel ${i}`);
      }
      kept += mm === 0 ? 1 : 0;
      repainted += mm === 255 ? 1 : 0;
    }
    assert.ok(kept > 100 && repainted > 20, `${kept} kept, ${repainted} repainted`);
    const text = readPngText(res.images[0]!).parameters!;
    assert.match(text, /Denoising strength: 1, Mask blur: 2/);
    assert.doesNotMatch(text, /Inpaint area/);
  });

  it("masked ('Only masked'): the output has the input's size, pixels outside the mask unchanged", async function () {
    // an odd-sized input (no rounding to multiples of 8 in this mode)
    const odd = await sharp(imagePath).extract({ left: 0, top: 0, width: 45, height: 30 }).png().toBuffer();
    const oddOriginal = await decodeRgb(odd);
    const res = await pipe.generate({ ...base, image: odd, inpaintArea: 'masked', inpaintPadding: 4, width: 16, height: 16, decode: true });
    assert.deepEqual(res.latents.shape, [1, 4, 8, 8]);
    const got = await pngPixels(res.images[0]!);
    assert.deepEqual([got.width, got.height], [45, 30]);
    const soft = toGrey(resizeLanczos(await decodeRgb(maskPath), 45, 30));
    let kept = 0;
    let changed = 0;
    for (let i = 0; i < 45 * 30; i++) {
      for (let c = 0; c < 3; c++) if (soft.data[i] === 0) assert.equal(got.data[3 * i + c], oddOriginal.data[3 * i + c], `pixel ${i}`);
      kept += soft.data[i] === 0 ? 1 : 0;
      changed += soft.data[i] === 255 && got.data[3 * i] !== oddOriginal.data[3 * i] ? 1 : 0;
    }
    assert.ok(kept > 100 && changed > 10, `${kept} kept, ${changed} changed`);
    assert.match(readPngText(res.images[0]!).parameters!, /Size: 16x16, .*Denoising strength: 1, Inpaint area: Only masked, Masked area padding: 4/);
  });

  it('an all-white mask repaints everything; 4-channel at strength 1 ignores the image', async function () {
    const white = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ffffff' } }).png().toBuffer();
    const res = await pipe.generate({ ...base, mask: white, decode: false });
    assert.deepEqual(res.latents.shape, [1, 4, 16, 24]);
  });

  it('refuses bad inpainting options with what to do, before any work', async function () {
    const black = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000000' } }).png().toBuffer();
    await assert.rejects(pipe.generate({ ...base, mask: black }), /no pixel of 50% grey or more.*nothing to repaint/);
    await assert.rejects(pipe.generate({ ...base, mask: black, inpaintArea: 'masked' }), /nothing to repaint/);
    const options: Array<[Partial<GenerateOptions>, RegExp]> = [
      [{ image: undefined }, /mask needs the image to inpaint: pass image too/],
      [{ mask: 42 as unknown as string }, /mask must be a file path or the bytes of an image/],
      [{ maskBlur: -1 }, /maskBlur must be a whole number of pixels from 0/],
      [{ maskBlur: 1.5 }, /maskBlur must be a whole number/],
      [{ inpaintArea: 'all' as 'whole' }, /inpaintArea must be 'whole' or 'masked'/],
      [{ inpaintPadding: 8 }, /inpaintPadding applies to inpaintArea 'masked' only/],
      [{ mask: undefined, maskBlur: 4 }, /maskBlur applies to inpainting only: pass mask/],
      [{ mask: undefined, inpaintArea: 'masked', inpaintPadding: 2 }, /inpaintArea, inpaintPadding apply to inpainting only/],
      [{ rescaleCfg: 1.5 }, /rescaleCfg must be a number from 0 \(off\) to 1/],
      [{ timestepSpacing: 'even' as 'leading' }, /timestepSpacing must be 'leading', 'linspace', 'trailing'/],
      [{ zeroTerminalSnr: 'yes' as unknown as boolean }, /zeroTerminalSnr must be true or false/],
    ];
    for (const [o, re] of options) assert.throws(() => resolveOptions({ ...base, ...o } as GenerateOptions), re, JSON.stringify(o));
    // the documented defaults are accepted where they do not apply (they change nothing)
    assert.equal(resolveOptions({ prompt: 'a', maskBlur: 0, inpaintArea: 'whole', inpaintPadding: 32 }).inpaint, undefined);
    assert.deepEqual(resolveOptions({ ...base, inpaintPadding: 32 }).inpaint, resolveOptions(base).inpaint);
    assert.throws(() => resolveOptions({ ...base, inpaintArea: 'whole', inpaintPadding: 8 }), /inpaintPadding applies to inpaintArea 'masked' only: pass inpaintArea: 'masked' too, or leave inpaintPadding out/);
    // with a mask, strength defaults to diffusers' inpainting 1; img2img keeps 0.8
    assert.equal(resolveOptions(base).strength, 1);
    assert.equal(resolveOptions({ ...base, mask: undefined }).strength, 0.8);
    // a 9-channel checkpoint needs its mask; an epsilon model cannot start at zero SNR
    assert.throws(() => resolveOptions({ prompt: 'a' }, { prediction: 'epsilon', unetInChannels: 9, latentChannels: 4 }), /inpainting model \(its UNet takes 9 input channels\): pass image and mask/);
    assert.throws(() => resolveOptions({ prompt: 'a', sampler: 'ddim', zeroTerminalSnr: true, timestepSpacing: 'trailing' }, { prediction: 'epsilon', unetInChannels: 4, latentChannels: 4 }), /generate\(\): sampler 'ddim' with zero terminal SNR starts at ᾱ = 0/);
    resolveOptions({ prompt: 'a', sampler: 'ddim', zeroTerminalSnr: true, timestepSpacing: 'trailing' }, { prediction: 'v', unetInChannels: 4, latentChannels: 4 });
  });
});
