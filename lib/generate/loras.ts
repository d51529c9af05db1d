// Which LoRA files a job uses: generate({ loras }) and the <lora:name:weight> tags of its prompts,
// the tags' names found as files in loraDirs (A1111's Lora folder: by file name, any subfolder).
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Lora } from '../models/lora';
import type { ExtraNetwork } from '../text/prompt';

const EXTENSIONS = ['.safetensors', '.pt', '.ckpt', '.bin'];

/** The LoRA files in `dirs` by name (file name without extension); the first folder's wins. */
async function loraFiles(dirs: string[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const dir of dirs) {
    let entries: string[];
    try {
      entries = (await readdir(dir, { recursive: true })).map(String).sort();
    } catch (e) {
      throw new Error(`LoRA folder ${dir} cannot be read: ${(e as Error).message}`, { cause: e });
    }
    for (const rel of entries) {
      const ext = path.extname(rel).toLowerCase();
      const name = path.basename(rel, path.extname(rel));
      if (EXTENSIONS.includes(ext) && !found.has(name)) found.set(name, path.join(dir, rel));
    }
  }
  return found;
}

/**
 * The job's LoRAs: `explicit` first, then one per `<lora:name:w>` / `<lyco:name:w>` tag (weight
 * w, default 1). A tag whose name is in no folder is an Error naming it and the folders.
 */
export async function resolveLoras(explicit: Lora[], tags: ExtraNetwork[], dirs: string[]): Promise<Lora[]> {
  const wanted = tags.filter((t) => t.type === 'lora' || t.type === 'lyco');
  if (wanted.length === 0) return explicit;
  const files = await loraFiles(dirs);
  return [
    ...explicit,
    ...wanted.map((t) => {
      if (!Number.isFinite(t.multiplier)) throw new Error(`<${t.type}:${t.items.join(':')}>: the weight must be a number`);
      const file = files.get(t.name);
      if (file === undefined)
        throw new Error(
          `the prompt asks for LoRA '${t.name}', which is not in ${dirs.length ? `the LoRA folders (${dirs.join(', ')})` : 'any LoRA folder: pass loraDirs (CLI --lora-dir)'}` +
            (files.size ? `; there are: ${[...files.keys()].slice(0, 10).join(', ')}` : ''),
        );
      // A1111's <lora:name:te:unet> (or te=, unet=): one weight for both networks is what is supported.
      const unet = t.named['unet'] ?? t.positional[2];
      const te = t.named['te'];
      if ((unet !== undefined && Number(unet) !== t.multiplier) || (te !== undefined && Number(te) !== t.multiplier))
        throw new Error(`<${t.type}:${t.items.join(':')}>: separate text-encoder and UNet weights are not supported; give one weight`);
      return { path: file, weight: t.multiplier };
    }),
  ];
}
