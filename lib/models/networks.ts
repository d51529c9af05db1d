// Typed facades of the networks of a loaded checkpoint: each forward is a Promise.
import type { Component, DType, NativeModel, NativeTaesd, NativeTaesdInfo, NativeTensor } from '../native/binding';
import { Tensor } from '../tensor';
import type { CLIPTokenizer } from '../text/clip-tokenizer';

export class Tokenizer {
  /** The id that pads after the end token: <|endoftext|> (SD 1.x) or the family's (0 for SD 2). */
  readonly padId: number;
  constructor(readonly bpe: CLIPTokenizer, padId?: number) {
    this.padId = padId ?? bpe.padId;
  }
  /**
   * Token ids int64 [B, 77], padded and truncated as CLIPTokenizer(padding='max_length',
   * truncation=True) with the family's pad token (SD 2's tokenizer pads with 0).
   */
  encode(prompts: string | string[]): Tensor {
    const rows = this.bpe.encodeIds(typeof prompts === 'string' ? [prompts] : prompts, 77, this.padId);
    const flat = BigInt64Array.from(rows.flat(), (v) => BigInt(v));
    return Tensor.from(flat, [rows.length, rows[0]?.length ?? 77], 'int64');
  }
}

/** The native handle of a Tensor; anything else goes to the addon as is (undefined as null), which names what it needed. */
const handle = (t: unknown): NativeTensor => (t instanceof Tensor ? t.handle : ((t ?? null) as NativeTensor));

abstract class Network {
  constructor(protected readonly model: NativeModel, private readonly component: Component) {}
  /** Moves this network's weights (e.g. to the idle device between stages), casting when dtype is given. */
  async to(device: string, dtype?: DType): Promise<void> {
    await this.model.moveTo({ component: this.component, device, ...(dtype ? { dtype } : {}) });
  }
}

export interface TextEncoderOptions {
  /** A1111's "Clip skip": 1 = the family's own layer (SD 1.x: the last; SDXL: the penultimate), 2 = one earlier, ... */
  clipSkip?: number;
  /** Token embeddings at flat positions (b·77 + t) replaced by vectors [N, width] (textual-inversion embeddings). */
  inject?: { index: Tensor; vectors: Tensor };
}

/** One text encoder of the checkpoint (SDXL has two: index 0 CLIP ViT-L, 1 OpenCLIP bigG). Moving one moves all. */
export class TextEncoder extends Network {
  constructor(model: NativeModel, readonly index = 0) {
    super(model, 'textEncoder');
  }
  private args(ids: Tensor, options: TextEncoderOptions) {
    return {
      ids: handle(ids),
      encoder: this.index,
      ...(options.clipSkip !== undefined ? { clipSkip: options.clipSkip } : {}),
      ...(options.inject ? { injectIndex: handle(options.inject.index), injectVectors: handle(options.inject.vectors) } : {}),
    };
  }
  /**
   * ids int [B, 77] -> context [B, 77, width] (768 for SD 1.x): SD 1.x/2.x the last layer's hidden
   * state (with `clipSkip` N, the N-th from last) through the final layer norm; SDXL the penultimate
   * layer's (hidden_states[-2]), without it.
   */
  async forward(ids: Tensor, options: TextEncoderOptions = {}): Promise<Tensor> {
    return new Tensor(await this.model.encodeText(this.args(ids, options)));
  }
  /**
   * forward() and the pooled output [B, projection]: the last layer, final-normed, at each row's
   * end token, times text_projection (SDXL's text_embeds). An Error for encoders without a projection.
   */
  async forwardPooled(ids: Tensor, options: TextEncoderOptions = {}): Promise<{ context: Tensor; pooled: Tensor }> {
    const r = await this.model.encodeText({ ...this.args(ids, options), pooled: true });
    return { context: new Tensor(r.context), pooled: new Tensor(r.pooled) };
  }
}

/** What the UNet is conditioned on besides x and t. */
export interface Conditioning {
  /** [B, tokens, contextDim] cross-attention context (the text encoder's output). */
  context: Tensor;
  /** [B, C, h, w] joined to x along channels (inpainting's mask and masked-image latents). */
  concat?: Tensor;
  /** SDXL: [B, 1280] the pooled, projected text (diffusers' text_embeds). */
  textEmbeds?: Tensor;
  /** SDXL: [B, 6] original size (h, w), crop top-left (top, left), target size (h, w) in pixels; the refiner [B, 5] ends with the aesthetic score. */
  timeIds?: Tensor;
}

export class UNet extends Network {
  constructor(model: NativeModel) {
    super(model, 'unet');
  }
  /**
   * x [B,4,h,w], t [B] (or a number), context [B,77,768] or a Conditioning (SDXL: with textEmbeds and timeIds) -> the prediction
   * [B,4,h,w] (the noise for an epsilon model), float in the UNet's dtype.
   */
  async forward(x: Tensor, t: Tensor | number, cond: Tensor | Conditioning): Promise<Tensor> {
    const batch = x instanceof Tensor ? (x.shape[0] ?? 1) : 1;
    const tt = typeof t === 'number' ? Tensor.from(new Float32Array(batch).fill(t), [batch]) : t;
    const c: Partial<Conditioning> = cond instanceof Tensor ? { context: cond } : (cond ?? {});
    return new Tensor(
      await this.model.unet({
        x: handle(x),
        t: handle(tt),
        context: handle(c.context),
        ...(c.concat !== undefined ? { concat: handle(c.concat) } : {}),
        ...(c.textEmbeds !== undefined ? { textEmbeds: handle(c.textEmbeds) } : {}),
        ...(c.timeIds !== undefined ? { timeIds: handle(c.timeIds) } : {}),
      }),
    );
  }
}

export interface TileOptions {
  /** Work in overlapping tiles of this size (encode: pixels, decode: latent cells); 0 = whole. */
  tile?: number;
}

export class VAE extends Network {
  constructor(model: NativeModel) {
    super(model, 'vae');
  }
  /** images [B,3,H,W] in [-1,1] -> cat(mean, logvar) [B,8,H/8,W/8]. */
  async encode(images: Tensor, options: TileOptions = {}): Promise<Tensor> {
    return new Tensor(await this.model.vaeEncode({ images: handle(images), tile: options.tile ?? 0 }));
  }
  /** Unscaled latents [B,4,h,w] -> images [B,3,8h,8w], about [-1,1]. */
  async decode(z: Tensor, options: TileOptions = {}): Promise<Tensor> {
    return new Tensor(await this.model.vaeDecode({ latents: handle(z), tile: options.tile ?? 0 }));
  }
}

/**
 * TAESD, the tiny autoencoder (madebyollin/taesd; diffusers' AutoencoderTiny): a fast, rougher VAE
 * that works on the latents the UNet sees, without the VAE's latentScale. From loadTaesd, or a
 * pipeline's (loadPipeline's taesd option).
 */
export class TinyAutoencoder {
  /** @internal */
  constructor(
    private readonly net: NativeTaesd,
    /** The files it was loaded from. */
    readonly files: readonly string[],
  ) {}
  /** Its halves, latent channels, pixels per latent cell (scale: 8 for the published ones), device and dtype. */
  get info(): NativeTaesdInfo {
    return this.net.info();
  }
  /** images [B,3,H,W] in [-1,1] -> UNet-space latents [B,4,H/scale,W/scale], as diffusers' AutoencoderTiny.encode(x).latents. */
  async encode(images: Tensor): Promise<Tensor> {
    return new Tensor(await this.net.encode({ images: handle(images) }));
  }
  /** UNet-space latents [B,4,h,w] -> images [B,3,scale·h,scale·w], about [-1,1] (float, not clamped), as AutoencoderTiny.decode(z).sample. */
  async decode(latents: Tensor): Promise<Tensor> {
    return new Tensor(await this.net.decode({ latents: handle(latents) }));
  }
  /** Frees the weights; safe to call twice. */
  dispose(): void {
    this.net.dispose();
  }
}
