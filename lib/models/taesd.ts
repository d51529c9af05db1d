// TAESD files and loading: the taesd option (a file, [decoder, encoder], or a folder) resolved for a
// model's family, and the checks that a TAESD fits a model. The network is native (native/models/taesd.h).
import fs from 'node:fs';
import path from 'node:path';
import type { DType } from '../native/binding';
import { native } from '../native/load';
import type { Family } from './family';
import { TinyAutoencoder } from './networks';

/** What the taesd load option takes. */
export type TaesdSource = string | readonly string[];

/** File extensions of the published TAESD files (.pth: A1111's models/VAE-taesd). */
const EXTENSIONS = ['.safetensors', '.pth'];

/** The published files' stem for a family's latent space: taesdxl_* for SDXL (base, refiner), taesd_* for SD 1.x/2.x. */
export function taesdStem(family: Pick<Family, 'timeIds'>): 'taesd' | 'taesdxl' {
  return family.timeIds.length > 0 ? 'taesdxl' : 'taesd';
}

const isFile = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.isFile() === true;
const isDir = (p: string) => fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() === true;

/**
 * The TAESD files for `family` in folder `dir`: <stem>_decoder (with <stem>_encoder when present),
 * .safetensors or .pth, as madebyollin/taesd publishes them and A1111 (models/VAE-taesd) and ComfyUI
 * (models/vae_approx) keep them; else a diffusers AutoencoderTiny folder's weights. Undefined when
 * the folder holds none.
 */
export function findTaesd(dir: string, family: Pick<Family, 'timeIds'>): string[] | undefined {
  const stem = taesdStem(family);
  const find = (half: string) => EXTENSIONS.map((ext) => path.join(dir, `${stem}_${half}${ext}`)).find(isFile);
  const decoder = find('decoder');
  const encoder = find('encoder');
  if (decoder !== undefined) return encoder === undefined ? [decoder] : [decoder, encoder];
  if (encoder !== undefined) return [encoder]; // refused by checkTaesdFits, which says the decoder is missing
  const diffusers = path.join(dir, 'diffusion_pytorch_model.safetensors');
  return isFile(diffusers) ? [diffusers] : undefined;
}

/**
 * A taesd option's paths, absolute, checked to be one folder or one or two files; throws saying
 * what to pass. The folder's files depend on the model's family (taesdFiles).
 */
export function taesdPaths(source: TaesdSource, where = 'loadPipeline()'): string[] {
  const list: unknown[] = typeof source === 'string' ? [source] : Array.isArray(source) ? source : [];
  if (list.length === 0 || list.length > 2 || list.some((f) => typeof f !== 'string' || f === ''))
    throw new TypeError(`${where}: taesd must be the TAESD decoder file (taesd_decoder.safetensors; taesdxl_decoder for SDXL), [decoder, encoder] files, or a folder holding them`);
  const files = (list as string[]).map((f) => path.resolve(f));
  for (const [i, f] of files.entries()) {
    if (isDir(f) && files.length > 1) throw new TypeError(`${where}: taesd: '${String(list[i])}' is a folder; give a folder alone, or the files themselves`);
    if (!isDir(f) && !isFile(f)) throw new Error(`${where}: taesd: no such file or folder '${String(list[i])}'`);
  }
  return files;
}

/** The files of a taesd option (see LoadOptions.taesd) for `family`, absolute; throws saying what to pass. */
export function taesdFiles(source: TaesdSource, family: Pick<Family, 'timeIds' | 'label'>, where = 'loadPipeline()'): string[] {
  const files = taesdPaths(source, where);
  if (files.length > 1 || !isDir(files[0]!)) return files;
  const found = findTaesd(files[0]!, family);
  if (found === undefined)
    throw new Error(`${where}: taesd: the folder '${String(source)}' holds no TAESD for ${family.label}: put ${taesdStem(family)}_decoder.safetensors (and its encoder) in it`);
  return found;
}

export interface TaesdLoadOptions {
  /** 'cpu' (default), 'cuda', 'cuda:N'. */
  device?: string;
  /** Default float32. */
  dtype?: Extract<DType, 'float32' | 'float16' | 'bfloat16'>;
}

/**
 * Loads a TAESD by itself: its decoder and/or encoder file (published layout: taesd_decoder.safetensors,
 * taesd_encoder.safetensors; taesdxl_* for SDXL), or a diffusers AutoencoderTiny file holding both.
 */
export async function loadTaesd(files: string | readonly string[], options: TaesdLoadOptions = {}): Promise<TinyAutoencoder> {
  const paths = taesdPaths(files, 'loadTaesd()');
  if (paths.length === 1 && isDir(paths[0]!)) throw new TypeError(`loadTaesd(): '${String(files)}' is a folder; give the TAESD files themselves (a pipeline's taesd option picks a folder's files by the model's family)`);
  const net = await native().loadTaesd({ paths, device: options.device ?? 'cpu', dtype: options.dtype ?? 'float32' });
  return new TinyAutoencoder(net, paths);
}

/** Throws, saying why, when `tae` cannot serve a model of `family`: it needs the decoder, the latent channels and the pixels per latent cell. */
export function checkTaesdFits(tae: TinyAutoencoder, family: Pick<Family, 'label' | 'timeIds' | 'latentChannels' | 'vaeScaleFactor'>, where = 'loadPipeline()'): void {
  const info = tae.info;
  const file = tae.files.join("', '");
  // SD's and SDXL's TAESDs have the same shapes; only the published names tell them apart.
  const stem = taesdStem(family);
  const other = tae.files.map((f) => path.basename(f)).find((b) => /^taesd(xl)?_(de|en)coder\./i.test(b) && !b.toLowerCase().startsWith(`${stem}_`));
  if (other !== undefined)
    throw new Error(`${where}: taesd: '${other}' is the TAESD for ${stem === 'taesd' ? 'SDXL' : 'SD 1.x/2.x'} latents; this ${family.label} model needs ${stem}_decoder.safetensors`);
  if (!info.decoder)
    throw new Error(`${where}: taesd: '${file}' is a TAESD encoder only; previews and decoder 'taesd' need its decoder: give ${stem}_decoder.safetensors too`);
  if (info.latentChannels !== family.latentChannels)
    throw new Error(`${where}: taesd: '${file}' is a TAESD for latents of ${info.latentChannels} channels; this ${family.label} model's have ${family.latentChannels} (TAESDs for SD3 and FLUX have 16): use ${stem}_decoder.safetensors`);
  if (info.scale !== family.vaeScaleFactor)
    throw new Error(`${where}: taesd: '${file}' decodes ${info.scale} pixels per latent cell, while the VAE of this ${family.label} model decodes ${family.vaeScaleFactor}: it is a TAESD for another model`);
}

/** A pipeline's TAESD, for generate({ decoder: 'taesd' }); a TypeError saying how to load one when it has none. */
export function requireTaesd(pipe: { readonly taesd: TinyAutoencoder | undefined; readonly family: Pick<Family, 'timeIds' | 'label'> }): TinyAutoencoder {
  if (pipe.taesd) return pipe.taesd;
  throw new TypeError(`generate(): decoder 'taesd' needs a TAESD, and none is loaded with this ${pipe.family.label} model: pass loadPipeline(file, { taesd: '${taesdStem(pipe.family)}_decoder.safetensors' }), or call pipe.loadTaesd(file)`);
}
