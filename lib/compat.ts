// The model description's original calls, in JS form: preloadModelsFromStandardWeights + generate.
import { toImageData } from './image/io';
import type { Tokenizer } from './models/networks';
import { loadPipeline, type Pipeline } from './generate/pipeline';

export interface StandardModels {
  pipeline: Pipeline;
  tokenizer: Tokenizer;
}

/** Loads an SD 1.x checkpoint onto `device` (fp32 on CPU, fp16 on CUDA). */
export async function preloadModelsFromStandardWeights(path: string, device = 'cpu'): Promise<StandardModels> {
  const pipeline = await loadPipeline(path, { device });
  return { pipeline, tokenizer: pipeline.tokenizer };
}

export interface SeedGenerateArgs {
  prompt: string;
  uncondPrompt?: string;
  inputImage?: string | Buffer | null;
  strength?: number;
  doCfg?: boolean;
  cfgScale?: number;
  samplerName?: string;
  models: StandardModels;
  tokenizer?: Tokenizer;
  device?: string;
  /** Networks not in use wait here (e.g. 'cpu' while the GPU runs another stage). */
  idleDevice?: string;
  nInferenceSteps?: number;
  seed?: number;
  width?: number;
  height?: number;
}

/** One image as uint8 RGB (H*W*3). */
export async function generate(a: SeedGenerateArgs): Promise<{ data: Uint8Array; width: number; height: number }> {
  const pipe = a.models.pipeline;
  if (a.device && a.device !== pipe.device)
    throw new Error(`generate(): the models were loaded on '${pipe.device}', not '${a.device}'; load them with preloadModelsFromStandardWeights(path, '${a.device}')`);
  const { latents } = await pipe.generate({
    prompt: a.prompt,
    negativePrompt: a.uncondPrompt ?? '',
    cfgScale: a.doCfg === false ? 1 : (a.cfgScale ?? 7.5),
    sampler: a.samplerName ?? 'ddpm',
    steps: a.nInferenceSteps ?? 50,
    ...(a.seed !== undefined ? { seed: a.seed } : {}),
    ...(a.inputImage ? { image: a.inputImage, strength: a.strength ?? 0.8 } : { width: a.width ?? 512, height: a.height ?? 512 }),
    ...(a.idleDevice ? { idleDevice: a.idleDevice } : {}),
    decode: false,
  });
  const decoded = await pipe.decode(latents);
  return toImageData(decoded)[0]!;
}
