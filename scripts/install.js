#!/usr/bin/env node
'use strict';
// npm install hook: keep a prebuilt binary that loads on this machine, else build from source.
// Never silent: it says which binary it uses, or exactly why it could not build.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

function loads(file) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { encoding: 'utf8', timeout: 60000 });
  return r.status === 0;
}

function prebuilds() {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.node')).map((f) => path.join(dir, f)) : [];
}

function main() {
  if (process.env.SDTORCH_SKIP_BUILD === '1') return console.error('sdtorch: SDTORCH_SKIP_BUILD=1, not building the native addon');
  const fit = prebuilds().find(loads);
  if (fit && process.env.SDTORCH_BUILD_FROM_SOURCE !== '1') return console.error(`sdtorch: using prebuilt ${path.relative(root, fit)}`);
  console.error(fit === undefined && prebuilds().length ? 'sdtorch: no prebuilt binary loads here; building from source' : 'sdtorch: building the native addon from source');
  try {
    require('./build-native').build();
  } catch (e) {
    console.error(`sdtorch: ${e.message}`);
    process.exit(1);
  }
}

main();
