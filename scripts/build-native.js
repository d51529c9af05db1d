'use strict';
// Builds the addon with cmake-js against the libtorch find-libtorch.js picks.
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { findLibtorch } = require('./find-libtorch');

function build() {
  const torch = findLibtorch();
  console.error(`sdtorch: building the native addon against libtorch from ${torch.source}`);
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const jobs = String(Math.max(1, require('node:os').availableParallelism()));
  const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--parallel', jobs, `--CDTorch_DIR=${torch.cmakeDir}`], {
    cwd: path.join(__dirname, '..'), stdio: 'inherit', env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs },
  });
  if (r.status !== 0) throw new Error('the native build failed (see the compiler output above)');
}

module.exports = { build };

if (require.main === module) {
  try {
    build();
  } catch (e) {
    console.error(`sdtorch: ${e.message}`);
    process.exit(1);
  }
}
