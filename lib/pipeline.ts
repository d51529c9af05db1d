// Orchestration only: loading, and (in generate) prompt -> context, noise, sampling, decode.
import path from 'node:path';
import { native, type DType, type NativeModel } from './native';
import { TextEncoder, Tokenizer, UNet, VAE } from './models';
import { CLIPTokenizer } from './tokenizer';

export interface LoadOptions {
  /** 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available). Default 'auto'. */
  device?: string;
  /** Weights dtype. Default float16 on CUDA, float32 on CPU. */
  dtype?: 'float32' | 'float16' | 'bfloat16';
}

export function resolveDevice(device = 'auto'): string {
  if (device !== 'auto') return device;
  return native().systemInfo().cudaAvailable ? 'cuda' : 'cpu';
}

export class Pipeline {
  readonly tokenizer: Tokenizer;
  readonly textEncoder: TextEncoder;
  readonly unet: UNet;
  readonly vae: VAE;

  /** @internal */
  constructor(
    readonly model: NativeModel,
    readonly path: string,
    readonly device: string,
    readonly dtype: DType,
  ) {
    this.tokenizer = new Tokenizer(CLIPTokenizer.load());
    this.textEncoder = new TextEncoder(model);
    this.unet = new UNet(model);
    this.vae = new VAE(model);
  }

  get name(): string {
    return path.basename(this.path).replace(/\.(safetensors|ckpt|pt|pth)$/, '');
  }

  /** Frees the weights; safe to call twice. */
  dispose(): void {
    this.model.dispose();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/** Loads an SD 1.x single-file checkpoint (.safetensors or .ckpt). */
export async function loadPipeline(file: string, options: LoadOptions = {}): Promise<Pipeline> {
  const device = resolveDevice(options.device);
  const dtype = options.dtype ?? (device.startsWith('cuda') ? 'float16' : 'float32');
  const model = await native().loadModel(path.resolve(file), device, dtype);
  return new Pipeline(model, path.resolve(file), device, dtype);
}
