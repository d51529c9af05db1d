#!/usr/bin/env node
'use strict';
// Stands in for node-gyp under prebuildify (PREBUILD_NODE_GYP / --node-gyp): its `rebuild ...`
// becomes a cmake-js build into ./build, where prebuildify takes build/Release/*.node from.
// N-API binaries do not depend on the Node version, so the --target it passes is not needed.
const path = require('node:path');
const { build } = require('../dist/native/setup');
const { describe } = require('../dist/native/libtorch');

const lt = describe(process.env.SDTORCH_PREBUILD_LIBTORCH || '', 'prebuild');
if (!lt) {
  console.error('prebuild-shim: set SDTORCH_PREBUILD_LIBTORCH to a libtorch folder (scripts/prebuild.js does)');
  process.exit(1);
}
build({ libtorch: lt, out: path.join(process.cwd(), 'build'), prebuild: true }).catch((e) => {
  console.error(e.message);
  process.exit(1);
});
