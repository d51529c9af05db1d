// Which weights to load: an explicit file, SDTORCH_WEIGHTS, the cached default (SD 1.5), or a
// download of the default from the Hugging Face Hub into the cache.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { ReadableStream } from 'node:stream/web';
import { cacheDir } from '../util/cache';
import { download } from '../util/download';

/** The weights used when none are given: Stable Diffusion 1.5, EMA-only, pruned (4.3 GB). */
export const DEFAULT_REPO = 'stable-diffusion-v1-5/stable-diffusion-v1-5';
export const DEFAULT_FILE = 'v1-5-pruned-emaonly.safetensors';

/** Called as bytes arrive (at most every 100 ms, and once at the end). */
export type ProgressCallback = (done: number, total: number) => void;

export interface DownloadOptions {
  /** Hub repository, default DEFAULT_REPO. */
  repo?: string;
  /** File in the repository, default DEFAULT_FILE. */
  file?: string;
  /** Branch, tag or commit, default "main". */
  revision?: string;
  /** Read for SDTORCH_CACHE, XDG_CACHE_HOME, HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Hub address, default HF_ENDPOINT or https://huggingface.co. */
  hubUrl?: string;
  fetch?: typeof fetch;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface ResolveOptions extends DownloadOptions {
  /** A local checkpoint (.safetensors or .ckpt) or diffusers folder (with model_index.json); when given it must exist. */
  weights?: string;
  /** Download the default weights when they are not cached (default true). */
  download?: boolean;
}

const HOW_TO_PASS = 'Pass a local checkpoint or diffusers folder instead: `sdtorch --weights FILE`, or SDTORCH_WEIGHTS=/path/to/model.safetensors';

/** The cache directory: SDTORCH_CACHE, else $XDG_CACHE_HOME/sdtorch, else ~/.cache/sdtorch. */
export { cacheDir };

/** Where a Hub file is cached: `<cacheDir>/<owner>--<name>/<file>`. */
export function cachedPath(options: Pick<DownloadOptions, 'repo' | 'file' | 'env'> = {}): string {
  const repo = options.repo ?? DEFAULT_REPO;
  return path.join(cacheDir(options.env), repo.replaceAll('/', '--'), options.file ?? DEFAULT_FILE);
}

/**
 * The checkpoint (file, or diffusers folder holding model_index.json) to load: `weights` if given, else SDTORCH_WEIGHTS, else the cached default, else
 * the default downloaded now (unless `download` is false or HF_HUB_OFFLINE is set). A path that
 * does not exist, or a failed download, is an Error that says how to pass a local file.
 */
export async function resolveWeights(options: ResolveOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  if (options.weights !== undefined) return existingWeights(options.weights, '--weights');
  if (env.SDTORCH_WEIGHTS) return existingWeights(env.SDTORCH_WEIGHTS, 'SDTORCH_WEIGHTS');
  const cached = cachedPath(options);
  if (await isFile(cached)) return cached;
  const offline = options.download === false ? 'downloading is off' : isSet(env.HF_HUB_OFFLINE) ? 'HF_HUB_OFFLINE is set' : undefined;
  if (offline !== undefined)
    throw new Error(`No weights given and ${cached} is not downloaded (${offline}).\n${HOW_TO_PASS}, or run \`sdtorch download\` with internet access.`);
  return downloadWeights(options);
}

/**
 * Downloads a Hub file into the cache (see cachedPath) and returns its path. The bytes go to a
 * `.part` file beside it, renamed into place once complete and, when the Hub gives the file's
 * sha256 (LFS files), verified; nothing is left at the final path on failure. HF_TOKEN is sent for
 * gated or private repositories.
 */
export async function downloadWeights(options: DownloadOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const repo = options.repo ?? DEFAULT_REPO;
  const file = options.file ?? DEFAULT_FILE;
  const hubUrl = (options.hubUrl ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const accessToken = env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined;
  const baseFetch = options.fetch ?? fetch;
  const signal = options.signal;
  const params = {
    repo,
    path: file,
    hubUrl,
    ...(options.revision !== undefined ? { revision: options.revision } : {}),
    ...(accessToken !== undefined ? { accessToken } : {}),
    fetch: ((input, init) => baseFetch(input, { ...init, ...(signal ? { signal } : {}) })) as typeof fetch,
  };
  const final = cachedPath({ repo, file, env });
  try {
    const { downloadFile, fileDownloadInfo } = await import('@huggingface/hub');
    const info = await fileDownloadInfo(params);
    const blob = info && (await downloadFile({ ...params, downloadInfo: info }));
    if (!info || !blob) throw new Error('the file does not exist in this repository');
    const etag = info.etag.replace(/^W\//, '').replaceAll('"', '');
    const sha256 = /^[0-9a-f]{64}$/.test(etag) && etag !== info.xet?.hash ? etag : undefined;
    await download({
      // The Hub's blob fetches byte ranges itself: a resumed download asks for the rest only.
      open: async (offset) => ({ body: blob.slice(offset).stream() as ReadableStream<Uint8Array>, start: offset, total: blob.size }),
      dest: final,
      label: 'the transfer',
      total: blob.size,
      ...(sha256 !== undefined ? { sha256 } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(signal ? { signal } : {}),
    });
    return final;
  } catch (e) {
    throw downloadError(`${hubUrl}/${repo}`, file, final, e);
  }
}

function downloadError(where: string, file: string, final: string, cause: unknown): Error {
  const e = cause as { message?: string; statusCode?: number; cause?: { message?: string; code?: string } };
  const detail = e.cause?.code ?? e.cause?.message;
  const reason = `${e.message ?? String(cause)}${detail ? ` (${detail})` : ''}`;
  const token =
    e.statusCode === 401 || e.statusCode === 403
      ? '\nThe repository may be gated or private: accept its terms on the Hub and set HF_TOKEN=hf_... to a token that can read it.'
      : '';
  return new Error(`Could not download ${file} from ${where}: ${reason}${token}\n${HOW_TO_PASS} (or put the file at ${final}).`, { cause });
}

/** A checkpoint file, or a diffusers folder (one holding model_index.json). */
async function existingWeights(file: string, source: string): Promise<string> {
  const full = path.resolve(file);
  const st = await stat(full).catch(() => undefined);
  if (st === undefined) throw new Error(`Weights file not found: ${full} (from ${source}). Check the path, or leave ${source} unset to use the default weights.`);
  if (st.isDirectory() && (await isFile(path.join(full, 'model_index.json')))) return full;
  if (!st.isFile())
    throw new Error(`${full} (from ${source}) is neither a checkpoint file nor a diffusers folder (no model_index.json in it): pass the .safetensors or .ckpt file itself, or the diffusers folder.`);
  return full;
}

const isFile = (file: string) => stat(file).then((s) => s.isFile(), () => false);
const isSet = (v: string | undefined) => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
