// Textual-inversion embeddings from files, found by name in folders, as A1111 loads them
// (modules/textual_inversion/textual_inversion.py, load_from_file): the name is the file name;
// the vectors are A1111's `string_to_param` (.pt), a file's only tensor (`emb_params` in
// .safetensors, diffusers' learned_embeds `{token: vector}` in .bin/.safetensors).
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { sha256File } from '../models/hash';
import { native } from '../native/load';
import { Tensor } from '../tensor';
import type { TextualInversion } from './conditioning';

/** File types an embedding can be in. */
export const EMBEDDING_EXTENSIONS = ['.pt', '.bin', '.safetensors'];

/** An embedding tensor as [n, width] float32 on the CPU, or an Error naming the file. */
function asVectors(file: string, vec: Tensor | undefined, what = 'the embedding'): Tensor {
  if (vec === undefined || !(vec.shape.length === 1 || vec.shape.length === 2) || !/^(float|bfloat)/.test(vec.dtype))
    throw new Error(`${file}: ${what} must be a float tensor [n, width] or [width], got ${vec?.dtype} [${vec?.shape.join(', ')}]`);
  return (vec.shape.length === 1 ? vec.reshape([1, vec.shape[0]!]) : vec).to('cpu', 'float32');
}

/** What an SDXL model's encoders take from an SDXL embedding file: the tensor name and its width. */
export type EmbeddingSlot = { key: 'clip_l' | 'clip_g'; width: number };

/** An SDXL embedding: `clip_l` [n, 768] and `clip_g` [n, 1280] (the format A1111 and diffusers read), one per slot. */
function sdxlVectors(file: string, byName: Map<string, Tensor>, slots: EmbeddingSlot[]): Tensor[] {
  const out = slots.map(({ key, width }) => {
    const v = asVectors(file, byName.get(key), key);
    if (v.shape[1] !== width) throw new Error(`${file}: ${key} is ${v.shape[1]} wide; this model's text encoder takes ${width}-wide vectors`);
    return v;
  });
  if (out.some((v) => v.shape[0] !== out[0]!.shape[0])) throw new Error(`${file}: clip_l and clip_g hold different numbers of vectors`);
  return out;
}

/**
 * Reads one embedding file. `width` is the text encoder's (768 for SD 1.x), or for SDXL the slots
 * of its encoders ([clip_l 768, clip_g 1280]; the refiner [clip_g 1280]): an embedding made for
 * another model (SD 2.x: 1024, SDXL: clip_l + clip_g) is an Error naming the file and both widths.
 */
export async function loadEmbedding(file: string, width: number | EmbeddingSlot[]): Promise<TextualInversion> {
  const { tensors } = await native().loadTensors({ path: file });
  const byName = new Map(tensors.map(([k, t]) => [k, new Tensor(t)]));
  const name = path.basename(file, path.extname(file));
  const xl = byName.has('clip_l') || byName.has('clip_g');
  const hash = async () => (await sha256File(file)).slice(0, 12);
  if (Array.isArray(width)) {
    if (!xl) throw new Error(`${file} is an embedding for one text encoder; this SDXL model takes SDXL embeddings (clip_l and clip_g tensors)`);
    const encoders = sdxlVectors(file, byName, width);
    return { name, vectors: encoders[0]!, ...(encoders.length > 1 ? { encoders } : {}), hash: await hash() };
  }
  let vec: Tensor | undefined;
  const params = [...byName.keys()].filter((k) => k.startsWith('string_to_param.'));
  if (xl) throw new Error(`${file} is an SDXL embedding (clip_l/clip_g); this model's text encoder takes ${width}-wide vectors`);
  if (params.length > 0) {
    if (params.length !== 1) throw new Error(`${file} has ${params.length} terms in string_to_param; an embedding file holds one`);
    vec = byName.get(params[0]!);
  } else if (byName.size === 1) vec = [...byName.values()][0];
  else
    throw new Error(`${file} is not a textual-inversion embedding: expected string_to_param (A1111 .pt), one tensor (emb_params, learned_embeds), found ${byName.size} tensors`);
  const vectors = asVectors(file, vec);
  const got = vectors.shape[1]!;
  if (got !== width) {
    const family = got === 1024 ? ' (SD 2.x)' : got === 1280 ? ' (SDXL)' : '';
    throw new Error(`${file} is an embedding of width ${got}${family}; this model's text encoder takes ${width}-wide vectors`);
  }
  return { name, vectors, hash: await hash() };
}

/**
 * Every embedding file in `dirs` (and their subfolders), by name; a later folder's name wins. A
 * file that cannot serve this model (another width, not an embedding) does not stop the others:
 * it is kept as an entry with `error`, which a prompt that uses its name gets.
 */
export async function loadEmbeddingDirs(dirs: string[], width: number | EmbeddingSlot[]): Promise<TextualInversion[]> {
  const found = new Map<string, TextualInversion>();
  for (const dir of dirs) {
    let entries: string[];
    try {
      entries = (await readdir(dir, { recursive: true })).map(String);
    } catch (e) {
      throw new Error(`embedding folder ${dir} cannot be read: ${(e as Error).message}`, { cause: e });
    }
    for (const rel of entries.sort()) {
      if (!EMBEDDING_EXTENSIONS.includes(path.extname(rel).toLowerCase())) continue;
      const file = path.join(dir, rel);
      const e = await loadEmbedding(file, width).catch((err: Error) => ({ name: path.basename(file, path.extname(file)), vectors: Tensor.from([0], [1, 1]), hash: '', error: err.message }));
      found.set(e.name, e);
    }
  }
  return [...found.values()];
}
