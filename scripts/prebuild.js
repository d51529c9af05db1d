#!/usr/bin/env node
'use strict';
// Makes prebuilds/<platform>-<arch>/sdtorch.<flavor>.torch-<version>.node with prebuildify, one per
// libtorch given (default: the one a source build would use). prebuildify runs node-gyp; here
// scripts/prebuild-shim.js stands in for it and runs the cmake-js build of a relocatable binary.
//   node scripts/prebuild.js [--libtorch DIR]...     (after npm run build:ts)
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { describe, lookup } = require('../dist/native/libtorch');
const { prebuildName } = require('../dist/native/load');

const root = path.join(__dirname, '..');
const argv = process.argv.slice(2);
const dirs = argv.flatMap((a, i) => (a === '--libtorch' ? [argv[i + 1]] : []));
const list = dirs.length ? dirs.map((d) => describe(d, 'argument')) : [lookup((lt) => !!lt).found[0]];
if (list.some((lt) => !lt)) {
  console.error(`prebuild: no libtorch at ${dirs.length ? dirs.join(', ') : 'any of the usual places'} (see "How libtorch is found" in README.md)`);
  process.exit(1);
}
for (const lt of list) {
  const name = prebuildName(lt.flavor, lt.version).replace(/\.node$/, '');
  // A fresh folder each time: a build configured for another libtorch must not be reused.
  const staging = path.join(root, 'build', `prebuild-${lt.flavor}`);
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(staging, { recursive: true });
  console.error(`prebuild: ${name} against libtorch ${lt.version} (${lt.flavor}) at ${lt.root}`);
  const r = spawnSync(process.execPath, [require.resolve('prebuildify/bin.js'), '--napi', '--strip', '--name', name, '--cwd', staging, '--out', root,
    '--node-gyp', path.join(__dirname, 'prebuild-shim.js')], { stdio: 'inherit', env: { ...process.env, SDTORCH_PREBUILD_LIBTORCH: lt.root } });
  if (r.status !== 0) process.exit(1);
}
