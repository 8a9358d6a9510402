/**
 * The IIP image commands (JTL, TIL, CVT with WID/HEI/RGN/ROT/QLT, image OBJ objects) against the
 * tile engine and real pyramid TIFFs made here: sizes, tile grids, edge tiles, pixels (PSNR against
 * the source), stored-tile passthrough, the RAM cache, SubIFD and BigTIFF pyramids, bad files.
 * Everything goes through the router as a plain request; the daemon tests cover the sockets.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, openSync, readFileSync, writeFileSync, closeSync, ftruncateSync, statSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { TiffFile } from '../../src/engine/tiff/index.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { getHeader } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { plainRequest } from '../helpers/requests.ts';
import { tempDir, which } from '../helpers/daemon.ts';
import { decodePixels, psnr, type Pixels } from '../helpers/images.ts';

const request = plainRequest;

interface Server {
  engine: Engine;
  get(query: string): Promise<PlainResponse>;
}

function serverFor(prefix: string, env: Record<string, string> = {}): Server {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, ...env });
  const engine = new Engine({
    paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix },
    cacheBytes: config.maxImageCacheBytes,
    interpolation: config.interpolation,
  });
  const router = createRouter({ config, engine, log: silentLog });
  return { engine, get: (query) => router(request(query)) };
}

type Raw = Pixels;
const decode = decodePixels;

/**
 * `got` is a JPEG of `source` at quality 75: as close to it as sharp's own JPEG of the source at
 * that quality (4:2:0 spoils sharp colour edges in both), within half a dB.
 */
async function assertJpegOf(got: Raw, source: Raw, what: string): Promise<void> {
  const { width, height, channels } = source;
  const reference = await decode(
    await sharp(source.data, { raw: { width, height, channels: channels as 1 | 3 } })
      .jpeg({ quality: 75 })
      .toBuffer(),
  );
  const quality = psnr(got, source);
  const best = psnr(reference, source);
  assert.ok(quality > best - 0.5 && quality > 24, `${what}: PSNR ${quality.toFixed(1)} dB, a plain JPEG ${best.toFixed(1)} dB`);
}

/** An RGB picture with structure at every scale: smooth ramps plus 50-px coloured squares. */
function pattern(width: number, height: number, channels = 3): Buffer {
  const raw = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      const square = (Math.floor(x / 50) + Math.floor(y / 50)) % 3;
      const r = Math.floor((x * 255) / Math.max(1, width - 1));
      const g = Math.floor((y * 255) / Math.max(1, height - 1));
      const b = square * 100;
      if (channels === 1) raw[i] = Math.floor((r + g) / 2);
      else {
        raw[i] = r;
        raw[i + 1] = g;
        raw[i + 2] = b;
        if (channels === 4) raw[i + 3] = 200;
      }
    }
  }
  return raw;
}

/** Four solid quadrants: red top left, green top right, blue bottom left, white bottom right. */
function quadrants(width: number, height: number): Buffer {
  const raw = Buffer.alloc(width * height * 3);
  const colours = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 255],
  ];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const c = colours[(y < height / 2 ? 0 : 2) + (x < width / 2 ? 0 : 1)]!;
      raw.set(c, (y * width + x) * 3);
    }
  }
  return raw;
}

async function writePyramid(
  file: string,
  raw: Buffer,
  width: number,
  height: number,
  options: {
    channels?: number;
    tile?: number;
    compression?: 'jpeg' | 'deflate' | 'lzw' | 'none' | 'packbits' | 'webp' | 'zstd';
    bigtiff?: boolean;
    predictor?: 'none' | 'horizontal';
  } = {},
): Promise<void> {
  let image = sharp(raw, { raw: { width, height, channels: (options.channels ?? 3) as 1 | 3 | 4 } });
  // Without this sharp writes one-band input as RGB.
  if (options.channels === 1) image = image.toColourspace('b-w');
  await image
    .tiff({
      tile: true,
      pyramid: true,
      tileWidth: options.tile ?? 256,
      tileHeight: options.tile ?? 256,
      compression: options.compression ?? 'jpeg',
      quality: 90,
      bigtiff: options.bigtiff ?? false,
      predictor: options.predictor ?? 'horizontal',
    })
    .toFile(file);
}

/** The pixels of a level of the source, exactly: the level read back from the lossless file. */
async function sourceRegion(file: string, page: number, rect: { left: number; top: number; width: number; height: number }): Promise<Raw> {
  return decode(sharp(file, { page }).extract(rect));
}

let dir: string;
let prefix: string;
let server: Server;

before(async () => {
  dir = tempDir();
  prefix = dir + '/';
  await Promise.all([
    writePyramid(path.join(dir, 'deflate.tif'), pattern(1000, 700), 1000, 700, { compression: 'deflate' }),
    writePyramid(path.join(dir, 'jpeg.tif'), pattern(1000, 700), 1000, 700, { compression: 'jpeg' }),
    writePyramid(path.join(dir, 'none.tif'), pattern(1000, 700), 1000, 700, { compression: 'none' }),
    writePyramid(path.join(dir, 'lzw.tif'), pattern(1000, 700), 1000, 700, { compression: 'lzw' }),
    writePyramid(path.join(dir, 'deflate-nopredictor.tif'), pattern(1000, 700), 1000, 700, { compression: 'deflate', predictor: 'none' }),
    writePyramid(path.join(dir, 'packbits.tif'), pattern(1000, 700), 1000, 700, { compression: 'packbits', predictor: 'none' }),
    writePyramid(path.join(dir, 'webp.tif'), pattern(1000, 700), 1000, 700, { compression: 'webp' }),
    writePyramid(path.join(dir, 'odd512.tif'), pattern(1001, 733), 1001, 733, { compression: 'deflate', tile: 512 }),
    writePyramid(path.join(dir, 'grey.tif'), pattern(600, 400, 1), 600, 400, { channels: 1, compression: 'deflate' }),
    writePyramid(path.join(dir, 'grey-jpeg.tif'), pattern(600, 400, 1), 600, 400, { channels: 1, compression: 'jpeg' }),
    writePyramid(path.join(dir, 'rgba.tif'), pattern(600, 400, 4), 600, 400, { channels: 4, compression: 'deflate' }),
    writePyramid(path.join(dir, 'quad.tif'), quadrants(800, 600), 800, 600, { compression: 'deflate' }),
    writePyramid(path.join(dir, 'big.tif'), pattern(700, 500), 700, 500, { compression: 'deflate', bigtiff: true }),
    writePyramid(path.join(dir, 'tiny.tif'), pattern(100, 60), 100, 60, { compression: 'deflate' }),
    sharp(pattern(600, 400), { raw: { width: 600, height: 400, channels: 3 } })
      .toColourspace('rgb16')
      .tiff({ tile: true, pyramid: true, compression: 'deflate' })
      .toFile(path.join(dir, 'rgb16.tif')),
    sharp(pattern(600, 400), { raw: { width: 600, height: 400, channels: 3 } })
      .toColourspace('scrgb')
      .tiff({ tile: true, pyramid: true, compression: 'deflate' })
      .toFile(path.join(dir, 'float.tif')),
    sharp(pattern(300, 200), { raw: { width: 300, height: 200, channels: 3 } })
      .tiff({ compression: 'deflate' })
      .toFile(path.join(dir, 'striped.tif')),
  ]);
  writeFileSync(path.join(dir, 'empty.tif'), Buffer.alloc(0));
  const whole = readFileSync(path.join(dir, 'deflate.tif'));
  writeFileSync(path.join(dir, 'truncated.tif'), whole.subarray(0, Math.floor(whole.length / 3)));
  writeFileSync(path.join(dir, 'header-only.tif'), Buffer.from([0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]));
  server = serverFor(prefix);
});

describe('OBJ image objects', () => {
  it('a 1000x700 pyramid: byte-identical lines as iipsrv 1.1 writes them', async () => {
    const response = await server.get(
      'FIF=jpeg.tif&OBJ=IIP,1.0&OBJ=Basic-info&OBJ=Tile-size&OBJ=Bits-per-channel&OBJ=Resolutions&OBJ=Min-Max-sample-values&OBJ=Horizontal-views&OBJ=Vertical-views',
    );
    assert.equal(response.status, 200);
    assert.equal(
      response.body.toString('latin1'),
      'IIP:1.0\r\nIIP-server:3.65\r\nMax-size:1000 700\r\nResolution-number:3\r\nColorspace,0-2,0:0 0 3 3 0 1 2\r\n' +
        'Tile-size:256 256\r\nBits-per-channel:8\r\nResolutions:250 175,500 350,1000 700\r\n' +
        'Min-Max-sample-values: 0  255  0  255  0  255\r\nHorizontal-views:0\r\nVertical-views:90\r\n',
    );
  });
  it('greyscale: one channel in Colorspace and Min-Max (the 0-2 range counts resolutions)', async () => {
    const body = (await server.get('FIF=grey.tif&OBJ=Colorspace,0-0,0&OBJ=Min-Max-sample-values')).body.toString('latin1');
    assert.equal(body, '\r\nColorspace,0-2,0:0 0 1 1 0\r\nMin-Max-sample-values: 0  255\r\n');
  });
  it('odd sizes and 512-px tiles: Tile-size and floor-halved Resolutions', async () => {
    // sharp stops the pyramid at the first level that fits in one tile: 500x366 < 512.
    const body = (await server.get('FIF=odd512.tif&OBJ=Tile-size&OBJ=Resolutions&OBJ=Max-size')).body.toString('latin1');
    assert.equal(body, '\r\nTile-size:512 512\r\nResolutions:500 366,1001 733\r\nMax-size:1001 733\r\n');
  });
  it('BigTIFF reads like classic TIFF', async () => {
    const body = (await server.get('FIF=big.tif&OBJ=Max-size&OBJ=Resolution-number')).body.toString('latin1');
    assert.equal(body, '\r\nMax-size:700 500\r\nResolution-number:3\r\n');
  });
});

describe('JTL tiles', () => {
  it('every tile of every resolution: cropped edge sizes and pixels of the source (deflate, re-encoded)', async () => {
    // sharp writes levels floor-halved until one fits a tile: 1000x700, 500x350, 250x175.
    const levels = [
      { width: 250, height: 175 },
      { width: 500, height: 350 },
      { width: 1000, height: 700 },
    ];
    for (let resolution = 0; resolution < levels.length; resolution++) {
      const { width, height } = levels[resolution]!;
      const across = Math.ceil(width / 256);
      const down = Math.ceil(height / 256);
      const page = levels.length - 1 - resolution;
      for (let tile = 0; tile < across * down; tile++) {
        const response = await server.get(`FIF=deflate.tif&JTL=${resolution},${tile}`);
        assert.equal(response.status, 200, `JTL=${resolution},${tile}: ${response.body.toString()}`);
        assert.equal(getHeader(response.headers, 'content-type'), 'image/jpeg');
        const col = tile % across;
        const row = Math.floor(tile / across);
        const rect = { left: col * 256, top: row * 256, width: Math.min(256, width - col * 256), height: Math.min(256, height - row * 256) };
        const got = await decode(response.body);
        assert.deepEqual([got.width, got.height], [rect.width, rect.height], `size of JTL=${resolution},${tile}`);
        await assertJpegOf(got, await sourceRegion(path.join(dir, 'deflate.tif'), page, rect), `JTL=${resolution},${tile}`);
      }
    }
  });
  it('WebP-compressed tiles (lossy at the source): decoded, cropped, close to the picture', async () => {
    for (const tile of [0, 3, 11]) {
      const reference = await decode((await server.get(`FIF=deflate.tif&JTL=2,${tile}`)).body);
      const got = await decode((await server.get(`FIF=webp.tif&JTL=2,${tile}`)).body);
      assert.deepEqual([got.width, got.height], [reference.width, reference.height]);
      assert.ok(psnr(got, reference) > 25, `tile ${tile}: ${psnr(got, reference).toFixed(1)} dB`);
    }
  });
  it(
    'zstd tiles (written by the vips CLI): a 501 naming the compression, never blank pixels',
    { skip: which('vips') ? false : 'vips not installed (apt-get install libvips-tools)' },
    async () => {
      // sharp's libtiff has no zstd: libvips would hand back blank pixels without an error.
      execFileSync('vips', [
        'tiffsave',
        path.join(dir, 'deflate.tif'),
        path.join(dir, 'zstd.tif'),
        '--tile',
        '--pyramid',
        '--compression',
        'zstd',
        '--tile-width',
        '256',
        '--tile-height',
        '256',
      ]);
      assert.equal((await server.get('FIF=zstd.tif&OBJ=Max-size')).status, 200);
      for (const query of ['FIF=zstd.tif&JTL=2,0', 'FIF=zstd.tif&WID=100&CVT=jpeg']) {
        const response = await server.get(query);
        assert.equal(response.status, 501, query);
        assert.match(response.body.toString(), /zstd\.tif: TIFF compression zstd is not supported/);
      }
    },
  );
  it('uncompressed, LZW, deflate without predictor and PackBits: the same tiles as deflate with predictor, byte for byte', async () => {
    for (const tile of [0, 3, 5, 11]) {
      const reference = (await server.get(`FIF=deflate.tif&JTL=2,${tile}`)).body;
      for (const file of ['none.tif', 'lzw.tif', 'deflate-nopredictor.tif', 'packbits.tif']) {
        const response = await server.get(`FIF=${file}&JTL=2,${tile}`);
        assert.equal(response.status, 200);
        assert.ok(response.body.equals(reference), `${file} tile ${tile}`);
      }
    }
  });
  it('the tile 1.1 measured: JTL=2,3 of 1000x700 is 232x256, JTL=2,11 is 232x188', async () => {
    for (const [tile, size] of [
      [3, [232, 256]],
      [11, [232, 188]],
    ] as const) {
      const got = await decode((await server.get(`FIF=jpeg.tif&JTL=2,${tile}`)).body);
      assert.deepEqual([got.width, got.height], size);
    }
  });
  it('512-px tiles at odd sizes: the grid and the edge crops follow the tile size', async () => {
    // 1001x733 with 512 tiles: 2x2 tiles, the last column 489 wide, the last row 221 high.
    const sizes: Array<[number, number]> = [];
    for (let tile = 0; tile < 4; tile++) {
      const got = await decode((await server.get(`FIF=odd512.tif&JTL=1,${tile}`)).body);
      sizes.push([got.width, got.height]);
    }
    assert.deepEqual(sizes, [
      [512, 512],
      [489, 512],
      [512, 221],
      [489, 221],
    ]);
    assert.equal((await server.get('FIF=odd512.tif&JTL=1,4')).status, 404);
    const small = await decode((await server.get('FIF=odd512.tif&JTL=0,0')).body);
    assert.deepEqual([small.width, small.height], [500, 366]);
  });
  it('a JPEG tile that needs no change is the stored bytes with the JPEGTables spliced in', async () => {
    const tiff = await TiffFile.open(path.join(dir, 'jpeg.tif'));
    try {
      const stored = await tiff.readTileBytes(0, 1, 1);
      const tables = tiff.info.levels[0]!.jpegTables!;
      const expected = Buffer.concat([tables.subarray(0, tables.length - 2), stored.subarray(2)]);
      const response = await server.get('FIF=jpeg.tif&JTL=2,5');
      assert.equal(response.status, 200);
      assert.ok(response.body.equals(expected), 'the stored tile, not a re-encoding');
      const got = await decode(response.body);
      assert.deepEqual([got.width, got.height, got.channels], [256, 256, 3]);
      // An explicit QLT asks for a re-encoding at that quality: other bytes, same picture.
      const requality = await server.get('FIF=jpeg.tif&QLT=40&JTL=2,5');
      assert.equal(requality.status, 200);
      assert.ok(!requality.body.equals(expected));
      assert.ok(psnr(await decode(requality.body), got) > 28);
    } finally {
      await tiff.close();
    }
  });
  it('edge tiles of a JPEG pyramid are decoded and cropped, never sent padded', async () => {
    const got = await decode((await server.get('FIF=jpeg.tif&JTL=2,3')).body);
    assert.deepEqual([got.width, got.height], [232, 256]);
  });
  it('CODEC_PASSTHROUGH=0 re-encodes every tile', async () => {
    const other = serverFor(prefix, { CODEC_PASSTHROUGH: '0' });
    const tiff = await TiffFile.open(path.join(dir, 'jpeg.tif'));
    try {
      const stored = await tiff.readTileBytes(0, 1, 1);
      const body = (await other.get('FIF=jpeg.tif&JTL=2,5')).body;
      assert.ok(!body.subarray(body.length - stored.length + 2).equals(stored.subarray(2)), 'not the stored bytes');
      assert.deepEqual((await decode(body)).width, 256);
    } finally {
      await tiff.close();
    }
  });
  it('greyscale tiles are one-channel JPEGs; RGBA tiles lose alpha (as iipsrv)', async () => {
    const grey = await decode((await server.get('FIF=grey.tif&JTL=2,0')).body);
    assert.equal(grey.channels, 1);
    const source = await sourceRegion(path.join(dir, 'grey.tif'), 0, { left: 0, top: 0, width: 256, height: 256 });
    assert.ok(psnr(grey, source) > 30);
    const rgbaResponse = await server.get('FIF=rgba.tif&JTL=2,0');
    assert.equal(rgbaResponse.status, 200);
    const rgba = await decode(rgbaResponse.body);
    assert.equal(rgba.channels, 3);
    const rgbSource = await decode(sharp(path.join(dir, 'rgba.tif'), { page: 0 }).extract({ left: 0, top: 0, width: 256, height: 256 }).removeAlpha());
    assert.ok(psnr(rgba, rgbSource) > 30);
  });
  it('re-encoded JPEG tiles (QLT given): grey stays one band, edge tiles are cropped, pixels are the stored ones', async () => {
    for (const [file, channels] of [
      ['grey-jpeg.tif', 1],
      ['jpeg.tif', 3],
    ] as const) {
      // Tile 2 of the full resolution is the right-hand edge column of a 600 or 1000 px wide image.
      for (const tile of [0, 2, 3]) {
        const resolution = 2;
        const passed = await server.get(`FIF=${file}&JTL=${resolution},${tile}`);
        const encoded = await server.get(`FIF=${file}&QLT=90&JTL=${resolution},${tile}`);
        assert.equal(encoded.status, 200, `${file} tile ${tile}: ${encoded.body.toString()}`);
        const a = await decode(passed.body);
        const b = await decode(encoded.body);
        assert.equal(b.channels, channels, `${file} tile ${tile} channels`);
        assert.deepEqual([b.width, b.height], [a.width, a.height], `${file} tile ${tile} size`);
        assert.ok(psnr(a, b) > 30, `${file} tile ${tile}: ${psnr(a, b).toFixed(1)} dB`);
      }
    }
  });
  it('an image smaller than one tile has one resolution and one tile', async () => {
    assert.equal((await server.get('FIF=tiny.tif&OBJ=Resolution-number')).body.toString(), '\r\nResolution-number:1\r\n');
    const got = await decode((await server.get('FIF=tiny.tif&JTL=0,0')).body);
    assert.deepEqual([got.width, got.height], [100, 60]);
  });
  it('PTL, WTL, ATL, TTL (iipsrv 1.3): the tile as PNG, WebP, AVIF, TIFF; PNG and TIFF exactly the stored pixels', async () => {
    for (const [command, type, format] of [
      ['PTL', 'image/png', 'png'],
      ['WTL', 'image/webp', 'webp'],
      ['ATL', 'image/avif', 'heif'],
      ['TTL', 'image/tiff', 'tiff'],
    ] as const) {
      for (const tile of [5, 11]) {
        const response = await server.get(`FIF=deflate.tif&${command}=2,${tile}`);
        assert.equal(response.status, 200, `${command}: ${response.body.toString().slice(0, 100)}`);
        assert.equal(getHeader(response.headers, 'content-type'), type);
        assert.equal((await sharp(response.body).metadata()).format, format);
        const got = await decode(response.body);
        const col = tile % 4;
        const row = Math.floor(tile / 4);
        const rect = { left: col * 256, top: row * 256, width: Math.min(256, 1000 - col * 256), height: Math.min(256, 700 - row * 256) };
        const source = await sourceRegion(path.join(dir, 'deflate.tif'), 0, rect);
        if (command === 'PTL' || command === 'TTL') assert.ok(got.data.equals(source.data), `${command} ${tile}: lossless`);
        else assert.ok(psnr(got, source) > 30, `${command} ${tile}: ${psnr(got, source).toFixed(1)} dB`);
      }
    }
    assert.equal((await server.get('FIF=deflate.tif&PTL=2,12')).status, 404);
  });
  it('JTL=2 without a comma is resolution 2, tile 2 (as iipsrv reads it)', async () => {
    const a = await server.get('FIF=deflate.tif&JTL=2');
    const b = await server.get('FIF=deflate.tif&JTL=2,2');
    assert.equal(a.status, 200);
    assert.ok(a.body.equals(b.body));
  });
  it('out-of-range resolution or tile: 404 naming it; negative: 400; no FIF: IIP error 1 3', async () => {
    const resolution = await server.get('FIF=deflate.tif&JTL=3,0');
    assert.equal(resolution.status, 404);
    assert.match(resolution.body.toString(), /non-existent resolution: 3/);
    const tile = await server.get('FIF=deflate.tif&JTL=2,12');
    assert.equal(tile.status, 404);
    assert.match(tile.body.toString(), /non-existent tile: 12/);
    assert.equal((await server.get('FIF=deflate.tif&JTL=-1,0')).status, 400);
    const none = await server.get('JTL=0,0');
    assert.equal(none.status, 400);
    assert.equal(none.body.toString(), 'Error/4:1 3 \r\n');
  });
  it('ROT=90 rotates the tile clockwise; !0 mirrors it', async () => {
    const plain = await decode((await server.get('FIF=quad.tif&JTL=0,0')).body);
    const rotated = await decode((await server.get('FIF=quad.tif&ROT=90&JTL=0,0')).body);
    assert.deepEqual([rotated.width, rotated.height], [plain.height, plain.width]);
    // After a clockwise quarter turn the red top-left corner is at the top right.
    const px = (raw: Raw, x: number, y: number) => [...raw.data.subarray((y * raw.width + x) * raw.channels, (y * raw.width + x) * raw.channels + 3)];
    const near = (a: number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]!) < 40);
    assert.ok(near(px(plain, 5, 5), [255, 0, 0]), `plain top left ${px(plain, 5, 5)}`);
    assert.ok(near(px(rotated, rotated.width - 5, 5), [255, 0, 0]), `rotated top right ${px(rotated, rotated.width - 5, 5)}`);
    assert.ok(near(px(rotated, 5, 5), [0, 0, 255]), 'blue (bottom left) comes to the top left');
    const mirrored = await decode((await server.get('FIF=quad.tif&ROT=!0&JTL=0,0')).body);
    assert.ok(near(px(mirrored, 5, 5), [0, 255, 0]), 'green (top right) comes to the top left');
  });
  it('JPEG_QUALITY sets the quality of re-encoded tiles; QLT overrides it', async () => {
    const low = serverFor(prefix, { JPEG_QUALITY: '20' });
    const high = serverFor(prefix, { JPEG_QUALITY: '95' });
    const [a, b, c] = await Promise.all([low.get('FIF=deflate.tif&JTL=2,5'), high.get('FIF=deflate.tif&JTL=2,5'), low.get('FIF=deflate.tif&QLT=95&JTL=2,5')]);
    assert.ok(a.body.length * 2 < b.body.length, `${a.body.length} bytes at 20, ${b.body.length} at 95`);
    assert.ok(b.body.equals(c.body), 'QLT=95 is JPEG_QUALITY=95');
  });
  it('INTERPOLATION=0 (nearest neighbour) keeps only source colours when scaling; bilinear blends them', async () => {
    const nearest = serverFor(prefix, { INTERPOLATION: '0' });
    const bilinear = serverFor(prefix, { INTERPOLATION: '1' });
    // Upscaled 8x from the 200 px level of the quadrants image, as PNG (lossless) so values are exact.
    const query = 'FIF=quad.tif&RGN=0.45,0.45,0.1,0.1&WID=640&CVT=png';
    const colours = async (s: Server) => {
      const got = await decode((await s.get(query)).body);
      const seen = new Set<string>();
      for (let i = 0; i < got.data.length; i += got.channels) seen.add(`${got.data[i]},${got.data[i + 1]},${got.data[i + 2]}`);
      return seen;
    };
    const sharpEdges = await colours(nearest);
    const blended = await colours(bilinear);
    assert.ok(sharpEdges.size <= 4, `nearest: ${sharpEdges.size} colours`);
    assert.ok(blended.size > 20, `bilinear: ${blended.size} colours`);
  });
  it('the RAM cache serves a repeated tile without decoding again', async () => {
    const own = serverFor(prefix, { MAX_IMAGE_CACHE_SIZE: '10' });
    const first = await own.get('FIF=deflate.tif&JTL=1,1');
    const before = own.engine.cacheStats();
    const second = await own.get('FIF=deflate.tif&JTL=1,1');
    const after = own.engine.cacheStats();
    assert.ok(first.body.equals(second.body));
    assert.equal(after.ramHits! - before.ramHits!, 1, 'one RAM hit');
    // Another quality is another entry.
    await own.get('FIF=deflate.tif&QLT=30&JTL=1,1');
    assert.equal(own.engine.cacheStats().ramHits, after.ramHits);
    const none = serverFor(prefix, { MAX_IMAGE_CACHE_SIZE: '0' });
    await none.get('FIF=deflate.tif&JTL=1,1');
    await none.get('FIF=deflate.tif&JTL=1,1');
    assert.equal(none.engine.cacheStats().ramHits, 0, 'MAX_IMAGE_CACHE_SIZE=0 disables the cache');
  });
  it('a replaced file is never served from the cache', async () => {
    const own = serverFor(prefix, { MAX_IMAGE_CACHE_SIZE: '10' });
    const file = path.join(dir, 'replaced.tif');
    copyFileSync(path.join(dir, 'quad.tif'), file);
    const before = await decode((await own.get('FIF=replaced.tif&JTL=0,0')).body);
    copyFileSync(path.join(dir, 'deflate.tif'), file);
    const mtime = statSync(file).mtimeMs / 1000 + 10;
    execFileSync('touch', ['-d', `@${mtime}`, file]);
    const after = await own.get('FIF=replaced.tif&OBJ=Max-size&JTL=0,0');
    const got = await decode(after.body);
    assert.notDeepEqual([got.width, got.height], [before.width, before.height]);
  });
});

describe('TIL tile streams', () => {
  it('streams tiles unprocessed and upright whatever processing or rotation was asked, as iipsrv 1.1', async () => {
    const plain = await server.get('FIF=deflate.tif&TIL=2,0-1');
    for (const extra of ['INV', 'CNT=2', 'CMP=jet', 'ROT=90', 'COL=grey']) {
      const got = await server.get(`FIF=deflate.tif&${extra}&TIL=2,0-1`);
      assert.equal(got.status, 200, extra);
      assert.ok(got.body.equals(plain.body), `TIL with ${extra} is the plain stream`);
    }
  });
  it('frames each tile of the rectangle column by column, as iipsrv 1.1', async () => {
    const response = await server.get('FIF=deflate.tif&TIL=2,0-5');
    assert.equal(response.status, 200);
    const body = response.body;
    const numbers: number[] = [];
    let at = 0;
    while (at < body.length) {
      const colon = body.indexOf(':', at);
      const header = body.subarray(at, colon).toString('latin1');
      const match = /^Tile,2,(\d+),0\/(\d+)$/.exec(header);
      assert.ok(match, `frame header ${header}`);
      numbers.push(Number(match[1]));
      const length = Number(match[2]);
      const frame = body.subarray(colon + 1, colon + 1 + length);
      assert.deepEqual([...frame.subarray(0, 8)], [2, 0, 0, 0, 0, 0x11, 0, 0]);
      const tile = await decode(frame.subarray(8));
      assert.equal(tile.width, 256);
      assert.equal(body.subarray(colon + 1 + length, colon + 3 + length).toString(), '\r\n');
      at = colon + 3 + length;
    }
    // A 4-wide grid, tiles 0 to 5: columns 0-1, rows 0-1, column-major.
    assert.deepEqual(numbers, [0, 4, 1, 5]);
  });
});

describe('CVT region export', () => {
  const size = async (query: string, s: Server = server) => {
    const response = await s.get(query);
    assert.equal(response.status, 200, `${query}: ${response.body.toString()}`);
    const got = await decode(response.body);
    return [got.width, got.height];
  };
  it('output sizes as iipsrv 1.1 measured them (1000x700, 3 levels)', async () => {
    assert.deepEqual(await size('FIF=jpeg.tif&CVT=jpeg'), [1000, 700]);
    assert.deepEqual(await size('FIF=jpeg.tif&WID=300&CVT=jpeg'), [300, 210]);
    assert.deepEqual(await size('FIF=jpeg.tif&HEI=300&CVT=jpeg'), [429, 300]);
    assert.deepEqual(await size('FIF=jpeg.tif&WID=300&HEI=300&CVT=jpeg'), [300, 210]);
    assert.deepEqual(await size('FIF=jpeg.tif&RGN=0,0,0.5,1&CVT=jpeg'), [500, 700]);
    assert.deepEqual(await size('FIF=jpeg.tif&WID=2000&CVT=jpeg'), [2000, 1400]);
    assert.deepEqual(await size('FIF=jpeg.tif&WID=300&ROT=90&CVT=jpeg'), [210, 300]);
  });
  it('RGN without WID/HEI is the region at full resolution (1.1 stretched it to the whole image size)', async () => {
    assert.deepEqual(await size('FIF=jpeg.tif&RGN=0,0,0.5,0.5&CVT=jpeg'), [500, 350]);
  });
  it('MAX_CVT caps the larger side; ALLOW_UPSCALING=0 caps at the region pixels', async () => {
    const capped = serverFor(prefix, { MAX_CVT: '400', ALLOW_UPSCALING: '0' });
    assert.deepEqual(await size('FIF=jpeg.tif&WID=600&CVT=jpeg', capped), [400, 280]);
    assert.deepEqual(await size('FIF=jpeg.tif&WID=2000&CVT=jpeg', capped), [400, 280]);
    const noUpscale = serverFor(prefix, { ALLOW_UPSCALING: '0' });
    assert.deepEqual(await size('FIF=jpeg.tif&WID=2000&CVT=jpeg', noUpscale), [1000, 700]);
  });
  it('a region has the colours of its part of the image', async () => {
    // The top right quarter of the quadrants image is green, the bottom left quarter blue.
    const mean = async (query: string) => {
      const got = await decode((await server.get(query)).body);
      const sums = [0, 0, 0];
      for (let i = 0; i < got.data.length; i += got.channels) for (let c = 0; c < 3; c++) sums[c]! += got.data[i + c]!;
      return sums.map((s) => s / (got.width * got.height));
    };
    const green = await mean('FIF=quad.tif&RGN=0.55,0.05,0.4,0.4&WID=100&CVT=jpeg');
    assert.ok(green[1]! > 240 && green[0]! < 15 && green[2]! < 15, `green ${green}`);
    const blue = await mean('FIF=quad.tif&RGN=0.05,0.55,0.4,0.4&WID=100&CVT=jpeg');
    assert.ok(blue[2]! > 240 && blue[0]! < 15 && blue[1]! < 15, `blue ${blue}`);
  });
  it('the whole image scaled down matches the source scaled down', async () => {
    const got = await decode((await server.get('FIF=deflate.tif&WID=400&CVT=jpeg')).body);
    assert.deepEqual([got.width, got.height], [400, 280]);
    const expected = await decode(sharp(path.join(dir, 'deflate.tif'), { page: 0 }).resize(400, 280, { fit: 'fill' }));
    assert.ok(psnr(got, expected) > 28);
  });
  it('ROT=180 and ROT=!90 turn the region', async () => {
    const px = (raw: Raw, x: number, y: number) => [...raw.data.subarray((y * raw.width + x) * 3, (y * raw.width + x) * 3 + 3)];
    const turned = await decode((await server.get('FIF=quad.tif&WID=200&ROT=180&CVT=jpeg')).body);
    assert.ok(px(turned, 5, 5)[0]! > 230 && px(turned, 5, 5)[2]! > 230, 'white (bottom right) at the top left');
    const flipped = await decode((await server.get('FIF=quad.tif&WID=200&ROT=!90&CVT=jpeg')).body);
    assert.deepEqual([flipped.width, flipped.height], [150, 200]);
  });
  it('an arbitrary angle leaves white corners in JPEG and transparent ones in PNG', async () => {
    const jpeg = await decode((await server.get('FIF=quad.tif&WID=200&ROT=30&CVT=jpeg')).body);
    assert.ok(
      [...jpeg.data.subarray(0, 3)].every((v) => v > 240),
      'white corner',
    );
    const png = await decode((await server.get('FIF=quad.tif&WID=200&ROT=30&CVT=png')).body);
    assert.equal(png.channels, 4);
    assert.equal(png.data[3], 0, 'transparent corner');
    const centre = ((png.height >> 1) * png.width + (png.width >> 1)) * 4;
    assert.equal(png.data[centre + 3], 255, 'opaque picture');
  });
  it('many region exports at once (more than the engine runs together) all finish, each with its own picture', async () => {
    const own = serverFor(prefix, { MAX_IMAGE_CACHE_SIZE: '0' });
    const queries = Array.from({ length: 24 }, (_, i) => `FIF=deflate.tif&RGN=${(i % 6) / 10},${Math.floor(i / 6) / 10},0.3,0.3&WID=${100 + i}&CVT=jpeg`);
    const replies = await Promise.all(queries.map((q) => own.get(q)));
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.status, 200);
      assert.equal((await decode(reply.body)).width, 100 + i);
    }
  });
  it('Content-Disposition names the image with .jpg', async () => {
    const response = await server.get('FIF=jpeg.tif&WID=100&CVT=jpeg');
    assert.equal(getHeader(response.headers, 'content-disposition'), 'inline;filename="jpeg.jpg"');
  });
  it('a region wholly outside the image is 400 (iipsrv 1.1 crashes on RGN=1,1,...)', async () => {
    const response = await server.get('FIF=jpeg.tif&RGN=1,1,0.5,0.5&WID=100&CVT=jpeg');
    assert.equal(response.status, 400);
    assert.equal((await server.get('FIF=jpeg.tif&OBJ=Max-size')).status, 200, 'still serving');
  });
  it('CVT=png, webp, avif, tiff: that format, the right Content-Type and file name, the same picture', async () => {
    const reference = await decode((await server.get('FIF=deflate.tif&WID=300&CVT=jpeg')).body);
    for (const [name, format, type, extension] of [
      ['png', 'png', 'image/png', 'png'],
      ['webp', 'webp', 'image/webp', 'webp'],
      ['avif', 'heif', 'image/avif', 'avif'],
      ['tiff', 'tiff', 'image/tiff', 'tif'],
      ['TIF', 'tiff', 'image/tiff', 'tif'],
    ] as const) {
      const response = await server.get(`FIF=deflate.tif&WID=300&CVT=${name}`);
      assert.equal(response.status, 200, `${name}: ${response.body.toString()}`);
      assert.equal(getHeader(response.headers, 'content-type'), type);
      assert.equal(getHeader(response.headers, 'content-disposition'), `inline;filename="deflate.${extension}"`);
      assert.equal((await sharp(response.body).metadata()).format, format);
      const got = await decode(sharp(response.body).removeAlpha());
      assert.ok(psnr(got, reference) > 25, `${name}: ${psnr(got, reference).toFixed(1)} dB`);
    }
    // Formats with alpha keep it; JPEG drops it.
    assert.equal((await sharp((await server.get('FIF=rgba.tif&WID=100&CVT=png')).body).metadata()).channels, 4);
    assert.equal((await sharp((await server.get('FIF=rgba.tif&WID=100&CVT=jpeg')).body).metadata()).channels, 3);
    assert.equal((await sharp((await server.get('FIF=grey.tif&WID=100&CVT=png')).body).metadata()).channels, 1);
  });
  it('an unknown CVT format is 400 with a message, never a JPEG under another name', async () => {
    const response = await server.get('FIF=jpeg.tif&CVT=bmp');
    assert.equal(response.status, 400);
    assert.match(response.body.toString(), /bmp/);
  });
});

describe('level choice: a 10000x7000 JPEG pyramid', () => {
  let big: Server;
  const reads: number[] = [];
  before(async () => {
    const file = path.join(dir, 'huge.tif');
    // Generated small and scaled up: a real 10000x7000 JPEG pyramid in about a second.
    await sharp(pattern(500, 350), { raw: { width: 500, height: 350, channels: 3 } })
      .resize(10000, 7000, { kernel: 'nearest' })
      .tiff({ tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 80 })
      .toFile(file);
    big = serverFor(prefix);
    // Record which level every decode reads from.
    const image = await big.engine.openImage('huge.tif');
    const decodeLevel = image.source.decode.bind(image.source);
    image.source.decode = (level, rect) => {
      reads.push(level);
      return decodeLevel(level, rect);
    };
  });
  it('has the pyramid iipsrv would list', async () => {
    const body = (await big.get('FIF=huge.tif&OBJ=Resolutions')).body.toString();
    assert.equal(body, '\r\nResolutions:156 109,312 218,625 437,1250 875,2500 1750,5000 3500,10000 7000\r\n');
  });
  it('a 500-px export of the whole image reads the 625-px level, not the full image', async () => {
    reads.length = 0;
    assert.deepEqual(
      await (async () => {
        const got = await decode((await big.get('FIF=huge.tif&WID=500&CVT=jpeg')).body);
        return [got.width, got.height];
      })(),
      [500, 350],
    );
    assert.deepEqual(reads, [4]);
  });
  it('a 800-px export of a tenth of the image reads the level with just enough pixels', async () => {
    reads.length = 0;
    const got = await decode((await big.get('FIF=huge.tif&RGN=0.3,0.3,0.1,0.1&WID=800&CVT=jpeg')).body);
    assert.deepEqual([got.width, got.height], [800, 560]);
    // 0.1 of 10000 = 1000 px at full size; the 5000-px level has 500: too few. Full resolution it is.
    assert.deepEqual(reads, [0]);
    reads.length = 0;
    await big.get('FIF=huge.tif&RGN=0.3,0.3,0.1,0.1&WID=400&CVT=jpeg');
    assert.deepEqual(reads, [1]);
  });
  it('a full-resolution tile of the huge image is served from its stored bytes', async () => {
    reads.length = 0;
    const response = await big.get('FIF=huge.tif&JTL=6,100');
    assert.equal(response.status, 200);
    assert.deepEqual(reads, [], 'no decode');
    assert.equal((await decode(response.body)).width, 256);
  });
});

describe('other pyramid layouts', () => {
  it(
    'SubIFD pyramid (OME-TIFF style, written by the vips CLI)',
    { skip: which('vips') ? false : 'vips not installed (apt-get install libvips-tools)' },
    async () => {
      const file = path.join(dir, 'subifd.tif');
      execFileSync('vips', [
        'tiffsave',
        path.join(dir, 'deflate.tif'),
        file,
        '--tile',
        '--pyramid',
        '--subifd',
        '--compression',
        'deflate',
        '--tile-width',
        '256',
        '--tile-height',
        '256',
      ]);
      const obj = (await server.get('FIF=subifd.tif&OBJ=Resolutions')).body.toString();
      assert.equal(obj, '\r\nResolutions:250 175,500 350,1000 700\r\n');
      for (const [resolution, tile, page] of [
        [0, 0, 2],
        [1, 1, 1],
        [2, 5, 0],
      ] as const) {
        const response = await server.get(`FIF=subifd.tif&JTL=${resolution},${tile}`);
        assert.equal(response.status, 200);
        const width = [250, 500, 1000][resolution]!;
        const height = [175, 350, 700][resolution]!;
        const across = Math.ceil(width / 256);
        const col = tile % across;
        const row = Math.floor(tile / across);
        const rect = { left: col * 256, top: row * 256, width: Math.min(256, width - col * 256), height: Math.min(256, height - row * 256) };
        // The levels as the vips CLI wrote them: the main image, then SubIFD 0 (500 px), 1 (250 px).
        const level = page === 0 ? sharp(file) : sharp(file, { tiff: { subifd: page - 1 } });
        const source = await decode(level.extract(rect));
        await assertJpegOf(await decode(response.body), source, `JTL=${resolution},${tile}`);
      }
    },
  );
  it('BigTIFF tiles', async () => {
    const response = await server.get('FIF=big.tif&JTL=2,3');
    assert.equal(response.status, 200);
    const source = await sourceRegion(path.join(dir, 'big.tif'), 0, { left: 0, top: 256, width: 256, height: 244 });
    assert.ok(psnr(await decode(response.body), source) > 30);
  });
});

describe('pixel types', () => {
  it('16-bit RGB with the full range: tiles and regions scaled to 8 bits as iipsrv normalises them', async () => {
    const tile = await decode((await server.get('FIF=rgb16.tif&JTL=2,0')).body);
    const expected = await decode(
      sharp(pattern(600, 400), { raw: { width: 600, height: 400, channels: 3 } }).extract({ left: 0, top: 0, width: 256, height: 256 }),
    );
    assert.ok(psnr(tile, expected) > 28, `PSNR ${psnr(tile, expected).toFixed(1)}`);
    assert.equal((await server.get('FIF=rgb16.tif&WID=200&CVT=jpeg')).status, 200);
    assert.equal((await server.get('FIF=rgb16.tif&OBJ=Bits-per-channel')).body.toString(), '\r\nBits-per-channel:16\r\n');
  });
  it('32-bit float (scRGB as sharp writes it, no SMaxSampleValue): the stored values over 0..1, not gamma-encoded', async () => {
    assert.equal((await server.get('FIF=float.tif&OBJ=Bits-per-channel')).body.toString(), '\r\nBits-per-channel:32\r\n');
    const { data } = await sharp(pattern(600, 400), { raw: { width: 600, height: 400, channels: 3 } })
      .toColourspace('scrgb')
      .extract({ left: 0, top: 0, width: 256, height: 256 })
      .raw({ depth: 'float' })
      .toBuffer({ resolveWithObject: true });
    const linear = new Float32Array(data.buffer, data.byteOffset, data.length / 4);
    const expected = { width: 256, height: 256, channels: 3, data: Buffer.from(Array.from(linear, (v) => Math.max(0, Math.min(255, Math.trunc(v * 255))))) };
    const tile = await decode((await server.get('FIF=float.tif&JTL=2,0')).body);
    assert.ok(psnr(tile, expected) > 30, `PSNR ${psnr(tile, expected).toFixed(1)}`);
    assert.equal((await server.get('FIF=float.tif&WID=100&CVT=jpeg')).status, 200);
  });
});

describe('files that are not usable pyramids', () => {
  it('striped.tif, a TIFF without tiles: served as an image without a pyramid (it was 404 "not tiled", as iipsrv answers)', async () => {
    for (const query of ['FIF=striped.tif&OBJ=Max-size', 'FIF=striped.tif&JTL=0,0', 'FIF=striped.tif&CVT=jpeg']) {
      const response = await server.get(query);
      assert.equal(response.status, 200, `${query}: ${response.status} ${response.body.toString()}`);
    }
  });
  for (const [file, pattern] of [
    ['empty.tif', /./],
    ['truncated.tif', /./],
    ['header-only.tif', /./],
    ['missing.tif', /missing\.tif/],
  ] as const) {
    it(`${file}: 404 with a message, never a crash`, async () => {
      for (const query of [`FIF=${file}&OBJ=Max-size`, `FIF=${file}&JTL=0,0`, `FIF=${file}&CVT=jpeg`]) {
        const response = await server.get(query);
        assert.equal(response.status, 404, `${query}: ${response.status} ${response.body.toString()}`);
        assert.match(response.body.toString(), pattern);
        assert.ok(!response.body.toString().includes(dir), 'no filesystem path in the message');
      }
    });
  }
  it('a file truncated after its header was read: tiles beyond the end are 404, the server goes on', async () => {
    const file = path.join(dir, 'shrinking.tif');
    copyFileSync(path.join(dir, 'deflate.tif'), file);
    const own = serverFor(prefix);
    assert.equal((await own.get('FIF=shrinking.tif&OBJ=Max-size')).status, 200);
    const fd = openSync(file, 'r+');
    ftruncateSync(fd, 4000);
    closeSync(fd);
    const response = await own.get('FIF=shrinking.tif&JTL=2,11');
    assert.equal(response.status, 404, response.body.toString());
    assert.equal((await own.get('FIF=deflate.tif&JTL=0,0')).status, 200);
  });
});
