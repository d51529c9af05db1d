// The one downloader (libtorch zips, Hub weights): resumable and atomic. Bytes go to a `.part` file
// beside the destination; a connection that breaks off after delivering data is reopened from the
// byte it reached (an HTTP Range request; a server that answers from the start is followed from
// the start); the file is checked (size, sha256 when known) and renamed into place whole. On
// failure nothing is left behind, neither at the destination nor a `.part`.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream } from 'node:stream/web';

/** One response: its body and the byte offset it starts at (the asked offset for 206, else 0). */
export interface Opened {
  body: ReadableStream<Uint8Array>;
  start: number;
  /** The whole file's size in bytes, when the server says it. */
  total?: number;
}

export interface DownloadRequest {
  /** Opens the file from byte `offset` (0 the first time). Throws for an HTTP error status. */
  open(offset: number): Promise<Opened>;
  /** Where the file goes. */
  dest: string;
  /** For messages: "the download of URL" by default. */
  label: string;
  /** Expected size in bytes, if known before opening. */
  total?: number;
  /** Expected sha256 (hex), checked before the file is renamed into place. */
  sha256?: string;
  /** Called as bytes arrive (throttled to 10 a second, and at the end); `done` never decreases. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Reopenings after a connection breaks off mid-file (default 3). */
  retries?: number;
}

/** Downloads `req` into `req.dest` (see the file comment). Resolves when the file is in place. */
export async function download(req: DownloadRequest): Promise<void> {
  await mkdir(path.dirname(req.dest), { recursive: true });
  const part = `${req.dest}.${process.pid}-${randomBytes(4).toString('hex')}.part`;
  let done = 0;
  let total = req.total;
  let hash = createHash('sha256');
  let shown = -1;
  let reported = 0;
  const report = (force: boolean) => {
    const now = Date.now();
    if (done > shown && (force || now - reported >= 100)) {
      shown = done;
      reported = now;
      req.onProgress?.(done, total ?? 0);
    }
  };
  try {
    for (let retriesLeft = req.retries ?? 3; ; retriesLeft--) {
      req.signal?.throwIfAborted();
      const { body, start, total: size } = await req.open(done);
      if (start !== done) {
        // The server sent the whole file again: start over.
        done = 0;
        hash = createHash('sha256');
      }
      total = size ?? total;
      const before = done;
      const count = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          done += chunk.length;
          report(done === total);
          callback(null, chunk);
        },
      });
      try {
        await pipeline(Readable.fromWeb(body), count, createWriteStream(part, { flags: done === 0 ? 'w' : 'a' }), {
          ...(req.signal ? { signal: req.signal } : {}),
        });
        break;
      } catch (e) {
        if (req.signal?.aborted || retriesLeft <= 0 || done === before) {
          // A web stream can be aborted with any value, a string included.
          const msg = e instanceof Error ? e.message : String(e);
          const why = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
          throw new Error(`${req.label} broke off after ${done} bytes: ${msg}${why}`, { cause: e });
        }
      }
    }
    if (total !== undefined && done !== total) throw new Error(`${req.label} stopped after ${done} of ${total} bytes`);
    if (req.sha256 !== undefined && hash.digest('hex') !== req.sha256) throw new Error(`the data does not match its sha256 ${req.sha256}`);
    report(true);
    await rename(part, req.dest);
  } finally {
    await rm(part, { force: true });
  }
}

/** An opener for a plain URL with fetch: Range requests for resumption, HTTP errors as Errors. */
export function fetchOpener(url: string, init: { fetch?: typeof fetch; headers?: Record<string, string> } = {}): (offset: number) => Promise<Opened> {
  const get = init.fetch ?? fetch;
  return async (offset) => {
    const res = await get(url, { headers: { ...init.headers, ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}) } });
    if (!res.ok || !res.body) throw new Error(`${url} answered ${res.status} ${res.statusText}`);
    const start = res.status === 206 ? offset : 0;
    const length = Number(res.headers.get('content-length'));
    return { body: res.body as ReadableStream<Uint8Array>, start, ...(length > 0 ? { total: start + length } : {}) };
  };
}
