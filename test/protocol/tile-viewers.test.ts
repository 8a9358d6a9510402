/**
 * DeepZoom and Zoomify: the descriptors byte for byte, every tile of every level (count, sizes,
 * edge crops, pixels against the source), levels the file does not store made by scaling, the
 * tile path shared with IIP JTL, errors, and both protocols loaded the way OpenSeadragon does.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { getHeader } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { tempDir } from '../helpers/daemon.ts';
import { decodePixels, psnr, smoothPicture, type Pixels } from '../helpers/images.ts';
import { plainRequest } from '../helpers/requests.ts';

function serverFor(prefix: string, env: Record<string, string> = {}) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, ...env });
  const engine = new Engine({ paths: { prefix: config.filesystemPrefix, suffix: '' }, cacheBytes: config.maxImageCacheBytes });
  const router = createRouter({ config, engine, log: silentLog });
  return (query: string, extra: Parameters<typeof plainRequest>[1] = {}): Promise<PlainResponse> => router(plainRequest(query, extra));
}

const SIZES = {
  'pyr.tif': { width: 1000, height: 700, tile: 256 },
  'odd.tif': { width: 1001, height: 733, tile: 512 },
  'tiny.tif': { width: 100, height: 60, tile: 256 },
  'wide.tif': { width: 3000, height: 300, tile: 256 },
} as const;
type Name = keyof typeof SIZES;

let dir: string;
let get: ReturnType<typeof serverFor>;
const sources = new Map<Name, Buffer>();

before(async () => {
  dir = tempDir();
  await Promise.all(
    (Object.entries(SIZES) as Array<[Name, (typeof SIZES)[Name]]>).map(async ([name, { width, height, tile }]) => {
      const raw = smoothPicture(width, height);
      sources.set(name, raw);
      await sharp(raw, { raw: { width, height, channels: 3 } })
        .tiff({ tile: true, pyramid: true, tileWidth: tile, tileHeight: tile, compression: 'deflate' })
        .toFile(path.join(dir, name));
    }),
  );
  get = serverFor(dir + '/');
});

/** The source scaled to a level size, for comparing tiles. */
async function sourceAt(name: Name, width: number, height: number): Promise<Pixels> {
  const { width: w, height: h } = SIZES[name];
  return decodePixels(sharp(sources.get(name)!, { raw: { width: w, height: h, channels: 3 } }).resize(width, height, { fit: 'fill' }));
}

function crop(image: Pixels, left: number, top: number, width: number, height: number): Pixels {
  const data = Buffer.alloc(width * height * image.channels);
  for (let y = 0; y < height; y++) {
    image.data.copy(
      data,
      y * width * image.channels,
      ((top + y) * image.width + left) * image.channels,
      ((top + y) * image.width + left + width) * image.channels,
    );
  }
  return { width, height, channels: image.channels, data };
}

/**
 * A tile looks like the source there: PSNR for tiles big enough to mean something; for the few
 * pixels of the smallest levels (where resampling filters differ most) the mean colour.
 */
function assertLike(got: Pixels, expected: Pixels, what: string): void {
  if (got.width * got.height >= 32 * 32) {
    const quality = psnr(got, expected);
    assert.ok(quality > 22, `${what}: PSNR ${quality.toFixed(1)} dB`);
    return;
  }
  const mean = (p: Pixels, c: number) => {
    let sum = 0;
    for (let i = c; i < p.data.length; i += p.channels) sum += p.data[i]!;
    return sum / (p.width * p.height);
  };
  for (let c = 0; c < got.channels; c++)
    assert.ok(Math.abs(mean(got, c) - mean(expected, c)) < 25, `${what}: channel ${c} mean ${mean(got, c).toFixed(0)} against ${mean(expected, c).toFixed(0)}`);
}

/** What OpenSeadragon's DziTileSource computes from a .dzi: levels 0..max, sizes rounded up. */
function dziLevels(width: number, height: number): Array<{ width: number; height: number }> {
  const max = Math.ceil(Math.log2(Math.max(width, height)));
  return Array.from({ length: max + 1 }, (_, level) => {
    const scale = 2 ** (max - level);
    return { width: Math.ceil(width / scale), height: Math.ceil(height / scale) };
  });
}

/** What OpenSeadragon's ZoomifyTileSource computes: halving rounded down until one tile fits. */
function zoomifyTiers(width: number, height: number, tile: number): Array<{ width: number; height: number }> {
  const tiers = [{ width, height }];
  let [w, h] = [width, height];
  while (w > tile || h > tile) {
    w = Math.floor(w / 2);
    h = Math.floor(h / 2);
    tiers.push({ width: w, height: h });
  }
  return tiers.reverse();
}

describe('DeepZoom descriptor', () => {
  it('the .dzi byte for byte as iipsrv 1.1 writes it, for several sizes and tile sizes', async () => {
    for (const [name, { width, height, tile }] of Object.entries(SIZES)) {
      const response = await get(`DeepZoom=${name}.dzi`);
      assert.equal(response.status, 200);
      assert.equal(getHeader(response.headers, 'content-type'), 'application/xml');
      assert.ok(getHeader(response.headers, 'last-modified'));
      assert.equal(
        response.body.toString(),
        '<?xml version="1.0" encoding="UTF-8"?>\r\n<Image xmlns="http://schemas.microsoft.com/deepzoom/2008"\r\n' +
          `TileSize="${tile}" Overlap="0" Format="jpg"><Size Width="${width}" Height="${height}"/></Image>`,
      );
    }
  });
});

describe('Zoomify descriptor', () => {
  it('ImageProperties.xml as iipsrv writes it, NUMTILES counting every tier', async () => {
    // 1000x700 with 256 tiles: tiers 1000x700 (12 tiles), 500x350 (4), 250x175 (1) = 17.
    assert.equal(
      (await get('Zoomify=pyr.tif/ImageProperties.xml')).body.toString(),
      '<IMAGE_PROPERTIES WIDTH="1000" HEIGHT="700" NUMTILES="17" NUMIMAGES="1" VERSION="1.8" TILESIZE="256" />',
    );
    for (const [name, { width, height, tile }] of Object.entries(SIZES)) {
      const expected = zoomifyTiers(width, height, tile).reduce((n, t) => n + Math.ceil(t.width / tile) * Math.ceil(t.height / tile), 0);
      const body = (await get(`Zoomify=${name}/ImageProperties.xml`)).body.toString();
      assert.match(body, new RegExp(`NUMTILES="${expected}"`), name);
      assert.match(body, new RegExp(`WIDTH="${width}" HEIGHT="${height}".*TILESIZE="${tile}"`), name);
    }
  });
});

describe('DeepZoom tiles', () => {
  for (const name of ['pyr.tif', 'odd.tif', 'tiny.tif'] as const) {
    it(`${name}: every tile of every level, sized and coloured as the source at that level`, async () => {
      const { width, height, tile } = SIZES[name];
      const levels = dziLevels(width, height);
      for (let level = 0; level < levels.length; level++) {
        const size = levels[level]!;
        const reference = await sourceAt(name, size.width, size.height);
        const across = Math.ceil(size.width / tile);
        const down = Math.ceil(size.height / tile);
        for (let row = 0; row < down; row++) {
          for (let col = 0; col < across; col++) {
            const response = await get(`DeepZoom=${name}_files/${level}/${col}_${row}.jpg`);
            assert.equal(response.status, 200, `level ${level} ${col}_${row}: ${response.body.toString()}`);
            const got = await decodePixels(response.body);
            const w = Math.min(tile, size.width - col * tile);
            const h = Math.min(tile, size.height - row * tile);
            // Stored levels are the file's (rounded down where DeepZoom rounds up): 1 px either way.
            assert.ok(
              Math.abs(got.width - w) <= 1 && Math.abs(got.height - h) <= 1,
              `level ${level} ${col}_${row}: ${got.width}x${got.height}, expected ${w}x${h}`,
            );
            const cw = Math.min(got.width, w);
            const ch = Math.min(got.height, h);
            assertLike(crop(got, 0, 0, cw, ch), crop(reference, col * tile, row * tile, cw, ch), `level ${level} ${col}_${row}`);
          }
        }
        // One past the grid is a 404 with a message.
        const past = await get(`DeepZoom=${name}_files/${level}/${across}_0.jpg`);
        assert.equal(past.status, 404);
        assert.match(past.body.toString(), /DeepZoom: no tile/);
      }
    });
  }
  it('levels below the smallest stored one are scaled down to their DeepZoom size (1.1 sent the smallest tile as it was)', async () => {
    // pyr.tif stores 250x175 at the smallest; DeepZoom level 7 is 125x88, level 0 is 1x1.
    for (const [level, w, h] of [
      [7, 125, 88],
      [3, 8, 6],
      [0, 1, 1],
    ] as const) {
      const got = await decodePixels((await get(`DeepZoom=pyr.tif_files/${level}/0_0.jpg`)).body);
      assert.deepEqual([got.width, got.height], [w, h], `level ${level}`);
    }
  });
  it('a stored level is the IIP tile itself: the same bytes as JTL (caches and passthrough shared)', async () => {
    // DeepZoom level 10 of 1000x700 is the full resolution (IIP resolution 2), level 9 resolution 1.
    for (const [level, col, row, resolution, tile] of [
      [10, 2, 1, 2, 6],
      [9, 1, 1, 1, 3],
    ] as const) {
      const viaDeepZoom = await get(`DeepZoom=pyr.tif_files/${level}/${col}_${row}.jpg`);
      const viaJtl = await get(`FIF=pyr.tif&JTL=${resolution},${tile}`);
      assert.ok(viaDeepZoom.body.equals(viaJtl.body), `level ${level}`);
      assert.deepEqual(viaDeepZoom.headers, viaJtl.headers);
    }
  });
  it('IIP modifiers before DeepZoom apply to its tiles (QLT)', async () => {
    const plain = await get('DeepZoom=pyr.tif_files/10/0_0.jpg');
    const low = await get('QLT=10&DeepZoom=pyr.tif_files/10/0_0.jpg');
    assert.ok(low.body.length < plain.body.length, `${low.body.length} bytes at QLT=10, ${plain.body.length} at the default`);
  });
  it('bad requests: 400 for syntax and levels above the top, 404 for missing images and tiles', async () => {
    assert.equal((await get('DeepZoom=pyr.tif_files/11/0_0.jpg')).status, 400);
    assert.equal((await get('DeepZoom=pyr.tif_files/x/0_0.jpg')).status, 400);
    assert.equal((await get('DeepZoom=pyr.tif')).status, 400);
    assert.equal((await get('DeepZoom=missing.tif.dzi')).status, 404);
    assert.equal((await get('DeepZoom=pyr.tif_files/10/9_0.jpg')).status, 404);
  });
  it('If-Modified-Since: 304 for descriptors and tiles', async () => {
    const headers = { 'if-modified-since': new Date(Date.now() + 86_400_000).toUTCString() };
    assert.equal((await get('DeepZoom=pyr.tif.dzi', { headers })).status, 304);
    assert.equal((await get('DeepZoom=pyr.tif_files/10/0_0.jpg', { headers })).status, 304);
    assert.equal((await get('Zoomify=pyr.tif/ImageProperties.xml', { headers })).status, 304);
  });
});

describe('Zoomify tiles', () => {
  for (const name of ['pyr.tif', 'odd.tif', 'wide.tif'] as const) {
    it(`${name}: every tile of every tier, the tile group accepted whatever it says`, async () => {
      const { width, height, tile } = SIZES[name];
      const tiers = zoomifyTiers(width, height, tile);
      let index = 0;
      for (let z = 0; z < tiers.length; z++) {
        const size = tiers[z]!;
        const reference = await sourceAt(name, size.width, size.height);
        const across = Math.ceil(size.width / tile);
        const down = Math.ceil(size.height / tile);
        for (let y = 0; y < down; y++) {
          for (let x = 0; x < across; x++, index++) {
            const group = Math.floor(index / 256);
            const response = await get(`Zoomify=${name}/TileGroup${group}/${z}-${x}-${y}.jpg`);
            assert.equal(response.status, 200, `${z}-${x}-${y}: ${response.body.toString()}`);
            const got = await decodePixels(response.body);
            const w = Math.min(tile, size.width - x * tile);
            const h = Math.min(tile, size.height - y * tile);
            assert.deepEqual([got.width, got.height], [w, h], `${z}-${x}-${y}`);
            assertLike(got, crop(reference, x * tile, y * tile, w, h), `${z}-${x}-${y}`);
          }
        }
      }
      // The group number is not checked, as in iipsrv: any group gives the same tile.
      const a = await get(`Zoomify=${name}/TileGroup0/0-0-0.jpg`);
      const b = await get(`Zoomify=${name}/TileGroup7/0-0-0.jpg`);
      assert.ok(a.body.equals(b.body));
    });
  }
  it('bad requests: 400 for syntax and tiers that do not exist, 404 past the grid', async () => {
    assert.equal((await get('Zoomify=pyr.tif/TileGroup0/3-0-0.jpg')).status, 400);
    assert.equal((await get('Zoomify=pyr.tif/TileGroup0/0-0.jpg')).status, 400);
    assert.equal((await get('Zoomify=pyr.tif/TileGroup0/2-4-0.jpg')).status, 404);
  });
});

describe('loaded the way OpenSeadragon loads them', () => {
  it('DeepZoom: read the .dzi, compute the grid, fetch every tile of the two top levels', async () => {
    const xml = (await get('DeepZoom=odd.tif.dzi')).body.toString();
    const tileSize = Number(/TileSize="(\d+)"/.exec(xml)![1]);
    const width = Number(/Width="(\d+)"/.exec(xml)![1]);
    const height = Number(/Height="(\d+)"/.exec(xml)![1]);
    const levels = dziLevels(width, height);
    let fetched = 0;
    for (const level of [levels.length - 1, levels.length - 2]) {
      const { width: lw, height: lh } = levels[level]!;
      for (let row = 0; row < Math.ceil(lh / tileSize); row++) {
        for (let col = 0; col < Math.ceil(lw / tileSize); col++) {
          const response = await get(`DeepZoom=odd.tif_files/${level}/${col}_${row}.jpg`);
          assert.equal(response.status, 200, `${level}/${col}_${row}`);
          assert.equal(getHeader(response.headers, 'content-type'), 'image/jpeg');
          fetched++;
        }
      }
    }
    assert.equal(fetched, 4 + 1);
  });
  it('Zoomify: read ImageProperties.xml, derive the tiers from it, fetch every tile of the two top tiers', async () => {
    const xml = (await get('Zoomify=pyr.tif/ImageProperties.xml')).body.toString();
    const [width, height, numTiles, tileSize] = ['WIDTH', 'HEIGHT', 'NUMTILES', 'TILESIZE'].map((k) => Number(new RegExp(`${k}="(\\d+)"`).exec(xml)![1]));
    const tiers = zoomifyTiers(width!, height!, tileSize!);
    const counts = tiers.map((t) => Math.ceil(t.width / tileSize!) * Math.ceil(t.height / tileSize!));
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      numTiles,
      'NUMTILES matches the tiers a viewer derives',
    );
    for (const z of [tiers.length - 1, tiers.length - 2]) {
      const before = counts.slice(0, z).reduce((a, b) => a + b, 0);
      const across = Math.ceil(tiers[z]!.width / tileSize!);
      for (let i = 0; i < counts[z]!; i++) {
        const x = i % across;
        const y = Math.floor(i / across);
        const response = await get(`Zoomify=pyr.tif/TileGroup${Math.floor((before + i) / 256)}/${z}-${x}-${y}.jpg`);
        assert.equal(response.status, 200, `${z}-${x}-${y}`);
      }
    }
  });
});
