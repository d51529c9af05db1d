// Types of every native call: the raw binding the addon exports (native/addon/*.cc). Each call with
// more than one input takes ONE options object; lib/tensor.ts and lib/models/networks.ts wrap them.

export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly device: string;
  readonly disposed: boolean;
  toBuffer(): { buffer: ArrayBuffer; dtype: DType };
  to(device?: string, dtype?: DType): NativeTensor;
  binary(op: 'add' | 'sub' | 'mul' | 'div', other: NativeTensor | number): NativeTensor;
  unary(op: 'sqrt' | 'exp' | 'neg' | 'clone' | 'contiguous'): NativeTensor;
  unary(op: 'allFinite'): boolean;
  unary(op: 'sum' | 'norm'): number;
  clamp(min?: number, max?: number): NativeTensor;
  chunk(n: number, dim?: number): NativeTensor[];
  reshape(shape: number[]): NativeTensor;
  permute(dims: number[]): NativeTensor;
  slice(dim: number, start: number, end: number): NativeTensor;
  dispose(): void;
}

export interface NativeTensorClass {
  fromBuffer(data: ArrayBufferView, shape: number[], dtype: DType): NativeTensor;
  cat(tensors: NativeTensor[], dim?: number): NativeTensor;
}

export interface NativeGenerator {
  randn(shape: number[]): NativeTensor;
}

/** One text encoder of a family: its output width and the token positions it takes. */
export interface TextEncoderSpec {
  width: number;
  maxTokens: number;
  vocab: number;
  /** The largest clipSkip: the layers up to the context's (SD 2.x: 23 of OpenCLIP's 24; SDXL: all but the last). */
  layers: number;
  /** The token that fills a prompt after <|endoftext|>: 49407 (CLIP ViT-L, SD 1.x) or 0 (OpenCLIP, SD 2.x, SDXL's bigG). */
  padToken: number;
  /** Width of the pooled, projected output (SDXL's bigG: 1280); 0 when the encoder has no projection. */
  projection: number;
}

/** The numbers of SDXL's vector conditioning, in order: sizes and crops take 2 numbers, the score 1. */
export type TimeId = 'original_size' | 'crop_coords_top_left' | 'target_size' | 'aesthetic_score';

/** A row of the native preset table: what a loaded checkpoint is. */
export interface NativeFamily {
  /**
   * The preset: "sd15", "sd15-inpaint", "sd2" (512, epsilon), "sd2-v" (768, v), "sd2-inpaint", "sdxl",
   * "sdxl-refiner", "tiny", "tiny-inpaint", "tiny-sdxl", "tiny-sdxl-refiner".
   */
  name: string;
  /** For messages: "SD 1.x". */
  label: string;
  /** Channels of UNet latents (4 for SD 1.x). */
  latentChannels: number;
  /** Input channels of the UNet: latentChannels, plus any concatenated conditioning (inpainting). */
  unetInChannels: number;
  /** UNet latents = latentScale * VAE latents (0.18215 for SD 1.x). */
  latentScale: number;
  prediction: 'epsilon' | 'v';
  /** Image pixels per latent cell along each side (8). */
  vaeScaleFactor: number;
  /** Training resolution in pixels (512 for SD 1.x). */
  defaultSize: number;
  /** Width of the cross-attention context the UNet takes. */
  contextDim: number;
  /** The text encoders, in order; the context is their outputs joined along the width (SDXL: 768 + 1280). */
  textEncoders: TextEncoderSpec[];
  /** SDXL: the numbers after the pooled text in the UNet's vector input (diffusers' add_time_ids); [] otherwise. */
  timeIds: TimeId[];
  /** An all-empty negative prompt is encoded as zeros (diffusers' force_zeros_for_empty_prompt: SDXL base). */
  zeroEmptyNegative: boolean;
  /** The scheduler config's timestep spacing, used when none is given ('leading' for SDXL); null: the sampler's own. */
  timestepSpacing: 'leading' | 'linspace' | 'trailing' | null;
}

export interface ModelInfo {
  /** The preset name (= family.name). */
  config: string;
  dtype: DType;
  unetDevice: string;
  textEncoderDevice: string;
  vaeDevice: string;
  vaeDtype: DType;
  /** The separate VAE file loaded in place of the checkpoint's (loadModel's `vae`), or null. */
  vae: string | null;
  /** Whether the UNet's / the VAE's convolutions and linear layers run on prepacked weights in float32 on CPU (LoadOptions.prepack). */
  prepacked: { unet: boolean; vae: boolean };
  /** How many of the UNet's / the VAE's convolutions run by Winograd F(4x4, 3x3) (LoadOptions.winograd). */
  winograd: { unet: number; vae: number };
  family: NativeFamily;
}

export type Component = 'textEncoder' | 'unet' | 'vae';

/** What the UNet is conditioned on besides x and t (one object: new inputs need no new signature). */
export interface NativeConditioning {
  /** [B, tokens, contextDim] cross-attention context. */
  context: NativeTensor;
  /** [B, unetInChannels - latentChannels, h, w], joined to x along channels (inpainting). */
  concat?: NativeTensor;
  /** SDXL: [B, pooled width] the pooled, projected text of the last encoder (diffusers' text_embeds). */
  textEmbeds?: NativeTensor;
  /** SDXL: [B, n] the family's timeIds numbers in pixels (diffusers' time_ids); refused by families without them. */
  timeIds?: NativeTensor;
}

/** One LoRA file of a setLoras call. */
export interface NativeLoraRequest {
  /** For the report. */
  name: string;
  /** .safetensors, or a PyTorch zip file (.pt, .ckpt, .bin) read through the restricted unpickler. */
  path: string;
  /** Scales the file's update (A1111's LoRA weight); 0 leaves the model as it is. */
  multiplier: number;
}

/** What one LoRA file of a setLoras call changed. */
export interface NativeLoraReport {
  name: string;
  /** Layers of the model it changes. */
  modules: number;
  /** Its modules (or stray tensors) that name no layer of the model. */
  unmatched: string[];
}

/** The text encoder's and UNet's parameters after setLoras. */
export interface NativeWeightCounts {
  total: number;
  /** Holding a LoRA sum. */
  patched: number;
  /** Using the checkpoint file's memory in place (no copy). */
  mapped: number;
}

export interface NativeModel {
  info(): ModelInfo;
  /** clipSkip: 1 = last layer (A1111 numbering); inject: token-embedding rows (flat b*T+t) replaced by vectors [N, width]. */
  encodeText(o: { ids: NativeTensor; encoder?: number; clipSkip?: number; injectIndex?: NativeTensor; injectVectors?: NativeTensor }): Promise<NativeTensor>;
  encodeText(o: { ids: NativeTensor; encoder?: number; clipSkip?: number; injectIndex?: NativeTensor; injectVectors?: NativeTensor; pooled: true }): Promise<{ context: NativeTensor; pooled: NativeTensor }>;
  unet(o: { x: NativeTensor; t: NativeTensor } & NativeConditioning): Promise<NativeTensor>;
  vaeEncode(o: { images: NativeTensor; tile?: number }): Promise<NativeTensor>;
  vaeDecode(o: { latents: NativeTensor; tile?: number }): Promise<NativeTensor>;
  moveTo(o: { component: Component; device: string; dtype?: DType }): Promise<void>;
  /**
   * Makes these LoRAs the model's set (replacing the last one; [] restores the base weights exactly).
   * Rejects, changing nothing, when a file fits no layer or was made for another model family.
   */
  setLoras(o: { loras: NativeLoraRequest[] }): Promise<{ applied: NativeLoraReport[]; weights: NativeWeightCounts }>;
  /** A network's weights now, LoRAs included, by checkpoint key (views: a later setLoras leaves them). */
  parameters(o: { component: Component }): Promise<Array<[string, NativeTensor]>>;
  dispose(): void;
}

/** A loaded TAESD (native/models/taesd.h): its halves, structure and where its weights are. */
export interface NativeTaesdInfo {
  encoder: boolean;
  decoder: boolean;
  latentChannels: number;
  /** Image pixels per latent cell (8 for the published TAESDs). */
  scale: number;
  device: string;
  dtype: DType;
}

export interface NativeTaesd {
  info(): NativeTaesdInfo;
  /** images [B,3,H,W] in [-1,1] -> UNet-space latents [B,C,H/scale,W/scale]; rejects without an encoder. */
  encode(o: { images: NativeTensor }): Promise<NativeTensor>;
  /** UNet-space latents [B,C,h,w] (no 1/latentScale) -> images [B,3,scale·h,scale·w] about [-1,1]; rejects without a decoder. */
  decode(o: { latents: NativeTensor }): Promise<NativeTensor>;
  dispose(): void;
}

export interface SystemInfo {
  /** The libtorch that is loaded. */
  torchVersion: string;
  /** The libtorch the binary was built against (the addon refuses any other). */
  builtForTorch: string;
  cudaAvailable: boolean;
  cudaDevices: number;
  threads: number;
}

export interface Binding {
  NativeTensor: NativeTensorClass & (new (..._: never[]) => NativeTensor);
  NativeGenerator: new (seed: number | bigint) => NativeGenerator;
  /**
   * path: a checkpoint file or a diffusers folder; vae: a VAE file replacing the checkpoint's;
   * prediction: overrides what detection decided (SD 2.x files do not say).
   */
  loadModel(o: { path: string; device: string; dtype: DType; vae?: string; prediction?: 'epsilon' | 'v'; prepack?: 'auto' | 'on' | 'off'; winograd?: 'auto' | 'on' | 'off' }): Promise<NativeModel>;
  /**
   * A TAESD: one file per half (published layout), or a diffusers AutoencoderTiny file with both.
   * Rejects naming the file when it is no TAESD or two files hold the same half.
   */
  loadTaesd(o: { paths: string[]; device: string; dtype: DType }): Promise<NativeTaesd>;
  /** headerOnly: format and metadata, no tensors (a .ckpt's pickle is not read). */
  loadTensors(o: { path: string; headerOnly?: boolean }): Promise<{ tensors: Array<[string, NativeTensor]>; metadata: Record<string, string>; format: string }>;
  saveTensors(o: { path: string; tensors: Record<string, NativeTensor>; metadata?: Record<string, string>; overwrite?: boolean }): Promise<void>;
  systemInfo(): SystemInfo;
  /** A checkpoint file or diffusers folder, without building networks. */
  inspectFile(o: { path: string }): Promise<{
    /** "safetensors" | "ckpt" | "diffusers" */
    format: string;
    /** What it looks like: "sd1", "sd1-inpaint", "sd2", "sd2-inpaint", "sdxl", "sd3", "flux", "video", "lora", "vae", "taesd", ... */
    family: string;
    /** The preset it loads as, with its prediction and label; null when sdtorch does not load it. */
    preset: string | null;
    prediction: 'epsilon' | 'v' | null;
    label?: string;
    defaultSize?: number;
    tensors: Array<{ name: string; dtype: DType; numel: number; component: 'unet' | 'vae' | 'textEncoder' | 'other' }>;
  }>;
  presetManifest(o: { preset: string }): Array<[string, number[]]>;
}
