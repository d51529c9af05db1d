// `sdtorch worker --redis URL`: takes jobs from the BullMQ queue, one at a time on this device, and
// reports progress (with previews) and results through Redis. A worker that dies mid-job loses its
// lock; BullMQ's stalled-job check gives the job to another worker, and the job's one completion
// is the one answer its client gets.
import os from 'node:os';
import { Worker, type Job } from 'bullmq';
import IORedis from 'ioredis';
import { failureMessage, JobControl, type JobProgress, type JobResult, type JobSpec } from './job';
import { ModelStore, type ModelFolders } from './models';
import { controlChannel, watchRedis, type ControlMessage } from './queue';
import { Runner, type RunnerOptions } from './runner';

export interface WorkerOptions extends ModelFolders, RunnerOptions {
  redis: string;
  /** Queue name (default 'sdtorch'). */
  queue?: string;
  /** Lock time: a worker silent this long is taken for dead (default 30 s). */
  lockDuration?: number;
  /** How often stalled jobs are looked for (default 15 s). */
  stalledInterval?: number;
  /** Where a lost and a regained Redis connection are told (default console.error). */
  log?: (line: string) => void;
}

export interface RunningWorker {
  worker: Worker<JobSpec, JobResult>;
  close(): Promise<void>;
}

export async function startWorker(o: WorkerOptions): Promise<RunningWorker> {
  const store = new ModelStore(o);
  await store.refresh();
  const name = o.name ?? `${os.hostname()}:${process.pid}`;
  const runner = new Runner(store, { ...o, name });
  await runner.pipeline(); // load before taking jobs: a worker that cannot load takes none
  const name_ = o.queue ?? 'sdtorch';
  const controls = new Map<string, JobControl>();
  const subscriber = new IORedis(o.redis, { maxRetriesPerRequest: null });
  await subscriber.subscribe(controlChannel(name_));
  subscriber.on('message', (_channel, text: string) => {
    let m: ControlMessage;
    try {
      m = JSON.parse(text) as ControlMessage;
    } catch {
      return;
    }
    for (const [id, control] of controls) {
      if (m.jobId !== undefined && m.jobId !== id) continue;
      if (m.action === 'interrupt') control.interrupt();
      else if (m.action === 'skip') control.skip();
    }
  });

  const processor = async (job: Job<JobSpec, JobResult>, _token?: string, signal?: AbortSignal): Promise<JobResult> => {
    const control = new JobControl();
    signal?.addEventListener('abort', () => control.interrupt());
    controls.set(job.id!, control);
    let last = 0;
    let pending: Promise<void> = Promise.resolve();
    try {
      const result = await runner.run(job.data, control, (p: JobProgress) => {
        // A step every few ms is too much for Redis: at most ~10 reports a second, previews always.
        const now = Date.now();
        if (p.preview === undefined && now - last < 100 && p.step !== p.steps) return;
        last = now;
        pending = pending.then(() => job.updateProgress(p)).catch(() => undefined);
      });
      await pending;
      return result;
    } catch (e) {
      throw new Error(failureMessage(e as Error));
    } finally {
      controls.delete(job.id!);
    }
  };

  const worker = new Worker<JobSpec, JobResult>(name_, processor, {
    connection: { url: o.redis, maxRetriesPerRequest: null },
    concurrency: 1,
    name,
    lockDuration: o.lockDuration ?? 30_000,
    stalledInterval: o.stalledInterval ?? 15_000,
    maxStalledCount: 2,
  });
  watchRedis(`sdtorch worker ${name}`, [worker], subscriber, o.log ?? ((line) => console.error(line)));
  await worker.waitUntilReady();
  return {
    worker,
    async close() {
      await worker.close(); // waits for the running job
      subscriber.disconnect();
      runner.dispose();
    },
  };
}
