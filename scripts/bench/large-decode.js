'use strict';
// Decodes a latent of SIDE/8 cells with the tiled VAE and reports time and peak RSS, to show
// large images fit in memory: node scripts/bench/large-decode.js WEIGHTS [SIDE=2048]
const { performance } = require('node:perf_hooks');
const path = require('node:path');
const sd = require(path.join(__dirname, '..', '..', 'dist'));

(async () => {
  const [weights, side = '2048'] = process.argv.slice(2);
  const pipe = await sd.loadPipeline(weights, { device: 'cpu' });
  const cells = Number(side) / 8;
  const z = sd.randn([1, 4, cells, cells], new sd.Generator(0));
  const t = performance.now();
  const images = await pipe.decode(z, 64);
  console.log(JSON.stringify({
    side: Number(side), shape: images.shape, finite: images.allFinite(), seconds: (performance.now() - t) / 1000,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
