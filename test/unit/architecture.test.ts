/**
 * The tree keeps the architecture the README describes: no import circles in src/, and imports
 * only in the direction data flows (scripts/check-architecture.ts, also run by `npm run lint`).
 * The checker itself is tried on made-up graphs first, so that a clean tree means something.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkArchitecture, findCycles, importsOf, layerViolation } from '../../scripts/check-architecture.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('the checker finds circles, type-only ones included', () => {
  const graph = new Map([
    ['src/a.ts', importsOf('src/a.ts', "import type { B } from './b.js';\nimport { c } from './c.js';")],
    ['src/b.ts', importsOf('src/b.ts', "export { a } from './a.js';")],
    ['src/c.ts', importsOf('src/c.ts', "const d = await import('./engine/d.js');")],
    ['src/engine/d.ts', []],
  ]);
  assert.deepEqual(graph.get('src/c.ts'), ['src/engine/d.ts']);
  assert.deepEqual(findCycles(graph), [['src/a.ts', 'src/b.ts', 'src/a.ts']]);
  graph.set('src/b.ts', []);
  assert.deepEqual(findCycles(graph), []);
});

test('the checker refuses imports against the flow of data', () => {
  assert.match(layerViolation('src/engine/engine.ts', 'src/protocols/shared/session.ts') ?? '', /engine/);
  assert.match(layerViolation('src/engine/tiff/reader.ts', 'src/server/http.ts') ?? '', /engine/);
  assert.match(layerViolation('src/protocols/iiif/index.ts', 'src/router.ts') ?? '', /transport or router/);
  assert.match(layerViolation('src/protocols/iiif/index.ts', 'src/protocols/iip/fif.ts') ?? '', /only itself/);
  assert.match(layerViolation('src/protocols/shared/session.ts', 'src/protocols/deepzoom/index.ts') ?? '', /shared/);
  assert.match(layerViolation('src/server/worker.ts', 'src/protocols/iip/tiles.ts') ?? '', /IIP runner/);
  assert.match(layerViolation('src/router.ts', 'src/protocols/iip/tiles.ts') ?? '', /IIP runner/);
  assert.equal(layerViolation('src/router.ts', 'src/protocols/iip/index.ts'), null);
  assert.equal(layerViolation('src/protocols/zoomify/index.ts', 'src/protocols/shared/virtual-tiles.ts'), null);
  assert.equal(layerViolation('src/protocols/iip/cvt.ts', 'src/engine/geometry.ts'), null);
  assert.equal(layerViolation('src/server/worker.ts', 'src/engine/engine.ts'), null);
});

test('src/ has no import circle and follows the layers', () => {
  const { files, problems } = checkArchitecture(ROOT);
  assert.ok(files > 50, `read ${files} files`);
  assert.deepEqual(problems, []);
});
