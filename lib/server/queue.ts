// The job queue between the HTTP edge and the devices. One interface, two backends: in-process
// (the default: this process's device runs one job at a time) and BullMQ on Redis (`--redis URL`:
// `sdtorch worker` processes anywhere take the jobs). Both are bounded and answer QueueFullError
// when full; a job whose client went away is taken off the queue (or interrupted when running).
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type Job } from 'bullmq';
import IORedis from 'ioredis';
import { ApiError, CancelledError, QueueFullError } from './errors';
import { failureError, JobControl, type JobProgress, type JobResult, type JobSpec } from './job';
import type { Runner } from './runner';

export interface Submitted {
  id: string;
  done: Promise<JobResult>;
  /** Takes the job off the queue, or interrupts it when it runs. */
  cancel(): void;
}

/** What /sdapi/v1/progress reports. */
export interface QueueState {
  /** The running job's latest progress (undefined when idle). */
  current?: JobProgress;
  /** When the current job started (ms since the epoch). */
  startedAt?: number;
  /** Jobs waiting and running. */
  waiting: number;
  running: number;
  interrupted: boolean;
  skipped: boolean;
}

export interface JobQueue {
  /** Queues a job; rejects with QueueFullError when `maxQueue` jobs are waiting or the queue is closing. */
  submit(spec: JobSpec): Promise<Submitted>;
  state(): Promise<QueueState>;
  /** A1111's /interrupt: the running job(s) stop, keeping what is done. */
  interrupt(): Promise<void>;
  /** A1111's /skip: the running job(s) drop their current iteration. */
  skip(): Promise<void>;
  /** Stops taking jobs, rejects the waiting ones, lets running ones finish (up to `graceMs`), then closes. */
  close(graceMs?: number): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// In-process

interface LocalJob {
  id: string;
  spec: JobSpec;
  control: JobControl;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
}

export class LocalQueue implements JobQueue {
  private readonly waiting: LocalJob[] = [];
  private running: LocalJob | undefined;
  private idle: Promise<void> = Promise.resolve();
  private closing = false;
  private current: JobProgress | undefined;
  private startedAt: number | undefined;
  private skipped = false;

  constructor(
    private readonly runner: Runner,
    private readonly maxQueue = 32,
  ) {}

  async submit(spec: JobSpec): Promise<Submitted> {
    if (this.closing) throw new QueueFullError('the server is shutting down');
    if (this.waiting.length >= this.maxQueue) throw new QueueFullError(`the queue is full (${this.maxQueue} jobs waiting): try again later`);
    const job = { id: randomUUID(), spec, control: new JobControl() } as LocalJob;
    const done = new Promise<JobResult>((resolve, reject) => Object.assign(job, { resolve, reject }));
    this.waiting.push(job);
    this.pump();
    return {
      id: job.id,
      done,
      cancel: () => {
        const i = this.waiting.indexOf(job);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          job.reject(new CancelledError('the client went away'));
        } else if (this.running === job) job.control.interrupt('the client went away');
      },
    };
  }

  private pump(): void {
    if (this.running || this.waiting.length === 0) return;
    const job = (this.running = this.waiting.shift()!);
    this.startedAt = Date.now();
    this.skipped = false;
    this.idle = this.runner
      .run(job.spec, job.control, (p) => {
        if (this.running === job) this.current = p;
      })
      .then(job.resolve, job.reject)
      .finally(() => {
        this.running = undefined;
        this.current = undefined;
        this.startedAt = undefined;
        this.pump();
      });
  }

  async state(): Promise<QueueState> {
    return {
      ...(this.current ? { current: this.current } : {}),
      ...(this.startedAt !== undefined ? { startedAt: this.startedAt } : {}),
      waiting: this.waiting.length,
      running: this.running ? 1 : 0,
      interrupted: this.running?.control.interrupted ?? false,
      skipped: this.skipped,
    };
  }

  async interrupt(): Promise<void> {
    this.running?.control.interrupt();
  }

  async skip(): Promise<void> {
    if (this.running) {
      this.skipped = true;
      this.running.control.skip();
    }
  }

  async close(graceMs = 60_000): Promise<void> {
    this.closing = true;
    for (const job of this.waiting.splice(0)) job.reject(new QueueFullError('the server is shutting down'));
    const timer = setTimeout(() => this.running?.control.interrupt('the server is shutting down'), graceMs);
    await this.idle.catch(() => undefined);
    clearTimeout(timer);
    this.runner.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// BullMQ on Redis

export interface RedisQueueOptions {
  url: string;
  /** The BullMQ queue name (default 'sdtorch'). */
  name?: string;
  maxQueue?: number;
  /** Where a lost and a regained Redis connection are told (default console.error). */
  log?: (line: string) => void;
}

interface ErrorEmitter {
  on(event: 'error', listener: (e: Error) => void): unknown;
}

/**
 * Watches the Redis clients of one process: when Redis goes away (restart, network), ioredis and
 * BullMQ reconnect by themselves and, with maxRetriesPerRequest null, commands wait for the
 * connection instead of failing; without an 'error' listener every retry of every connection
 * prints a stack trace. This tells the outage once, and its end when `ready` (an ioredis client
 * among them) is connected again (then calls `onBack`); other errors are told as they come.
 */
export function watchRedis(what: string, clients: ErrorEmitter[], ready: IORedis, log: (line: string) => void, onBack?: () => void): void {
  let down = false;
  const connection = (e: Error & { code?: string }) =>
    e.message === 'Connection is closed.' || /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH/.test(`${e.code ?? ''} ${e.message}`);
  const onError = (e: Error) => {
    if (!connection(e)) return log(`${what}: Redis: ${e.message}`);
    if (down) return;
    down = true;
    log(`${what}: lost the Redis connection (${e.message}); retrying, jobs wait`);
  };
  for (const c of [...clients, ready]) c.on('error', onError);
  ready.on('ready', () => {
    if (!down) return;
    down = false;
    log(`${what}: Redis is back`);
    onBack?.();
  });
}

/** Pub/sub channel of interrupt/skip messages to the workers. */
export const controlChannel = (name: string): string => `${name}:control`;

/** A control message: interrupt or skip one job (or every running one when jobId is absent). */
export interface ControlMessage {
  action: 'interrupt' | 'skip';
  jobId?: string;
}

export class RedisQueue implements JobQueue {
  private readonly queue: Queue<JobSpec, JobResult>;
  private readonly events: QueueEvents;
  private readonly publisher: IORedis;
  private readonly name: string;
  private readonly maxQueue: number;
  /** This server's jobs not finished yet, with a way to answer them early (shutdown). */
  private readonly pending = new Map<string, { job: Job<JobSpec, JobResult>; done: Promise<unknown>; reject: (e: Error) => void }>();
  private closing = false;
  /** Latest progress per running job id. */
  private readonly progress = new Map<string, { p: JobProgress; at: number; startedAt: number }>();
  private interrupted = false;
  private skipped = false;

  constructor(options: RedisQueueOptions) {
    this.name = options.name ?? 'sdtorch';
    this.maxQueue = options.maxQueue ?? 32;
    const connection = { url: options.url, maxRetriesPerRequest: null };
    this.queue = new Queue(this.name, { connection });
    this.events = new QueueEvents(this.name, { connection });
    this.publisher = new IORedis(options.url, { maxRetriesPerRequest: null });
    watchRedis('sdtorch serve', [this.queue, this.events], this.publisher, options.log ?? ((line) => console.error(line)), () => void this.answerLost());
    // Each waiting request listens on these (waitUntilFinished): as many as the queue holds.
    this.events.setMaxListeners(0);
    this.queue.setMaxListeners(0);
    this.events.on('progress', ({ jobId, data }) => {
      const known = this.progress.get(jobId);
      this.progress.set(jobId, { p: data as JobProgress, at: Date.now(), startedAt: known?.startedAt ?? Date.now() });
    });
    const finished = ({ jobId }: { jobId: string }) => this.progress.delete(jobId);
    this.events.on('completed', finished);
    this.events.on('failed', finished);
  }

  /** Resolves once the connections are up (so that no event is missed). */
  async ready(): Promise<void> {
    await Promise.all([this.queue.waitUntilReady(), this.events.waitUntilReady()]);
  }

  async submit(spec: JobSpec): Promise<Submitted> {
    if (this.closing) throw new QueueFullError('the server is shutting down');
    const counts = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed');
    const waiting = Object.values(counts).reduce((a, b) => a + b, 0);
    if (waiting >= this.maxQueue) throw new QueueFullError(`the queue is full (${waiting} jobs waiting): try again later`);
    const job: Job<JobSpec, JobResult> = await this.queue.add('generate', spec, { removeOnComplete: { age: 600 }, removeOnFail: { age: 600 } });
    this.interrupted = this.skipped = false;
    let reject!: (e: Error) => void;
    const done = new Promise<JobResult>((resolve, rej) => {
      reject = rej;
      job.waitUntilFinished(this.events).then(resolve, (e: Error) => rej(failureError(e.message)));
    });
    this.pending.set(job.id!, { job, done, reject });
    void done.catch(() => undefined).finally(() => this.pending.delete(job.id!));
    return {
      id: job.id!,
      done,
      cancel: () => {
        void job.remove().catch(() => this.publish({ action: 'interrupt', jobId: job.id! }));
      },
    };
  }

  /**
   * After an outage: this server's jobs that Redis no longer has (it restarted without its
   * append-only file) are answered 503 instead of waited for forever. Those it has are still
   * waited for: their events are read on from where the stream was.
   */
  private async answerLost(): Promise<void> {
    for (const { job, reject } of [...this.pending.values()]) {
      if ((await job.getState().catch(() => undefined)) === 'unknown')
        reject(new ApiError(503, `the job was lost: Redis restarted without it (keep jobs across Redis restarts with appendonly yes): try again`, 'JobLost'));
    }
  }

  private async publish(m: ControlMessage): Promise<void> {
    await this.publisher.publish(controlChannel(this.name), JSON.stringify(m));
  }

  async state(): Promise<QueueState> {
    const counts = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
    const latest = [...this.progress.values()].sort((a, b) => b.at - a.at)[0];
    return {
      ...(latest ? { current: latest.p, startedAt: latest.startedAt } : {}),
      waiting: (counts['waiting'] ?? 0) + (counts['prioritized'] ?? 0) + (counts['delayed'] ?? 0),
      running: counts['active'] ?? 0,
      interrupted: this.interrupted,
      skipped: this.skipped,
    };
  }

  async interrupt(): Promise<void> {
    this.interrupted = true;
    await this.publish({ action: 'interrupt' });
  }

  async skip(): Promise<void> {
    this.skipped = true;
    await this.publish({ action: 'skip' });
  }

  async close(graceMs = 60_000): Promise<void> {
    this.closing = true;
    // This server's waiting jobs leave the queue (their clients are answered 503); running ones get the grace time.
    for (const { job, reject } of this.pending.values()) {
      if ((await job.getState()) !== 'active' && (await job.remove().then(() => true, () => false))) reject(new QueueFullError('the server is shutting down'));
    }
    const running = [...this.pending.values()].map((p) => p.done);
    await Promise.race([Promise.allSettled(running), new Promise((r) => setTimeout(r, graceMs).unref())]);
    await Promise.allSettled([this.events.close(), this.queue.close()]);
    this.publisher.disconnect();
  }
}
