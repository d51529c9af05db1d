// LoRA and LyCORIS files (LoRA/LoCon, LoHa, LoKr) on a loaded checkpoint, and A1111's LoRA hash.
// The maths is native (native/models/lora.cc): each named layer becomes W0 + Σ weight · scale · ΔW,
// recomputed from the checkpoint's own tensors on every change, so [] gives the base weights back.
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { NativeModel, NativeWeightCounts } from '../native/binding';
import { native } from '../native/load';
import { perFileVersion, sha256File } from './hash';

export interface Lora {
  /** .safetensors, or a PyTorch zip file (.pt, .ckpt, .bin). */
  path: string;
  /** A1111's LoRA weight: 1 as trained, 0 off, negative inverts. */
  weight: number;
}

export interface AppliedLora {
  /** The file's name without its extension, as A1111 names LoRAs. */
  name: string;
  path: string;
  weight: number;
  /** Layers of the model it changes. */
  modules: number;
  /** Its modules that name no layer of this model (reported, not applied). */
  unmatched: string[];
}

export interface LoraResult {
  applied: AppliedLora[];
  /** The text encoder's and UNet's parameters: how many hold a LoRA, how many use the file in place. */
  weights: NativeWeightCounts;
}

/** A1111's name of a LoRA file: its base name without the extension. */
export function loraName(file: string): string {
  return path.basename(file).replace(/\.(safetensors|ckpt|pt|pth|bin)$/i, '');
}

/**
 * Makes `loras` the model's LoRA set, replacing the previous one (`[]` restores the base weights bit
 * for bit). Asking for the same set again costs nothing. Every file is checked before any weight
 * changes: a file that fits no layer, or was made for another model family (an SDXL LoRA on SD 1.x),
 * rejects with an Error naming it. Modules that name no layer are listed in `unmatched` and reported
 * once as a warning (SDTORCH_LORA_PARTIAL). Call it between generations, not during one.
 */
export async function setLoras(model: NativeModel, loras: Lora[]): Promise<LoraResult> {
  if (!Array.isArray(loras)) throw new TypeError('setLoras: loras must be an array of { path, weight }');
  const requests = loras.map((l, i) => {
    if (typeof l !== 'object' || l === null) throw new TypeError(`setLoras: loras[${i}] must be an object { path, weight }`);
    if (typeof l.path !== 'string' || l.path === '') throw new TypeError(`setLoras: loras[${i}].path must be a file path`);
    if (typeof l.weight !== 'number' || !Number.isFinite(l.weight)) throw new TypeError(`setLoras: loras[${i}].weight must be a finite number`);
    return { name: loraName(l.path), path: l.path, multiplier: l.weight };
  });
  const { applied, weights } = await model.setLoras({ loras: requests });
  const result = applied.map((a, i) => ({ ...a, path: requests[i]!.path, weight: requests[i]!.multiplier }));
  for (const a of result) {
    if (a.unmatched.length === 0) continue;
    const some = a.unmatched.slice(0, 3).join(', ') + (a.unmatched.length > 3 ? ', ...' : '');
    process.emitWarning(`LoRA "${a.name}": ${a.modules} of ${a.modules + a.unmatched.length} modules applied; no layer for ${some}`, {
      code: 'SDTORCH_LORA_PARTIAL',
      detail: 'The file was probably made for a slightly different model; the listed modules have no effect.',
    });
  }
  return { applied: result, weights };
}

/** The byte offset where a .safetensors file's tensor data starts: 8 + the header length it records. */
async function safetensorsDataStart(file: string): Promise<number> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await fh.read(head, 0, 8, 0);
    if (bytesRead < 8) return bytesRead;
    return 8 + Number(head.readBigUInt64LE(0));
  } finally {
    await fh.close();
  }
}

const hashes = new Map<string, Promise<string>>();

/**
 * A1111's "Lora hashes" value for a file: the first 12 hex digits of the file's `sshs_model_hash`
 * metadata when it has one, else of the sha256 of a .safetensors file's data after its header
 * (kohya's addnet hash, A1111's `hashes.sha256(..., use_addnet_hash=True)`), or of the whole file
 * for other formats. Remembered per (path, size, mtime) for this process.
 */
export function loraHash(file: string): Promise<string> {
  return perFileVersion(hashes, file, async (full) => {
    if (/\.safetensors$/i.test(full)) {
      const { metadata } = await native().loadTensors({ path: full, headerOnly: true });
      const own = metadata['sshs_model_hash'];
      if (own) return own.slice(0, 12);
      return (await sha256File(full, await safetensorsDataStart(full))).slice(0, 12);
    }
    return (await sha256File(full)).slice(0, 12);
  });
}
