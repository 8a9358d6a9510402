/**
 * Hostile TIFFs (issue 13): files made to exhaust memory, stall the worker or reach the code paths
 * that were never meant to see them. Each is refused with a 4xx that names the image and the limit
 * it broke, in bounded time, memory and event-loop stall, through the router as a request.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { constants, deflateRawSync, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';
import { tempDir } from '../helpers/daemon.ts';
import { levelDirectory, lzwEncode, lzwLiterals, noise, packBitsEncode, rawTiff, TYPE, type RawDirectory } from '../helpers/raw-tiff.ts';
import { plainRequest } from '../helpers/requests.ts';

let dir: string;

function serverFor(env: Record<string, string> = {}): (query: string) => Promise<PlainResponse> {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: `${dir}/`, MAX_IMAGE_CACHE_SIZE: '0', ...env });
  const router = createRouter({ config, engine: new Engine(engineOptionsFor(config)), log: silentLog });
  return (query) => router(plainRequest(query));
}

interface Measured {
  response: PlainResponse;
  ms: number;
  /** The longest the event loop could not run during the request. */
  stallMs: number;
  /** Peak RSS above the RSS before the request, when the request set a new peak; else 0. */
  peakGrowthMb: number;
}

/**
 * Watches the event loop with a 1 ms interval timer: the longest gap between two of its turns is
 * the longest the loop could not run. (perf_hooks' monitorEventLoopDelay misses stalls inside one
 * long turn on Node 20.)
 */
function stallWatch(): () => number {
  let longest = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  return () => {
    clearInterval(timer);
    return Math.max(longest, performance.now() - last);
  };
}

async function measure(get: (query: string) => Promise<PlainResponse>, query: string): Promise<Measured> {
  const rssBefore = process.memoryUsage().rss;
  const peakBefore = process.resourceUsage().maxRSS * 1024;
  const stall = stallWatch();
  const started = performance.now();
  const response = await get(query);
  const ms = performance.now() - started;
  const stallMs = stall();
  const peakAfter = process.resourceUsage().maxRSS * 1024;
  const peakGrowthMb = peakAfter > peakBefore ? (peakAfter - rssBefore) / 2 ** 20 : 0;
  return { response, ms, stallMs, peakGrowthMb };
}

function text(response: PlainResponse): string {
  return response.body.toString('utf8');
}

function assertRefused(m: Measured, status: number, pattern: RegExp, what: string): void {
  assert.equal(m.response.status, status, `${what}: ${m.response.status} ${text(m.response)}`);
  assert.match(text(m.response), pattern, what);
}

/** A 256x256 RGB image of one tile, stored as given. */
function oneTile(file: string, compression: number, tile: Buffer, extra: Partial<Parameters<typeof levelDirectory>[0]> = {}): void {
  writeFileSync(
    path.join(dir, file),
    rawTiff([levelDirectory({ width: 256, height: 256, tileWidth: 256, tileHeight: 256, samplesPerPixel: 3, compression, tiles: [tile], ...extra })]),
  );
}

/**
 * A zlib stream of `bytes` zeros made without deflating them: one flushed block of 1 MiB of zeros
 * depends on nothing before it, so it is repeated; then a final empty block and the Adler-32.
 */
function deflateBomb(bytes: number): Buffer {
  const block = deflateRawSync(Buffer.alloc(2 ** 20), { finishFlush: constants.Z_FULL_FLUSH });
  const blocks = Math.ceil(bytes / 2 ** 20);
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE((((blocks * 2 ** 20) % 65521) * 65536 + 1) >>> 0);
  return Buffer.concat([Buffer.from([0x78, 0x9c]), ...new Array<Buffer>(blocks).fill(block), deflateRawSync(Buffer.alloc(0)), adler]);
}

/** A baseline JPEG whose frame header claims `width` x `height` (the scan is an 8x8 grey one). */
async function lyingJpeg(width: number, height: number): Promise<Buffer> {
  const jpeg = await sharp(Buffer.alloc(64, 128), { raw: { width: 8, height: 8, channels: 1 } })
    .jpeg({ quality: 50 })
    .toBuffer();
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  assert.ok(sof > 0, 'the test JPEG has a baseline frame header');
  jpeg.writeUInt16BE(height, sof + 5);
  jpeg.writeUInt16BE(width, sof + 7);
  return jpeg;
}

describe('hostile TIFFs', () => {
  before(() => {
    dir = tempDir('iipsrv-hostile-');
  });

  it('a deflate tile that inflates far beyond its size is corrupt: 404 in bounded time and memory', async () => {
    oneTile('bomb.tif', 8, deflateBomb(256 * 2 ** 20));
    const get = serverFor();
    for (const query of ['FIF=bomb.tif&JTL=0,0', 'FIF=bomb.tif&CNT=1.1&WID=100&CVT=jpeg', 'FIF=bomb.tif&WID=100&CVT=png']) {
      const m = await measure(get, query);
      if (query.endsWith('png')) {
        // libvips decodes this one: libtiff inflates up to the tile's end and ignores the rest, as
        // for iipsrv. Bounded all the same.
        assert.equal(m.response.status, 200, query);
      } else assertRefused(m, 404, /bomb\.tif.*tile 0,0 of level 0.*more than its 196608 bytes/, query);
      assert.ok(m.ms < 1000, `${query}: ${m.ms.toFixed(0)} ms`);
      assert.ok(m.peakGrowthMb < 100, `${query}: RSS grew ${m.peakGrowthMb.toFixed(0)} MB`);
    }
  });

  it('LZW and PackBits tiles decode to at most the tile, whatever their codes say', async () => {
    // Streams of 64 MiB of zeros for a tile of 192 kB: the decoder stops at the tile's end.
    const zeros = Buffer.alloc(64 * 2 ** 20);
    oneTile('lzw-long.tif', 5, lzwEncode(zeros));
    oneTile('packbits-long.tif', 32773, packBitsEncode(zeros));
    const get = serverFor();
    for (const file of ['lzw-long.tif', 'packbits-long.tif']) {
      const m = await measure(get, `FIF=${file}&CNT=1.1&WID=100&CVT=jpeg`);
      assert.equal(m.response.status, 200, `${file}: ${text(m.response)}`);
      assert.ok(m.ms < 1000, `${file}: ${m.ms.toFixed(0)} ms`);
      assert.ok(m.peakGrowthMb < 100, `${file}: RSS grew ${m.peakGrowthMb.toFixed(0)} MB`);
    }
  });

  it('a stored JPEG tile whose frame header claims another size is refused before decoding', async () => {
    const jpeg = await lyingJpeg(30000, 30000);
    writeFileSync(
      path.join(dir, 'jpeg-liar.tif'),
      rawTiff([levelDirectory({ width: 256, height: 256, tileWidth: 256, tileHeight: 256, compression: 7, tiles: [jpeg] })]),
    );
    const get = serverFor();
    // QLT: decoded and encoded again (libjpeg-turbo); CVT and CNT: decoded by libvips.
    for (const query of ['FIF=jpeg-liar.tif&QLT=60&JTL=0,0', 'FIF=jpeg-liar.tif&WID=100&CVT=jpeg', 'FIF=jpeg-liar.tif&CNT=1.1&JTL=0,0']) {
      const m = await measure(get, query);
      assertRefused(m, 404, /jpeg-liar\.tif.*tile 0,0 of level 0.*30000x30000.*256x256/, query);
      assert.ok(m.ms < 1000, `${query}: ${m.ms.toFixed(0)} ms`);
      assert.ok(m.peakGrowthMb < 100, `${query}: RSS grew ${m.peakGrowthMb.toFixed(0)} MB`);
    }
  });

  it('a tile larger than MAX_TILE_BYTES is refused, naming the image and the limit', async () => {
    // One sparse 32768x32768 tile: nothing stored, 1 GiB (grey) when decoded.
    writeFileSync(
      path.join(dir, 'sparse-giant.tif'),
      rawTiff([levelDirectory({ width: 32768, height: 32768, tileWidth: 32768, tileHeight: 32768, tiles: [Buffer.alloc(0)] })]),
    );
    // An LZW pyramid of 8192x8192 RGB tiles: 192 MiB each.
    const small = lzwEncode(Buffer.alloc(3 * 64));
    writeFileSync(
      path.join(dir, 'lzw-giant-tiles.tif'),
      rawTiff([
        levelDirectory({ width: 8192, height: 8192, tileWidth: 8192, tileHeight: 8192, samplesPerPixel: 3, compression: 5, predictor: 2, tiles: [small] }),
      ]),
    );
    const get = serverFor();
    for (const query of [
      'FIF=sparse-giant.tif&WID=200&CVT=jpeg',
      'FIF=sparse-giant.tif&JTL=0,0',
      'FIF=sparse-giant.tif&RGN=0,0,0.01,0.01&CNT=1.1&CVT=jpeg',
      'FIF=lzw-giant-tiles.tif&JTL=0,0',
      'FIF=lzw-giant-tiles.tif&RGN=0,0,0.1,0.1&GAM=1.2&WID=100&CVT=jpeg',
    ]) {
      const m = await measure(get, query);
      assertRefused(m, 404, /\.tif: .*tiles? .*decode.* more than MAX_TILE_BYTES \(33554432\)/, query);
      assert.ok(m.ms < 1000, `${query}: ${m.ms.toFixed(0)} ms`);
      assert.ok(m.stallMs < 150, `${query}: the event loop stalled ${m.stallMs.toFixed(0)} ms`);
    }
    // The limit is the administrator's: raised, the same sparse grey tile decodes (to zeros).
    writeFileSync(
      path.join(dir, 'sparse-big.tif'),
      rawTiff([levelDirectory({ width: 8192, height: 8192, tileWidth: 8192, tileHeight: 8192, tiles: [Buffer.alloc(0)] })]),
    );
    assert.equal((await get('FIF=sparse-big.tif&WID=64&CVT=jpeg')).status, 404);
    const raised = serverFor({ MAX_TILE_BYTES: String(64 * 2 ** 20) });
    assert.equal((await raised('FIF=sparse-big.tif&WID=64&CVT=jpeg')).status, 200);
  });

  it('more samples per pixel than MAX_SAMPLES_PER_PIXEL is refused when the file is opened', async () => {
    const tile = lzwEncode(Buffer.alloc(16 * 16 * 3331));
    writeFileSync(
      path.join(dir, 'spp3331.tif'),
      rawTiff([levelDirectory({ width: 16, height: 16, tileWidth: 16, tileHeight: 16, samplesPerPixel: 3331, photometric: 1, compression: 5, tiles: [tile] })]),
    );
    const get = serverFor();
    for (const query of ['FIF=spp3331.tif&OBJ=IIP,1.0&OBJ=Max-size', 'FIF=spp3331.tif&WID=100&CVT=jpeg']) {
      const m = await measure(get, query);
      assertRefused(m, 404, /spp3331\.tif: .*3331 samples per pixel, more than MAX_SAMPLES_PER_PIXEL \(1024\)/, query);
    }
  });

  it('no tile decode holds the event loop: a tile at the limit is decoded in slices', async () => {
    // The slowest per byte of what runs on the event loop: LZW of literal codes only, then 16-bit
    // differencing, in a 2048x2048 RGBA tile of 16-bit samples (32 MiB, the default MAX_TILE_BYTES).
    const side = 2048;
    writeFileSync(
      path.join(dir, 'lzw-at-limit.tif'),
      rawTiff([
        levelDirectory({
          width: side,
          height: side,
          tileWidth: side,
          tileHeight: side,
          samplesPerPixel: 4,
          bitsPerSample: 16,
          compression: 5,
          predictor: 2,
          extra: [{ tag: 338, type: TYPE.SHORT, values: [2] }],
          tiles: [lzwLiterals(noise(side * side * 8))],
        }),
      ]),
    );
    const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: `${dir}/` });
    const engine = new Engine(engineOptionsFor(config));
    const image = await engine.openImage('lzw-at-limit.tif');
    const stall = stallWatch();
    const started = performance.now();
    // One pixel of the tile (SPECTRA's read): the whole tile is decoded, nothing else is done.
    const samples = await engine.samples(image, 0, { left: 5, top: 5, width: 1, height: 1 });
    const ms = performance.now() - started;
    const stallMs = stall();
    assert.equal(samples.data.length, 4);
    // Unsliced, the loop stands still for the whole decode (0.5-1 s). Sliced, a few milliseconds
    // on an idle machine; a busy one (other processes on its cores) stretches any one turn.
    assert.ok(stallMs < 100 || stallMs < ms / 10, `the event loop stalled ${stallMs.toFixed(1)} ms (decode ${ms.toFixed(0)} ms)`);
  });

  it('when one tile of a request fails, the others stop decoding', async () => {
    // 4x4 tiles of 16-bit RGB noise, 1.5 MiB of LZW each to decode; the last tile's stream is broken.
    const side = 512;
    const good = lzwLiterals(noise(side * side * 6, 7));
    // A code far beyond the table right after the clear code: "out of sequence" at once.
    const broken = Buffer.from([0x80, 0x7f, 0xff, 0xff, 0xff]);
    const level = (last: Buffer) =>
      levelDirectory({
        width: 4 * side,
        height: 4 * side,
        tileWidth: side,
        tileHeight: side,
        samplesPerPixel: 3,
        bitsPerSample: 16,
        compression: 5,
        tiles: [...new Array<Buffer>(15).fill(good), last],
      });
    writeFileSync(path.join(dir, 'all-good.tif'), rawTiff([level(good)]));
    writeFileSync(path.join(dir, 'one-bad.tif'), rawTiff([level(broken)]));
    const get = serverFor();
    const whole = await measure(get, 'FIF=all-good.tif&WID=100&CVT=jpeg');
    assert.equal(whole.response.status, 200, text(whole.response));
    const failed = await measure(get, 'FIF=one-bad.tif&WID=100&CVT=jpeg');
    assertRefused(failed, 404, /one-bad\.tif.*tile 3,3 of level 0/, 'one bad tile');
    assert.ok(failed.ms < whole.ms / 3, `the failed request took ${failed.ms.toFixed(0)} ms, the whole one ${whole.ms.toFixed(0)} ms`);
  });

  it('processing reads at most MAX_PROCESSING_PIXELS, from the smallest level that will do', async () => {
    // 20000x4096 grey in deflate tiles, all zeros: small on disk, 82 Mpx decoded. In 512x512 tiles
    // it stays one level; in 256x256 ones the levels below it are made as for a plain image.
    const tiles = (width: number, height: number, side: number) =>
      new Array<Buffer>(Math.ceil(width / side) * Math.ceil(height / side)).fill(deflateSync(Buffer.alloc(side * side)));
    const level = (width: number, height: number, reduced = false, side = 256): RawDirectory =>
      levelDirectory({ width, height, tileWidth: side, tileHeight: side, compression: 8, reduced, tiles: tiles(width, height, side) });
    writeFileSync(path.join(dir, 'huge.tif'), rawTiff([level(20000, 4096, false, 512)]));
    writeFileSync(path.join(dir, 'huge256.tif'), rawTiff([level(20000, 4096)]));
    const pyramid: RawDirectory[] = [];
    for (let w = 20000, h = 4096; w >= 128; w = Math.floor(w / 2), h = Math.floor(h / 2)) pyramid.push(level(w, h, pyramid.length > 0));
    writeFileSync(path.join(dir, 'huge-pyramid.tif'), rawTiff(pyramid));
    const get = serverFor();
    for (const query of ['FIF=huge.tif&CNT=1.1&WID=101&CVT=jpeg', 'FIF=huge.tif&GAM=2&CMP=jet&WID=101&CVT=png']) {
      const m = await measure(get, query);
      assertRefused(m, 400, /huge\.tif: .*81920000 pixels.*more than MAX_PROCESSING_PIXELS \(33554432\)/, query);
      assert.ok(m.ms < 1000, `${query}: ${m.ms.toFixed(0)} ms`);
      assert.ok(m.peakGrowthMb < 100, `${query}: RSS grew ${m.peakGrowthMb.toFixed(0)} MB`);
    }
    // Without processing libvips streams the level down: not bounded by the processing limit.
    assert.equal((await get('FIF=huge.tif&WID=101&CVT=jpeg')).status, 200);
    // A pyramid has a level near the output size, and so has a single level in 256x256 tiles (made
    // below it): processing reads that one, as plain CVT does.
    for (const name of ['huge-pyramid.tif', 'huge256.tif']) {
      const m = await measure(get, `FIF=${name}&CNT=1.1&WID=101&CVT=jpeg`);
      assert.equal(m.response.status, 200, text(m.response));
      assert.ok(m.ms < 3000, `${name}: ${m.ms.toFixed(0)} ms`);
      assert.equal((await sharp(m.response.body).metadata()).width, 101);
    }
  });

  it('long IFD chains and many SubIFDs are refused at the documented limits, quickly', async () => {
    const tile = Buffer.alloc(0);
    const first = () => levelDirectory({ width: 64, height: 64, tileWidth: 64, tileHeight: 64, tiles: [tile] });
    const page = (): RawDirectory => ({ tags: [{ tag: 254, type: TYPE.LONG, values: [2] }] });
    writeFileSync(path.join(dir, 'chain-1024.tif'), rawTiff([first(), ...Array.from({ length: 1023 }, page)]));
    writeFileSync(path.join(dir, 'chain-5000.tif'), rawTiff([first(), ...Array.from({ length: 4999 }, page)]));
    const withSubIfds = (n: number): RawDirectory => ({ ...first(), subIfds: Array.from({ length: n }, page) });
    writeFileSync(path.join(dir, 'subifds-64.tif'), rawTiff([withSubIfds(64)]));
    writeFileSync(path.join(dir, 'subifds-5000.tif'), rawTiff([withSubIfds(5000)]));
    const get = serverFor();
    for (const file of ['chain-1024.tif', 'subifds-64.tif']) {
      assert.equal((await get(`FIF=${file}&OBJ=IIP,1.0&OBJ=Max-size`)).status, 200, file);
    }
    for (const [file, pattern] of [
      ['chain-5000.tif', /chain-5000\.tif: .*more than 1024 IFDs/],
      ['subifds-5000.tif', /subifds-5000\.tif: .*5000 SubIFDs, more than 64/],
    ] as const) {
      const m = await measure(get, `FIF=${file}&OBJ=IIP,1.0&OBJ=Max-size`);
      assertRefused(m, 404, pattern, file);
      // Before the limits: 1 to 5 s, and the event loop held for up to 4 s.
      assert.ok(m.ms < 1500, `${file}: ${m.ms.toFixed(0)} ms`);
      assert.ok(m.stallMs < 150, `${file}: the event loop stalled ${m.stallMs.toFixed(0)} ms`);
    }
  });

  it('a file with more tag entries or tag bytes than the limits is refused', async () => {
    // 300 directories of 300 entries each: more entries than any real file reads.
    const crowded = (): RawDirectory => ({
      tags: Array.from({ length: 300 }, (_, i) => ({ tag: 40000 + i, type: TYPE.LONG, values: [i] })).concat([{ tag: 254, type: TYPE.LONG, values: [2] }]),
    });
    const first = () => levelDirectory({ width: 64, height: 64, tileWidth: 64, tileHeight: 64, tiles: [Buffer.alloc(0)] });
    writeFileSync(path.join(dir, 'crowded.tif'), rawTiff([first(), ...Array.from({ length: 300 }, crowded)]));
    const get = serverFor();
    const m = await measure(get, 'FIF=crowded.tif&OBJ=IIP,1.0');
    assertRefused(m, 404, /crowded\.tif: .*more than 65536 tag entries/, 'crowded');
    // 65 MiB of JPEGTables, a tag every level's description reads.
    writeFileSync(
      path.join(dir, 'fat-tag.tif'),
      rawTiff([
        levelDirectory({
          width: 64,
          height: 64,
          tileWidth: 64,
          tileHeight: 64,
          tiles: [Buffer.alloc(0)],
          extra: [{ tag: 347, type: TYPE.UNDEFINED, values: Buffer.alloc(65 * 2 ** 20) }],
        }),
      ]),
    );
    assertRefused(
      await measure(get, 'FIF=fat-tag.tif&OBJ=IIP,1.0'),
      404,
      /fat-tag\.tif: .*JPEGTables.*more than 67108864 bytes of directories and tag values/,
      'fat tag',
    );
    // One tag's value beyond the end of the file, a later one past the budget: refused before any
    // read starts, so that no read is left to fail unheard.
    const unheard: unknown[] = [];
    const listener = (reason: unknown) => unheard.push(reason);
    process.on('unhandledRejection', listener);
    try {
      writeFileSync(
        path.join(dir, 'past-budget.tif'),
        rawTiff([
          levelDirectory({
            width: 64,
            height: 64,
            tileWidth: 64,
            tileHeight: 64,
            tiles: [Buffer.alloc(0)],
            extra: [
              { tag: 256, type: TYPE.LONG, values: [64, 0], count: 100_000 },
              { tag: 258, type: TYPE.SHORT, values: [8, 8, 8], count: 0x7fff_ffff },
            ],
          }),
        ]),
      );
      assertRefused(await measure(get, 'FIF=past-budget.tif&OBJ=IIP,1.0'), 404, /past-budget\.tif: .*BitsPerSample.*more than 67108864 bytes/, 'past budget');
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unheard, []);
    } finally {
      process.off('unhandledRejection', listener);
    }
  });

  it('an out-of-line Predictor (count 3) is a bad file: 404, as is an undefined Predictor', async () => {
    const pixels = Buffer.alloc(256 * 256 * 3, 90);
    const tile = deflateSync(pixels);
    // Count 3: six bytes, stored out of line (before the directory, where a reader must fetch them).
    oneTile('predictor-x3.tif', 8, tile, { extra: [{ tag: 317, type: TYPE.SHORT, values: [2, 2, 2] }] });
    oneTile('predictor7.tif', 8, tile, { predictor: 7 });
    const get = serverFor();
    for (const [file, pattern] of [
      ['predictor-x3.tif', /predictor-x3\.tif: .*IFD 0 has 3 values of Predictor \(317\), where one is expected/],
      ['predictor7.tif', /predictor7\.tif: .*IFD 0 has an unsupported Predictor 7/],
    ] as const) {
      for (const query of [`FIF=${file}&JTL=0,0`, `FIF=${file}&CNT=1.1&WID=64&CVT=jpeg`, `FIF=${file}&OBJ=IIP,1.0`]) {
        assertRefused(await measure(get, query), 404, pattern, query);
      }
    }
  });

  it('every tag the reader reads may be stored out of line, away from its directory', async () => {
    // Counts that push each value out of the entry; the values are written before the directory,
    // so none comes with the bytes read for it. First values are the ones that count.
    const predicted = (width: number): Buffer => {
      const rows = Buffer.alloc(width * width * 4);
      for (let i = 0; i < rows.length; i++) rows[i] = i % 4 === 3 ? 255 : (i * 7) & 0xff;
      // Horizontal differencing by hand: each sample minus the same band of its left neighbour.
      const stored = Buffer.from(rows);
      for (let y = 0; y < width; y++)
        for (let i = width * 4 - 1; i >= 4; i--) stored[y * width * 4 + i] = (rows[y * width * 4 + i]! - rows[y * width * 4 + i - 4]!) & 0xff;
      return deflateSync(stored);
    };
    const text = (tag: number, value: string) => ({ tag, type: TYPE.ASCII, values: Buffer.from(`${value}\0`) });
    // Single-valued tags inline (libtiff refuses others), the rest out of line.
    const tags = (width: number, reduced: boolean) => [
      { tag: 254, type: TYPE.LONG, values: [reduced ? 1 : 0] },
      { tag: 256, type: TYPE.LONG, values: [width] },
      { tag: 257, type: TYPE.LONG, values: [width] },
      { tag: 258, type: TYPE.SHORT, values: [8, 8, 8, 8] },
      { tag: 259, type: TYPE.SHORT, values: [8] },
      { tag: 262, type: TYPE.SHORT, values: [2] },
      { tag: 277, type: TYPE.SHORT, values: [4] },
      { tag: 284, type: TYPE.SHORT, values: [1] },
      { tag: 317, type: TYPE.SHORT, values: [2] },
      { tag: 322, type: TYPE.LONG, values: [64] },
      { tag: 323, type: TYPE.LONG, values: [64] },
      { tag: 338, type: TYPE.SHORT, values: [2] },
      { tag: 339, type: TYPE.SHORT, values: [1, 1, 1, 1] },
    ];
    const tiles = (width: number) => new Array<Buffer>((width / 64) ** 2).fill(predicted(64));
    const full: RawDirectory = {
      tags: [
        ...tags(128, false),
        { tag: 282, type: TYPE.RATIONAL, values: [300] },
        { tag: 283, type: TYPE.RATIONAL, values: [300] },
        { tag: 296, type: TYPE.SHORT, values: [2] },
        { tag: 340, type: TYPE.SHORT, values: [0, 0, 0, 0] },
        { tag: 341, type: TYPE.SHORT, values: [255, 255, 255, 255] },
        text(269, 'a document'),
        text(270, 'a description'),
        text(271, 'a make'),
        text(272, 'a model'),
        text(285, 'a page'),
        text(305, 'some software'),
        text(306, '2024:01:01 00:00:00'),
        text(315, 'an artist'),
        text(33432, 'a copyright'),
        { tag: 700, type: TYPE.BYTE, values: Buffer.from('<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>') },
      ],
      tiles: tiles(128),
      subIfds: [{ tags: tags(64, true), tiles: tiles(64) }],
    };
    writeFileSync(path.join(dir, 'out-of-line.tif'), rawTiff([full]));
    const get = serverFor();
    for (const query of [
      'FIF=out-of-line.tif&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number&OBJ=Copyright&OBJ=Title',
      'FIF=out-of-line.tif&JTL=1,0',
      'FIF=out-of-line.tif&JTL=0,0',
      'FIF=out-of-line.tif&CNT=1.1&WID=100&CVT=jpeg',
      'FIF=out-of-line.tif&WID=100&CVT=png',
    ]) {
      const response = await get(query);
      assert.equal(response.status, 200, `${query}: ${response.body.toString()}`);
    }
    const info = (await get('FIF=out-of-line.tif&OBJ=Max-size&OBJ=Resolution-number&OBJ=Copyright')).body.toString();
    assert.match(info, /Max-size:128 128/);
    assert.match(info, /Resolution-number:2/);
    assert.match(info, /a copyright/);
    // A single-valued tag given three values (out of line) is a bad level: 404 naming the tag.
    for (const tag of [256, 257, 259, 262, 277, 284, 317, 322, 323]) {
      const level = tags(128, false).map((t) => (t.tag === tag ? { ...t, values: [t.values[0]!, 0, 0] } : t));
      writeFileSync(path.join(dir, `count3-${tag}.tif`), rawTiff([{ tags: level, tiles: tiles(128) }]));
      for (const query of [`FIF=count3-${tag}.tif&OBJ=IIP,1.0`, `FIF=count3-${tag}.tif&WID=100&CVT=png`]) {
        assertRefused(await measure(get, query), 404, new RegExp(`count3-${tag}\\.tif: .*3 values of \\w+ \\(${tag}\\)`), query);
      }
    }
  });

  describe('damage the mutation test found (tiff-mutations.test.ts)', () => {
    const rgbTile = (side: number) => deflateSync(Buffer.alloc(side * side * 3, 77));

    it('a tile width libtiff refuses (not a multiple of 16) is a 404 from libvips, not a 500', async () => {
      writeFileSync(
        path.join(dir, 'tile129.tif'),
        rawTiff([levelDirectory({ width: 129, height: 129, tileWidth: 129, tileHeight: 129, samplesPerPixel: 3, compression: 8, tiles: [rgbTile(129)] })]),
      );
      const get = serverFor();
      // Our own decoder reads it; libvips (CVT without processing) does not.
      assert.equal((await get('FIF=tile129.tif&JTL=0,0')).status, 200);
      assertRefused(await measure(get, 'FIF=tile129.tif&WID=100&CVT=png'), 404, /tile129\.tif: the image data cannot be decoded \(.*tile size/, 'CVT');
    });

    it('an empty JPEG tile, which libvips fails on without saying why, is a 404 naming it', async () => {
      const jpeg = await sharp(Buffer.alloc(128 * 128 * 3, 99), { raw: { width: 128, height: 128, channels: 3 } })
        .jpeg()
        .toBuffer();
      writeFileSync(
        path.join(dir, 'jpeg-sparse.tif'),
        rawTiff([
          levelDirectory({ width: 256, height: 128, tileWidth: 128, tileHeight: 128, samplesPerPixel: 3, compression: 7, tiles: [jpeg, Buffer.alloc(0)] }),
        ]),
      );
      const get = serverFor();
      assertRefused(await measure(get, 'FIF=jpeg-sparse.tif&WID=100&CVT=png'), 404, /jpeg-sparse\.tif: tile 1,0 of level 0 is empty/, 'CVT');
    });

    it('a photometric interpretation libvips cannot show, or too few bands for it, is a 501 naming it', async () => {
      oneTile('photometric65535.tif', 8, rgbTile(256), { photometric: 65535 });
      oneTile('rgb2.tif', 8, deflateSync(Buffer.alloc(256 * 256 * 2)), { samplesPerPixel: 2, photometric: 2 });
      const get = serverFor();
      for (const [query, pattern] of [
        ['FIF=photometric65535.tif&JTL=0,0', /photometric65535\.tif: TIFF photometric interpretation 65535 is not supported/],
        ['FIF=rgb2.tif&WID=64&CVT=jpeg', /rgb2\.tif: TIFF photometric interpretation 2 with 2 samples per pixel is not supported/],
      ] as const) {
        assertRefused(await measure(get, query), 501, pattern, query);
      }
    });

    it('a page of another photometric interpretation is not a level of the pyramid', async () => {
      const level = (side: number, photometric: number, reduced: boolean) =>
        levelDirectory({
          width: side,
          height: side,
          tileWidth: side,
          tileHeight: side,
          samplesPerPixel: 3,
          compression: 8,
          photometric,
          reduced,
          tiles: [rgbTile(side)],
        });
      // An RGB image, then a MinIsWhite page of three bands, then a true reduction.
      writeFileSync(path.join(dir, 'mixed-photometric.tif'), rawTiff([level(256, 2, false), level(128, 0, true), level(64, 2, true)]));
      const get = serverFor();
      assert.match((await get('FIF=mixed-photometric.tif&OBJ=Resolution-number')).body.toString(), /Resolution-number:2/);
      for (const query of ['FIF=mixed-photometric.tif&JTL=0,0', 'FIF=mixed-photometric.tif&JTL=1,0', 'FIF=mixed-photometric.tif&WID=100&CVT=jpeg']) {
        const response = await get(query);
        assert.equal(response.status, 200, `${query}: ${text(response)}`);
      }
    });
  });
});
