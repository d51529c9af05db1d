// Orchestration only: loading, and (in generate) prompt -> context, noise, sampling, decode.
import path from 'node:path';
import { native, type DType, type NativeModel } from './native';
import { guidedEps } from './denoiser';
import { encodePng, formatInfotext, loadImage, modelHash, toImageData } from './image';
import { TextEncoder, Tokenizer, UNet, VAE } from './models';
import { resolveOptions, type GenerateOptions, type ResolvedOptions } from './options';
import { getSampler, type SamplerOptions } from './samplers';
import { Generator, Tensor } from './tensor';
import { CLIPTokenizer } from './tokenizer';

/** The SD 1.x VAE's latent scale: UNet latents = 0.18215 * VAE latents. */
export const LATENT_SCALE = 0.18215;

/** Tile side for the tiled VAE, in pixels, and the image size above which 'auto' tiles. */
const TILE_PIXELS = 512;
const AUTO_TILE_ABOVE = 1024;

function tiling(mode: boolean | 'auto' | undefined, width: number, height: number): boolean {
  return mode === 'auto' || mode === undefined ? Math.max(width, height) > AUTO_TILE_ABOVE : mode;
}

export interface GenerateResult {
  /** PNGs with A1111 "parameters" infotext (empty when decode is false). */
  images: Buffer[];
  /** Final latents [B,4,h,w] in UNet space, before decoding. */
  latents: Tensor;
  seed: number | bigint;
  infotexts: string[];
}

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
  /** Image pixels per latent cell (8 for SD 1.x), fixed by the checkpoint. */
  readonly vaeScale: number;

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
    this.vaeScale = model.info().vaeScale;
  }

  get name(): string {
    return path.basename(this.path).replace(/\.(safetensors|ckpt|pt|pth)$/, '');
  }

  /** txt2img, or img2img when `image` is given. Noise is drawn as diffusers draws it: same seed, same image. */
  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const o = resolveOptions(options);
    const { sampler, schedule, label } = getSampler(o.sampler, o.schedule);
    const generator = new Generator(o.seed);
    const idle = options.idleDevice;
    const stage = async <T>(net: TextEncoder | UNet | VAE, work: () => Promise<T>): Promise<T> => {
      if (!idle || idle === this.device) return work();
      await net.to(this.device);
      try {
        return await work();
      } finally {
        await net.to(idle);
      }
    };

    // Prompts: each repeated batchSize times, in diffusers' order (p0, p0, p1, p1, ...).
    const repeat = (xs: string[]) => xs.flatMap((x) => Array<string>(o.batchSize).fill(x));
    const guided = o.cfgScale > 1;
    const [context, uncond] = await stage(this.textEncoder, async () => [
      await this.textEncoder.forward(this.tokenizer.encode(repeat(o.prompts))),
      guided ? await this.textEncoder.forward(this.tokenizer.encode(repeat(o.negatives))) : null,
    ]);

    const batch = o.prompts.length * o.batchSize;
    const opts: SamplerOptions = { steps: o.steps, schedule, generator, signal: options.signal };
    let x: Tensor;
    let size: { width: number; height: number };
    if (options.image !== undefined) {
      const image = await loadImage(options.image, o.width && o.height ? { width: o.width, height: o.height } : undefined);
      size = { height: image.shape[2]!, width: image.shape[3]! };
      opts.strength = o.strength;
      // VAE posterior sample, then the forward noise for the start step: two draws, in this order.
      // Latent math in float32 on the compute device; noise is drawn on the CPU (same on every device).
      const tile = tiling(options.vaeTiling, size.width, size.height) ? TILE_PIXELS : 0;
      const moments = (await stage(this.vae, () => this.vae.encode(image, { tile }))).to(this.device, 'float32');
      const [mean, logvar] = moments.chunk(2, 1);
      const z = mean!.add(logvar!.mul(0.5).exp().mul(generator.randn(mean!.shape).to(this.device))).mul(LATENT_SCALE);
      const init = Tensor.cat(Array<Tensor>(batch).fill(z));
      x = sampler.addNoise(init, generator.randn(init.shape).to(this.device), opts);
    } else {
      size = { width: o.width ?? 512, height: o.height ?? 512 };
      const shape = [batch, 4, size.height / this.vaeScale, size.width / this.vaeScale];
      const noise = options.latents ?? generator.randn(shape);
      if (options.latents && noise.shape.join() !== shape.join())
        throw new RangeError(`generate(): latents must have shape [${shape.join(', ')}], got [${noise.shape.join(', ')}]`);
      x = sampler.init(noise.to(this.device, 'float32'), opts);
    }

    const total = sampler.evaluations(opts);
    const started = performance.now();
    opts.onStep = (step) => {
      const elapsedMs = performance.now() - started;
      const itPerSec = step / (elapsedMs / 1000);
      options.onProgress?.({ step, total, elapsedMs, itPerSec, etaMs: ((total - step) / itPerSec) * 1000 });
    };
    const eps = guidedEps(this.unet, context, uncond, o.cfgScale);
    const latents = await stage(this.unet, () => sampler.sample(eps, x, opts));
    if (options.decode === false) return { images: [], latents, seed: o.seed, infotexts: [] };

    const tile = tiling(options.vaeTiling, size.width, size.height) ? TILE_PIXELS / this.vaeScale : 0;
    const decoded = await stage(this.vae, () => this.decode(latents, tile));
    const infotexts = await this.infotexts(o, options, size, label);
    const images = await Promise.all(toImageData(decoded).map((img, i) => encodePng(img, infotexts[i])));
    return { images, latents, seed: o.seed, infotexts };
  }

  /**
   * The SD 1.x VAE can overflow in fp16 (NaN/inf, a black image). Then it decodes again in fp32
   * and stays in fp32, as A1111's automatic fallback does.
   */
  async decode(latents: Tensor, tile = 0): Promise<Tensor> {
    const images = await this.vae.decode(latents.div(LATENT_SCALE), { tile });
    if (images.allFinite() || this.model.info().vaeDtype === 'float32') return images;
    await this.vae.to(this.model.info().vaeDevice, 'float32');
    return this.vae.decode(latents.div(LATENT_SCALE), { tile });
  }

  private async infotexts(o: ResolvedOptions, options: GenerateOptions, size: { width: number; height: number }, sampler: string): Promise<string[]> {
    const hash = await modelHash(this.path);
    const batch = o.prompts.length * o.batchSize;
    return Array.from({ length: batch }, (_, i) =>
      formatInfotext({
        prompt: o.prompts[Math.floor(i / o.batchSize)]!,
        negativePrompt: o.negatives[Math.floor(i / o.batchSize)]!,
        steps: o.steps,
        sampler,
        cfgScale: o.cfgScale,
        seed: o.seed,
        width: size.width,
        height: size.height,
        modelHash: hash,
        modelName: this.name,
        ...(options.image !== undefined ? { strength: o.strength } : {}),
        ...(batch > 1 ? { batchSize: batch, batchPos: i } : {}),
      }),
    );
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
