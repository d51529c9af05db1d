'use strict';
// The sdtorch side of scripts/benchmark.js: one measurement per process, a JSON line on stdout.
//   node scripts/bench/sdtorch-side.js MODE WEIGHTS [FAMILY] [noprepack | nowinograd]
//   FAMILY sd15 (default; MODE: load | step256 | step512 | image512 | image256)
//          sdxl (MODE: load | step512 | step1024)
//   BENCH_STEPS: the steps of an image mode (default 20)
const { performance } = require('node:perf_hooks');
const path = require('node:path');
const sd = require(path.join(__dirname, '..', '..', 'dist'));

const peakRssMb = () => process.resourceUsage().maxRSS / 1024;

async function main(mode, weights, family = 'sd15', variant = '') {
  const t = performance.now();
  const variants = { noprepack: { prepack: false }, nowinograd: { winograd: false } };
  const pipe = await sd.loadPipeline(weights, { device: 'cpu', dtype: 'float32', ...variants[variant] });
  pipe.tokenizer.encode('warm'); // the tokenizer is part of being ready
  const out = { impl: variant ? `sdtorch-${variant}` : 'sdtorch', family, mode, load_s: (performance.now() - t) / 1000, load_from_start_s: performance.now() / 1000, load_peak_rss_mb: peakRssMb() };
  if (mode.startsWith('step')) {
    const pixels = Number(mode.slice(4));
    const side = pixels / 8;
    const g = new sd.Generator(0);
    const x = g.randn([2, 4, side, side]);
    const ts = sd.Tensor.from(new Float32Array([500, 500]), [2]);
    // SD 1.5: context [2,77,768]; SDXL: context [2,77,2048] (CLIP-L + bigG), pooled bigG [2,1280], 6 time ids per row
    const cond = family === 'sdxl'
      ? { context: g.randn([2, 77, 2048]), textEmbeds: g.randn([2, 1280]),
          timeIds: sd.Tensor.from(new Float32Array([pixels, pixels, 0, 0, pixels, pixels, pixels, pixels, 0, 0, pixels, pixels]), [2, 6]) }
      : g.randn([2, 77, 768]);
    await pipe.unet.forward(x, ts, cond); // warm-up
    const s = performance.now();
    await pipe.unet.forward(x, ts, cond);
    out.seconds = (performance.now() - s) / 1000;
  } else if (mode.startsWith('image')) {
    const side = Number(mode.slice(5));
    const s = performance.now();
    await pipe.generate({ prompt: 'a photo of a cat', negativePrompt: 'blurry', steps: Number(process.env.BENCH_STEPS ?? 20), cfgScale: 7.5, width: side, height: side, seed: 1, sampler: 'euler' });
    out.seconds = (performance.now() - s) / 1000;
  }
  out.peak_rss_mb = peakRssMb();
  console.log(JSON.stringify(out));
}

main(process.argv[2], process.argv[3], process.argv[4], process.argv[5]).catch((e) => {
  console.error(e);
  process.exit(1);
});
