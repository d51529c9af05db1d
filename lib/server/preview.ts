// Live previews: A1111's "Approx cheap" (modules/sd_vae_approx.py, cheap_approximation): each
// latent channel times a fixed RGB factor, summed, no VAE. One pixel per latent cell.
import type { Family } from '../models/family';
import { encodePng } from '../image/png';
import type { Tensor } from '../tensor';

/** Latent channel -> [R, G, B] factors (SD 1.x/2.x, and SDXL's own). */
const SD_FACTORS = [
  [0.298, 0.207, 0.208],
  [0.187, 0.286, 0.173],
  [-0.158, 0.189, 0.264],
  [-0.184, -0.271, -0.473],
];
const SDXL_FACTORS = [
  [0.3448, 0.4168, 0.4395],
  [-0.1953, -0.029, 0.025],
  [0.1074, 0.0886, -0.0163],
  [-0.373, -0.2499, -0.2088],
];

/** The first image of latents [B, 4, h, w] (UNet space) as an h×w PNG, or undefined for other latent shapes. */
export async function latentPreview(latents: Tensor, family: Pick<Family, 'name'>): Promise<Buffer | undefined> {
  const [, channels, h, w] = latents.shape as [number, number, number, number];
  if (latents.shape.length !== 4 || channels !== 4) return undefined;
  const factors = /xl/i.test(family.name) ? SDXL_FACTORS : SD_FACTORS;
  const first = latents.slice(0, 0, 1).to('cpu', 'float32');
  const x = first.toArray() as Float32Array;
  first.dispose();
  const plane = h * w;
  const data = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let l = 0; l < 4; l++) v += x[l * plane + i]! * factors[l]![c]!;
      // (x + 1) / 2 clamped, then uint8 as numpy's astype truncates
      data[i * 3 + c] = Math.trunc(Math.min(Math.max(v * 0.5 + 0.5, 0), 1) * 255);
    }
  }
  return encodePng({ data, width: w, height: h });
}
