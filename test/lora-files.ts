// LoRA files for the tests and the LoRA benchmark, drawn from a seed by the recipe of
// scripts/make_lora_fixture.py (its fingerprints prove both write the same tensors).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as sd from '../lib';
import { REPO_ROOT } from './helpers';

const UNET = 'model.diffusion_model.';
const CLIP = 'cond_stage_model.transformer.text_model.';

/** A Linear or Conv layer of a checkpoint: where it is, its diffusers module path, its weight's shape. */
export interface Layer {
  component: 'unet' | 'te';
  key: string;
  module: string;
  shape: number[];
}

/**
 * diffusers' name of an LDM UNet module, for SD 1.x's block layout (2 resnets per level, each with an
 * attention where `attention[level]`, then a down/upsampler). Test code, written from diffusers'
 * conversion; the network code has only the other direction (native/models/lora.cc).
 */
export function diffusersModule(ldm: string, attention: boolean[]): string {
  const resnet = (rest: string) =>
    rest.replace(/^in_layers\.2/, 'conv1').replace(/^out_layers\.3/, 'conv2').replace(/^emb_layers\.1/, 'time_emb_proj').replace(/^skip_connection/, 'conv_shortcut');
  const fixed: Record<string, string> = { 'input_blocks.0.0': 'conv_in', 'out.2': 'conv_out', 'time_embed.0': 'time_embedding.linear_1', 'time_embed.2': 'time_embedding.linear_2' };
  if (fixed[ldm]) return fixed[ldm];
  let m = /^input_blocks\.(\d+)\.(\d)\.(.+)$/.exec(ldm);
  if (m) {
    const n = Number(m[1]) - 1, level = Math.floor(n / 3), j = n % 3;
    if (j === 2) return `down_blocks.${level}.downsamplers.0.conv`;
    return m[2] === '0' ? `down_blocks.${level}.resnets.${j}.${resnet(m[3]!)}` : `down_blocks.${level}.attentions.${j}.${m[3]}`;
  }
  m = /^middle_block\.(\d)\.(.+)$/.exec(ldm);
  if (m) return m[1] === '1' ? `mid_block.attentions.0.${m[2]}` : `mid_block.resnets.${Number(m[1]) / 2}.${resnet(m[2]!)}`;
  m = /^output_blocks\.(\d+)\.(\d)\.(.+)$/.exec(ldm);
  if (m) {
    const n = Number(m[1]), i = Math.floor(n / 3), j = n % 3;
    if (m[2] === '0') return `up_blocks.${i}.resnets.${j}.${resnet(m[3]!)}`;
    if (m[2] === '1' && attention[attention.length - 1 - i]) return `up_blocks.${i}.attentions.${j}.${m[3]}`;
    return `up_blocks.${i}.upsamplers.0.conv`;
  }
  throw new Error(`no diffusers name for ${ldm}`);
}

/** Every Linear/Conv layer of the UNet and of the text encoder's encoder, in the manifest's order. */
export function layers(manifest: Record<string, number[]>, attention: boolean[]): Layer[] {
  const out: Layer[] = [];
  for (const [key, shape] of Object.entries(manifest)) {
    if (!key.endsWith('.weight') || (shape.length !== 2 && shape.length !== 4)) continue;
    const module = key.slice(0, -'.weight'.length);
    if (key.startsWith(UNET)) out.push({ component: 'unet', key, module: diffusersModule(module.slice(UNET.length), attention), shape });
    else if (key.startsWith(`${CLIP}encoder.`)) out.push({ component: 'te', key, module: `text_model.${module.slice(CLIP.length)}`, shape });
  }
  return out;
}

export const sd15Layers = (): Layer[] =>
  layers(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'scripts', 'sd15_manifest.json'), 'utf8')) as Record<string, number[]>, [true, true, true, false]);

const fanIn = (shape: number[]) => shape.slice(1).reduce((a, b) => a * b, 1);

/**
 * A kohya LoCon on `targets` (names in kohya's diffusers spelling, or LDM's with `ldm`): per layer
 * down = randn([rank, in(, k, k)]) / sqrt(fan_in), up = randn([out, rank(, 1, 1)]) * 0.25, alpha rank/2.
 */
export function kohyaLora(targets: Layer[], o: { rank?: number; seed?: number; dtype?: 'float16' | 'float32'; ldm?: boolean } = {}): Record<string, sd.Tensor> {
  const rank = o.rank ?? 4;
  const g = new sd.Generator(o.seed ?? 4242);
  const out: Record<string, sd.Tensor> = {};
  for (const l of targets) {
    const where = o.ldm ? l.key.slice(l.component === 'unet' ? UNET.length : CLIP.length - 'text_model.'.length, -'.weight'.length) : l.module;
    const name = (l.component === 'unet' ? 'lora_unet_' : 'lora_te_') + where.replaceAll('.', '_');
    const down = g.randn([rank, ...l.shape.slice(1)]).div(Math.sqrt(fanIn(l.shape)));
    const up = g.randn([l.shape[0]!, rank, ...(l.shape.length === 4 ? [1, 1] : [])]).mul(0.25);
    out[`${name}.lora_down.weight`] = down.to(undefined, o.dtype ?? 'float16');
    out[`${name}.lora_up.weight`] = up.to(undefined, o.dtype ?? 'float16');
    out[`${name}.alpha`] = sd.Tensor.from(new Float32Array([rank / 2]), []);
  }
  return out;
}

/**
 * A diffusers/PEFT LoRA on the UNet's attention projections and the text encoder's self-attention:
 * lora_A = randn([rank, in]) / sqrt(in), lora_B = randn([out, rank]) * 0.125, no alpha.
 */
export function peftLora(targets: Layer[], o: { rank?: number; seed?: number } = {}): Record<string, sd.Tensor> {
  const rank = o.rank ?? 8;
  const g = new sd.Generator(o.seed ?? 4343);
  const out: Record<string, sd.Tensor> = {};
  for (const l of targets) {
    if (!/attn[12]\.(to_q|to_k|to_v|to_out\.0)$|self_attn\.(q|k|v|out)_proj$/.test(l.module)) continue;
    const name = `${l.component === 'unet' ? 'unet' : 'text_encoder'}.${l.module}`;
    out[`${name}.lora_A.weight`] = g.randn([rank, l.shape[1]!]).div(Math.sqrt(l.shape[1]!));
    out[`${name}.lora_B.weight`] = g.randn([l.shape[0]!, rank]).mul(0.125);
  }
  return out;
}

/** sha256 over the sorted keys and their values as float32 bytes (make_lora_fixture.py's fingerprint). */
export function fingerprint(tensors: Record<string, sd.Tensor>): string {
  const h = createHash('sha256');
  for (const k of Object.keys(tensors).sort()) {
    h.update(`${k}\0`);
    const t = tensors[k]!;
    h.update(Buffer.from(t.dtype === 'float32' ? t.toArray().buffer : t.to(undefined, 'float32').toArray().buffer));
  }
  return h.digest('hex');
}
