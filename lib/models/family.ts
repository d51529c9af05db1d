// What a loaded checkpoint is: one typed record, built by the native side from its preset table
// and detection at load (native/models/family.cc), read here, never a TypeScript constant.
import type { NativeFamily, NativeModel } from '../native/binding';

export type { TextEncoderSpec } from '../native/binding';

/**
 * A checkpoint's family: latent channels and scale, what the UNet predicts, text-encoder widths,
 * default image size, VAE scale factor. E.g. SD 1.x: 4 latent channels, scale 0.18215, 'epsilon',
 * one 768-wide CLIP ViT-L encoder of 77 tokens, 512x512, 8 pixels per latent cell.
 */
export type Family = Readonly<NativeFamily>;

export function familyOf(model: NativeModel): Family {
  const f = model.info().family;
  return Object.freeze({ ...f, textEncoders: Object.freeze(f.textEncoders.map((e) => Object.freeze({ ...e }))) as NativeFamily['textEncoders'] });
}
