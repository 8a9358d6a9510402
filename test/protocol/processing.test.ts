/**
 * iipsrv's floating-point pipeline: 16-bit normalisation (with and without MINMAX) and the
 * processing commands CNT, GAM, INV, CMP, CTW on known pixel values, read back from lossless PNG
 * tiles (PTL) and regions so that every value is exact.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { NO_PROCESSING, runPipeline as processPixels } from '../../src/engine/pixels/processing.ts';
import { silentLog } from '../../src/log.ts';
import { createRouter } from '../../src/router.ts';
import { tempDir } from '../helpers/daemon.ts';
import { seededRandom } from '../helpers/random.ts';
import { decodePixels } from '../helpers/images.ts';
import { plainRequest } from '../helpers/requests.ts';

let get: (query: string) => ReturnType<ReturnType<typeof createRouter>>;

/** The first pixel of a PNG answer, all its bands. */
async function firstPixel(query: string): Promise<number[]> {
  const response = await get(query);
  assert.equal(response.status, 200, `${query}: ${response.body.toString().slice(0, 200)}`);
  const pixels = await decodePixels(response.body);
  return [...pixels.data.subarray(0, pixels.channels)];
}

before(async () => {
  const dir = tempDir();
  const tiled = { tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'deflate' } as const;
  // 16-bit grey, every sample 1000 (iipsrv 1.1 answers 3 by default, 127 with MINMAX=1:0,2000).
  await sharp(new Uint16Array(300 * 200).fill(1000), { raw: { width: 300, height: 200, channels: 1 } })
    .toColourspace('grey16')
    .tiff(tiled)
    .toFile(path.join(dir, 'grey16.tif'));
  const rgb = Buffer.alloc(300 * 200 * 3);
  for (let i = 0; i < rgb.length; i += 3) rgb.set([10, 20, 30], i);
  await sharp(rgb, { raw: { width: 300, height: 200, channels: 3 } })
    .tiff(tiled)
    .toFile(path.join(dir, 'rgb.tif'));
  for (const value of [64, 100, 128]) {
    await sharp(Buffer.alloc(300 * 200, value), { raw: { width: 300, height: 200, channels: 1 } })
      .toColourspace('b-w')
      .tiff(tiled)
      .toFile(path.join(dir, `grey${value}.tif`));
  }
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/', MAX_IMAGE_CACHE_SIZE: '10' });
  const engine = new Engine({ paths: { prefix: config.filesystemPrefix, suffix: '' }, cacheBytes: config.maxImageCacheBytes });
  const router = createRouter({ config, engine, log: silentLog });
  get = (query) => router(plainRequest(query));
});

describe('16-bit data normalised as iipsrv does', () => {
  it('a constant 1000: 3 by the full range (1000/65535 x 255, truncated), 127 with MINMAX=1:0,2000', async () => {
    assert.deepEqual(await firstPixel('FIF=grey16.tif&PTL=0,0'), [3]);
    assert.deepEqual(await firstPixel('FIF=grey16.tif&MINMAX=1:0,2000&PTL=0,0'), [127]);
    assert.deepEqual(await firstPixel('FIF=grey16.tif&MINMAX=1:0,2000&WID=100&CVT=png'), [127]);
    // The JPEG tile of the same: one band, close to 127.
    const jpeg = await decodePixels((await get('FIF=grey16.tif&MINMAX=1:0,2000&JTL=0,0')).body);
    assert.equal(jpeg.channels, 1);
    assert.ok(Math.abs(jpeg.data[0]! - 127) <= 1);
  });
});

describe('processing commands on known values', () => {
  it('CNT=2 doubles (100 -> 200), and clips (200 would be 255 at CNT=3)', async () => {
    assert.deepEqual(await firstPixel('FIF=grey100.tif&CNT=2&PTL=0,0'), [200]);
    assert.deepEqual(await firstPixel('FIF=grey100.tif&CNT=3&PTL=0,0'), [255]);
  });
  it('GAM=0.5 on 64: (64/255)^0.5 x 255 = 127.7, truncated to 127', async () => {
    assert.deepEqual(await firstPixel('FIF=grey64.tif&GAM=0.5&PTL=0,0'), [127]);
  });
  it('GAM=log (iipsrv 1.3): log(1 + 255 v) / log(256) on 64 -> 191', async () => {
    // log(65) / log(256) x 255 = 191.5
    assert.deepEqual(await firstPixel('FIF=grey64.tif&GAM=log&PTL=0,0'), [191]);
  });
  it('INV: 255 - 100 = 155; with CNT=2 after it: clipped to 255', async () => {
    const [value] = await firstPixel('FIF=grey100.tif&INV&PTL=0,0');
    assert.ok(value === 155 || value === 154, `INV of 100: ${value}`);
    assert.deepEqual(await firstPixel('FIF=grey100.tif&INV&CNT=2&PTL=0,0'), [255]);
  });
  it('CMP=hot on 128: (1, 3v-1, 0) = (255, 129, 0); CMP=blue puts the grey in blue; unknown maps are ignored', async () => {
    const hot = await firstPixel('FIF=grey128.tif&CMP=hot&PTL=0,0');
    assert.equal(hot[0], 255);
    assert.ok(Math.abs(hot[1]! - 129) <= 1, `green ${hot[1]}`);
    assert.equal(hot[2], 0);
    assert.deepEqual(await firstPixel('FIF=grey128.tif&CMP=blue&PTL=0,0'), [0, 0, 128]);
    assert.deepEqual(await firstPixel('FIF=grey128.tif&CMP=nonsense&PTL=0,0'), [128]);
  });
  it('CTW: a channel swap (30, 20, 10) and a one-row twist to grey', async () => {
    assert.deepEqual(await firstPixel('FIF=rgb.tif&CTW=[0,0,1;0,1,0;1,0,0]&PTL=0,0'), [30, 20, 10]);
    assert.deepEqual(await firstPixel('FIF=rgb.tif&CTW=%5B0.5,0.5,0%5D&PTL=0,0'), [15]);
  });
  it("COL=grey: iipsrv's integer Rec.601 weights on RGB (10, 20, 30 -> 18), nothing on grey; junk 400", async () => {
    assert.deepEqual(await firstPixel('FIF=rgb.tif&COL=grey&PTL=0,0'), [18]);
    assert.deepEqual(await firstPixel('FIF=rgb.tif&COL=gray&WID=50&CVT=png'), [18]);
    assert.deepEqual(await firstPixel('FIF=grey100.tif&COL=grey&PTL=0,0'), [100]);
    assert.equal((await get('FIF=rgb.tif&COL=sepia&PTL=0,0')).status, 400);
  });
  it('the plain request is cached apart from the processed one', async () => {
    assert.deepEqual(await firstPixel('FIF=grey100.tif&PTL=0,0'), [100]);
    assert.deepEqual(await firstPixel('FIF=grey100.tif&CNT=2&PTL=0,0'), [200]);
    assert.deepEqual(await firstPixel('FIF=grey100.tif&PTL=0,0'), [100]);
  });
  it('applies to regions, IIIF and DeepZoom too (the modifiers come first, as in iipsrv)', async () => {
    assert.deepEqual(await firstPixel('FIF=grey100.tif&CNT=2&WID=50&CVT=png'), [200]);
    assert.deepEqual(await firstPixel('CNT=2&IIIF=grey100.tif/full/50,/0/default.png'), [200]);
    const tile = await decodePixels((await get('CNT=2&DeepZoom=grey100.tif_files/9/0_0.jpg')).body);
    assert.ok(Math.abs(tile.data[0]! - 200) <= 2);
  });
  it('a bad MINMAX or CTW is a 400 (CNT=eq/st, COL=binary, SHD, CNV: test/protocol/processing-commands.test.ts)', async () => {
    assert.equal((await get('FIF=grey100.tif&MINMAX=junk&PTL=0,0')).status, 400);
    assert.equal((await get('FIF=grey100.tif&CTW=0,1&PTL=0,0')).status, 400);
  });
});

describe('the band-by-band loop for 32-bit and float data', () => {
  it('gives the general per-pixel loop’s bytes exactly, for every setting it takes', () => {
    const random = seededRandom(7);
    const pixels = 64 * 64;
    const special = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -5, 0, 255, 1e-7, 300];
    for (const channels of [1, 3]) {
      const data = new Float32Array(pixels * channels).map((_, i) => (i % 97 === 0 ? special[i % special.length]! : random() * 300 - 20));
      const identity = Array.from({ length: channels }, (_, row) => Array.from({ length: channels }, (_, col) => (row === col ? 1 : 0)));
      for (const extra of [
        {},
        { contrast: 1.7 },
        { gamma: 0.45 },
        { gamma: 'log' as const },
        { invert: true },
        { colormap: 'jet' as const },
        { colormap: 'hot' as const, gamma: 2, invert: true },
        { ranges: [{ channel: 0, min: 10, max: 40 }] },
      ]) {
        const p = { ...NO_PROCESSING, ...extra };
        const samples = { data, width: 64, height: 64, channels };
        const fast = processPixels(samples, [0, 0, 0], [255, 255, 255], p);
        // An identity twist sends the same request through the general loop.
        const general = processPixels(samples, [0, 0, 0], [255, 255, 255], { ...p, twist: identity });
        assert.equal(fast.channels, general.channels, JSON.stringify(extra));
        assert.ok(fast.data.equals(general.data), `${channels} bands, ${JSON.stringify(extra)}`);
      }
    }
  });
});
