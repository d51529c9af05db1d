#!/usr/bin/env node
// The `sdtorch` command: generate, info, download, setup, build.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { resolveWeights } from './models/hub';
import { infotextOptions, type InfotextOptions } from './image/infotext';
import { readPngText } from './image/png';
import { EMPHASIS, type Emphasis } from './text/conditioning';
import { uniquePath, writeFileAtomic } from './util/fs';
import { loadPipeline, systemInfo } from './index';
import { native } from './native/load';
import { INPAINT_DEFAULTS, type Progress } from './generate/options';
import { getSampler, samplerNames, type ScheduleName } from './sampling/registry';
import { build, setup } from './native/setup';

const USAGE = `Usage:
  sdtorch generate "prompt" [options]     txt2img, img2img with --init-image, inpainting with --mask too
      --negative TEXT      negative prompt
      --steps N            denoising steps (default 50)
      --cfg X              guidance scale (default 7.5)
      --sampler NAME       ${samplerNames.join(', ')} or an A1111 name (default euler_a)
      --schedule S         default | karras | exponential | beta | sgm_uniform, or A1111's Automatic,
                           Karras, Exponential, Beta, SGM Uniform (--scheduler S is the same flag)
      --seed N             0 to 2^64-1; -1 or none: random (printed)
      --width W --height H multiples of 8 (default: the model's size: 512 SD 1.x, 768 SD 2.x 768-v, 1024 SDXL;
                           with --init-image: the image's size rounded down to multiples of 8)
      --batch N            images per prompt (default 1)
      --init-image FILE --strength X   img2img (strength default 0.8; 1 with --mask)
      --mask FILE          inpainting: white = repaint, black = keep (any size, PNG rather than JPEG;
                           needs --init-image)
      --mask-blur N        Gaussian blur of the mask in pixels (A1111's "Mask blur"; default 0)
      --inpaint-area A     whole | masked (A1111's "Only masked": the mask's box at --width x --height)
      --inpaint-padding N  pixels around the mask's box with --inpaint-area masked (default 32)
      --rescale-cfg X      guidance rescale 0..1 (diffusers' guidance_rescale; default 0)
      --zero-terminal-snr  rescale the noise schedule to zero terminal SNR (for models trained so)
      --timestep-spacing S leading | linspace | trailing (default: the model's scheduler config: leading
                           for SDXL; else the sampler's diffusers default)
      --weights FILE       a .safetensors/.ckpt checkpoint or a diffusers folder: SD 1.x, SD 2.x, SDXL,
                           inpainting (default: SDTORCH_WEIGHTS, else SD 1.5 from the Hub)
      --refiner FILE       SDXL: finish with this refiner from --refiner-switch-at X (default 0.8)
      --original-size WxH --target-size WxH --crop-top-left TOP,LEFT
                           SDXL size conditioning in pixels (default: the output size, 0,0)
      --aesthetic-score X  SDXL refiner's aesthetic score (default 6)
      --prediction P       epsilon | v: what the UNet predicts, when the file cannot tell (SD 2 768-v)
      --vae FILE           a separate VAE in place of the checkpoint's
      --taesd FILE|DIR     a TAESD (tiny autoencoder): taesd_decoder.safetensors (taesdxl_decoder for SDXL),
                           or a folder holding it; with --decoder taesd it decodes the images
      --decoder D          vae (default) | taesd: faster, rougher images (needs --taesd)
      --out PATH           output PNG, or an existing folder for sdtorch-<seed>.png (the default, here);
                           .png is added when PATH has none; a batch adds -1, -2, ...; a name
                           taken already gets a number (never overwritten without --overwrite)
      --overwrite          replace existing files
      --device D           auto | cpu | cuda | cuda:N (default auto)
      --dtype T            float32 | float16 | bfloat16 (default: float16 on CUDA, float32 on CPU)
      --embeddings DIR     textual-inversion embeddings, used in prompts by file name (repeatable)
      --clip-skip N        1 = last text-encoder layer (default), 2 = penultimate (A1111 numbering)
      --emphasis E         original | no-norm | ignore | none (how (word:1.2) weights act)
      --from-png FILE      take prompt and parameters from a PNG's infotext (flags given win)
      --lora FILE[:W]      a LoRA/LyCORIS file with its weight (default 1; repeatable)
      --lora-dir DIR       where <lora:name:w> tags in the prompt are found (repeatable)
  sdtorch serve [options]  AUTOMATIC1111's /sdapi/v1 API, a web page at / and OpenAPI at /docs
      --host H             listen address (default 127.0.0.1: this machine only)
      --port N             port (default 7860)
      --weights FILE | --models DIR   one checkpoint, or a folder of them (A1111's models/ folder too)
      --vae-dir DIR --lora-dir DIR --embeddings-dir DIR   more folders (default: beside --models)
      --taesd-dir DIR      TAESD files for live previews (taesd_decoder.*, taesdxl_decoder.*; default:
                           --models' VAE-taesd/); without one, previews are the cheap approximation
      --api-auth USER:PASS HTTP basic auth (comma-separated pairs)
      --cors ORIGIN        allow browser calls from ORIGIN (comma-separated)
      --redis URL          put jobs on BullMQ in Redis for \`sdtorch worker\` processes
      --queue-size N       jobs that may wait (default 32; more get 503)
      --outdir DIR         where save_images writes (default ./outputs)
      --device D --dtype T as for generate
  sdtorch worker --redis URL (--weights FILE | --models DIR) [--taesd-dir DIR] [--device D] [--dtype T]
                           take jobs from Redis, one at a time on this device
  sdtorch info FILE        a checkpoint's (or diffusers folder's) family, prediction, dtypes and parameter counts, or a PNG's parameters
  sdtorch info --system    libtorch, CUDA and the binary that loaded (for bug reports)
  sdtorch download         fetch the default weights into the cache
  sdtorch setup [--no-download]
                           make the addon loadable: the prebuilt binary with the libtorch it needs
                           (downloaded into the cache when missing), else a build from source
  sdtorch build            build the native addon from source`;

function progressBar(p: Progress): void {
  const width = 30;
  const done = Math.round((p.step / p.total) * width);
  const eta = Number.isFinite(p.etaMs) ? `${Math.ceil(p.etaMs / 1000)}s` : '?';
  process.stderr.write(`\r${p.step}/${p.total} [${'='.repeat(done)}${' '.repeat(width - done)}] ${p.itPerSec.toFixed(2)} it/s ETA ${eta}   `);
  if (p.step === p.total) process.stderr.write('\n');
}

const number = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${v}'`);
  return n;
};

const count = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`--${name} must be a whole number of 1 or more, got '${v}'`);
  return Number(v);
};

const DTYPES = ['float32', 'float16', 'bfloat16'] as const;

/** A whole number of 0 or more (pixels). */
const pixels = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a whole number of pixels (0 or more), got '${v}'`);
  return Number(v);
};

/** A value of a fixed set, or undefined. */
function oneOf<T extends string>(v: string | undefined, name: string, choices: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) throw new Error(`--${name} must be one of ${choices.join(', ')}, got '${v}'`);
  return v as T;
}

/** --original-size 1024x768 -> { width, height }. */
const sizeArg = (v: string | undefined, name: string): { width: number; height: number } | undefined => {
  if (v === undefined) return undefined;
  const m = /^(\d+)x(\d+)$/.exec(v);
  if (!m) throw new Error(`--${name} must be WIDTHxHEIGHT in pixels, e.g. 1024x1024, got '${v}'`);
  return { width: Number(m[1]), height: Number(m[2]) };
};

/** --crop-top-left 0,64 -> { top, left }. */
const cropArg = (v: string | undefined): { top: number; left: number } | undefined => {
  if (v === undefined) return undefined;
  const m = /^(\d+),(\d+)$/.exec(v);
  if (!m) throw new Error(`--crop-top-left must be TOP,LEFT in pixels, e.g. 0,0, got '${v}'`);
  return { top: Number(m[1]), left: Number(m[2]) };
};

/** The generation parameters of a PNG made by sdtorch or A1111. */
function fromPng(file: string): InfotextOptions {
  let png: Buffer;
  try {
    png = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`--from-png ${file}: ${(e as Error).message}`, { cause: e });
  }
  const text = readPngText(png).parameters;
  if (text === undefined) throw new Error(`--from-png ${file} carries no generation parameters (no "parameters" text chunk)`);
  const options = infotextOptions(text);
  // LoRAs given as files (--lora) leave only their hash; tags in the prompt come back by themselves.
  const hashes = options.params['Lora hashes'];
  const untagged = hashes ? [...hashes.matchAll(/([^:,]+):\s*[0-9a-f]+/g)].map((m) => m[1]!.trim()).filter((n) => !options.prompt.includes(`<lora:${n}`)) : [];
  if (untagged.length) console.error(`sdtorch: ${file} was made with LoRA ${untagged.join(', ')} given as a file: pass it again with --lora FILE:WEIGHT`);
  return options;
}

/**
 * parseArgs reads "--seed -1" as two options; a value that looks like a negative number is glued
 * to its option ("--seed=-1") so that it reaches the option's own check.
 */
function glueNegatives(args: string[], valued: Set<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const next = args[i + 1];
    if (valued.has(a) && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

const GENERATE_OPTIONS = {
  negative: { type: 'string' }, steps: { type: 'string' }, cfg: { type: 'string' }, sampler: { type: 'string' },
  schedule: { type: 'string' }, scheduler: { type: 'string' }, seed: { type: 'string' }, width: { type: 'string' }, height: { type: 'string' },
  batch: { type: 'string' }, 'init-image': { type: 'string' }, strength: { type: 'string' }, weights: { type: 'string' },
  out: { type: 'string' }, overwrite: { type: 'boolean' }, device: { type: 'string' }, dtype: { type: 'string' },
  embeddings: { type: 'string', multiple: true }, 'clip-skip': { type: 'string' }, emphasis: { type: 'string' },
  'from-png': { type: 'string' }, lora: { type: 'string', multiple: true }, 'lora-dir': { type: 'string', multiple: true },
  mask: { type: 'string' }, 'mask-blur': { type: 'string' }, 'inpaint-area': { type: 'string' }, 'inpaint-padding': { type: 'string' },
  vae: { type: 'string' }, prediction: { type: 'string' }, 'rescale-cfg': { type: 'string' }, 'zero-terminal-snr': { type: 'boolean' },
  'timestep-spacing': { type: 'string' }, refiner: { type: 'string' }, 'refiner-switch-at': { type: 'string' },
  'original-size': { type: 'string' }, 'target-size': { type: 'string' }, 'crop-top-left': { type: 'string' },
  'aesthetic-score': { type: 'string' }, taesd: { type: 'string' }, decoder: { type: 'string' },
} as const;

/** Image extensions other than PNG: refused for --out, since sdtorch writes PNG only. */
const NOT_PNG = ['.jpg', '.jpeg', '.webp', '.gif', '.bmp', '.tif', '.tiff', '.avif', '.heic'];

/**
 * Where generate's images go, checked before the model loads. --out DIR (an existing folder, or a
 * path ending in '/') holds sdtorch-<seed>.png; --out NAME gets '.png' when it has no PNG
 * extension; the i-th image of a batch (i >= 1) is <name>-<i>.png beside the first.
 */
function outputNames(out: string | undefined): (seed: number | bigint, i: number) => string {
  const full = path.resolve(out ?? '.');
  const isDir = out === undefined || /[\\/]$/.test(out) || fs.statSync(full, { throwIfNoEntry: false })?.isDirectory() === true;
  const folder = isDir ? full : path.dirname(full);
  const shown = out === undefined ? '.' : isDir ? out.replace(/(.)[\\/]+$/, '$1') : path.dirname(out);
  const st = fs.statSync(folder, { throwIfNoEntry: false });
  if (st === undefined) throw new Error(`--out ${out}: folder ${shown} does not exist (create it first, or write elsewhere)`);
  if (!st.isDirectory()) throw new Error(`--out ${out}: ${shown} is not a folder`);
  const ext = path.extname(full).toLowerCase();
  if (!isDir && NOT_PNG.includes(ext)) throw new Error(`--out ${out}: sdtorch writes PNG only (with the generation parameters in it): name the file .png, or give no extension`);
  const [stem, png] = ext === '.png' ? [full.slice(0, -ext.length), path.extname(full)] : [full, '.png'];
  const n = (i: number) => (i === 0 ? '' : `-${i}`);
  return (seed, i) => (isDir ? path.join(folder, `sdtorch-${seed}${n(i)}.png`) : `${stem}${n(i)}${png}`);
}

/** generate()'s option names and the CLI flags that set them, for error messages. */
const FLAGS: Record<string, string> = {
  image: 'init-image', mask: 'mask', steps: 'steps', strength: 'strength', width: 'width', height: 'height', sampler: 'sampler',
  cfgScale: 'cfg', negativePrompt: 'negative', batchSize: 'batch', clipSkip: 'clip-skip', maskBlur: 'mask-blur',
  inpaintArea: 'inpaint-area', inpaintPadding: 'inpaint-padding', rescaleCfg: 'rescale-cfg', zeroTerminalSnr: 'zero-terminal-snr',
  timestepSpacing: 'timestep-spacing', embeddingDirs: 'embeddings', loraDirs: 'lora-dir', loras: 'lora',
  originalSize: 'original-size', targetSize: 'target-size', cropTopLeft: 'crop-top-left', aestheticScore: 'aesthetic-score',
};
/** Names that are English words too: a flag only at the start or after "pass", "and", ... */
const PLAIN_WORDS = new Set(['image', 'mask', 'steps', 'strength', 'width', 'height', 'sampler']);
const FLAG_NAMES = new RegExp(`(pass |raise |leave |either |and |or )?\\b(${Object.keys(FLAGS).join('|')})\\b`, 'g');

/** A generate() error in the CLI's words: "generate(): rescaleCfg must be ..." -> "--rescale-cfg must be ...". */
function inFlags(e: Error): Error {
  const message = e.message
    .replace(/^generate\(\): /, '')
    .replace(/^refiner\.switchAt\b/, '--refiner-switch-at')
    .replace(FLAG_NAMES, (m, before: string | undefined, name: string, at: number) =>
      before === undefined && at > 0 && PLAIN_WORDS.has(name) ? m : `${before ?? ''}--${FLAGS[name]}`)
    .replace(/(--[a-z-]+):? '([^' ]+)'/g, '$1 $2');
  return message === e.message ? e : Object.assign(new (e.constructor as ErrorConstructor)(message, { cause: e }));
}

/** A sampler name without the schedule it may carry; as given when it is unknown (generate() says so). */
function samplerOnly(name: string): string {
  try {
    return getSampler(name).name;
  } catch {
    return name;
  }
}

/** --lora FILE[:WEIGHT] (weight 1 when absent; the last ':' splits, so paths may hold ':'). */
function loraArg(v: string): { path: string; weight: number } {
  const m = /^(.*):(-?\d*\.?\d+)$/.exec(v);
  const file = m ? m[1]! : v;
  if (!fs.existsSync(file)) throw new Error(`--lora ${v}: no such file ${file} (use --lora FILE:WEIGHT)`);
  return { path: file, weight: m ? Number(m[2]) : 1 };
}

async function generate(args: string[]): Promise<void> {
  const valued = new Set(Object.entries(GENERATE_OPTIONS).filter(([, o]) => o.type === 'string').map(([k]) => `--${k}`));
  const { values, positionals } = parseArgs({ args: glueNegatives(args, valued), allowPositionals: true, options: GENERATE_OPTIONS });
  // --from-png: the generation parameters an image carries (A1111 infotext); flags given win.
  const from = values['from-png'] !== undefined ? fromPng(values['from-png']) : undefined;
  const prompt = positionals.join(' ') || from?.prompt || '';
  if (!prompt) throw new Error('generate needs a prompt: sdtorch generate "a photo of a cat" (or --from-png image.png)');
  const outName = outputNames(values.out);
  if (values.strength !== undefined && values['init-image'] === undefined)
    throw new Error('--strength applies to img2img only: add --init-image FILE, or leave --strength out');
  if (values.mask !== undefined && values['init-image'] === undefined)
    throw new Error('--mask needs the image to inpaint: add --init-image FILE (the mask says which of its pixels to repaint, white = repaint)');
  const prediction = oneOf(values.prediction, 'prediction', ['epsilon', 'v'] as const);
  const decoder = oneOf(values.decoder, 'decoder', ['vae', 'taesd'] as const);
  if (decoder === 'taesd' && values.taesd === undefined)
    throw new Error('--decoder taesd needs --taesd FILE (taesd_decoder.safetensors; taesdxl_decoder for SDXL) or a folder holding it');
  const inpaintFlags = {
    maskBlur: pixels(values['mask-blur'], 'mask-blur'),
    inpaintArea: oneOf(values['inpaint-area'], 'inpaint-area', ['whole', 'masked'] as const),
    inpaintPadding: pixels(values['inpaint-padding'], 'inpaint-padding'),
  };
  // Their defaults are accepted anywhere: they change nothing.
  for (const [key, flag] of [['maskBlur', 'mask-blur'], ['inpaintArea', 'inpaint-area'], ['inpaintPadding', 'inpaint-padding']] as const)
    if (inpaintFlags[key] !== undefined && inpaintFlags[key] !== INPAINT_DEFAULTS[key] && values.mask === undefined)
      throw new Error(`--${flag} applies to inpainting only: add --mask FILE, or leave --${flag} out`);
  const inpaintArea = inpaintFlags.inpaintArea ?? (values.mask !== undefined ? from?.inpaintArea : undefined);
  const timestepSpacing = oneOf(values['timestep-spacing'], 'timestep-spacing', ['leading', 'linspace', 'trailing'] as const) ?? from?.timestepSpacing;
  if (values.schedule !== undefined && values.scheduler !== undefined && values.schedule !== values.scheduler)
    throw new Error(`--schedule ${values.schedule} and --scheduler ${values.scheduler} are one flag given twice: pass one`);
  const schedule = values.schedule ?? values.scheduler;
  // a schedule flag wins over the one the PNG's sampler name carries ("DPM++ 2M Karras" -> dpmpp_2m)
  const sampler = values.sampler ?? (schedule !== undefined && from?.sampler !== undefined ? samplerOnly(from.sampler) : from?.sampler);
  const rescaleCfg = number(values['rescale-cfg'], 'rescale-cfg') ?? from?.rescaleCfg;
  const zeroTerminalSnr = values['zero-terminal-snr'] ?? from?.zeroTerminalSnr;
  const maskBlur = inpaintFlags.maskBlur ?? (values.mask !== undefined ? from?.maskBlur : undefined);
  const inpaintPadding = inpaintFlags.inpaintPadding ?? (inpaintArea === 'masked' ? from?.inpaintPadding : undefined);
  if (values.dtype !== undefined && !(DTYPES as readonly string[]).includes(values.dtype))
    throw new Error(`--dtype must be one of ${DTYPES.join(', ')}, got '${values.dtype}'`);
  if (values.seed !== undefined && !/^(-1|\d+)$/.test(values.seed))
    throw new Error(`--seed must be a whole number from 0 to 2^64 - 1, or -1 for a random one, got '${values.seed}'`);
  if (values.emphasis !== undefined && !(EMPHASIS as readonly string[]).includes(values.emphasis))
    throw new Error(`--emphasis must be one of ${EMPHASIS.join(', ')}, got '${values.emphasis}'`);
  const steps = count(values.steps, 'steps') ?? from?.steps;
  const batchSize = count(values.batch, 'batch');
  const width = count(values.width, 'width') ?? from?.width;
  const height = count(values.height, 'height') ?? from?.height;
  const clipSkip = count(values['clip-skip'], 'clip-skip') ?? from?.clipSkip;
  const weights = await resolveWeights({
    weights: values.weights,
    onProgress: (done: number, total: number) => process.stderr.write(`\rdownloading weights: ${(done / 2 ** 20).toFixed(0)}/${(total / 2 ** 20).toFixed(0)} MiB`),
  });
  const dtype = values.dtype as (typeof DTYPES)[number] | undefined;
  if (values['refiner-switch-at'] !== undefined && values.refiner === undefined) throw new Error('--refiner-switch-at needs --refiner FILE');
  // A PNG made with a refiner names it; the switch point comes back with --refiner.
  const pngRefiner = from?.params['Refiner'];
  if (pngRefiner !== undefined && values.refiner === undefined)
    console.error(`sdtorch: ${values['from-png']} was made with the refiner ${pngRefiner}: pass it with --refiner FILE to make the same image`);
  // An img2img PNG names its strength, not its init image: the same image needs --init-image again.
  if (from?.strength !== undefined && values['init-image'] === undefined)
    console.error(`sdtorch: ${values['from-png']} was made by img2img (Denoising strength: ${from.strength}): pass its init image with --init-image FILE to make the same image`);
  // A hires PNG: its Size is the first pass's, and the hires fix runs again (txt2img only).
  const hires = values['init-image'] === undefined ? from?.hires : undefined;
  const pngHires = from?.params['Hires upscale'] !== undefined || from?.params['Hires resize'] !== undefined;
  if (pngHires && !from!.hires) {
    const lacks = from!.params['Hires resize'] !== undefined && from!.params['Hires upscale'] === undefined && /^(Latent|Lanczos)?$/.test(from!.params['Hires upscaler'] ?? '')
      ? `a hires resize to ${from!.params['Hires resize']}, another aspect than its first pass, which sdtorch's hires (one scale) cannot make`
      : `the hires upscaler ${from!.params['Hires upscaler']}, which sdtorch lacks (it has Latent and Lanczos)`;
    console.error(`sdtorch: ${values['from-png']} was made with ${lacks}: making the first pass only`);
  }
  if (from?.hires && values['init-image'] !== undefined)
    console.error(`sdtorch: ${values['from-png']} was made with the hires fix, which applies to txt2img: not run with --init-image`);
  const switchAt = number(values['refiner-switch-at'], 'refiner-switch-at') ?? (values.refiner !== undefined && from?.params['Refiner switch at'] !== undefined ? number(from.params['Refiner switch at'], 'refiner-switch-at') : undefined);
  const sizes = {
    ...(values['original-size'] !== undefined ? { originalSize: sizeArg(values['original-size'], 'original-size')! } : {}),
    ...(values['target-size'] !== undefined ? { targetSize: sizeArg(values['target-size'], 'target-size')! } : {}),
    ...(values['crop-top-left'] !== undefined ? { cropTopLeft: cropArg(values['crop-top-left'])! } : {}),
  };
  const aestheticScore = number(values['aesthetic-score'], 'aesthetic-score');
  const device = values.device ?? 'auto';
  const pipe = await loadPipeline(weights, {
    device, ...(dtype ? { dtype } : {}), ...(prediction ? { prediction } : {}), ...(values.vae ? { vae: values.vae } : {}), ...(values.taesd ? { taesd: values.taesd } : {}),
  });
  // The refiner loads once the base pass is done, after the base is freed: both need not fit in memory at once.
  const refinerFile = values.refiner;
  if (refinerFile !== undefined) {
    if (!fs.existsSync(refinerFile)) throw new Error(`--refiner ${refinerFile}: no such file or folder`);
    // What the file is, before the base pass runs (it loads only after it).
    const f = await native().inspectFile({ path: path.resolve(refinerFile) });
    if (!f.preset?.includes('sdxl')) throw new Error(`--refiner ${refinerFile} is not an SDXL refiner (it looks like ${f.label ?? f.family}): pass sd_xl_refiner_1.0 or another SDXL checkpoint`);
  }
  // The refiner decodes the images: it takes the TAESD too (the folder's files for its family).
  const refiner = refinerFile !== undefined ? async () => { pipe.dispose(); return loadPipeline(refinerFile, { device, ...(dtype ? { dtype } : {}), ...(values.taesd ? { taesd: values.taesd } : {}) }); } : undefined;
  const res = await pipe.generate({
    ...sizes,
    ...(aestheticScore !== undefined ? { aestheticScore } : {}),
    ...(refiner ? { refiner: { pipeline: refiner, ...(switchAt !== undefined ? { switchAt } : {}) } } : {}),
    prompt,
    negativePrompt: values.negative ?? from?.negativePrompt ?? '',
    steps,
    cfgScale: number(values.cfg, 'cfg') ?? from?.cfgScale,
    sampler,
    ...(schedule !== undefined ? { schedule: schedule as ScheduleName } : {}),
    seed: values.seed ?? from?.seed,
    ...(clipSkip !== undefined ? { clipSkip } : {}),
    ...(values.emphasis !== undefined || from?.emphasis ? { emphasis: (values.emphasis as Emphasis | undefined) ?? from!.emphasis! } : {}),
    ...(values.embeddings ? { embeddingDirs: values.embeddings } : {}),
    ...(values.lora ? { loras: values.lora.map(loraArg) } : {}),
    ...(values['lora-dir'] ? { loraDirs: values['lora-dir'] } : {}),
    width,
    height,
    batchSize,
    image: values['init-image'],
    strength: number(values.strength, 'strength') ?? (values['init-image'] !== undefined ? from?.strength : undefined),
    ...(values.mask !== undefined ? { mask: values.mask } : {}),
    ...(maskBlur !== undefined ? { maskBlur } : {}),
    ...(inpaintArea !== undefined ? { inpaintArea } : {}),
    ...(inpaintPadding !== undefined ? { inpaintPadding } : {}),
    ...(rescaleCfg !== undefined ? { rescaleCfg } : {}),
    ...(zeroTerminalSnr !== undefined ? { zeroTerminalSnr } : {}),
    ...(timestepSpacing !== undefined ? { timestepSpacing } : {}),
    ...(decoder !== undefined ? { decoder } : {}),
    ...(hires !== undefined ? { hires } : {}),
    onProgress: progressBar,
  }).catch((e: Error) => {
    throw inFlags(e);
  });
  const overwrite = values.overwrite ?? false;
  for (const [i, png] of res.images.entries()) {
    const base = outName(res.seed, i);
    const file = overwrite ? base : uniquePath(base);
    await writeFileAtomic(file, png, { overwrite });
    console.log(file);
  }
  console.error(`seed ${res.seed}`);
  pipe.dispose();
}

const SERVICE_OPTIONS = {
  host: { type: 'string' }, port: { type: 'string' }, weights: { type: 'string' }, models: { type: 'string' },
  'vae-dir': { type: 'string' }, 'lora-dir': { type: 'string' }, 'embeddings-dir': { type: 'string' },
  'taesd-dir': { type: 'string' }, 'api-auth': { type: 'string' }, cors: { type: 'string' }, redis: { type: 'string' }, 'queue-size': { type: 'string' },
  outdir: { type: 'string' }, device: { type: 'string' }, dtype: { type: 'string' }, name: { type: 'string' },
} as const;

function serviceArgs(args: string[]) {
  const { values } = parseArgs({ args, options: SERVICE_OPTIONS });
  if (values.dtype !== undefined && !(DTYPES as readonly string[]).includes(values.dtype)) throw new Error(`--dtype must be one of ${DTYPES.join(', ')}, got '${values.dtype}'`);
  if (values['api-auth'] !== undefined && !values['api-auth'].split(',').every((p) => /^[^:]+:.+$/.test(p))) throw new Error('--api-auth takes USER:PASS (comma-separated for several)');
  const folders = {
    ...(values.weights ? { weights: values.weights } : {}), ...(values.models ? { models: values.models } : {}),
    ...(values['vae-dir'] ? { vaeDir: values['vae-dir'] } : {}), ...(values['lora-dir'] ? { loraDir: values['lora-dir'] } : {}),
    ...(values['embeddings-dir'] ? { embeddingsDir: values['embeddings-dir'] } : {}), ...(values['taesd-dir'] ? { taesdDir: values['taesd-dir'] } : {}),
  };
  const device = { ...(values.device ? { device: values.device } : {}), ...(values.dtype ? { dtype: values.dtype as (typeof DTYPES)[number] } : {}) };
  return { values, folders, device };
}

/** Ends a long-running command on SIGINT/SIGTERM after `close` (a second signal exits at once). */
function onShutdown(what: string, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    console.error(`sdtorch ${what}: ${signal}, finishing the running job (again to stop at once)`);
    close().then(() => process.exit(0), (e: Error) => (console.error(e.message), process.exit(1)));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function serve(args: string[]): Promise<void> {
  const { values, folders, device } = serviceArgs(args);
  const port = count(values.port, 'port') ?? 7860;
  const maxQueue = count(values['queue-size'], 'queue-size');
  if (!values.redis && !folders.weights && !folders.models) {
    folders.weights = await resolveWeights({ onProgress: (d: number, t: number) => process.stderr.write(`\rdownloading weights: ${(d / 2 ** 20).toFixed(0)}/${(t / 2 ** 20).toFixed(0)} MiB`) });
  }
  const { startServer } = await import('./server/serve');
  const server = await startServer({
    ...folders, ...device, port, ...(values.host ? { host: values.host } : {}), ...(values['api-auth'] ? { apiAuth: values['api-auth'] } : {}),
    ...(values.cors ? { cors: values.cors } : {}), ...(values.redis ? { redis: values.redis } : {}), ...(maxQueue ? { maxQueue } : {}),
    ...(values.outdir ? { outdir: values.outdir } : {}),
  });
  console.error(`sdtorch serve: ${server.url} (page /, API /sdapi/v1, docs /docs)${values.redis ? `; jobs on ${values.redis}` : ''}`);
  onShutdown('serve', () => server.close());
}

async function worker(args: string[]): Promise<void> {
  const { values, folders, device } = serviceArgs(args);
  if (!values.redis) throw new Error('worker needs --redis URL (the one sdtorch serve --redis uses)');
  if (!folders.weights && !folders.models) throw new Error('worker needs --weights FILE or --models DIR');
  const { startWorker } = await import('./server/worker');
  const w = await startWorker({ redis: values.redis, ...folders, ...device, ...(values.name ? { name: values.name } : {}) });
  console.error(`sdtorch worker: taking jobs from ${values.redis}`);
  onShutdown('worker', () => w.close());
}

/** What `sdtorch info` says of files that are not whole checkpoints but that sdtorch uses. */
const ADD_ONS: Record<string, string> = {
  vae: 'a VAE: use it with --vae FILE (loadPipeline(model, { vae }))',
  taesd: 'a TAESD (tiny autoencoder) file: use it with --taesd FILE (loadPipeline(model, { taesd })) for previews and --decoder taesd',
  lora: 'a LoRA: use it with --lora FILE:W or <lora:name:W>',
  embedding: 'a textual-inversion embedding: put it in a folder given with --embeddings DIR and write its file name in the prompt',
};

/** The diffusers folder (holding model_index.json) that `file` is part of, if any. */
function diffusersFolderOf(file: string): string | undefined {
  const dir = path.dirname(path.resolve(file));
  return [dir, path.dirname(dir)].find((d) => fs.existsSync(path.join(d, 'model_index.json')));
}

async function info(args: string[]): Promise<void> {
  if (args[0] === '--system') {
    console.log(JSON.stringify({ ...systemInfo(), node: process.version, platform: `${process.platform}-${process.arch}` }, null, 2));
    return;
  }
  const file = args[0];
  if (!file) throw new Error('info needs a file: sdtorch info model.safetensors | image.png');
  const folder = fs.statSync(file).isDirectory() ? undefined : diffusersFolderOf(file);
  if (folder !== undefined && path.extname(file).toLowerCase() === '.json') {
    const shown = path.relative('.', folder) || '.';
    console.log(`${file} is part of the diffusers folder ${shown}: pass the folder itself (sdtorch info ${shown}, --weights ${shown})`);
    return;
  }
  const head = Buffer.alloc(8);
  if (!fs.statSync(file).isDirectory()) {
    const fd = fs.openSync(file, 'r');
    fs.readSync(fd, head, 0, 8, 0);
    fs.closeSync(fd);
  }
  if (head.toString('latin1', 1, 4) === 'PNG') {
    const text = readPngText(fs.readFileSync(file));
    console.log(text.parameters ?? '(no generation parameters in this PNG)');
    return;
  }
  const f = await native().inspectFile({ path: path.resolve(file) });
  const groups: Record<string, { params: number; dtypes: Set<string> }> = {};
  const names = { unet: 'unet', vae: 'vae', textEncoder: 'text encoder', other: 'other' } as const;
  for (const t of f.tensors) {
    const g = (groups[names[t.component]] ??= { params: 0, dtypes: new Set() });
    g.params += t.numel;
    g.dtypes.add(t.dtype);
  }
  const loads = f.preset
    ? `${f.label} (preset ${f.preset}), ${f.prediction === 'v' ? 'v-prediction' : 'epsilon prediction'}, ${f.defaultSize}x${f.defaultSize}`
    : (ADD_ONS[f.family] ?? (folder !== undefined ? `part of the diffusers folder ${path.relative('.', folder) || '.'}: pass the folder itself` : 'not loadable by sdtorch'));
  console.log(`${file}\n  format: ${f.format}\n  family: ${f.family}\n  loads as: ${loads}\n  tensors: ${f.tensors.length}`);
  for (const [name, g] of Object.entries(groups))
    console.log(`  ${name}: ${(g.params / 1e6).toFixed(1)}M parameters (${[...g.dtypes].join(', ')})`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const help = rest.includes('--help') || rest.includes('-h');
  switch (help ? '--help' : command) {
    case 'generate': return generate(rest);
    case 'info': return info(rest);
    case 'serve': return serve(rest);
    case 'worker': return worker(rest);
    case 'download': {
      const file = await resolveWeights({ onProgress: (d: number, t: number) => process.stderr.write(`\r${(d / 2 ** 20).toFixed(0)}/${(t / 2 ** 20).toFixed(0)} MiB`) });
      console.log(file);
      return;
    }
    case 'setup': return setup({ download: !rest.includes('--no-download') });
    case 'build': {
      await build();
      return;
    }
    case undefined: case '-h': case '--help': case 'help':
      console.log(USAGE);
      return;
    default:
      throw new Error(`unknown command '${command}'\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((e: Error) => {
  console.error(e.message.startsWith('sdtorch') ? e.message : `sdtorch: ${e.message}`);
  process.exit(1);
});
