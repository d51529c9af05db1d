#!/usr/bin/env node
'use strict';
// npm install hook (and `npm run build:native` with --from-source): a prebuilt binary with the
// libtorch it needs, else a source build. The logic lives in lib/setup.ts; a git checkout has no
// dist/ yet, so compile it first.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

if (process.env.SDTORCH_SKIP_BUILD === '1') {
  console.error('sdtorch: SDTORCH_SKIP_BUILD=1: no prebuilt binary checked, nothing built');
  process.exit(0);
}
if (!fs.existsSync(path.join(root, 'dist', 'native', 'setup.js'))) {
  const r = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(1);
}
require('../dist/native/setup')
  .setup({ fromSource: process.argv.includes('--from-source') })
  .catch((e) => {
    console.error(`sdtorch: ${e.message}`);
    process.exit(1);
  });
