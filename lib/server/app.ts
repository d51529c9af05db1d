// `sdtorch serve`: a fastify app speaking AUTOMATIC1111's /sdapi/v1 API, with OpenAPI at /docs and
// the web page at /. Requests are checked once here (JSON schemas, then sdapi.toJob) and become
// jobs on a JobQueue; this file knows nothing of tensors.
import { timingSafeEqual as cryptoEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import basicAuth from '@fastify/basic-auth';
import cors from '@fastify/cors';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { infotextOptions } from '../image/infotext';
import { readPngText } from '../image/png';
import { samplerNames } from '../sampling/registry';
import { uniquePath, writeFileAtomic } from '../util/fs';
import { ApiError, CancelledError, errorBody, invalid } from './errors';
import type { JobResult, JobSpec } from './job';
import type { ModelStore } from './models';
import type { JobQueue } from './queue';
import { DEFAULT_LIMITS, decodeImage, img2imgSchema, infoJson, samplerList, schedulerList, toJob, txt2imgSchema, type Limits, type SdRequest, type Settings } from './sdapi';

export interface AppOptions {
  queue: JobQueue;
  models: ModelStore;
  limits?: Partial<Limits>;
  /** Largest request body in bytes (default 64 MiB). */
  bodyLimit?: number;
  /** "user:pass[,user2:pass2]": HTTP basic auth on every route (A1111's --api-auth). */
  apiAuth?: string;
  /** Allowed CORS origin(s) (A1111's --cors-allow-origins). */
  cors?: string;
  /** Where save_images writes (default ./outputs). */
  outdir?: string;
  /** The text encoder width for /embeddings (768 for SD 1.x). */
  textEncoderWidth?: () => number;
  logger?: boolean;
}

export interface SdtorchApp extends FastifyInstance {
  settings: Settings;
}

/** Where the page's files are: beside this file (ts-node) or in the package's lib/server/web (dist). */
function webRoot(): string {
  const candidates = [path.join(__dirname, 'web'), path.join(__dirname, '..', '..', 'lib', 'server', 'web')];
  return candidates.find((d) => existsSync(path.join(d, 'index.html'))) ?? candidates[0]!;
}

export async function buildApp(o: AppOptions): Promise<SdtorchApp> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...o.limits };
  const app = fastify({
    logger: o.logger ?? false,
    bodyLimit: o.bodyLimit ?? 64 << 20,
    ajv: { customOptions: { coerceTypes: 'array', useDefaults: true, removeAdditional: false, allErrors: true, allowUnionTypes: true } },
  }) as unknown as SdtorchApp;
  const settings: Settings = { sd_vae: 'Automatic', CLIP_stop_at_last_layers: 1, show_progress_every_n_steps: 5 };
  const first = o.models.checkpoints[0];
  if (first) settings.sd_model_checkpoint = first.title;
  app.decorate('settings', settings);

  // Errors: A1111's {error, detail, body, errors}; a bad request is a 4xx, never a 500.
  app.setErrorHandler((e: FastifyError & { detail?: unknown }, _req, reply) => {
    if (e.validation) {
      const detail = e.validation.map((v) => ({ loc: ['body', ...v.instancePath.split('/').filter(Boolean)], msg: v.message ?? 'invalid', type: v.keyword }));
      return reply.code(422).send({ error: 'RequestValidationError', detail, body: '', errors: e.message });
    }
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send(errorBody(new ApiError(413, `the request body is larger than ${app.initialConfig.bodyLimit} bytes`)));
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return reply.code(415).send(errorBody(new ApiError(415, 'send JSON (Content-Type: application/json)')));
    if (e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || e instanceof SyntaxError)
      return reply.code(422).send(errorBody(new ApiError(422, `the body is not valid JSON: ${e.message}`, 'JSONDecodeError')));
    const status = e instanceof ApiError ? e.statusCode : typeof e.statusCode === 'number' && e.statusCode >= 400 ? e.statusCode : 500;
    if (status >= 500 && !(e instanceof ApiError)) app.log.error(e);
    return reply.code(status).send({ ...errorBody(e), detail: e.detail ?? (status < 500 ? e.message : '') });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody(new ApiError(404, `Not Found: ${req.method} ${req.url.split('?')[0]}`))));
  // An empty JSON body is no body: A1111 (FastAPI) reads none on the routes that take none, and
  // clients post to /interrupt, /skip and /refresh-checkpoints with Content-Type: application/json
  // and nothing after it (axios's post(url)). Routes with a body schema still refuse it (422).
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => (body.length === 0 ? done(null, undefined) : json(req, body as string, done)));

  await app.register(swagger, {
    openapi: { info: { title: 'sdtorch', description: "Stable Diffusion for Node.js: AUTOMATIC1111's /sdapi/v1 API", version: '1' } },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  if (o.cors) await app.register(cors, { origin: o.cors.split(',').map((s) => s.trim()) });
  if (o.apiAuth) {
    const users = new Map(o.apiAuth.split(',').map((pair) => [pair.slice(0, pair.indexOf(':')), pair.slice(pair.indexOf(':') + 1)] as const));
    await app.register(basicAuth, {
      authenticate: { realm: 'sdtorch' },
      validate: async (user, pass) => {
        const want = users.get(user);
        if (want === undefined || !timingSafeEqual(want, pass)) throw new ApiError(401, 'Incorrect username or password');
      },
    });
    app.addHook('onRequest', app.basicAuth);
  }
  await app.register(fastifyStatic, { root: webRoot(), prefix: '/', index: 'index.html' });

  const queue = o.queue;
  const models = o.models;
  const edge = () => ({
    limits,
    settings,
    checkpoint: (name: string) => models.findCheckpoint(name)?.title ?? (models.checkpoints.length === 0 ? name : undefined),
    vae: (name: string) => models.findVae(name) !== undefined,
  });

  /** Runs a job for a request; the job is cancelled if the client goes away first. */
  async function runJob(req: FastifyRequest, reply: FastifyReply, spec: JobSpec): Promise<JobResult> {
    const job = await queue.submit(spec);
    const gone = () => {
      if (!reply.raw.writableFinished) job.cancel();
    };
    reply.raw.on('close', gone);
    try {
      return await job.done;
    } catch (e) {
      if (e instanceof CancelledError || e instanceof ApiError) throw e;
      const err = e as Error & { statusCode?: number };
      // The library refuses some inputs only once it runs (an embedding of another model, ...): 422.
      const status = err.statusCode ?? (err instanceof RangeError || err instanceof TypeError ? 422 : 500);
      throw new ApiError(status, err.message, err.name === 'Error' ? 'JobFailed' : err.name);
    } finally {
      reply.raw.off('close', gone);
      void req;
    }
  }

  async function save(kind: 'txt2img' | 'img2img', res: JobResult): Promise<void> {
    const day = new Date().toISOString().slice(0, 10);
    const dir = path.resolve(o.outdir ?? 'outputs', `${kind}-images`, day);
    await mkdir(dir, { recursive: true });
    for (const [i, b64] of res.images.entries()) await writeFileAtomic(uniquePath(path.join(dir, `${res.seeds[i]}.png`)), Buffer.from(b64, 'base64'));
  }

  for (const kind of ['txt2img', 'img2img'] as const) {
    app.post(`/sdapi/v1/${kind}`, { schema: { body: kind === 'txt2img' ? txt2imgSchema(limits) : img2imgSchema(limits), tags: ['generation'] } }, async (req, reply) => {
      const body = req.body as SdRequest;
      const spec = await toJob(kind, body, { ...edge(), loraNames: models.dirs.lora ? await models.loraNames() : new Set() });
      const res = await runJob(req, reply, spec);
      if (body.save_images) await save(kind, res);
      const parameters: Record<string, unknown> = { ...body };
      if (kind === 'img2img' && !body['include_init_images']) Object.assign(parameters, { init_images: null, mask: null });
      return { images: body.send_images ? res.images : [], parameters, info: infoJson(kind, spec, res) };
    });
  }

  app.get('/sdapi/v1/samplers', async () => samplerList());
  app.get('/sdapi/v1/schedulers', async () => schedulerList());
  app.get('/sdapi/v1/upscalers', async () => [
    { name: 'None', model_name: null, model_path: null, model_url: null, scale: 4 },
    { name: 'Lanczos', model_name: null, model_path: null, model_url: null, scale: 4 },
  ]);
  app.get('/sdapi/v1/latent-upscale-modes', async () => [{ name: 'Latent' }]);
  app.get('/sdapi/v1/sd-models', async () => models.checkpoints.map((c) => ({ title: c.title, model_name: c.model_name, hash: c.hash, sha256: c.sha256, filename: c.filename, config: null })));
  app.get('/sdapi/v1/sd-vae', async () => models.vaes);
  app.get('/sdapi/v1/loras', async () => models.loras());
  app.get('/sdapi/v1/embeddings', async () => models.embeddings(o.textEncoderWidth?.() ?? 768));
  app.get('/sdapi/v1/scripts', async () => ({ txt2img: [], img2img: [] }));
  // What A1111 lists and sdtorch has none of.
  for (const route of ['prompt-styles', 'hypernetworks', 'face-restorers', 'realesrgan-models']) app.get(`/sdapi/v1/${route}`, async () => []);
  app.post('/sdapi/v1/refresh-checkpoints', async () => {
    await models.refresh();
    return null;
  });
  app.post('/sdapi/v1/refresh-vae', async () => {
    await models.refresh();
    return null;
  });
  app.post('/sdapi/v1/refresh-loras', async () => null);

  app.get('/sdapi/v1/options', async () => ({
    ...settings,
    // The title gains its hash once hashing is done.
    sd_model_checkpoint: models.findCheckpoint(settings.sd_model_checkpoint ?? '')?.title ?? settings.sd_model_checkpoint ?? null,
    sd_checkpoint_hash: models.findCheckpoint(settings.sd_model_checkpoint ?? '')?.sha256 ?? null,
    live_previews_enable: settings.show_progress_every_n_steps > 0,
    // What this process's folders give (workers on other machines use their own).
    show_progress_type: models.dirs.taesd !== undefined ? 'TAESD' : 'Approx cheap',
    samples_format: 'png',
    samplers_available: samplerNames.length,
  }));
  app.post('/sdapi/v1/options', { schema: { body: { type: 'object' } } }, async (req) => {
    const body = req.body as Record<string, unknown>;
    const next: Partial<Settings> = {};
    if (body['sd_model_checkpoint'] !== undefined) {
      const c = typeof body['sd_model_checkpoint'] === 'string' ? models.findCheckpoint(body['sd_model_checkpoint']) : undefined;
      if (!c) throw invalid(`model ${JSON.stringify(body['sd_model_checkpoint'])} not found`);
      next.sd_model_checkpoint = c.title;
    }
    if (body['sd_vae'] !== undefined) {
      const v = body['sd_vae'];
      if (typeof v !== 'string' || (v !== 'Automatic' && v !== 'None' && !models.findVae(v))) throw invalid(`VAE ${JSON.stringify(v)} not found`);
      next.sd_vae = v;
    }
    for (const [key, max] of [['CLIP_stop_at_last_layers', 12], ['show_progress_every_n_steps', 1000]] as const) {
      if (body[key] === undefined) continue;
      const v = body[key];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < (key === 'CLIP_stop_at_last_layers' ? 1 : 0) || v > max) throw invalid(`${key} must be a whole number up to ${max}`);
      next[key] = v;
    }
    Object.assign(settings, next);
    return null;
  });

  app.get('/sdapi/v1/progress', async (req) => {
    const skipImage = ['true', '1'].includes(String((req.query as Record<string, unknown>)['skip_current_image']));
    const s = await queue.state();
    const p = s.current;
    const state = {
      skipped: s.skipped,
      interrupted: s.interrupted,
      job: p ? 'sdtorch' : '',
      job_count: p ? p.jobCount : s.running,
      job_timestamp: p?.jobTimestamp ?? '0',
      job_no: p?.jobNo ?? 0,
      sampling_step: p?.step ?? 0,
      sampling_steps: p?.steps ?? 0,
      queue_pending: s.waiting,
      queue_running: s.running,
    };
    if (!p) return { progress: 0, eta_relative: 0, state, current_image: null, textinfo: null };
    // A1111: 0.01 + job_no/job_count + step/steps/job_count, capped at 1.
    const progress = Math.min(0.01 + p.jobNo / p.jobCount + (p.steps ? p.step / p.steps / p.jobCount : 0), 1);
    const elapsed = s.startedAt !== undefined ? (Date.now() - s.startedAt) / 1000 : 0;
    return { progress, eta_relative: elapsed / progress - elapsed, state, current_image: skipImage ? null : (p.preview ?? null), textinfo: null };
  });
  app.post('/sdapi/v1/interrupt', async () => {
    await queue.interrupt();
    return {};
  });
  app.post('/sdapi/v1/skip', async () => {
    await queue.skip();
    return null;
  });

  app.post('/sdapi/v1/png-info', { schema: { body: { type: 'object', required: ['image'], properties: { image: { type: 'string' } } } } }, async (req) => {
    const { bytes } = await decodeImage((req.body as { image: string }).image.trim(), 'image', limits);
    let text: Record<string, string> = {};
    try {
      text = readPngText(bytes);
    } catch {
      // not a PNG: no text chunks (A1111 also reads EXIF of JPEGs; not here)
    }
    const { parameters: info = '', ...items } = text;
    if (!info) return { info: '', items, parameters: {} };
    const parsed = infotextOptions(info);
    const parameters: Record<string, unknown> = { Prompt: parsed.prompt, 'Negative prompt': parsed.negativePrompt, ...parsed.params };
    const size = /^(\d+)x(\d+)$/.exec(parsed.params['Size'] ?? '');
    if (size) Object.assign(parameters, { 'Size-1': size[1], 'Size-2': size[2] });
    return { info, items, parameters };
  });

  return app;
}

function timingSafeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && cryptoEqual(x, y);
}
