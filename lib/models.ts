// Typed facades of the three networks of a loaded checkpoint: each forward is a Promise.
import type { Component, DType, NativeModel } from './native';
import { Tensor } from './tensor';
import { CLIPTokenizer } from './tokenizer';

export class Tokenizer {
  constructor(readonly bpe: CLIPTokenizer) {}
  /** Token ids int64 [B, 77], padded and truncated as CLIPTokenizer(padding='max_length', truncation=True). */
  encode(prompts: string | string[]): Tensor {
    const rows = this.bpe.encodeIds(typeof prompts === 'string' ? [prompts] : prompts);
    const flat = BigInt64Array.from(rows.flat(), (v) => BigInt(v));
    return Tensor.from(flat, [rows.length, rows[0]?.length ?? 77], 'int64');
  }
}

abstract class Network {
  constructor(protected readonly model: NativeModel, private readonly component: Component) {}
  /** Moves this network's weights (e.g. to the idle device between stages), casting when dtype is given. */
  async to(device: string, dtype?: DType): Promise<void> {
    await this.model.moveTo(this.component, device, dtype);
  }
}

export class TextEncoder extends Network {
  constructor(model: NativeModel) {
    super(model, 'textEncoder');
  }
  /** ids [B, 77] -> last hidden state [B, 77, 768]. */
  async forward(ids: Tensor): Promise<Tensor> {
    return new Tensor(await this.model.encodeText(ids.handle));
  }
}

export class UNet extends Network {
  constructor(model: NativeModel) {
    super(model, 'unet');
  }
  /** x [B,4,h,w], t [B] (or a number), context [B,77,768] -> predicted noise [B,4,h,w]. */
  async forward(x: Tensor, t: Tensor | number, context: Tensor): Promise<Tensor> {
    const tt = typeof t === 'number' ? Tensor.from(new Float32Array(x.shape[0] ?? 1).fill(t), [x.shape[0] ?? 1]) : t;
    return new Tensor(await this.model.unet(x.handle, tt.handle, context.handle));
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
    return new Tensor(await this.model.vaeEncode(images.handle, options.tile ?? 0));
  }
  /** Unscaled latents [B,4,h,w] -> images [B,3,8h,8w], about [-1,1]. */
  async decode(z: Tensor, options: TileOptions = {}): Promise<Tensor> {
    return new Tensor(await this.model.vaeDecode(z.handle, options.tile ?? 0));
  }
}
