// sdtorch: Stable Diffusion for Node.js. The public API (see README.md).
import type { SystemInfo } from './native/binding';
import { loaded, native, type Loaded } from './native/load';
import { Tensor } from './tensor';

export { Tensor, Generator, randn } from './tensor';
export type { DType, TypedArray, Operand } from './tensor';
export { CLIPTokenizer } from './text/clip-tokenizer';
export { Pipeline, loadPipeline, LATENT_SCALE } from './generate/pipeline';
export type { LoadOptions, GenerateResult } from './generate/pipeline';
export type { GenerateOptions, Progress, Decoder } from './generate/options';
export type { TinyAutoencoder } from './models/networks';
export { loadTaesd } from './models/taesd';
export type { TaesdSource, TaesdLoadOptions } from './models/taesd';
export type { RgbImage } from './image/io';
export type { HiresOptions, HiresUpscaler } from './generate/hires';
export type { Family } from './models/family';
export type { Conditioning } from './models/networks';
export { setLoras, loraHash, loraName } from './models/lora';
export type { Lora, AppliedLora, LoraResult } from './models/lora';
export { samplerNames, scheduleNames } from './sampling/registry';
export type { Prediction, ScheduleLabel, ScheduleName, TimestepSpacing } from './sampling/registry';
export { infotextOptions as parseInfotext } from './image/infotext';
export { encodePng } from './image/png';
export { extractExtraNetworks, promptSchedule, parseAttention } from './text/prompt';
export type { ExtraNetwork } from './text/prompt';
export type { InfotextOptions } from './image/infotext';
export { preloadModelsFromStandardWeights, generate } from './compat';
export type { StandardModels, SeedGenerateArgs } from './compat';

/** Reads a .safetensors or PyTorch .ckpt file (memory-mapped; .ckpt through a restricted unpickler). */
export async function loadTensors(path: string): Promise<Record<string, Tensor>> {
  const { tensors } = await native().loadTensors({ path });
  return Object.fromEntries(tensors.map(([k, t]) => [k, new Tensor(t)]));
}

/** The string metadata of a .safetensors file (its `__metadata__` header entry); {} for a .ckpt. */
export async function loadMetadata(path: string): Promise<Record<string, string>> {
  const { metadata } = await native().loadTensors({ path, headerOnly: true });
  return { ...metadata };
}

export interface SaveOptions {
  metadata?: Record<string, string>;
  /** Replace an existing file (default false: an existing file is an error). */
  overwrite?: boolean;
}

/** Writes a .safetensors file atomically; Python's safetensors reads it back bit for bit. */
export async function saveTensors(path: string, tensors: Record<string, Tensor>, options: SaveOptions = {}): Promise<void> {
  const handles = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, t.handle]));
  await native().saveTensors({ path, tensors: handles, metadata: options.metadata ?? {}, overwrite: options.overwrite ?? false });
}

/**
 * What the loaded native side is: libtorch version (loaded and built for), CUDA, threads, which
 * binary loaded ("source" build or a prebuilt variant) and, for a prebuilt one, which libtorch.
 */
export function systemInfo(): SystemInfo & Loaded {
  const info = native().systemInfo();
  return { ...info, ...loaded! };
}
