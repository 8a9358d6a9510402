/**
 * Images without a pyramid (plain JPEG, PNG, WebP, GIF, AVIF, striped and single-level tiled TIFF)
 * through all four protocols: described like a pyramid of 256x256 tiles, tiles and regions with
 * the source's pixels, a big JPEG served at reduced size until its pyramid is built in PYRAMID_CACHE_DIR and then from the
 * pyramid's stored tiles, EXIF carried as iipsrv master does, and bad files refused with a 4xx in
 * bounded time.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { PlainSource } from '../../src/engine/plain/plain-source.ts';
import { TiffSource } from '../../src/engine/tiff/tiff-source.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';
import { tempDir } from '../helpers/daemon.ts';
import { decodePixels, psnr, smoothPicture, type Pixels } from '../helpers/images.ts';
import { plainRequest } from '../helpers/requests.ts';

function serverFor(dir: string, env: Record<string, string> = {}) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/', URI_MAP: 'iiif=>IIIF', ...env });
  const engine = new Engine(engineOptionsFor(config));
  const router = createRouter({ config, engine, log: silentLog });
  const get = (query: string): Promise<PlainResponse> => router(plainRequest(query));
  const iiif = (rest: string): Promise<PlainResponse> => router(plainRequest('', { path: `/iiif/${rest}`, scriptName: '/iiif', headers: { host: 'h' } }));
  return { get, iiif, engine };
}

async function ok(response: Promise<PlainResponse>, what: string): Promise<Buffer> {
  const answer = await response;
  assert.equal(answer.status, 200, `${what}: ${answer.status} ${answer.body.toString().slice(0, 300)}`);
  return answer.body;
}

/** The source's pixels of a rectangle of a level (levels halved as libvips' pyramids are). */
async function expected(raw: Buffer, width: number, height: number, level: number, rect: { left: number; top: number; width: number; height: number }) {
  let w = width;
  let h = height;
  for (let i = 0; i < level; i++) {
    w = Math.floor(w / 2);
    h = Math.floor(h / 2);
  }
  return decodePixels(
    sharp(raw, { raw: { width, height, channels: 3 } })
      .resize(w, h, { fit: 'fill' })
      .extract(rect),
  );
}

const W = 1000;
const H = 700;
let dir: string;
let raw: Buffer;
let server: ReturnType<typeof serverFor>;

before(async () => {
  dir = tempDir();
  raw = smoothPicture(W, H);
  const image = () => sharp(raw, { raw: { width: W, height: H, channels: 3 } });
  await image().jpeg({ quality: 95 }).toFile(path.join(dir, 'plain.jpg'));
  await image().png().toFile(path.join(dir, 'plain.png'));
  await image().ensureAlpha(1).png().toFile(path.join(dir, 'alpha.png'));
  await image().webp({ quality: 95 }).toFile(path.join(dir, 'plain.webp'));
  await image().tiff({ compression: 'lzw' }).toFile(path.join(dir, 'striped.tif'));
  await image().gif().toFile(path.join(dir, 'plain.gif'));
  await image().avif({ quality: 80 }).toFile(path.join(dir, 'plain.avif'));
  await image().tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 95 }).toFile(path.join(dir, 'single.tif'));
  await image()
    .withExif({ IFD0: { Copyright: 'Plain Test Copyright', Artist: 'A. Tester' } })
    .jpeg()
    .toFile(path.join(dir, 'exif.jpg'));
  server = serverFor(dir);
});

describe('non-pyramidal images, every format', () => {
  for (const [file, minimum] of [
    ['plain.jpg', 30],
    ['plain.png', 40],
    ['alpha.png', 40],
    ['plain.webp', 30],
    ['striped.tif', 40],
    ['plain.gif', 20],
    ['plain.avif', 28],
    ['single.tif', 30],
  ] as const) {
    it(`${file}: described as a pyramid of 256x256 tiles, its tiles and regions have the source's pixels`, async () => {
      const obj = (await ok(server.get(`FIF=${file}&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number`), file)).toString();
      assert.match(obj, /Max-size:1000 700/);
      assert.match(obj, /Tile-size:256 256/);
      // 1000x700, 500x350, 250x175: halved until one tile holds it.
      assert.match(obj, /Resolution-number:3/);
      // Tile 1 of the middle level (numbered from the smallest), an edge tile of full resolution, the whole smallest level.
      for (const [resolution, tile, level, rect] of [
        [1, 1, 1, { left: 256, top: 0, width: 244, height: 256 }],
        [2, 11, 0, { left: 768, top: 512, width: 232, height: 188 }],
        [0, 0, 2, { left: 0, top: 0, width: 250, height: 175 }],
      ] as const) {
        const got = await decodePixels(await ok(server.get(`FIF=${file}&JTL=${resolution},${tile}`), `${file} JTL=${resolution},${tile}`));
        const want = await expected(raw, W, H, level, rect);
        assert.equal(got.width, rect.width);
        assert.equal(got.height, rect.height);
        const quality = psnr(got, want);
        assert.ok(quality > minimum, `${file} JTL=${resolution},${tile}: PSNR ${quality.toFixed(1)} dB`);
      }
      const region = await decodePixels(await ok(server.get(`FIF=${file}&RGN=0.5,0.5,0.5,0.5&WID=250&CVT=png`), `${file} CVT`));
      assert.equal(region.width, 250);
      const quality = psnr(region, await expected(raw, W, H, 1, { left: 250, top: 175, width: 250, height: 175 }));
      assert.ok(quality > minimum - 5, `${file} CVT: PSNR ${quality.toFixed(1)} dB`);
    });
  }

  it('a single-level tiled TIFF keeps its own level: its stored JPEG tiles sent as they are', async () => {
    const tiff = await TiffSource.open(path.join(dir, 'single.tif'), 'single.tif');
    assert.equal(tiff.description.levels.length, 1);
    const stored = await tiff.storedJpegTile(0, 1, 1);
    await tiff.close();
    assert.ok(stored);
    // Resolution 2 of 3 is the full one; tile 5 is column 1 of row 1.
    assert.ok((await ok(server.get('FIF=single.tif&JTL=2,5'), 'JTL=2,5')).equals(stored));
  });

  it('IIIF info.json, DeepZoom .dzi and Zoomify ImageProperties.xml describe them like any pyramid', async () => {
    const info = JSON.parse((await ok(server.iiif('plain.jpg/info.json'), 'info.json')).toString()) as {
      width: number;
      height: number;
      tiles: Array<{ width: number; scaleFactors: number[] }>;
    };
    assert.equal(info.width, W);
    assert.equal(info.height, H);
    assert.deepEqual(info.tiles, [{ width: 256, height: 256, scaleFactors: [1, 2, 4] }]);
    const dzi = (await ok(server.get('DeepZoom=plain.png.dzi'), '.dzi')).toString();
    assert.match(dzi, /TileSize="256"/);
    assert.match(dzi, /Width="1000" Height="700"/);
    const zoomify = (await ok(server.get('Zoomify=plain.webp/ImageProperties.xml'), 'ImageProperties.xml')).toString();
    assert.match(zoomify, /WIDTH="1000" HEIGHT="700"/);
    assert.match(zoomify, /TILESIZE="256"/);
    // IIIF full/max, a DeepZoom tile, a Zoomify tile.
    const max = await decodePixels(await ok(server.iiif('striped.tif/full/max/0/default.jpg'), 'IIIF full'));
    assert.equal(max.width, W);
    const deep = await decodePixels(await ok(server.get('DeepZoom=plain.gif_files/10/3_2.jpg'), 'DeepZoom tile'));
    assert.deepEqual([deep.width, deep.height], [232, 188]);
    const zoom = await decodePixels(await ok(server.get('Zoomify=plain.jpg/TileGroup0/0-0-0.jpg'), 'Zoomify tile'));
    assert.deepEqual([zoom.width, zoom.height], [250, 175]);
  });

  it("EXIF of a JPEG source is carried into JPEG, PNG, WebP and AVIF regions (iipsrv master's CVT), never into tiles", async () => {
    for (const format of ['jpeg', 'png', 'webp', 'avif']) {
      const body = await ok(server.get(`FIF=exif.jpg&WID=200&CVT=${format}`), format);
      const { exif } = await sharp(body).metadata();
      assert.ok(exif?.toString('latin1').includes('Plain Test Copyright'), `${format}: EXIF carried`);
    }
    const iiif = await ok(server.iiif('exif.jpg/full/200,/0/default.webp'), 'IIIF webp');
    assert.ok((await sharp(iiif).metadata()).exif?.toString('latin1').includes('A. Tester'));
    const tile = await ok(server.get('FIF=exif.jpg&JTL=0,0'), 'tile');
    assert.equal((await sharp(tile).metadata()).exif, undefined);
    // A PNG source has none to carry.
    assert.equal((await sharp(await ok(server.get('FIF=plain.png&WID=200&CVT=jpeg'), 'png')).metadata()).exif, undefined);
  });

  it('a file of another kind is still 400 "Unsupported image type"', async () => {
    writeFileSync(path.join(dir, 'notes.txt'), 'These are not the pixels you are looking for.');
    const response = await server.get('FIF=notes.txt&OBJ=IIP,1.0');
    assert.equal(response.status, 400);
    assert.match(response.body.toString(), /^Unsupported image type: notes\.txt/);
  });
});

describe('a big plain JPEG', () => {
  const BW = 3000;
  const BH = 2000;
  let bigRaw: Buffer;
  let bigDir: string;
  before(async () => {
    bigDir = tempDir();
    bigRaw = smoothPicture(BW, BH);
    await sharp(bigRaw, { raw: { width: BW, height: BH, channels: 3 } })
      .jpeg({ quality: 95 })
      .toFile(path.join(bigDir, 'big.jpg'));
  });

  async function checkTiles(get: (q: string) => Promise<PlainResponse>): Promise<void> {
    // 3000x2000 .. 187x125: 5 levels. Resolution 0 is the smallest.
    assert.match((await ok(get('FIF=big.jpg&OBJ=Resolution-number'), 'OBJ')).toString(), /Resolution-number:5/);
    for (const [resolution, tile, level, rect] of [
      [0, 0, 4, { left: 0, top: 0, width: 187, height: 125 }],
      [2, 5, 2, { left: 512, top: 256, width: 238, height: 244 }],
      [4, 95, 0, { left: 2816, top: 1792, width: 184, height: 208 }],
    ] as const) {
      const got = await decodePixels(await ok(get(`FIF=big.jpg&JTL=${resolution},${tile}`), `JTL=${resolution},${tile}`));
      const want: Pixels = await expected(bigRaw, BW, BH, level, rect);
      assert.deepEqual([got.width, got.height], [rect.width, rect.height]);
      const quality = psnr(got, want);
      assert.ok(quality > 30, `JTL=${resolution},${tile}: PSNR ${quality.toFixed(1)} dB`);
    }
  }

  it('without a pyramid cache: every request read from the file at reduced size', async () => {
    const { get } = serverFor(bigDir, { PLAIN_MEMORY_PIXELS: '1000000' });
    await checkTiles(get);
  });

  it('with PYRAMID_CACHE_DIR: served from the file while the pyramid is built, then from the pyramid, its stored JPEG tiles as they are', async () => {
    const cache = tempDir();
    const { get, engine } = serverFor(bigDir, { PLAIN_MEMORY_PIXELS: '1000000', PYRAMID_CACHE_DIR: cache });
    await checkTiles(get);
    const image = await engine.openImage('big.jpg');
    assert.ok(image.source instanceof PlainSource);
    const deadline = Date.now() + 60_000;
    while (!(image.source as PlainSource).hasPyramid) {
      assert.ok(Date.now() < deadline, 'the pyramid is built within a minute');
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Each request looks for the finished pyramid (at most once a second).
      await ok(get('FIF=big.jpg&JTL=0,0'), 'JTL while building');
    }
    const files = readdirSync(cache);
    assert.equal(files.length, 1, files.join());
    assert.match(files[0]!, /^[0-9a-f]{40}\.tif$/);
    await checkTiles(get);
    // A whole tile is the pyramid's stored JPEG, byte for byte.
    const pyramid = await TiffSource.open(path.join(cache, files[0]!), 'pyramid');
    const stored = await pyramid.storedJpegTile(1, 1, 1);
    await pyramid.close();
    assert.ok(stored);
    const tile = await ok(get('FIF=big.jpg&JTL=3,7'), 'JTL=3,7');
    assert.ok(tile.equals(stored), 'the stored tile streamed through');
    // Another server (process) sharing the directory uses the pyramid from its first request.
    const other = serverFor(bigDir, { PLAIN_MEMORY_PIXELS: '1000000', PYRAMID_CACHE_DIR: cache });
    assert.ok((await ok(other.get('FIF=big.jpg&JTL=3,7'), 'other JTL')).equals(stored));
  });
});

describe('bad input: a clear 4xx in bounded time', () => {
  let badDir: string;
  before(async () => {
    badDir = tempDir();
    const jpeg = await sharp(smoothPicture(W, H), { raw: { width: W, height: H, channels: 3 } })
      .jpeg()
      .toBuffer();
    // A JPEG whose frame claims 60000x60000 pixels (3.6 Gpx).
    const huge = Buffer.from(jpeg);
    for (let at = 2; at < huge.length; at += 2 + huge.readUInt16BE(at + 2)) {
      if (huge[at + 1] === 0xc0) {
        huge.writeUInt16BE(60000, at + 5);
        huge.writeUInt16BE(60000, at + 7);
        break;
      }
    }
    writeFileSync(path.join(badDir, 'huge.jpg'), huge);
    writeFileSync(path.join(badDir, 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
    // JPEG's magic, then nothing a JPEG decoder can use.
    writeFileSync(path.join(badDir, 'garbage.jpg'), Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2000, 0x5a)]));
    // A PNG bomb: 64 Mpx of zeros in a few kB.
    await sharp({ create: { width: 8000, height: 8000, channels: 3, background: '#000000' } })
      .png({ compressionLevel: 9 })
      .toFile(path.join(badDir, 'bomb.png'));
    writeFileSync(path.join(badDir, 'header.png'), readFileSync(path.join(badDir, 'bomb.png')).subarray(0, 40));
  });

  it('a JPEG claiming 3.6 Gpx, a PNG bomb beyond PLAIN_MAX_PIXELS, a truncated JPEG, a PNG with only its header, garbage after a JPEG magic: 404 with a message, never the path', async () => {
    const { get } = serverFor(badDir, { PLAIN_MAX_PIXELS: '50000000', PYRAMID_CACHE_DIR: tempDir() });
    for (const [file, pattern] of [
      ['huge.jpg', /claims 60000x60000 pixels, more than PLAIN_MAX_PIXELS/],
      ['bomb.png', /claims 8000x8000 pixels, more than PLAIN_MAX_PIXELS/],
      ['truncated.jpg', /truncated\.jpg/],
      ['header.png', /header\.png/],
      ['garbage.jpg', /garbage\.jpg/],
    ] as const) {
      for (const query of [`FIF=${file}&JTL=0,0`, `FIF=${file}&JTL=2,0`, `FIF=${file}&WID=300&CVT=jpeg`]) {
        const started = performance.now();
        const response = await get(query);
        const elapsed = performance.now() - started;
        assert.equal(response.status, 404, `${query}: ${response.status} ${response.body.toString().slice(0, 200)}`);
        assert.match(response.body.toString(), pattern, query);
        assert.ok(!response.body.toString().includes(badDir), 'no filesystem path in the message');
        assert.ok(elapsed < 5000, `${query}: ${elapsed.toFixed(0)} ms`);
      }
    }
  });

  it('a truncated big JPEG: requests 404, its pyramid build fails and leaves nothing in the cache directory', async () => {
    const dir = tempDir();
    const jpeg = await sharp(smoothPicture(2000, 1500), { raw: { width: 2000, height: 1500, channels: 3 } })
      .jpeg()
      .toBuffer();
    writeFileSync(path.join(dir, 'cut.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
    const cache = tempDir();
    const { get } = serverFor(dir, { PLAIN_MEMORY_PIXELS: '100000', PYRAMID_CACHE_DIR: cache });
    // The bottom of the image is missing: a tile there cannot be read.
    const response = await get('FIF=cut.jpg&JTL=3,39');
    assert.equal(response.status, 404, response.body.toString());
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual(readdirSync(cache), []);
  });
});
