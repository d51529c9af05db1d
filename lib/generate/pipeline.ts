// Orchestration only: loading, and (in generate) prompt -> context, noise, sampling, decode. The
// maths lives in sampling/, the starts in latents.ts, what the checkpoint is in its Family.
import path from 'node:path';
import { encodePng } from '../image/png';
import { formatInfotext } from '../image/infotext';
import { loadImage, toImageData, type RgbImage, type Size } from '../image/io';
import { familyOf, type Family } from '../models/family';
import { modelHash } from '../models/hash';
import { loraHash, setLoras, type AppliedLora } from '../models/lora';
import { TextEncoder, Tokenizer, UNet, VAE, type TinyAutoencoder } from '../models/networks';
import { checkTaesdFits, loadTaesd, requireTaesd, taesdFiles, taesdPaths, type TaesdLoadOptions, type TaesdSource } from '../models/taesd';
import type { DType, NativeModel } from '../native/binding';
import { native } from '../native/load';
import { guidedModel, type Prediction } from '../sampling/denoiser';
import type { Sampler, SamplerOptions } from '../sampling/registry';
import { Generator, Tensor } from '../tensor';
import { CLIPTokenizer } from '../text/clip-tokenizer';
import { EmbeddingDb, encodeTexts, type TextualInversion } from '../text/conditioning';
import { loadEmbeddingDirs, type EmbeddingSlot } from '../text/embeddings';
import { extractExtraNetworks } from '../text/prompt';
import { generateHires } from './hires';
import { generateRefined } from './refiner';
import { prepareInpaint, type InpaintInputs } from './inpaint';
import { checkedLatents, img2imgStart, inpaintStart, latentsImg2imgStart, txt2imgStart } from './latents';
import { checkSize, KEEP_INFOTEXTS, resolveOptions, type CropTopLeft, type GenerateOptions, type MicroConditioning, type ResolvedOptions, type StageOptions } from './options';
import { resolveLoras } from './loras';
import { planPrompts } from './prompts';
import { previewImage } from './preview';
import { progressReporter } from './progress';

/**
 * The SD 1.x VAE's latent scale (UNet latents = 0.18215 * VAE latents). Kept for callers of the
 * first API; the pipeline uses its checkpoint's own value, `pipe.family.latentScale`.
 */
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

/** The dtypes networks compute in. */
const WEIGHT_DTYPES: readonly string[] = ['float32', 'float16', 'bfloat16'];

/** What the UNet predicts, when the weights cannot tell. */
const PREDICTIONS: readonly string[] = ['epsilon', 'v'];

export interface LoadOptions {
  /** 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available). Default 'auto'. */
  device?: string;
  /** Weights dtype. Default float16 on CUDA, float32 on CPU. */
  dtype?: 'float32' | 'float16' | 'bfloat16';
  /**
   * What the UNet predicts: 'epsilon' (SD 1.x, SD 2 base 512) or 'v' (SD 2 768-v). Default: the
   * detected family's (a diffusers folder's scheduler config says it; single files of SD 2 768
   * and SD 2 base share a layout, so pass 'v' for a 768-v single file the detection gets wrong).
   */
  prediction?: Prediction;
  /** A separate VAE file (.safetensors/.ckpt, e.g. vae-ft-mse-840000-ema-pruned) replacing the checkpoint's. */
  vae?: string;
  /**
   * float32 on CPU: run the UNet's and the VAE's convolutions and linear layers on copies of their
   * weights reordered once (at the first call) into oneDNN's blocked layout, convolutions with
   * channels-last activations (mkldnn::_convolution_pointwise, _linear_pointwise: PyTorch inductor's
   * freezing path), instead of reordering the conv weights on every call and running linear layers
   * on MKL's GEMM. A guided SD 1.5 UNet step takes 0.69x the time at 256x256 and 0.81x at 512x512
   * (docs/PERFORMANCE.md, run 4); results differ from the plain layers by rounding (relative 1e-6
   * per network; an 8-bit pixel may differ by 1). The copies take 3.4 GB for the SD 1.x UNet: from
   * an fp32 file they replace the mapped weights' pages, which are handed back, so memory stays the
   * same; from an fp16 file (converted at load) they would come on top. 'auto' (default): the VAE's
   * always, the UNet's when that costs no memory (an fp32 file); true: both; false: neither. No
   * effect on CUDA or in float16/bfloat16. `pipe.model.info().prepacked` says what was chosen.
   */
  prepack?: boolean | 'auto';
  /**
   * Where layers are prepacked (float32 on CPU; see `prepack`: an fp16 file's UNet only with
   * `prepack: true`), 3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin &
   * Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): 36 multiplications per 4x4
   * output tile and channel pair instead of 144, the rest in cheap transforms. Such a convolution
   * takes ~0.5x oneDNN's time at the UNet's 64x64 and 32x32 levels (docs/PERFORMANCE.md, run 5);
   * results differ from the direct convolution by ~1e-5 of the largest value per layer (float32
   * rounding in the transforms). The transformed weights take 4x the weights' memory, so 'auto'
   * (default) takes the convolutions where large activations meet small weights: the UNet's with at
   * least 256 channels and a weight of at most 15 MB (SD 1.x: its 320- and 640-channel levels, +0.54
   * GB, dropped while the VAE decodes and remade at the next step) and the VAE's 256/512-channel ones
   * above its deepest level (+0.28 GB); true: every one whose channel counts are multiples of 16
   * (SD 1.x: +5.8 GB more than 'auto'); false: none. `pipe.model.info().winograd` counts the
   * convolutions that take it (0 where nothing is prepacked).
   */
  winograd?: boolean | 'auto';
  /**
   * A TAESD (tiny autoencoder, madebyollin/taesd) for live previews and generate({ decoder: 'taesd' }):
   * its decoder file (taesd_decoder.safetensors for SD 1.x/2.x, taesdxl_decoder.safetensors for
   * SDXL; .pth too), [decoder, encoder] files, a diffusers AutoencoderTiny file, or a folder holding
   * them (the files for the model's family are picked: taesd_* or taesdxl_*).
   */
  taesd?: TaesdSource;
}

export function resolveDevice(device = 'auto'): string {
  if (device !== 'auto') return device;
  return native().systemInfo().cudaAvailable ? 'cuda' : 'cpu';
}

export class Pipeline {
  readonly tokenizer: Tokenizer;
  /** The first text encoder (SDXL: CLIP ViT-L; the refiner: OpenCLIP bigG). */
  readonly textEncoder: TextEncoder;
  /** Every text encoder, in the family's order (SDXL: CLIP ViT-L, OpenCLIP bigG). */
  readonly textEncoders: TextEncoder[];
  readonly unet: UNet;
  readonly vae: VAE;
  /** What the checkpoint is: latent channels and scale, prediction, encoder widths, default size. */
  readonly family: Family;
  /** Image pixels per latent cell (8 for SD 1.x), fixed by the checkpoint. */
  readonly vaeScale: number;
  /** The end of the last queued job: one generate() at a time per pipeline. */
  private queue: Promise<unknown> = Promise.resolve();
  private tiny: TinyAutoencoder | undefined;

  /** @internal */
  constructor(
    readonly model: NativeModel,
    readonly path: string,
    readonly device: string,
    readonly dtype: DType,
    /** The separate VAE file loaded in place of the checkpoint's, if any. */
    readonly vaePath?: string,
  ) {
    this.family = familyOf(model);
    this.tokenizer = new Tokenizer(CLIPTokenizer.load(), this.family.textEncoders[0]?.padToken);
    this.textEncoders = this.family.textEncoders.map((_, i) => new TextEncoder(model, i));
    this.textEncoder = this.textEncoders[0]!;
    this.unet = new UNet(model);
    this.vae = new VAE(model);
    this.vaeScale = this.family.vaeScaleFactor;
  }

  /** The TAESD loaded (loadPipeline's taesd option, or loadTaesd), if any. */
  get taesd(): TinyAutoencoder | undefined {
    return this.tiny;
  }

  /**
   * Loads a TAESD (see LoadOptions.taesd) on the pipeline's device and dtype, replacing any loaded
   * before; for previews and generate({ decoder: 'taesd' }). Rejects, keeping the one there was,
   * when a file is no TAESD or one of another latent space.
   */
  async loadTaesd(source: TaesdSource, /** @internal the call named in errors */ where = 'loadTaesd()'): Promise<TinyAutoencoder> {
    const files = taesdFiles(source, this.family, where);
    const tae = await loadTaesd(files, { device: this.device, dtype: this.dtype as TaesdLoadOptions['dtype'] });
    try {
      checkTaesdFits(tae, this.family, where);
    } catch (e) {
      tae.dispose();
      throw e;
    }
    // Swapped between jobs (the job queue): a running job keeps the one it started with.
    const swap = this.queue.then(() => {
      this.tiny?.dispose();
      return (this.tiny = tae);
    });
    this.queue = swap.catch(() => undefined);
    return swap;
  }

  get name(): string {
    return path.basename(this.path).replace(/\.(safetensors|ckpt|pt|pth)$/, '');
  }

  /** The separate VAE's file name (A1111's "VAE" infotext value), if one is loaded. */
  get vaeName(): string | undefined {
    return this.vaePath === undefined ? undefined : path.basename(this.vaePath);
  }

  /**
   * txt2img, img2img when `image` (or `initLatents`) is given, inpainting when `mask` is given
   * too, txt2img with A1111's hires fix when `hires` is. Noise is drawn as diffusers draws it: same
   * seed, same image. Options are checked before any work; concurrent calls on one pipeline queue
   * and run one at a time (networks move between devices mid-call with idleDevice).
   */
  async generate(options: GenerateOptions): Promise<GenerateResult> {
    // Before any pass runs; with a refiner, its pipeline decodes (refiner.ts checks it).
    if (options?.decoder === 'taesd' && options.decode !== false && options.refiner === undefined) requireTaesd(this);
    if (options?.refiner !== undefined) return generateRefined(this, options, (o) => this.generate(o));
    if (options?.hires !== undefined) return generateHires(this, options, (o) => this.generate(o));
    const o = resolveOptions(options, this.family);
    const run = this.queue.then(() => this.run(o, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(o: ResolvedOptions, options: GenerateOptions): Promise<GenerateResult> {
    options.signal?.throwIfAborted();
    const { sampler, schedule, label } = o.sampler;
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
    // Inpainting inputs first: a mask with nothing to repaint fails before any model work.
    const inpaint = o.inpaint && options.image !== undefined ? await prepareInpaint(options.image, o.inpaint, { width: o.width, height: o.height }, this.family.defaultSize) : undefined;

    // Prompts -> per-evaluation contexts: A1111 syntax, 75-token chunks, embeddings, clip skip.
    const guided = o.cfgScale > 1;
    const specs = this.family.textEncoders;
    const maxSkip = Math.min(...specs.map((e) => e.layers));
    if (o.clipSkip > maxSkip) throw new RangeError(`generate(): clipSkip must be at most ${maxSkip} for this text encoder, got ${o.clipSkip}`);
    // Tags out once; LoRAs first: they change the text encoder too. The job's set replaces the last job's.
    const prompts = o.prompts.map(extractExtraNetworks);
    const negatives = o.negatives.map(extractExtraNetworks);
    const loras = await setLoras(this.model, await resolveLoras(o.loras, prompts.flatMap((p) => p.networks), o.loraDirs));
    if (negatives.some((n) => n.networks.length)) process.emitWarning('tags such as <lora:...> in the negative prompt are removed and not applied (as in A1111)', { code: 'SDTORCH_NEGATIVE_TAGS' });
    const db = new EmbeddingDb(this.tokenizer.bpe, await loadEmbeddingDirs(o.embeddingDirs, embeddingSlots(this.family)));
    const sdxl = this.family.timeIds.length > 0;
    const encodeOpts = { emphasis: o.emphasis, clipSkip: o.clipSkip, commaBacktrack: 20, padToken: this.tokenizer.padId, pooled: sdxl };
    const encoders = this.textEncoders.map((encoder, i) => ({ encoder, padToken: specs[i]!.padToken }));
    const encode = (texts: string[]) => encodeTexts(texts, encoders, this.tokenizer.bpe, db, encodeOpts);
    const [plan, empty] = await stage(this.textEncoder, async () => [
      await planPrompts(prompts.map((p) => p.text), guided ? negatives.map((n) => n.text) : null, o.batchSize, o.steps * o.sampler.evalsPerStep, encode, this.family.zeroEmptyNegative),
      o.padCondUncond === true && guided ? (await encode([''])).context : undefined,
    ] as const);

    const batch = o.prompts.length * o.batchSize;
    const opts: SamplerOptions = {
      steps: o.steps, schedule, generator, signal: options.signal, zeroTerminalSnr: o.zeroTerminalSnr, prediction: this.family.prediction,
      ...(o.timestepSpacing !== undefined ? { timestepSpacing: o.timestepSpacing } : {}),
      ...(o.denoisingEnd !== undefined ? { denoisingEnd: o.denoisingEnd } : {}),
    };
    const vaeTile = (s: Size) => (tiling(options.vaeTiling, s.width, s.height) ? TILE_PIXELS : 0);
    let x: Tensor;
    let size: Size;
    let concat: Tensor | undefined;
    if (inpaint) {
      size = inpaint.size;
      checkSize(size, batch);
      opts.strength = o.strength;
      ({ x, concat } = await this.inpaintStart(inpaint, sampler, opts, batch, (images) => stage(this.vae, () => this.vae.encode(images, { tile: vaeTile(size) }))));
    } else if (options.initLatents !== undefined) {
      size = { height: options.initLatents.shape[2]! * this.vaeScale, width: options.initLatents.shape[3]! * this.vaeScale };
      checkLatentSize(size, o);
      if (o.denoisingStart !== undefined) {
        // A hand-off (SDXL refiner): the latents are already at the start step's noise level.
        opts.denoisingStart = o.denoisingStart;
        x = checkedLatents(this.family, batch, options.initLatents).to(this.device, 'float32');
      } else {
        opts.strength = o.strength;
        x = latentsImg2imgStart(this.family, sampler, opts, generator, this.device, batch, options.initLatents);
      }
    } else if (options.image !== undefined) {
      const image = await loadImage(options.image, o.width && o.height ? { width: o.width, height: o.height } : undefined);
      size = { height: image.shape[2]!, width: image.shape[3]! };
      checkSize(size, batch);
      opts.strength = o.strength;
      const moments = await stage(this.vae, () => this.vae.encode(image, { tile: vaeTile(size) }));
      x = img2imgStart(this.family, sampler, opts, generator, this.device, batch, moments);
    } else {
      size = { width: o.width ?? this.family.defaultSize, height: o.height ?? this.family.defaultSize };
      checkSize(size, batch);
      x = txt2imgStart(this.family, sampler, opts, generator, this.device, batch, size, options.latents);
    }

    const preview = o.previewEvery ? { every: o.previewEvery, make: (x0: Tensor) => previewImage(x0, this.family, this.tiny) } : undefined;
    opts.onStep = progressReporter(sampler.evaluations(opts), options.onProgress, preview);
    const timeIds = sdxl ? sdxlTimeIds(this.family, o.micro, size, batch, this.device) : undefined;
    const model = guidedModel(this.unet, plan.contextAt, {
      cfgScale: o.cfgScale, rescale: o.rescaleCfg, prediction: this.family.prediction, pad: o.padCondUncond, ...(empty ? { empty } : {}), ...(concat ? { concat } : {}),
      ...(timeIds ? { timeIds } : {}),
    });
    const latents = await stage(this.unet, () => sampler.sample(model, x, opts));
    if (options.decode === false) {
      // A refiner's base pass keeps its infotext: the image's parameters are the base's (refiner.ts).
      const infotexts = (options as StageOptions)[KEEP_INFOTEXTS] ? await this.infotexts(o, options, size, label, plan.usedEmbeddings, loras.applied) : [];
      return { images: [], latents, seed: o.seed, infotexts };
    }

    const decoded = o.decoder === 'taesd' ? await requireTaesd(this).decode(latents) : await stage(this.vae, () => this.decode(latents, vaeTile(size) / this.vaeScale));
    const infotexts = await this.infotexts(o, options, size, label, plan.usedEmbeddings, loras.applied);
    const pixels: RgbImage[] = inpaint ? inpaint.finish(toImageData(decoded)) : toImageData(decoded);
    const images = await Promise.all(pixels.map((img, i) => encodePng(img, infotexts[i])));
    return { images, latents, seed: o.seed, infotexts };
  }

  /**
   * The inpainting start (latents.ts inpaintStart, diffusers' order of draws), with what sampling
   * needs besides x: a 9-channel UNet's extra input cat(mask, masked-image latents) [B, 1 + C, h, w],
   * or a 4-channel UNet's unmasked latents to keep (opts.inpaint).
   */
  private async inpaintStart(
    inpaint: InpaintInputs, sampler: Sampler, opts: SamplerOptions, batch: number, encode: (images: Tensor) => Promise<Tensor>,
  ): Promise<{ x: Tensor; concat: Tensor | undefined }> {
    const nine = this.family.unetInChannels > this.family.latentChannels;
    const image = !nine || opts.strength !== 1 ? await encode(inpaint.image) : undefined;
    const masked = nine ? await encode(inpaint.masked()) : undefined;
    const start = inpaintStart(this.family, sampler, opts, opts.generator, this.device, batch, inpaint.size, {
      ...(image ? { image } : {}), ...(masked ? { masked } : {}),
    });
    const mask = inpaint.latentMask(this.vaeScale).to(this.device);
    if (nine) return { x: start.x, concat: Tensor.cat([Tensor.cat(Array<Tensor>(batch).fill(mask)), start.maskedLatents!], 1) };
    opts.inpaint = { latents: start.imageLatents!, noise: start.noise, mask };
    return { x: start.x, concat: undefined };
  }

  /**
   * The SD 1.x VAE can overflow in fp16 (NaN/inf, a black image). Then it decodes again in fp32
   * and stays in fp32, as A1111's automatic fallback does.
   */
  async decode(latents: Tensor, tile = 0): Promise<Tensor> {
    const z = latents.div(this.family.latentScale);
    const images = await this.vae.decode(z, { tile });
    if (images.allFinite() || this.model.info().vaeDtype === 'float32') return images;
    await this.vae.to(this.model.info().vaeDevice, 'float32');
    return this.vae.decode(z, { tile });
  }

  private async infotexts(o: ResolvedOptions, options: GenerateOptions, size: Size, sampler: string, embeddings: Set<TextualInversion>, loras: AppliedLora[]): Promise<string[]> {
    const hash = await modelHash(this.path);
    const vaeHash = this.vaePath === undefined ? undefined : await modelHash(this.vaePath);
    const batch = o.prompts.length * o.batchSize;
    // A1111's extra generation parameters, in its order and spelling.
    const extra: Record<string, string | number> = {};
    if (o.clipSkip > 1) extra['Clip skip'] = o.clipSkip;
    if (o.inpaint && o.inpaint.maskBlur > 0) extra['Mask blur'] = o.inpaint.maskBlur;
    if (o.inpaint?.area === 'masked') Object.assign(extra, { 'Inpaint area': 'Only masked', 'Masked area padding': o.inpaint.padding });
    if (o.zeroTerminalSnr) extra['Noise Schedule'] = 'Zero Terminal SNR';
    if (o.rescaleCfg > 0 && o.cfgScale > 1) extra['Guidance rescale'] = o.rescaleCfg;
    if (o.timestepSpacing !== undefined && o.timestepSpacing !== o.sampler.defaultSpacing) extra['Timestep spacing'] = o.timestepSpacing;
    const lh = await Promise.all(loras.map(async (l) => `${l.name.replace(/[:,]/g, '')}: ${await loraHash(l.path)}`));
    if (lh.length) extra['Lora hashes'] = [...new Set(lh)].join(', ');
    const ti = [...embeddings].map((e) => `${e.name.replace(/[:,]/g, '')}: ${e.hash}`);
    if (ti.length) extra['TI hashes'] = ti.join(', ');
    const label = { 'no-norm': 'No norm', ignore: 'Ignore', none: 'None', original: undefined }[o.emphasis];
    if (label && [...o.prompts, ...o.negatives].some((p) => /[([]/.test(p))) extra['Emphasis'] = label;
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
        ...(this.vaePath !== undefined ? { vaeHash: vaeHash!, vaeName: this.vaeName! } : {}),
        // a hand-off (denoisingStart) continues a run: no strength of its own
        ...((options.image !== undefined || options.initLatents !== undefined) && o.denoisingStart === undefined ? { strength: o.strength } : {}),
        ...(batch > 1 ? { batchSize: batch, batchPos: i } : {}),
        extra,
      }),
    );
  }

  /** Frees the weights (the TAESD's too); safe to call twice. */
  dispose(): void {
    this.model.dispose();
    this.tiny?.dispose();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/** initLatents set the size: width/height, when given, must say the same. */
function checkLatentSize(size: Size, o: ResolvedOptions): void {
  if ((o.width !== undefined && o.width !== size.width) || (o.height !== undefined && o.height !== size.height))
    throw new RangeError(`generate(): initLatents are ${size.width}x${size.height} pixels of latents; width/height say ${o.width ?? '-'}x${o.height ?? '-'}: leave them out or make them match`);
  checkSize(size, o.prompts.length * o.batchSize);
}

/** What SDXL embedding files give each text encoder: clip_l and clip_g by position (the refiner: clip_g); one encoder: its width. */
function embeddingSlots(family: Family): number | EmbeddingSlot[] {
  const e = family.textEncoders;
  if (family.timeIds.length === 0) return e[0]!.width;
  if (e.length === 1) return [{ key: 'clip_g', width: e[0]!.width }];
  return [{ key: 'clip_l', width: e[0]!.width }, { key: 'clip_g', width: e[1]!.width }];
}

/**
 * SDXL's time ids for the conditional and unconditional rows [batch, n], in pixels: original size
 * (h, w), crop (top, left), then target size (h, w) or the refiner's aesthetic score, as diffusers'
 * _get_add_time_ids orders them; sizes default to the output size, the negative ones to the positive.
 */
function sdxlTimeIds(family: Family, m: MicroConditioning, size: Size, batch: number, device: string): { cond: Tensor; uncond: Tensor } {
  const hw = (s: Size) => [s.height, s.width];
  const row = (original: Size, crop: CropTopLeft, target: Size, score: number) =>
    family.timeIds.flatMap((id) => (id === 'original_size' ? hw(original) : id === 'crop_coords_top_left' ? [crop.top, crop.left] : id === 'target_size' ? hw(target) : [score]));
  const original = m.originalSize ?? size;
  const target = m.targetSize ?? size;
  const cond = row(original, m.cropTopLeft, target, m.aestheticScore);
  const uncond = row(m.negativeOriginalSize ?? original, m.negativeCropTopLeft ?? m.cropTopLeft, m.negativeTargetSize ?? target, m.negativeAestheticScore);
  const rows = (r: number[]) => Tensor.from(Float32Array.from(Array.from({ length: batch }, () => r).flat()), [batch, r.length]).to(device);
  return { cond: rows(cond), uncond: rows(uncond) };
}

/**
 * Loads a checkpoint: a single file (.safetensors or .ckpt) or a diffusers folder; the family
 * (SD 1.x, SD 2.x, v-prediction, inpainting) is detected from the weights.
 */
export async function loadPipeline(file: string, options: LoadOptions = {}): Promise<Pipeline> {
  if (typeof file !== 'string') throw new TypeError(`loadPipeline(): the path must be a string, got ${typeof file}`);
  if (typeof options !== 'object' || options === null) throw new TypeError('loadPipeline(): options must be an object ({ device, dtype, prediction, vae, taesd })');
  if (options.device !== undefined && typeof options.device !== 'string') throw new TypeError("loadPipeline(): device must be 'cpu', 'cuda', 'cuda:N' or 'auto'");
  if (options.dtype !== undefined && !WEIGHT_DTYPES.includes(options.dtype))
    throw new TypeError(`loadPipeline(): unknown dtype '${String(options.dtype)}'; use ${WEIGHT_DTYPES.join(', ')}`);
  if (options.prediction !== undefined && !PREDICTIONS.includes(options.prediction))
    throw new TypeError(`loadPipeline(): prediction must be 'epsilon' or 'v' (what the UNet predicts), got ${typeof options.prediction === 'string' ? `'${options.prediction}'` : String(options.prediction)}`);
  if (options.vae !== undefined && (typeof options.vae !== 'string' || options.vae === ''))
    throw new TypeError('loadPipeline(): vae must be the path of a VAE file (.safetensors or .ckpt)');
  if (options.prepack !== undefined && typeof options.prepack !== 'boolean' && options.prepack !== 'auto')
    throw new TypeError(`loadPipeline(): prepack must be true, false or 'auto', got ${typeof options.prepack === 'string' ? `'${options.prepack}'` : String(options.prepack)}`);
  if (options.winograd !== undefined && typeof options.winograd !== 'boolean' && options.winograd !== 'auto')
    throw new TypeError(`loadPipeline(): winograd must be true, false or 'auto', got ${typeof options.winograd === 'string' ? `'${options.winograd}'` : String(options.winograd)}`);
  if (options.taesd !== undefined) taesdPaths(options.taesd); // before the model loads
  const device = resolveDevice(options.device);
  const dtype = options.dtype ?? (device.startsWith('cuda') ? 'float16' : 'float32');
  const vae = options.vae === undefined ? undefined : path.resolve(options.vae);
  const model = await native().loadModel({
    path: path.resolve(file), device, dtype, ...(options.prediction ? { prediction: options.prediction } : {}), ...(vae ? { vae } : {}),
    ...(typeof options.prepack === 'boolean' ? { prepack: options.prepack ? 'on' : 'off' } : {}),
    ...(typeof options.winograd === 'boolean' ? { winograd: options.winograd ? 'on' : 'off' } : {}),
  });
  const pipe = new Pipeline(model, path.resolve(file), device, dtype, vae);
  if (options.taesd !== undefined) {
    try {
      await pipe.loadTaesd(options.taesd, 'loadPipeline()');
    } catch (e) {
      pipe.dispose();
      throw e;
    }
  }
  return pipe;
}
