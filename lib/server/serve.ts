// `sdtorch serve`: the app, its queue (in-process, or BullMQ with --redis) and graceful shutdown.
import type { LoadOptions } from '../generate/pipeline';
import { buildApp, type SdtorchApp } from './app';
import { ModelStore, type ModelFolders } from './models';
import { LocalQueue, RedisQueue, type JobQueue } from './queue';
import { Runner } from './runner';
import type { Limits } from './sdapi';

export interface ServeOptions extends ModelFolders {
  host?: string;
  port?: number;
  apiAuth?: string;
  cors?: string;
  /** BullMQ on Redis; without it jobs run in this process. */
  redis?: string;
  device?: string;
  dtype?: LoadOptions['dtype'];
  /** Jobs that may wait (default 32); more are answered 503. */
  maxQueue?: number;
  limits?: Partial<Limits>;
  bodyLimit?: number;
  outdir?: string;
  logger?: boolean;
}

export interface Server {
  app: SdtorchApp;
  queue: JobQueue;
  models: ModelStore;
  /** The address it listens on, e.g. http://127.0.0.1:7860. */
  url: string;
  /** Graceful: no new jobs, waiting ones answered 503, the running one finishes (up to graceMs). */
  close(graceMs?: number): Promise<void>;
}

export async function startServer(o: ServeOptions): Promise<Server> {
  const models = new ModelStore(o);
  await models.refresh();
  let queue: JobQueue;
  let runner: Runner | undefined;
  if (o.redis) {
    const q = new RedisQueue({ url: o.redis, ...(o.maxQueue !== undefined ? { maxQueue: o.maxQueue } : {}) });
    await q.ready();
    queue = q;
  } else {
    if (models.checkpoints.length === 0) throw new Error('no checkpoint: give --weights FILE or --models DIR (or --redis URL with workers)');
    runner = new Runner(models, { ...(o.device ? { device: o.device } : {}), ...(o.dtype ? { dtype: o.dtype } : {}) });
    await runner.pipeline(); // fail at start, not at the first request
    queue = new LocalQueue(runner, o.maxQueue);
  }
  const app = await buildApp({
    queue, models, ...(o.limits ? { limits: o.limits } : {}), ...(o.bodyLimit ? { bodyLimit: o.bodyLimit } : {}),
    ...(o.apiAuth ? { apiAuth: o.apiAuth } : {}), ...(o.cors ? { cors: o.cors } : {}), ...(o.outdir ? { outdir: o.outdir } : {}),
    logger: o.logger ?? false,
    textEncoderWidth: () => runner?.textEncoderWidth ?? 768,
  });
  const url = await app.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 7860 });
  let closing: Promise<void> | undefined;
  return {
    app, queue, models, url,
    close(graceMs = 60_000) {
      closing ??= (async () => {
        await queue.close(graceMs);
        await app.close();
      })();
      return closing;
    },
  };
}
