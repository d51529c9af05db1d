// An AUTOMATIC1111 API client as the webuiapi Python package (mix1009/sdwebuiapi, WebUIApi) calls
// the server: the same paths, the same payloads with every field it sends and its defaults, the
// same reading of the answer (images base64, info parsed from JSON), written from that package's
// calls. A published JS client, a1111-webui-api, runs unchanged in a1111-client-npm.test.ts; this
// one stays for what that one does not send: webuiapi's payloads (sampler_index, the mask as a data
// URL without mask_blur_x/y), /interrupt and /skip, /sd-vae, /embeddings, /schedulers, /loras.

export interface ApiResult {
  images: Buffer[];
  parameters: Record<string, unknown>;
  info: Record<string, unknown>;
}

export class WebUIApi {
  constructor(
    readonly baseurl: string,
    readonly auth?: { username: string; password: string },
    readonly defaultSampler = 'Euler a',
    readonly defaultSteps = 20,
  ) {}

  private headers(): Record<string, string> {
    const h: Record<string, string> = { 'content-type': 'application/json' };
    if (this.auth) h['authorization'] = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
    return h;
  }

  async get<T = unknown>(path: string): Promise<T> {
    const r = await fetch(`${this.baseurl}/${path}`, { headers: this.headers() });
    if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  }

  async post<T = unknown>(path: string, payload: unknown): Promise<T> {
    const r = await fetch(`${this.baseurl}/${path}`, { method: 'POST', headers: this.headers(), body: JSON.stringify(payload) });
    if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`);
    return (await r.json()) as T;
  }

  /** webuiapi's _to_api_result. */
  private result(r: { images?: string[]; parameters?: Record<string, unknown>; info?: string }): ApiResult {
    let info: Record<string, unknown> = {};
    try {
      info = JSON.parse(r.info ?? '{}') as Record<string, unknown>;
    } catch {
      info = { text: r.info };
    }
    return { images: (r.images ?? []).map((b) => Buffer.from(b, 'base64')), parameters: r.parameters ?? {}, info };
  }

  /** WebUIApi.txt2img: its payload, field for field, with its defaults. */
  async txt2img(o: Record<string, unknown> = {}): Promise<ApiResult> {
    const payload = {
      enable_hr: false, hr_scale: 2, hr_upscaler: 'Latent', hr_second_pass_steps: 0, hr_resize_x: 0, hr_resize_y: 0,
      denoising_strength: 0.7, firstphase_width: 0, firstphase_height: 0, prompt: '', styles: [], seed: -1, subseed: -1,
      subseed_strength: 0.0, seed_resize_from_h: 0, seed_resize_from_w: 0, batch_size: 1, n_iter: 1, steps: this.defaultSteps,
      cfg_scale: 7.0, width: 512, height: 512, restore_faces: false, tiling: false, do_not_save_samples: false,
      do_not_save_grid: false, negative_prompt: '', eta: 1.0, s_churn: 0, s_tmax: 0, s_tmin: 0, s_noise: 1,
      override_settings: {}, override_settings_restore_afterwards: true, sampler_name: this.defaultSampler,
      sampler_index: this.defaultSampler, script_name: null, script_args: [], send_images: true, save_images: false,
      alwayson_scripts: {},
      ...o,
    };
    return this.result(await this.post('txt2img', payload));
  }

  /** WebUIApi.img2img: images and mask_image as PNG bytes (sent as data URLs, as b64_img does). */
  async img2img(o: Record<string, unknown> & { images: Buffer[]; mask_image?: Buffer }): Promise<ApiResult> {
    const { images, mask_image, ...rest } = o;
    const b64 = (png: Buffer) => `data:image/png;base64,${png.toString('base64')}`;
    const payload: Record<string, unknown> = {
      init_images: images.map(b64), resize_mode: 0, denoising_strength: 0.75, mask_blur: 4, inpainting_fill: 0,
      inpaint_full_res: true, inpaint_full_res_padding: 0, inpainting_mask_invert: 0, initial_noise_multiplier: 1,
      prompt: '', styles: [], seed: -1, subseed: -1, subseed_strength: 0, seed_resize_from_h: 0, seed_resize_from_w: 0,
      batch_size: 1, n_iter: 1, steps: this.defaultSteps, cfg_scale: 7.0, image_cfg_scale: 1.5, width: 512, height: 512,
      restore_faces: false, tiling: false, do_not_save_samples: false, do_not_save_grid: false, negative_prompt: '',
      eta: 1.0, s_churn: 0, s_tmax: 0, s_tmin: 0, s_noise: 1, override_settings: {}, override_settings_restore_afterwards: true,
      sampler_name: this.defaultSampler, sampler_index: this.defaultSampler, include_init_images: false, script_name: null,
      script_args: [], send_images: true, save_images: false, alwayson_scripts: {},
      ...rest,
    };
    if (mask_image) payload['mask'] = b64(mask_image);
    return this.result(await this.post('img2img', payload));
  }

  png_info(png: Buffer) {
    return this.post<{ info: string; items: Record<string, string>; parameters: Record<string, unknown> }>('png-info', { image: `data:image/png;base64,${png.toString('base64')}` });
  }
  get_progress() {
    return this.get<{ progress: number; eta_relative: number; state: Record<string, unknown>; current_image: string | null; textinfo: string | null }>('progress');
  }
  interrupt() {
    return this.post('interrupt', {});
  }
  skip() {
    return this.post('skip', {});
  }
  get_options() {
    return this.get<Record<string, unknown>>('options');
  }
  set_options(options: Record<string, unknown>) {
    return this.post('options', options);
  }
  get_samplers() {
    return this.get<{ name: string; aliases: string[]; options: Record<string, string> }[]>('samplers');
  }
  get_sd_models() {
    return this.get<{ title: string; model_name: string; hash: string | null; sha256: string | null; filename: string }[]>('sd-models');
  }
  get_sd_vae() {
    return this.get<{ model_name: string; filename: string }[]>('sd-vae');
  }
  get_embeddings() {
    return this.get<{ loaded: Record<string, unknown>; skipped: Record<string, unknown> }>('embeddings');
  }
  refresh_checkpoints() {
    return this.post('refresh-checkpoints', {});
  }
  /** webuiapi's util_get_current_model / util_set_model. */
  async util_get_current_model(): Promise<string> {
    return (await this.get_options())['sd_model_checkpoint'] as string;
  }
  async util_set_model(name: string): Promise<void> {
    const models = await this.get_sd_models();
    const found = models.find((m) => m.title === name || m.model_name === name || m.title.startsWith(name));
    if (!found) throw new Error(`model ${name} not found`);
    await this.set_options({ sd_model_checkpoint: found.title });
  }
  /** webuiapi's util_wait_for_ready: until no job is running. */
  async util_wait_for_ready(checkInterval = 100): Promise<void> {
    for (;;) {
      const p = await this.get_progress();
      if (p.state['job_count'] === 0) return;
      await new Promise((r) => setTimeout(r, checkInterval));
    }
  }
}
