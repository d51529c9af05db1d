// Loads the addon: a prebuild for this platform and libtorch variant when one fits, else the
// local build. Types here are the raw binding; lib/tensor.ts and lib/index.ts wrap them.
import fs from 'node:fs';
import path from 'node:path';

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

export interface ModelInfo {
  config: string;
  dtype: DType;
  unetDevice: string;
  textEncoderDevice: string;
  vaeDevice: string;
  vaeDtype: DType;
  contextDim: number;
  /** Image pixels per latent cell along each side: 8 for SD 1.x. */
  vaeScale: number;
}

export type Component = 'textEncoder' | 'unet' | 'vae';

export interface NativeModel {
  info(): ModelInfo;
  encodeText(ids: NativeTensor): Promise<NativeTensor>;
  unet(x: NativeTensor, t: NativeTensor, ctx: NativeTensor): Promise<NativeTensor>;
  vaeEncode(images: NativeTensor, tile?: number): Promise<NativeTensor>;
  vaeDecode(z: NativeTensor, tile?: number): Promise<NativeTensor>;
  moveTo(component: Component, device: string, dtype?: DType): Promise<void>;
  dispose(): void;
}

export interface SystemInfo {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDevices: number;
  threads: number;
}

export interface Binding {
  NativeTensor: NativeTensorClass & (new (..._: never[]) => NativeTensor);
  NativeGenerator: new (seed: number | bigint) => NativeGenerator;
  loadModel(path: string, device: string, dtype: DType): Promise<NativeModel>;
  loadTensors(path: string): Promise<{ tensors: Array<[string, NativeTensor]>; metadata: Record<string, string>; format: string }>;
  saveTensors(path: string, record: Record<string, NativeTensor>, metadata?: Record<string, string>, overwrite?: boolean): Promise<void>;
  systemInfo(): SystemInfo;
  inspectFile(path: string): Promise<{ format: string; family: string; tensors: Array<{ name: string; dtype: DType; numel: number }> }>;
  presetManifest(preset: 'sd15' | 'tiny'): Array<[string, number[]]>;
}

export const packageRoot = path.resolve(__dirname, '..');

// Candidates in order of preference; the first that loads wins.
function candidates(): string[] {
  const forced = process.env.SDTORCH_BINARY;
  if (forced) return [path.resolve(forced)];
  const out: string[] = [];
  const pre = path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`);
  const variant = process.env.SDTORCH_VARIANT;
  if (fs.existsSync(pre)) {
    const files = fs.readdirSync(pre).filter((f) => f.endsWith('.node')).sort();
    // CUDA variants first (newest toolkit first), CPU last; SDTORCH_VARIANT narrows to one.
    const rank = (f: string) => (f.includes('.cpu.') ? 1 : 0);
    for (const f of files.sort((a, b) => rank(a) - rank(b) || b.localeCompare(a))) {
      if (!variant || f.includes(`.${variant}.`)) out.push(path.join(pre, f));
    }
  }
  out.push(path.join(packageRoot, 'build', 'Release', 'sdtorch.node'));
  return out;
}

let binding: Binding | undefined;
export let loadedFrom = '';

export function native(): Binding {
  if (binding) return binding;
  const errors: string[] = [];
  for (const file of candidates()) {
    if (!fs.existsSync(file)) continue;
    try {
      // A native addon can only be loaded with require().
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      binding = require(file) as Binding;
      loadedFrom = file;
      return binding;
    } catch (e) {
      errors.push(`  ${file}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(
    `sdtorch could not load its native addon.\n${errors.length ? `Tried:\n${errors.join('\n')}\n` : 'No prebuilt binary fits this machine and no local build exists.\n'}` +
      'Possible solutions:\n' +
      '  - build it: npx sdtorch build   (needs a C++ compiler, cmake and libtorch: pip install torch==2.13.0, or LIBTORCH=/path/to/libtorch)\n' +
      '  - if npm blocked the install script: npm install-scripts approve sdtorch && npm rebuild sdtorch\n' +
      '  - a libtorch of another version than the addon was built for cannot load it: rebuild, or set LIBTORCH to the matching one',
  );
}
