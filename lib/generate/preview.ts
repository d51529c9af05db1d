// Live previews of sampling: an estimate of the clean latents as a small 8-bit RGB image, decoded
// by the pipeline's TAESD when it has one, else by A1111's "Approx cheap" (modules/sd_vae_approx.py,
// cheap_approximation): each latent channel times a fixed RGB factor, summed, no network; one pixel
// per latent cell.
import { toImageData, type RgbImage } from '../image/io';
import type { Family } from '../models/family';
import type { TinyAutoencoder } from '../models/networks';
import type { Tensor } from '../tensor';

/** Latent channel -> [R, G, B] factors of A1111's cheap_approximation: SD 1.x/2.x, and SDXL's own. */
export const CHEAP_FACTORS = {
  sd: [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
  ],
  sdxl: [
    [0.3448, 0.4168, 0.4395],
    [-0.1953, -0.029, 0.025],
    [0.1074, 0.0886, -0.0163],
    [-0.373, -0.2499, -0.2088],
  ],
} as const;

/**
 * The first image of UNet-space latents [B, 4, h, w] as an h×w image by the cheap approximation:
 * (Σ_l x_l·F[l] + 1) / 2 clamped to [0, 1], times 255, truncated as A1111's astype(np.uint8).
 * SDXL's factors for SDXL families (base and refiner). Undefined for latents of other channel counts.
 */
export function cheapPreview(latents: Tensor, family: Pick<Family, 'timeIds'>): RgbImage | undefined {
  const [, channels, h, w] = latents.shape as [number, number, number, number];
  if (latents.shape.length !== 4 || channels !== 4) return undefined;
  const factors = family.timeIds.length > 0 ? CHEAP_FACTORS.sdxl : CHEAP_FACTORS.sd;
  const first = latents.slice(0, 0, 1).to('cpu', 'float32');
  const x = first.toArray() as Float32Array;
  first.dispose();
  const plane = h * w;
  const data = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let l = 0; l < 4; l++) v += x[l * plane + i]! * factors[l]![c]!;
      data[i * 3 + c] = Math.trunc(Math.min(Math.max(v * 0.5 + 0.5, 0), 1) * 255);
    }
  }
  return { data, width: w, height: h };
}

/**
 * The first image of UNet-space latents [B, C, h, w] as a preview: decoded by `taesd` when given (the
 * image's own size, 8-bit as the final images are made), else cheapPreview.
 */
export async function previewImage(latents: Tensor, family: Pick<Family, 'timeIds'>, taesd?: TinyAutoencoder): Promise<RgbImage | undefined> {
  if (taesd === undefined) return cheapPreview(latents, family);
  const first = latents.slice(0, 0, 1);
  const decoded = await taesd.decode(first);
  first.dispose();
  const [image] = toImageData(decoded);
  decoded.dispose();
  return image;
}
