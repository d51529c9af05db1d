// A real A1111 client against `sdtorch serve`: the npm package a1111-webui-api ("Typescript client
// for Automatic1111 Stable Diffusion WebUI", axios + sharp), used as it is published, on the tiny
// random model: txt2img, img2img with a mask (the answer keeps the original pixels outside it),
// samplers / sd-models / options / model switching, progress while a job runs and when idle,
// png-info, and basic auth. Its `sharp` dependency is the project's (package.json `overrides`):
// the pinned sharp 0.32.6 downloads libvips from GitHub when installed.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import StableDiffusionApi from 'a1111-webui-api';
import { readPngText } from '../lib/image/png';
import { startServer, type Server } from '../lib/server/serve';
import { tmpDir } from './helpers';
import { assertOverlay, INPAINT } from './inpaint-pattern';
import { tinyCheckpoint } from './tiny';

const SMALL = { width: 32, height: 32, steps: 3 };

/** The port of a server's http://host:port address. */
const portOf = (url: string) => Number(new URL(url).port);

describe('the npm A1111 client a1111-webui-api against sdtorch serve (tiny model)', function () {
  let server: Server;
  let api: StableDiffusionApi;
  let dirs: { dir: string; cleanup: () => void };

  before(async function () {
    dirs = tmpDir('sdtorch-a1111-npm-');
    const models = path.join(dirs.dir, 'models');
    fs.mkdirSync(path.join(models, 'Stable-diffusion', 'sub'), { recursive: true });
    const tiny = await tinyCheckpoint();
    fs.copyFileSync(tiny, path.join(models, 'Stable-diffusion', 'tiny-a.safetensors'));
    fs.copyFileSync(tiny, path.join(models, 'Stable-diffusion', 'sub', 'tiny-b.safetensors'));
    server = await startServer({ models, port: 0, device: 'cpu' });
    await server.models.hashing;
    // As its README constructs it: the web UI's root URL (it adds /sdapi/v1/...).
    api = new StableDiffusionApi({ baseUrl: server.url, defaultSampler: 'Euler a', defaultStepCount: 3 });
  });

  after(async function () {
    await server?.close(1000);
    dirs?.cleanup();
  });

  it('getSamplers, getSdModels, getOptions / setOptions, setModel and getCurrentModel; host and port construction', async function () {
    const samplers = await api.getSamplers();
    for (const name of ['Euler a', 'Euler', 'DPM++ 2M', 'DDIM']) assert.ok(samplers.some((s) => s.name === name), name);
    for (const s of samplers) assert.ok(Array.isArray(s.aliases) && typeof s.options === 'object', JSON.stringify(s));
    const models = await api.getSdModels();
    assert.deepEqual(models.map((m) => m.model_name).sort(), ['sub_tiny-b', 'tiny-a']);
    for (const m of models) {
      assert.match(m.title, / \[[0-9a-f]{10}\]$/);
      assert.equal(m.hash, m.sha256.slice(0, 10));
      assert.ok(path.isAbsolute(m.filename));
    }
    const options = await api.getOptions();
    for (const key of ['sd_model_checkpoint', 'sd_vae', 'CLIP_stop_at_last_layers', 'show_progress_every_n_steps']) assert.ok(key in options, key);
    // setModel sends {sd_model_checkpoint: model_name}; getCurrentModel reads it back from the options.
    await api.setModel('sub_tiny-b');
    const b = models.find((m) => m.model_name === 'sub_tiny-b')!;
    assert.equal(await api.getCurrentModel(), b.title);
    const r = await api.txt2img({ prompt: 'on b', seed: 1, ...SMALL });
    assert.equal(JSON.parse(r.info).sd_model_name, 'tiny-b');
    await assert.rejects(api.setModel('no such model', false), /Model not found/);
    // refreshCheckpoints posts no body with Content-Type: application/json (A1111 takes it).
    await api.refreshCheckpoints();
    assert.equal((await api.getSdModels()).length, 2);
    // Lists of what sdtorch has none of: empty, as A1111 without them.
    assert.deepEqual([await api.getPromptStyles(), await api.getHypernetworks(), await api.getFaceRestorers(), await api.getRealesrganModels()], [[], [], [], []]);
    assert.deepEqual((await api.getUpscalers()).map((u) => u.name), ['None', 'Lanczos']);
    const a = models.find((m) => m.model_name === 'tiny-a')!;
    await api.setOptions({ sd_model_checkpoint: a.title });
    // The other way to construct it, as its README shows.
    const byHost = new StableDiffusionApi({ host: '127.0.0.1', port: portOf(server.url), protocol: 'http' });
    assert.equal(await byHost.getCurrentModel(), a.title);
  });

  it('txt2img with every default field the client sends: sharp images, A1111 info and parameters', async function () {
    const r = await api.txt2img({ prompt: 'a red car', negative_prompt: 'blurry', seed: 11, batch_size: 2, ...SMALL });
    assert.equal(r.images.length, 2);
    for (const image of r.images) {
      const meta = await image.metadata();
      assert.deepEqual([meta.format, meta.width, meta.height], ['png', 32, 32]);
    }
    assert.equal(typeof r.info, 'string'); // the client hands A1111's info string through
    const info = JSON.parse(r.info) as Record<string, unknown>;
    assert.equal(info['seed'], 11);
    assert.equal(info['sampler_name'], 'Euler a');
    assert.equal(info['negative_prompt'], 'blurry');
    assert.equal(info['sd_model_name'], 'tiny-a');
    assert.match((info['infotexts'] as string[])[0]!, /^a red car\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 11, Size: 32x32/);
    assert.equal(r.parameters.steps, 3);
    assert.equal(r.parameters.enable_hr, false);
    // Same request, same image.
    const again = await api.txt2img({ prompt: 'a red car', negative_prompt: 'blurry', seed: 11, batch_size: 2, ...SMALL });
    assert.ok((await again.image.raw().toBuffer()).equals(await r.image.raw().toBuffer()));
  });

  it('img2img with mask_image: the answer keeps the original pixels outside the mask (whole picture and only masked)', async function () {
    const init = await INPAINT.init();
    const mask = await INPAINT.mask();
    // mask_blur 0 (the client sends mask_blur_x/y 4 besides; mask_blur wins, as in A1111); inpaint_full_res is the client's default (true).
    for (const inpaint_full_res of [true, false]) {
      const r = await api.img2img({ init_images: [sharp(init)], mask_image: sharp(mask), mask_blur: 0, inpaint_full_res, inpaint_full_res_padding: 4, denoising_strength: 0.9, prompt: 'a dog', seed: 4, ...SMALL });
      assert.equal(r.images.length, 1);
      await assertOverlay(await r.image.png().toBuffer(), `a1111-webui-api img2img, inpaint_full_res ${inpaint_full_res}`);
      const info = JSON.parse(r.info) as { infotexts: string[]; denoising_strength: number };
      assert.equal(info.denoising_strength, 0.9);
      if (inpaint_full_res) assert.match(info.infotexts[0]!, /Inpaint area: Only masked, Masked area padding: 4/);
      else assert.doesNotMatch(info.infotexts[0]!, /Inpaint area/);
    }
    // Without a mask (the client sends mask: null): plain img2img of the whole picture.
    const plain = await api.img2img({ init_images: [sharp(init)], denoising_strength: 0.5, prompt: 'a dog', seed: 4, ...SMALL });
    assert.deepEqual([(await plain.image.metadata()).width, JSON.parse(plain.info).denoising_strength], [32, 0.5]);
  });

  it('pngInfo reads the parameters back (the client re-encodes with sharp: keepMetadata keeps the text chunk)', async function () {
    const t = await api.txt2img({ prompt: 'a blue boat', seed: 21, ...SMALL });
    const infotext = (JSON.parse(t.info).infotexts as string[])[0]!;
    assert.equal(readPngText(await t.image.clone().keepMetadata().png().toBuffer())['parameters'], infotext);
    const pi = await api.pngInfo(t.image.clone().keepMetadata());
    assert.equal(pi.info, infotext);
    assert.equal(pi.parameters.Prompt, 'a blue boat');
    assert.equal(pi.parameters.Seed, '21');
    assert.equal(pi.parameters['Size-1'], '32');
    assert.equal(pi.parameters.Sampler, 'Euler a');
    // A sharp image as the client makes it drops PNG text on re-encoding: an image without parameters, answered as A1111 does.
    const bare = await api.pngInfo(t.image.clone());
    assert.deepEqual(bare.response.data, { info: '', items: {}, parameters: {} });
  });

  it('getProgress while a job runs (steps, a preview) and when idle; interrupt through its axios instance; waitForReady', async function () {
    const idle = await api.getProgress();
    assert.deepEqual(Object.keys(idle).sort(), ['current_image', 'eta_relative', 'progress', 'state', 'textinfo']);
    for (const key of ['skipped', 'interrupted', 'job', 'job_count', 'job_timestamp', 'job_no', 'sampling_step', 'sampling_steps']) assert.ok(key in idle.state, key);
    assert.equal(idle.progress, 0);
    assert.equal(idle.state.job_count, 0);

    const run = api.txt2img({ prompt: 'a long one', seed: 1, width: 32, height: 32, steps: 150, n_iter: 3 });
    let seen: Awaited<ReturnType<StableDiffusionApi['getProgress']>> | undefined;
    for (let i = 0; i < 600 && !seen; i++) {
      const p = await api.getProgress();
      if (p.current_image && p.state.sampling_step > 0) seen = p;
      else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(seen, 'no progress with a preview');
    assert.ok(seen.progress > 0 && seen.progress <= 1, String(seen.progress));
    assert.equal(seen.state.sampling_steps, 150);
    assert.equal(seen.state.job_count, 3);
    const preview = await sharp(Buffer.from(seen.current_image, 'base64')).metadata();
    assert.equal(preview.format, 'png');
    // getProgress(true) asks ?skipCurrentImage=true, which is not A1111's query name (skip_current_image): A1111 ignores it, so does sdtorch.
    assert.ok((await api.getProgress(true)).current_image);
    // The client has no interrupt method; its axios instance (api.api, public) posts A1111's /interrupt, with no body.
    await api.api.post('/sdapi/v1/interrupt');
    const r = await run;
    assert.ok(r.images.length < 3, `${r.images.length} images`); // the iterations done before the interrupt
    assert.equal(await api.waitForReady(0.05), true);
  });
});

describe('a1111-webui-api setAuth against sdtorch serve --api-auth', function () {
  let server: Server;
  before(async function () {
    server = await startServer({ weights: await tinyCheckpoint(), port: 0, device: 'cpu', apiAuth: 'alice:s3cret' });
  });
  after(async () => server?.close(1000));

  it('is refused without the password (401) and served with it', async function () {
    const api = new StableDiffusionApi({ host: '127.0.0.1', port: portOf(server.url), defaultStepCount: 2 });
    await assert.rejects(api.getOptions(), (e: { response?: { status: number } }) => e.response?.status === 401);
    api.setAuth('alice', 's3cret');
    const r = await api.txt2img({ prompt: 'ok', ...SMALL });
    assert.equal(r.images.length, 1);
  });
});
