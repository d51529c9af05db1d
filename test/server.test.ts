// sdtorch serve, in-process queue, on the tiny random model: A1111's endpoints and field names,
// an A1111 client (webuiapi's calls), txt2img / img2img / inpainting requests, hires fix, live
// progress, interrupt, disconnects, a bounded queue under 50 concurrent requests, fuzzed input,
// auth, and graceful shutdown. Images are 32x32 with a few steps to keep it fast.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import sharp from 'sharp';
import { interpolateBilinear } from '../lib/generate/hires';
import { readPngText } from '../lib/image/png';
import { ApiError } from '../lib/server/errors';
import { resolveSamplerName } from '../lib/server/sdapi';
import { startServer, type Server } from '../lib/server/serve';
import { Tensor } from '../lib';
import { WebUIApi } from './a1111-client';
import { tmpDir } from './helpers';
import { assertOverlay, INPAINT, rgbPng } from './inpaint-pattern';
import { tinyCheckpoint, tinyInpaintCheckpoint } from './tiny';

const SMALL = { width: 32, height: 32, steps: 3 };

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: r.status, json: (await r.json().catch(() => ({}))) as Record<string, unknown> };
}

const png = (w: number, h: number, rgb: [number, number, number]) => sharp({ create: { width: w, height: h, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } }).png().toBuffer();

/** A1111's error body. */
function assertErrorShape(json: Record<string, unknown>): void {
  assert.deepEqual(Object.keys(json).sort(), ['body', 'detail', 'error', 'errors']);
}

describe('sdtorch serve (in-process, tiny model)', function () {
  let server: Server;
  let base: string;
  let client: WebUIApi;
  let dirs: { dir: string; cleanup: () => void };

  before(async function () {
    dirs = tmpDir('sdtorch-serve-');
    const models = path.join(dirs.dir, 'models');
    fs.mkdirSync(path.join(models, 'Stable-diffusion', 'sub'), { recursive: true });
    fs.mkdirSync(path.join(models, 'VAE'));
    fs.mkdirSync(path.join(models, 'Lora'));
    const tiny = await tinyCheckpoint();
    fs.copyFileSync(tiny, path.join(models, 'Stable-diffusion', 'tiny-a.safetensors'));
    fs.copyFileSync(tiny, path.join(models, 'Stable-diffusion', 'sub', 'tiny-b.safetensors'));
    fs.writeFileSync(path.join(dirs.dir, 'secret.safetensors'), 'not for requests');
    server = await startServer({ models, port: 0, device: 'cpu', maxQueue: 8, outdir: path.join(dirs.dir, 'outputs') });
    await server.models.hashing;
    base = `${server.url}/sdapi/v1`;
    client = new WebUIApi(base, undefined, 'Euler a', 3);
  });

  after(async function () {
    await server?.close(1000);
    dirs?.cleanup();
  });

  it('txt2img answers {images, parameters, info} with A1111 info keys and PNG infotext', async function () {
    const { status, json } = await post(`${base}/txt2img`, { prompt: 'a cat', negative_prompt: 'blurry', seed: 42, batch_size: 2, n_iter: 2, sampler_name: 'DPM++ 2M Karras', cfg_scale: 6.5, ...SMALL, some_unknown_field: 1 });
    assert.equal(status, 200, JSON.stringify(json));
    assert.deepEqual(Object.keys(json).sort(), ['images', 'info', 'parameters']);
    const images = json['images'] as string[];
    assert.equal(images.length, 4);
    const info = JSON.parse(json['info'] as string) as Record<string, unknown>;
    for (const key of ['prompt', 'all_prompts', 'negative_prompt', 'all_negative_prompts', 'seed', 'all_seeds', 'subseed', 'all_subseeds', 'subseed_strength', 'width', 'height', 'sampler_name', 'cfg_scale', 'steps', 'batch_size', 'restore_faces', 'face_restoration_model', 'sd_model_name', 'sd_model_hash', 'sd_vae_name', 'sd_vae_hash', 'seed_resize_from_w', 'seed_resize_from_h', 'denoising_strength', 'extra_generation_params', 'index_of_first_image', 'infotexts', 'styles', 'job_timestamp', 'clip_skip', 'is_using_inpainting_conditioning'])
      assert.ok(key in info, `info lacks ${key}`);
    assert.equal(info['seed'], 42);
    assert.deepEqual(info['all_seeds'], [42, 42, 44, 44]); // one seed per batch: seed + n·batch_size
    assert.equal(info['sampler_name'], 'DPM++ 2M Karras');
    assert.equal(info['width'], 32);
    assert.match(info['job_timestamp'] as string, /^\d{14}$/);
    const text = readPngText(Buffer.from(images[3]!, 'base64'))['parameters']!;
    assert.equal(text, (info['infotexts'] as string[])[3]);
    assert.match(text, /^a cat\nNegative prompt: blurry\nSteps: 3, Sampler: DPM\+\+ 2M Karras, CFG scale: 6.5, Seed: 44, Size: 32x32/);
    const parameters = json['parameters'] as Record<string, unknown>;
    assert.equal(parameters['steps'], 3);
    assert.equal(parameters['sampler_index'], 'Euler'); // A1111's defaults filled in
    assert.equal(parameters['send_images'], true);
  });

  it("sampler_name with A1111's scheduler, any case: every schedule type there is reaches the image; a schedule in the name wins", async function () {
    const { status, json } = await post(`${base}/txt2img`, { prompt: 'a cat', seed: 1, sampler_name: 'DPM++ SDE', scheduler: 'exponential', ...SMALL });
    assert.equal(status, 200, JSON.stringify(json));
    const info = JSON.parse(json['info'] as string) as { sampler_name: string; infotexts: string[] };
    assert.equal(info.sampler_name, 'DPM++ SDE Exponential');
    assert.match(info.infotexts[0]!, /Steps: 3, Sampler: DPM\+\+ SDE Exponential, /);
    const cases: [string, string | null, string][] = [
      ['Euler a', 'Karras', 'Euler a Karras'], ['k_dpmpp_3m_sde', 'SGM Uniform', 'DPM++ 3M SDE SGM Uniform'], ['DEIS', 'beta', 'DEIS Beta'],
      ['LCM', 'Automatic', 'LCM'], ['k_lcm', null, 'LCM'], ['DPM++ 2S a', 'KARRAS', 'DPM++ 2S a Karras'], ['DDIM', 'SGMUniform', 'DDIM SGM Uniform'],
      ['DPM++ 2M Karras', 'Exponential', 'DPM++ 2M Karras'], ['k_dpmpp_2m_ka', null, 'DPM++ 2M Karras'], ['Euler', 'sgm_uniform', 'Euler SGM Uniform'],
    ];
    for (const [name, scheduler, label] of cases) assert.equal(resolveSamplerName(name, scheduler), label, `${name} + ${scheduler}`);
    assert.throws(() => resolveSamplerName('LCM', 'Karras'), (e: ApiError) => e.statusCode === 422 && /'lcm' has no karras schedule/.test(e.message));
    assert.throws(() => resolveSamplerName('Euler', 'Align Your Steps'), (e: ApiError) => e.statusCode === 422 && /unknown schedule 'Align Your Steps'.*"SGM Uniform"/.test(e.message));
    assert.throws(() => resolveSamplerName('DPM++ 4M', 'Karras'), (e: ApiError) => e.statusCode === 404);
  });

  it('the same seed gives the same image; seed -1 a random one in A1111 range', async function () {
    const a = await post(`${base}/txt2img`, { prompt: 'x', seed: 7, ...SMALL });
    const b = await post(`${base}/txt2img`, { prompt: 'x', seed: 7, ...SMALL });
    assert.equal((a.json['images'] as string[])[0], (b.json['images'] as string[])[0]);
    const c = await post(`${base}/txt2img`, { prompt: 'x', seed: -1, ...SMALL });
    const seed = JSON.parse(c.json['info'] as string).seed as number;
    assert.ok(Number.isInteger(seed) && seed >= 0 && seed < 4294967294);
  });

  it('img2img with init image and mask (data URL and raw base64), strength and inverted mask', async function () {
    const init = await png(40, 40, [200, 30, 30]);
    const mask = await rgbPng(40, 40, (x) => (x < 20 ? [255, 255, 255] : [0, 0, 0])); // inverted: repaint the right half
    const r = await post(`${base}/img2img`, { prompt: 'a dog', init_images: [`data:image/png;base64,${init.toString('base64')}`], mask: mask.toString('base64'), mask_blur: 2, inpainting_mask_invert: 1, inpaint_full_res: false, denoising_strength: 0.5, seed: 3, ...SMALL });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const info = JSON.parse(r.json['info'] as string);
    assert.equal(info.denoising_strength, 0.5);
    assert.match(info.infotexts[0], /Denoising strength: 0.5/);
    const params = r.json['parameters'] as Record<string, unknown>;
    assert.equal(params['init_images'], null); // as A1111 without include_init_images
    assert.equal(params['mask'], null);
    const out = await sharp(Buffer.from((r.json['images'] as string[])[0]!, 'base64')).metadata();
    assert.deepEqual([out.width, out.height], [32, 32]);
  });

  it('inpainting keeps the original pixels outside the mask (A1111 overlay), whole picture and only masked', async function () {
    for (const inpaint_full_res of [false, true]) {
      const r = await post(`${base}/img2img`, { prompt: 'a dog', init_images: [(await INPAINT.init()).toString('base64')], mask: (await INPAINT.mask()).toString('base64'), mask_blur: 0, inpaint_full_res, inpaint_full_res_padding: 4, denoising_strength: 0.9, seed: 4, ...SMALL });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      await assertOverlay((r.json['images'] as string[])[0]!, `inpaint_full_res ${inpaint_full_res}`);
      const info = JSON.parse(r.json['info'] as string) as { infotexts: string[]; is_using_inpainting_conditioning: boolean };
      if (inpaint_full_res) assert.match(info.infotexts[0]!, /Inpaint area: Only masked, Masked area padding: 4/);
      else assert.doesNotMatch(info.infotexts[0]!, /Inpaint area/);
      assert.equal(info.is_using_inpainting_conditioning, false);
    }
    const init = (await INPAINT.init()).toString('base64');
    const uneven = await post(`${base}/img2img`, { prompt: 'a dog', init_images: [init], mask: (await INPAINT.mask()).toString('base64'), mask_blur_x: 4, mask_blur_y: 2, ...SMALL });
    assert.equal(uneven.status, 422);
    assert.match(String(uneven.json['detail']), /mask_blur_x \(4\) and mask_blur_y \(2\) differ/);
    const nothing = await post(`${base}/img2img`, { prompt: 'a dog', init_images: [init], mask: (await png(32, 32, [0, 0, 0])).toString('base64'), ...SMALL });
    assert.equal(nothing.status, 422);
    assert.match(String(nothing.json['detail']), /nothing to repaint/);
  });

  it('a 9-channel inpainting checkpoint: the mask reaches its UNet, the overlay keeps the rest; txt2img is refused', async function () {
    const inpainting = await startServer({ weights: await tinyInpaintCheckpoint(), port: 0, device: 'cpu' });
    try {
      const url = `${inpainting.url}/sdapi/v1`;
      const r = await post(`${url}/img2img`, { prompt: 'a dog', init_images: [(await INPAINT.init()).toString('base64')], mask: (await INPAINT.mask()).toString('base64'), mask_blur: 0, inpaint_full_res: false, denoising_strength: 1, seed: 4, ...SMALL });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      await assertOverlay((r.json['images'] as string[])[0]!, '9-channel');
      assert.equal(JSON.parse(r.json['info'] as string).is_using_inpainting_conditioning, true);
      const t = await post(`${url}/txt2img`, { prompt: 'a dog', ...SMALL });
      assert.equal(t.status, 422);
      assert.match(String(t.json['detail']), /inpainting model/);
    } finally {
      await inpainting.close(1000);
    }
  });

  it('hires fix: latent and Lanczos upscalers double the size and write A1111 hires keys', async function () {
    for (const upscaler of ['Latent', 'Lanczos']) {
      const r = await post(`${base}/txt2img`, { prompt: 'a cat', seed: 5, enable_hr: true, hr_scale: 2, hr_upscaler: upscaler, hr_second_pass_steps: 2, denoising_strength: 0.6, width: 16, height: 16, steps: 2 });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      const meta = await sharp(Buffer.from((r.json['images'] as string[])[0]!, 'base64')).metadata();
      assert.deepEqual([meta.width, meta.height], [32, 32]);
      const text = JSON.parse(r.json['info'] as string).infotexts[0] as string;
      assert.match(text, new RegExp(`Size: 16x16, .*Denoising strength: 0.6, Hires upscale: 2, Hires steps: 2, Hires upscaler: ${upscaler}`));
    }
    const bad = await post(`${base}/txt2img`, { prompt: 'a cat', enable_hr: true, hr_upscaler: 'R-ESRGAN 4x+', ...SMALL });
    assert.equal(bad.status, 422);
  });

  it('interpolateBilinear is torch.nn.functional.interpolate(bilinear, align_corners=False)', function () {
    // torch.nn.functional.interpolate(torch.arange(4.).reshape(1,1,2,2), size=(3,4), mode="bilinear")
    const x = Tensor.from(new Float32Array([0, 1, 2, 3]), [1, 1, 2, 2]);
    const y = Array.from(interpolateBilinear(x, 3, 4).toArray() as Float32Array);
    const want = [0, 0.25, 0.75, 1, 1, 1.25, 1.75, 2, 2, 2.25, 2.75, 3];
    y.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-6, `${i}: ${v} vs ${want[i]}`));
  });

  it('lists: samplers, schedulers, sd-models (title "name [hash]"), sd-vae, loras, embeddings, options, upscalers', async function () {
    const samplers = await client.get_samplers();
    assert.ok(samplers.some((s) => s.name === 'Euler a' && s.aliases.includes('k_euler_a')));
    for (const s of samplers) assert.deepEqual(Object.keys(s).sort(), ['aliases', 'name', 'options']);
    const schedulers = await client.get<{ name: string; label: string }[]>('schedulers');
    assert.deepEqual(schedulers.map((s) => [s.name, s.label]), [['automatic', 'Automatic'], ['karras', 'Karras'], ['exponential', 'Exponential'], ['sgm_uniform', 'SGM Uniform'], ['beta', 'Beta']]);
    for (const name of ['DPM++ SDE', 'DPM++ 2S a', 'DPM++ 3M SDE', 'DEIS', 'LCM']) assert.ok(samplers.some((s) => s.name === name), name);
    for (const s of schedulers) assert.deepEqual(Object.keys(s).sort(), ['aliases', 'default_rho', 'label', 'name', 'need_inner_model']);
    const models = await client.get_sd_models();
    assert.deepEqual(models.map((m) => m.title.replace(/ \[[0-9a-f]{10}\]$/, '')).sort(), ['sub/tiny-b.safetensors', 'tiny-a.safetensors']);
    for (const m of models) {
      assert.deepEqual(Object.keys(m).sort(), ['config', 'filename', 'hash', 'model_name', 'sha256', 'title']);
      assert.match(m.title, / \[[0-9a-f]{10}\]$/);
      assert.equal(m.hash, m.sha256!.slice(0, 10));
    }
    assert.ok(models.some((m) => m.model_name === 'sub_tiny-b'));
    assert.deepEqual(await client.get_sd_vae(), []);
    assert.deepEqual(await client.get('loras'), []);
    const emb = await client.get_embeddings();
    assert.deepEqual(Object.keys(emb).sort(), ['loaded', 'skipped']);
    const options = await client.get_options();
    for (const key of ['sd_model_checkpoint', 'sd_vae', 'CLIP_stop_at_last_layers', 'show_progress_every_n_steps']) assert.ok(key in options, key);
    const up = await client.get<{ name: string }[]>('upscalers');
    assert.deepEqual(up.map((u) => u.name), ['None', 'Lanczos']);
  });

  it('switches checkpoints by options and by override_settings.sd_model_checkpoint; unknown names are refused', async function () {
    const models = await client.get_sd_models();
    const b = models.find((m) => m.title.startsWith('sub/'))!;
    await client.util_set_model('sub/tiny-b');
    assert.equal(await client.util_get_current_model(), b.title);
    const r = await client.txt2img({ prompt: 'a', ...SMALL });
    assert.equal(r.info['sd_model_name'], 'tiny-b');
    const a = await client.txt2img({ prompt: 'a', ...SMALL, override_settings: { sd_model_checkpoint: 'tiny-a' } });
    assert.equal(a.info['sd_model_name'], 'tiny-a');
    const missing = await post(`${base}/txt2img`, { prompt: 'a', ...SMALL, override_settings: { sd_model_checkpoint: '../secret.safetensors' } });
    assert.equal(missing.status, 404);
    assertErrorShape(missing.json);
    const opt = await post(`${base}/options`, { sd_model_checkpoint: '../secret' });
    assert.equal(opt.status, 422);
    const vae = await post(`${base}/txt2img`, { prompt: 'a', ...SMALL, override_settings: { sd_vae: '../../secret.safetensors' } });
    assert.equal(vae.status, 404);
    const lora = await post(`${base}/txt2img`, { prompt: 'a <lora:../../secret:1>', ...SMALL });
    assert.equal(lora.status, 422);
    await client.set_options({ sd_model_checkpoint: models.find((m) => m.title.startsWith('tiny-a'))!.title });
  });

  it('an A1111 client (webuiapi calls): txt2img, img2img with mask, png-info, progress when idle', async function () {
    const t = await client.txt2img({ prompt: 'a red car', seed: 11, ...SMALL });
    assert.equal(t.images.length, 1);
    assert.equal(t.info['seed'], 11);
    const i = await client.img2img({ images: [t.images[0]!], mask_image: await png(32, 32, [255, 255, 255]), prompt: 'a blue car', seed: 12, ...SMALL });
    assert.equal(i.images.length, 1);
    assert.equal(i.info['all_seeds'] instanceof Array, true);
    const pi = await client.png_info(t.images[0]!);
    assert.equal(pi.info, (t.info['infotexts'] as string[])[0]);
    assert.equal(pi.parameters['Prompt'], 'a red car');
    assert.equal(pi.parameters['Seed'], '11');
    assert.equal(pi.parameters['Size-1'], '32');
    const idle = await client.get_progress();
    assert.deepEqual(Object.keys(idle).sort(), ['current_image', 'eta_relative', 'progress', 'state', 'textinfo']);
    for (const key of ['skipped', 'interrupted', 'job', 'job_count', 'job_timestamp', 'job_no', 'sampling_step', 'sampling_steps']) assert.ok(key in idle.state, key);
    assert.equal(idle.progress, 0);
    await client.util_wait_for_ready();
  });

  it('progress while a job runs: 0..1, steps, a preview PNG; interrupt answers with what is done, and the server goes on', async function () {
    const run = post(`${base}/txt2img`, { prompt: 'a long one', seed: 1, width: 32, height: 32, steps: 150, n_iter: 3 });
    let seen: Awaited<ReturnType<WebUIApi['get_progress']>> | undefined;
    for (let i = 0; i < 600 && !seen; i++) {
      const p = await client.get_progress();
      if (p.current_image && (p.state['sampling_step'] as number) > 0) seen = p;
      else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(seen, 'no progress with a preview');
    assert.ok(seen.progress > 0 && seen.progress <= 1);
    assert.equal(seen.state['sampling_steps'], 150);
    assert.equal(seen.state['job_count'], 3);
    const preview = await sharp(Buffer.from(seen.current_image!, 'base64')).metadata();
    assert.deepEqual([preview.format, preview.width], ['png', 16]); // one pixel per latent cell
    await client.interrupt();
    const r = await run;
    assert.equal(r.status, 200);
    assert.ok((r.json['images'] as string[]).length < 3);
    const after = await post(`${base}/txt2img`, { prompt: 'after', ...SMALL });
    assert.equal(after.status, 200);
  });

  it('a client that disconnects takes its queued job off the queue', async function () {
    const long = post(`${base}/txt2img`, { prompt: 'blocker', width: 32, height: 32, steps: 120 });
    await new Promise((r) => setTimeout(r, 300));
    // A raw request, destroyed while its job waits.
    await new Promise<void>((resolve) => {
      const body = JSON.stringify({ prompt: 'gone', ...SMALL });
      const req = http.request(`${base}/txt2img`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
      req.on('error', () => resolve());
      req.end(body);
      setTimeout(async () => {
        assert.equal((await server.queue.state()).waiting, 1);
        req.destroy();
        setTimeout(resolve, 200);
      }, 300);
    });
    assert.equal((await server.queue.state()).waiting, 0);
    await client.interrupt();
    assert.equal((await long).status, 200);
  });

  it('50 concurrent requests: a bounded queue (503 past it), every accepted one answered once with its own image', async function () {
    this.timeout(600_000);
    const n = 50;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => post(`${base}/txt2img`, { prompt: `request ${i}`, seed: 1000 + i, width: 16, height: 16, steps: 1 })));
    const statuses = results.map((r) => r.status);
    assert.ok(statuses.every((s) => s === 200 || s === 503), statuses.join());
    const ok = results.map((r, i) => ({ r, i })).filter(({ r }) => r.status === 200);
    assert.ok(ok.length >= 9 && ok.length < n, `${ok.length} accepted`); // 1 running + 8 waiting at least
    for (const { r, i } of ok) {
      const info = JSON.parse(r.json['info'] as string);
      assert.equal(info.prompt, `request ${i}`);
      assert.equal(info.seed, 1000 + i);
    }
    for (const r of results.filter((x) => x.status === 503)) assertErrorShape(r.json);
    assert.equal(new Set(ok.map(({ r }) => (r.json['images'] as string[])[0])).size, ok.length);
    assert.deepEqual(await server.queue.state(), { waiting: 0, running: 0, interrupted: false, skipped: false });
  });

  it('fuzz: broken base64, huge sizes, negative steps, wrong types, bad JSON, oversized bodies -> 4xx, never a 500', async function () {
    const init = (await png(16, 16, [0, 0, 0])).toString('base64');
    const cases: [string, unknown][] = [
      ['txt2img', { steps: -3 }], ['txt2img', { steps: 'many' }], ['txt2img', { width: 100000 }], ['txt2img', { height: -8 }],
      ['txt2img', { batch_size: 1000 }], ['txt2img', { batch_size: 16, n_iter: 16 }], ['txt2img', { cfg_scale: 'x' }], ['txt2img', { seed: -5 }],
      ['txt2img', { prompt: { nested: true } }], ['txt2img', { sampler_name: 'no such sampler' }], ['txt2img', { scheduler: 'Polyexponential' }],
      ['txt2img', { sampler_name: 'LCM', scheduler: 'Karras' }],
      ['txt2img', { prompt: 'nul \u0000 inside', ...SMALL }], ['txt2img', { override_settings: { CLIP_stop_at_last_layers: 99 } }],
      ['txt2img', { script_name: 'x/y/z plot' }], ['txt2img', { alwayson_scripts: { ControlNet: { args: [] } } }],
      ['txt2img', [1, 2, 3]], ['txt2img', 'null'], ['txt2img', '{"prompt": '], ['txt2img', ''],
      ['img2img', { prompt: 'a' }], ['img2img', { init_images: ['!!!not base64!!!'] }], ['img2img', { init_images: ['aGVsbG8='] }],
      ['img2img', { init_images: [init], mask: 'AAAA' }], ['img2img', { init_images: [7] }], ['img2img', { init_images: [init], denoising_strength: 2 }],
      ['img2img', { init_images: [init], denoising_strength: 0.01, steps: 3 }], ['img2img', { init_images: ['http://127.0.0.1/x.png'] }],
      ['png-info', { image: 'garbage' }], ['png-info', {}], ['options', { sd_model_checkpoint: 7 }], ['options', { CLIP_stop_at_last_layers: -1 }],
    ];
    for (const [route, body] of cases) {
      const r = await post(`${base}/${route}`, body);
      assert.ok(r.status >= 400 && r.status < 500, `${route} ${JSON.stringify(body)} -> ${r.status} ${JSON.stringify(r.json)}`);
      assertErrorShape(r.json);
    }
    const huge = await post(`${base}/img2img`, { init_images: ['A'.repeat(70 << 20)] });
    assert.equal(huge.status, 413);
    assertErrorShape(huge.json);
    const text = await fetch(`${base}/txt2img`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
    assert.equal(text.status, 422); // a text body is not the object the schema wants
    const bigImage = await sharp({ create: { width: 5000, height: 8, channels: 3, background: 'black' } }).png().toBuffer();
    assert.equal((await post(`${base}/img2img`, { init_images: [bigImage.toString('base64')] })).status, 422);
    assert.equal((await fetch(`${base}/no-such-route`)).status, 404);
    assert.equal((await post(`${base}/txt2img`, { prompt: 'still alive', ...SMALL })).status, 200);
  });

  it('save_images writes PNGs under --outdir; send_images false answers without images', async function () {
    const r = await post(`${base}/txt2img`, { prompt: 'kept', seed: 99, save_images: true, send_images: false, ...SMALL });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json['images'], []);
    const dir = path.join(dirs.dir, 'outputs', 'txt2img-images');
    const day = fs.readdirSync(dir)[0]!;
    assert.ok(fs.readdirSync(path.join(dir, day)).includes('99.png'));
  });

  it('serves the page at / and OpenAPI at /docs', async function () {
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<title>sdtorch<\/title>/);
    const docs = await fetch(`${server.url}/docs/json`);
    const spec = (await docs.json()) as { paths: Record<string, unknown> };
    assert.ok('/sdapi/v1/txt2img' in spec.paths && '/sdapi/v1/img2img' in spec.paths);
  });

  it('graceful shutdown: the running job is answered, waiting ones get 503, then the port closes', async function () {
    const running = post(`${base}/txt2img`, { prompt: 'last', width: 32, height: 32, steps: 40 });
    await new Promise((r) => setTimeout(r, 300));
    const waiting = post(`${base}/txt2img`, { prompt: 'too late', ...SMALL });
    await new Promise((r) => setTimeout(r, 200));
    await server.close(60_000);
    assert.equal((await running).status, 200);
    assert.equal((await waiting).status, 503);
    await assert.rejects(fetch(`${base}/options`));
  });
});

describe('sdtorch serve --api-auth and --cors', function () {
  let server: Server;
  before(async function () {
    server = await startServer({ weights: await tinyCheckpoint(), port: 0, device: 'cpu', apiAuth: 'alice:s3cret', cors: 'http://example.test' });
  });
  after(async () => server?.close(1000));

  it('refuses requests without the password, in A1111 shape; takes the right one', async function () {
    const none = await fetch(`${server.url}/sdapi/v1/options`);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Basic/);
    const wrong = await fetch(`${server.url}/sdapi/v1/options`, { headers: { authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` } });
    assert.equal(wrong.status, 401);
    assertErrorShape((await wrong.json()) as Record<string, unknown>);
    const client = new WebUIApi(`${server.url}/sdapi/v1`, { username: 'alice', password: 's3cret' }, 'Euler', 2);
    const r = await client.txt2img({ prompt: 'ok', ...SMALL });
    assert.equal(r.images.length, 1);
  });

  it('answers CORS preflights for the allowed origin only', async function () {
    const ok = await fetch(`${server.url}/sdapi/v1/txt2img`, { method: 'OPTIONS', headers: { origin: 'http://example.test', 'access-control-request-method': 'POST' } });
    assert.equal(ok.headers.get('access-control-allow-origin'), 'http://example.test');
    const other = await fetch(`${server.url}/sdapi/v1/txt2img`, { method: 'OPTIONS', headers: { origin: 'http://evil.test', 'access-control-request-method': 'POST' } });
    assert.notEqual(other.headers.get('access-control-allow-origin'), 'http://evil.test');
  });
});
