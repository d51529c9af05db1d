// The files the service may use, found by listing the configured folders: checkpoints, VAEs,
// LoRAs, embeddings. A name from a request is looked up in these lists and nothing else, so no
// request can reach a file outside the folders (no path is ever built from a request).
import { realpathSync, statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { perFileVersion, sha256File } from '../models/hash';
import { loadEmbeddingDirs } from '../text/embeddings';

export interface ModelFolders {
  /** One checkpoint file (sdtorch serve --weights). */
  weights?: string;
  /** A folder of checkpoints (--models); when it is A1111's models/ folder, its Stable-diffusion/, VAE/, Lora/ are used. */
  models?: string;
  vaeDir?: string;
  loraDir?: string;
  embeddingsDir?: string;
  /**
   * TAESD files for live previews (taesd_decoder.* for SD 1.x/2.x, taesdxl_decoder.* for SDXL, as in
   * A1111's models/VAE-taesd, used by default with --models); a family without its files gets the
   * cheap approximation.
   */
  taesdDir?: string;
}

export interface Checkpoint {
  /** A1111's title: "name [shorthash]" once the hash is known. */
  title: string;
  /** The path under its folder, e.g. "sub/model.safetensors" (A1111's name). */
  name: string;
  /** The name without extension, folders joined by "_" (A1111's model_name). */
  model_name: string;
  hash: string | null;
  sha256: string | null;
  filename: string;
}

const CHECKPOINT_EXT = ['.safetensors', '.ckpt'];
const VAE_EXT = ['.safetensors', '.ckpt', '.pt'];
const LORA_EXT = ['.safetensors', '.pt', '.ckpt', '.bin'];

/** Files under `root` with one of `exts`, whose real path stays under the root's real path. */
async function listFiles(root: string | undefined, exts: string[]): Promise<{ rel: string; file: string }[]> {
  if (root === undefined) return [];
  let realRoot: string;
  let entries: string[];
  try {
    realRoot = realpathSync(root);
    entries = (await readdir(root, { recursive: true })).map(String).sort();
  } catch {
    return [];
  }
  const out: { rel: string; file: string }[] = [];
  for (const rel of entries) {
    if (!exts.includes(path.extname(rel).toLowerCase())) continue;
    const file = path.join(root, rel);
    try {
      const real = realpathSync(file);
      if (!real.startsWith(realRoot + path.sep) || !(await stat(real)).isFile()) continue;
      out.push({ rel: rel.split(path.sep).join('/'), file: real });
    } catch {
      // a dangling link: not listed
    }
  }
  return out;
}

const sha256Memo = new Map<string, Promise<string>>();

export class ModelStore {
  checkpoints: Checkpoint[] = [];
  vaes: { model_name: string; filename: string }[] = [];
  /** Settles when every listed checkpoint's hash is known (hashing runs in the background). */
  hashing: Promise<void> = Promise.resolve();
  readonly dirs: { checkpoints?: string; vae?: string; lora?: string; embeddings?: string; taesd?: string };

  constructor(readonly folders: ModelFolders) {
    const a1111 = (sub: string) => (folders.models && isDir(path.join(folders.models, sub)) ? path.join(folders.models, sub) : undefined);
    this.dirs = {
      checkpoints: a1111('Stable-diffusion') ?? folders.models,
      vae: folders.vaeDir ?? a1111('VAE'),
      lora: folders.loraDir ?? a1111('Lora'),
      embeddings: folders.embeddingsDir ?? (folders.models && isDir(path.join(folders.models, '..', 'embeddings')) ? path.join(folders.models, '..', 'embeddings') : undefined),
      taesd: folders.taesdDir ?? a1111('VAE-taesd'),
    };
  }

  /** Lists the folders again (A1111's refresh-checkpoints / refresh-vae); hashes in the background. */
  async refresh(): Promise<void> {
    const listed = await listFiles(this.dirs.checkpoints, CHECKPOINT_EXT);
    if (this.folders.weights !== undefined) listed.unshift({ rel: path.basename(this.folders.weights), file: path.resolve(this.folders.weights) });
    const previous = new Map(this.checkpoints.map((c) => [c.filename, c]));
    this.checkpoints = listed.map(({ rel, file }) => {
      const known = previous.get(file);
      const name = rel;
      return known ?? { title: name, name, model_name: name.replace(/[/\\]/g, '_').replace(/\.[^.]+$/, ''), hash: null, sha256: null, filename: file };
    });
    this.vaes = (await listFiles(this.dirs.vae, VAE_EXT)).map(({ rel, file }) => ({ model_name: rel, filename: file }));
    this.hashing = Promise.all(this.checkpoints.map((c) => this.hash(c))).then(() => undefined);
  }

  private async hash(c: Checkpoint): Promise<void> {
    try {
      const sha = await perFileVersion(sha256Memo, c.filename, (full) => sha256File(full));
      Object.assign(c, { sha256: sha, hash: sha.slice(0, 10), title: `${c.name} [${sha.slice(0, 10)}]` });
    } catch {
      // unreadable now: listed without a hash
    }
  }

  /**
   * A checkpoint by any name A1111 accepts (its checkpoint_aliases): title, name, name without
   * extension, model_name, short hash, sha256; a title with a stale or missing hash matches by name.
   */
  findCheckpoint(name: string): Checkpoint | undefined {
    const bare = name.replace(/\s*\[[0-9a-f]{8,64}\]$/i, '');
    return this.checkpoints.find(
      (c) => c.title === name || c.name === name || c.name === bare || c.name.replace(/\.[^.]+$/, '') === bare || c.model_name === bare || (c.hash !== null && (c.hash === name || c.sha256 === name)),
    );
  }

  findVae(name: string): { model_name: string; filename: string } | undefined {
    return this.vaes.find((v) => v.model_name === name || v.model_name.replace(/\.[^.]+$/, '') === name);
  }

  /** The LoRA folder's files, as A1111's Lora extension lists them (/sdapi/v1/loras). */
  async loras(): Promise<{ name: string; alias: string; path: string; metadata: Record<string, never> }[]> {
    return (await listFiles(this.dirs.lora, LORA_EXT)).map(({ rel, file }) => {
      const name = path.basename(rel, path.extname(rel));
      return { name, alias: name, path: file, metadata: {} };
    });
  }

  /** Names of the LoRAs a <lora:name:w> tag can use. */
  async loraNames(): Promise<Set<string>> {
    return new Set((await this.loras()).map((l) => l.name));
  }

  /** A1111's /embeddings: loaded and skipped (another width, not an embedding), for a text encoder `width` wide. */
  async embeddings(width: number): Promise<{ loaded: Record<string, EmbeddingItem>; skipped: Record<string, EmbeddingItem> }> {
    const out = { loaded: {} as Record<string, EmbeddingItem>, skipped: {} as Record<string, EmbeddingItem> };
    if (this.dirs.embeddings === undefined || !isDir(this.dirs.embeddings)) return out;
    for (const e of await loadEmbeddingDirs([this.dirs.embeddings], width)) {
      const item = { step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape: e.error ? 0 : e.vectors.shape[1]!, vectors: e.error ? 0 : e.vectors.shape[0]! };
      (e.error ? out.skipped : out.loaded)[e.name] = item;
    }
    return out;
  }
}

export interface EmbeddingItem {
  step: number | null;
  sd_checkpoint: string | null;
  sd_checkpoint_name: string | null;
  shape: number;
  vectors: number;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
