import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FULL_VIEWPORT, levelForResolution, planRegion, tileGrid, tileRect, type LevelSize } from '../../src/engine/geometry.ts';

const L = (width: number, height: number, tile = 256): LevelSize => ({ width, height, tileWidth: tile, tileHeight: tile });
// iipsrv's reference image: 1000x700, 256 tiles, three levels.
const levels = [L(1000, 700), L(500, 350), L(250, 175)];
const plan = (request: Partial<Parameters<typeof planRegion>[1]>) =>
  planRegion(levels, { viewport: FULL_VIEWPORT, width: 0, height: 0, maxSize: 5000, allowUpscaling: true, ...request });

describe('tile grid', () => {
  it('numbers resolutions from the smallest and crops edge tiles', () => {
    assert.equal(levelForResolution(3, 2), 0);
    assert.equal(levelForResolution(3, 0), 2);
    assert.deepEqual(tileGrid(levels[0]!), { across: 4, down: 3 });
    assert.deepEqual(tileRect(levels[0]!, 3, 0), { left: 768, top: 0, width: 232, height: 256 });
    assert.deepEqual(tileRect(levels[0]!, 3, 2), { left: 768, top: 512, width: 232, height: 188 });
    assert.deepEqual(tileGrid(levels[2]!), { across: 1, down: 1 });
  });
});

describe('region plan: sizes as iipsrv 1.1 measured them', () => {
  const cases: Array<[string, Partial<Parameters<typeof planRegion>[1]>, number, number, number]> = [
    ['CVT alone: full size from the full level', {}, 1000, 700, 0],
    ['WID=300 from the 500x350 level', { width: 300 }, 300, 210, 1],
    ['HEI=300', { height: 300 }, 429, 300, 1],
    ['WID=300&HEI=300 fits inside the box', { width: 300, height: 300 }, 300, 210, 1],
    ['RGN=0,0,0.5,1', { viewport: { x: 0, y: 0, width: 0.5, height: 1 } }, 500, 700, 0],
    ['WID=2000 upscales', { width: 2000 }, 2000, 1400, 0],
    ['WID=200 reads the smallest level that is big enough', { width: 200 }, 200, 140, 2],
    ['MAX_CVT=400 ALLOW_UPSCALING=0 WID=600', { width: 600, maxSize: 400, allowUpscaling: false }, 400, 280, 1],
  ];
  for (const [name, request, width, height, level] of cases) {
    it(name, () => {
      const result = plan(request);
      assert.equal(result.outputWidth, width);
      assert.equal(result.outputHeight, height);
      assert.equal(result.level, level);
    });
  }
  it('RGN without WID/HEI gives the region at full resolution (1.1 stretched it to 1000x700)', () => {
    const result = plan({ viewport: { x: 0, y: 0, width: 0.5, height: 0.5 } });
    assert.deepEqual([result.outputWidth, result.outputHeight], [500, 350]);
    assert.deepEqual(result.source, { left: 0, top: 0, width: 500, height: 350 });
  });
  it('ALLOW_UPSCALING=0 caps at the region pixels', () => {
    const result = plan({ width: 2000, allowUpscaling: false });
    assert.deepEqual([result.outputWidth, result.outputHeight], [1000, 700]);
  });
  it('the source rectangle is at the chosen level', () => {
    const result = plan({ viewport: { x: 0.5, y: 0.5, width: 0.5, height: 0.5 }, width: 125 });
    assert.equal(result.level, 2);
    assert.deepEqual(result.source, { left: 125, top: 87, width: 125, height: 88 });
  });
  it('never below 1x1, even for a sliver', () => {
    const result = plan({ viewport: { x: 0.999, y: 0, width: 0.0001, height: 1 }, width: 1 });
    assert.ok(result.outputWidth >= 1 && result.outputHeight >= 1);
    assert.ok(result.source.width >= 1 && result.source.left + result.source.width <= levels[result.level]!.width);
  });
});
