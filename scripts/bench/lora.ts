// LoRA apply/remove time and memory (docs/PERFORMANCE.md, "LoRA"): a rank-32 kohya LoCon on every
// Linear and Conv layer of the UNet and text encoder, on the fp32 SD 1.5 file, CPU.
//   node -r ts-node/register/transpile-only scripts/bench/lora.ts WEIGHTS [--base]
// One JSON line on stdout. --base: the same run without the LoRA (the memory baseline). The LoRA
// files are written by a child process first, so their making is not in this process's memory.
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as sd from '../../lib';
import { kohyaLora, sd15Layers } from '../../test/lora-files';

const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
const peakRssMb = () => Math.round(process.resourceUsage().maxRSS / 1024);

async function make(dir: string) {
  for (const seed of [1, 2]) await sd.saveTensors(path.join(dir, `rank32-${seed}.safetensors`), kohyaLora(sd15Layers(), { rank: 32, seed }));
}

async function main(weights: string, base: boolean) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdtorch-lora-bench-'));
  try {
    execFileSync(process.execPath, [...process.execArgv, __filename, '--make', dir], { stdio: 'inherit' });
    const files = [1, 2].map((seed) => path.join(dir, `rank32-${seed}.safetensors`));
    const out: Record<string, number | string> = { lora_file_mb: mb(fs.statSync(files[0]!).size), modules: sd15Layers().length };
    const pipe = await sd.loadPipeline(weights, { device: 'cpu', dtype: 'float32' });
    out.rss_loaded_mb = mb(process.memoryUsage().rss);
    const time = async (loras: sd.Lora[]) => {
      const t = performance.now();
      const r = await sd.setLoras(pipe.model, loras);
      return { seconds: Number(((performance.now() - t) / 1000).toFixed(2)), r };
    };
    if (!base) {
      const first = await time([{ path: files[0]!, weight: 0.8 }]);
      out.apply_s = first.seconds;
      out.patched = first.r.weights.patched;
      out.rss_applied_mb = mb(process.memoryUsage().rss);
      out.peak_rss_applied_mb = peakRssMb();
      out.remove_s = (await time([])).seconds;
      out.rss_removed_mb = mb(process.memoryUsage().rss);
      out.apply_again_s = (await time([{ path: files[0]!, weight: 0.8 }])).seconds;
      out.switch_s = (await time([{ path: files[1]!, weight: 0.8 }])).seconds;
      out.peak_rss_switched_mb = peakRssMb();
      out.same_again_s = (await time([{ path: files[1]!, weight: 0.8 }])).seconds;
    }
    // A generation reads every weight: the resident set with the LoRA in use.
    const t = performance.now();
    await pipe.generate({ prompt: 'a photo of a cat', width: 64, height: 64, steps: 2, seed: 1, sampler: 'euler', decode: false });
    out.generate_64px_2steps_s = Number(((performance.now() - t) / 1000).toFixed(2));
    out.rss_after_generate_mb = mb(process.memoryUsage().rss);
    out.peak_rss_mb = peakRssMb();
    console.log(JSON.stringify({ impl: 'sdtorch', mode: base ? 'base' : 'lora', ...out }));
    pipe.dispose();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
(args[0] === '--make' ? make(args[1]!) : main(args[0]!, args.includes('--base'))).catch((e) => {
  console.error(e);
  process.exit(1);
});
