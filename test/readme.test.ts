// README claims that drift silently when the code changes: checked against the code.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as sd from '../lib';
import { tinyCheckpoint } from './tiny';
import { repoRoot } from './weights';

const readme = fs.readFileSync(path.join(repoRoot, 'README.md'), 'utf8');

describe('README', function () {
  it('the opening paragraph names every kind of model that loads', function () {
    const opening = readme.split('\n\n')[1]!;
    for (const kind of ['SD 1.x', 'SD 2.x', '768-v', 'inpainting', 'diffusers folder']) assert.ok(opening.includes(kind), `${kind} missing from: ${opening}`);
  });

  it("the pipe.family example lists every field of a loaded family and of its text encoders", async function () {
    const example = /^pipe\.family;.*\n(?:\s+\/\/.*\n)*/m.exec(readme)?.[0];
    assert.ok(example, 'no pipe.family example in README.md');
    const named = new Set([...example.matchAll(/(\w+):/g)].map((m) => m[1]!));
    const pipe = await sd.loadPipeline(await tinyCheckpoint(), { device: 'cpu' });
    try {
      for (const key of [...Object.keys(pipe.family), ...Object.keys(pipe.family.textEncoders[0]!)]) assert.ok(named.has(key), `README's pipe.family example lacks ${key}`);
    } finally {
      pipe.dispose();
    }
  });
});
