/**
 * WATERMARK, WATERMARK_PROBABILITY, WATERMARK_OPACITY: a solid watermark on solid images, so that
 * every changed pixel has a known value (premultiplied, added, clipped) and the changed area has a
 * known size; tiles, regions (one chance per block of twice the tile size), 16-bit output, stored
 * JPEG tiles, the cache, and a daemon whose watermark file is missing.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { Watermark } from '../../src/engine/output/watermark.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { startDaemon, tempDir } from '../helpers/daemon.ts';
import { freePort } from '../helpers/processes.ts';
import { decodePixels, type Pixels } from '../helpers/images.ts';
import { seededRandom } from '../helpers/random.ts';
import { plainRequest } from '../helpers/requests.ts';

interface Server {
  engine: Engine;
  get(query: string): Promise<PlainResponse>;
}

async function serverFor(prefix: string, env: Record<string, string> = {}): Promise<Server> {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, MAX_IMAGE_CACHE_SIZE: '0', ...env });
  const watermark = config.watermark ? await Watermark.load(config.watermark) : null;
  const engine = new Engine({ paths: { prefix: config.filesystemPrefix, suffix: '' }, cacheBytes: config.maxImageCacheBytes, watermark });
  const router = createRouter({ config, engine, log: silentLog });
  return { engine, get: (query) => router(plainRequest(query)) };
}

const pyramid = { tile: true, pyramid: true, tileWidth: 256, tileHeight: 256 } as const;

async function solidTiff(file: string, width: number, height: number, value: number[], compression: 'deflate' | 'jpeg' = 'deflate'): Promise<void> {
  const channels = value.length as 1 | 3;
  const raw = Buffer.alloc(width * height * channels);
  for (let i = 0; i < raw.length; i++) raw[i] = value[i % channels]!;
  let image = sharp(raw, { raw: { width, height, channels } });
  if (channels === 1) image = image.toColourspace('b-w');
  await image.tiff({ ...pyramid, compression, quality: 95 }).toFile(file);
}

async function solidPng(file: string, width: number, height: number, rgba: [number, number, number, number]): Promise<void> {
  const raw = Buffer.alloc(width * height * 4);
  for (let i = 0; i < raw.length; i++) raw[i] = rgba[i % 4]!;
  await sharp(raw, { raw: { width, height, channels: 4 } })
    .png()
    .toFile(file);
}

/** Pixels that differ from `background`, their values, and the box around them. */
function changes(
  pixels: Pixels,
  background: number[],
): { count: number; values: Set<string>; box: { left: number; top: number; right: number; bottom: number } } {
  let count = 0;
  const values = new Set<string>();
  const box = { left: Infinity, top: Infinity, right: -1, bottom: -1 };
  for (let y = 0; y < pixels.height; y++) {
    for (let x = 0; x < pixels.width; x++) {
      const at = (y * pixels.width + x) * pixels.channels;
      const pixel = [...pixels.data.subarray(at, at + pixels.channels)];
      if (pixel.every((v, c) => v === background[c])) continue;
      count++;
      values.add(pixel.join(','));
      box.left = Math.min(box.left, x);
      box.top = Math.min(box.top, y);
      box.right = Math.max(box.right, x);
      box.bottom = Math.max(box.bottom, y);
    }
  }
  return { count, values, box };
}

describe('watermark', () => {
  const dir = tempDir('iipsrv-watermark-');
  const prefix = dir + '/';
  const mark = path.join(dir, 'mark.png');
  const env = (extra: Record<string, string> = {}) => ({ WATERMARK: mark, WATERMARK_PROBABILITY: '1', ...extra });
  let top: number;

  before(async () => {
    await solidTiff(path.join(dir, 'solid.tif'), 600, 400, [100, 100, 100]);
    await solidTiff(path.join(dir, 'bright.tif'), 600, 400, [200, 200, 200]);
    await solidTiff(path.join(dir, 'grey.tif'), 600, 400, [100]);
    await solidTiff(path.join(dir, 'stored.tif'), 600, 400, [100, 100, 100], 'jpeg');
    const wide = new Uint16Array(300 * 200 * 3).fill(1000);
    await sharp(wide, { raw: { width: 300, height: 200, channels: 3 } })
      .toColourspace('rgb16')
      .tiff({ ...pyramid, compression: 'deflate' })
      .toFile(path.join(dir, 'wide.tif'));
    await solidPng(mark, 64, 32, [50, 60, 70, 255]);
    await solidPng(path.join(dir, 'half.png'), 64, 32, [50, 60, 70, 128]);
    await solidPng(path.join(dir, 'long.png'), 300, 20, [50, 60, 70, 255]);
    const probe = await serverFor(prefix);
    top = (await probe.engine.openImage('solid.tif')).source.description.levels.length - 1;
  });

  after(() => rm(dir, { recursive: true, force: true }));

  it('WATERMARK_PROBABILITY=1 adds the watermark once per tile, at some place inside it', async () => {
    const server = await serverFor(prefix, env());
    const seen = new Set<string>();
    for (const tile of [0, 1, 2, 3, 5]) {
      const got = changes(await decodePixels((await server.get(`FIF=solid.tif&PTL=${top},${tile}`)).body), [100, 100, 100]);
      assert.equal(got.count, 64 * 32, `tile ${tile}`);
      assert.deepEqual([...got.values], ['150,160,170']);
      assert.equal(got.box.right - got.box.left + 1, 64);
      assert.equal(got.box.bottom - got.box.top + 1, 32);
      seen.add(`${got.box.left},${got.box.top}`);
    }
    assert.ok(seen.size > 1, 'the position is random');
  });

  it('adds with clipping at 255', async () => {
    const server = await serverFor(prefix, env());
    const got = changes(await decodePixels((await server.get(`FIF=bright.tif&PTL=${top},0`)).body), [200, 200, 200]);
    assert.deepEqual([...got.values], ['250,255,255']);
  });

  it('WATERMARK_OPACITY and the watermark alpha scale it (premultiplied, truncated)', async () => {
    const half = await serverFor(prefix, env({ WATERMARK_OPACITY: '0.5' }));
    assert.deepEqual([...changes(await decodePixels((await half.get(`FIF=solid.tif&PTL=${top},0`)).body), [100, 100, 100]).values], ['125,130,135']);
    const alpha = await serverFor(prefix, env({ WATERMARK: path.join(dir, 'half.png') }));
    // 50 × 128/255 = 25.1, 60 × 128/255 = 30.1, 70 × 128/255 = 35.1
    assert.deepEqual([...changes(await decodePixels((await alpha.get(`FIF=solid.tif&PTL=${top},0`)).body), [100, 100, 100]).values], ['125,130,135']);
  });

  it('a watermark larger than the tile is cropped to it', async () => {
    const server = await serverFor(prefix, env({ WATERMARK: path.join(dir, 'long.png') }));
    const full = changes(await decodePixels((await server.get(`FIF=solid.tif&PTL=${top},0`)).body), [100, 100, 100]);
    assert.equal(full.count, 256 * 20);
    // The right edge tile is 88 pixels wide.
    const edge = changes(await decodePixels((await server.get(`FIF=solid.tif&PTL=${top},2`)).body), [100, 100, 100]);
    assert.equal(edge.count, 88 * 20);
  });

  it('WATERMARK_PROBABILITY=0 never marks; a fraction marks some tiles', async () => {
    const never = await serverFor(prefix, env({ WATERMARK_PROBABILITY: '0' }));
    const plain = await serverFor(prefix);
    for (const query of [`PTL=${top},0`, `JTL=${top},1`, 'CVT=png']) {
      const a = await never.get(`FIF=solid.tif&${query}`);
      const b = await plain.get(`FIF=solid.tif&${query}`);
      assert.ok(a.body.equals(b.body), query);
    }
    const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, WATERMARK: mark, WATERMARK_PROBABILITY: '0.5' });
    const watermark = await Watermark.load(config.watermark!, seededRandom(7));
    const engine = new Engine({ paths: { prefix, suffix: '' }, watermark });
    const router = createRouter({ config, engine, log: silentLog });
    let marked = 0;
    for (let i = 0; i < 40; i++) {
      const got = changes(await decodePixels((await router(plainRequest(`FIF=solid.tif&PTL=${top},0`))).body), [100, 100, 100]);
      if (got.count > 0) marked++;
    }
    assert.ok(marked > 5 && marked < 35, `${marked} of 40 marked`);
  });

  it('one-band images get the red band, 16-bit output 256 times the value', async () => {
    const server = await serverFor(prefix, env());
    assert.deepEqual([...changes(await decodePixels((await server.get(`FIF=grey.tif&PTL=${top},0`)).body), [100]).values], ['150']);
    const sixteen = await server.get('FIF=wide.tif&BITS=16&PTL=1,0');
    const { data } = await sharp(sixteen.body).toColourspace('rgb16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const samples = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    const values = new Map<number, number>();
    for (const v of samples) values.set(v, (values.get(v) ?? 0) + 1);
    assert.deepEqual(
      [...values.entries()].sort((a, b) => a[0] - b[0]),
      [
        [1000, 3 * 256 * 200 - 3 * 64 * 32],
        [1000 + 50 * 256, 64 * 32],
        [1000 + 60 * 256, 64 * 32],
        [1000 + 70 * 256, 64 * 32],
      ],
    );
    // Through the 8-bit pipeline of a 16-bit image (1000/65535 × 255 = 3.9, truncated to 3).
    const eight = changes(await decodePixels((await server.get('FIF=wide.tif&PTL=1,0')).body), [3, 3, 3]);
    assert.deepEqual([...eight.values], ['53,63,73']);
  });

  it('regions get one chance per block of twice the tile size', async () => {
    const server = await serverFor(prefix, env());
    // 600 × 400 in blocks of 512: two blocks (512 and 88 wide), one row.
    const full = changes(await decodePixels((await server.get('FIF=solid.tif&CVT=png')).body), [100, 100, 100]);
    assert.equal(full.count, 2 * 64 * 32);
    assert.deepEqual([...full.values], ['150,160,170']);
    const small = changes(await decodePixels((await server.get('FIF=solid.tif&WID=300&CVT=png')).body), [100, 100, 100]);
    assert.equal(small.count, 64 * 32);
    // Rotated output is marked after rotating: the watermark stays upright, the blocks are the
    // rotated output's (400 × 600: one column, two rows).
    const rotated = changes(await decodePixels((await server.get('FIF=solid.tif&WID=300&ROT=90&CVT=png')).body), [100, 100, 100]);
    assert.equal(rotated.box.right - rotated.box.left + 1, 64);
    const turned = changes(await decodePixels((await server.get('FIF=solid.tif&ROT=270&CVT=png')).body), [100, 100, 100]);
    assert.equal(turned.count, 2 * 64 * 32);
    // Any angle: marked too. A strip of 300 × 20 crosses the turned picture wherever it lands in
    // the 360 × 323 output (a small watermark may fall in a transparent corner).
    const strip = await serverFor(prefix, env({ WATERMARK: path.join(dir, 'long.png') }));
    const angled = await decodePixels((await strip.get('FIF=solid.tif&WID=300&ROT=30&CVT=png')).body);
    let marked = 0;
    for (let i = 0; i < angled.data.length; i += angled.channels) if (angled.data[i] === 150 && angled.data[i + 1] === 160) marked++;
    assert.ok(marked > 0, `${marked} marked pixels`);
  });

  it('a stored JPEG tile is re-encoded when marked', async () => {
    const marked = await serverFor(prefix, env());
    const plain = await serverFor(prefix);
    const stored = (await plain.get(`FIF=stored.tif&JTL=${top},0`)).body;
    const got = (await marked.get(`FIF=stored.tif&JTL=${top},0`)).body;
    assert.ok(!got.equals(stored));
    const pixels = await decodePixels(got);
    // The brightest pixel is the watermark's (JPEG blurs its edges).
    let brightest = 0;
    for (let i = 0; i < pixels.data.length; i += 3) brightest = Math.max(brightest, pixels.data[i]!);
    assert.ok(brightest >= 145, `brightest red ${brightest}`);
  });

  it('the cache keeps the tile as first drawn, and never serves it to an engine without the watermark', async () => {
    const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, WATERMARK: mark, WATERMARK_PROBABILITY: '0.5' });
    const watermark = await Watermark.load(config.watermark!, seededRandom(3));
    const engine = new Engine({ paths: { prefix, suffix: '' }, cacheBytes: 10_000_000, watermark });
    const router = createRouter({ config, engine, log: silentLog });
    const first = (await router(plainRequest(`FIF=solid.tif&PTL=${top},0`))).body;
    for (let i = 0; i < 5; i++) assert.ok((await router(plainRequest(`FIF=solid.tif&PTL=${top},0`))).body.equals(first));
    const other = new Engine({ paths: { prefix, suffix: '' }, cacheBytes: 10_000_000 });
    const key = (e: Engine) => (e as unknown as { outputTag: string }).outputTag;
    assert.notEqual(key(engine), key(other));
  });

  it('a bad WATERMARK path fails loading with the path in the message', async () => {
    await assert.rejects(Watermark.load({ path: path.join(dir, 'missing.tif'), probability: 1, opacity: 1 }), /WATERMARK .*missing\.tif/);
  });

  it('a daemon whose watermark file is missing warns at start-up and serves unmarked tiles', async () => {
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { FILESYSTEM_PREFIX: prefix, WATERMARK: path.join(dir, 'missing.tif'), LOGFILE: '', VERBOSITY: '1' },
      waitPort: port,
    });
    try {
      const body = await new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: `/fcgi-bin/iipsrv.fcgi?FIF=solid.tif&PTL=${top},0`, agent: false }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
          })
          .on('error', reject);
      });
      assert.equal(body.status, 200);
      assert.equal(changes(await decodePixels(body.body), [100, 100, 100]).count, 0);
      assert.match(daemon.stderr(), /WATERMARK .*missing\.tif.*serving without a watermark/);
    } finally {
      await daemon.stop();
    }
  });
});
