/**
 * What a big plain JPEG costs: the first requests (no pyramid yet: read from the file at reduced
 * size while the pyramid is built in the background), the build itself, and later requests once
 * the pyramid exists, against the same picture as a pyramid TIFF. In-process through the router
 * (no HTTP, no nginx): the engine's cost alone, one request at a time.
 *
 *   node --import tsx bench/plain-jpeg.ts
 *
 * Knobs: BENCH_PLAIN_WIDTH=20000 BENCH_PLAIN_HEIGHT=15000 (the picture), BENCH_PLAIN_TILES=200
 * (later requests timed), BENCH_PLAIN_DIR (where the pictures are made once and kept; default a
 * folder in the system's temporary directory).
 */
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { loadConfig } from '../src/config.ts';
import { Engine } from '../src/engine/engine.ts';
import type { PlainSource } from '../src/engine/plain/plain-source.ts';
import { silentLog } from '../src/log.ts';
import { createRouter } from '../src/router.ts';
import { engineOptionsFor } from '../src/server/engine-options.ts';
import { plainRequest } from '../test/helpers/requests.ts';
import { seededRandom } from '../test/helpers/random.ts';

const WIDTH = Number(process.env.BENCH_PLAIN_WIDTH ?? 20000);
const HEIGHT = Number(process.env.BENCH_PLAIN_HEIGHT ?? 15000);
const TILES = Number(process.env.BENCH_PLAIN_TILES ?? 200);
const DIR = process.env.BENCH_PLAIN_DIR ?? path.join(os.tmpdir(), `iipsrv-bench-plain-${WIDTH}x${HEIGHT}`);

/** A smooth picture with detail, scaled up by libvips in a stream (never whole in memory). */
async function makePictures(): Promise<void> {
  mkdirSync(DIR, { recursive: true });
  const jpeg = path.join(DIR, 'big.jpg');
  const tiff = path.join(DIR, 'big.tif');
  if (!existsSync(jpeg)) {
    const w = Math.ceil(WIDTH / 8);
    const h = Math.ceil(HEIGHT / 8);
    const raw = Buffer.alloc(w * h * 3);
    const random = seededRandom(15);
    for (let i = 0; i < raw.length; i += 3) {
      const x = (i / 3) % w;
      const y = Math.floor(i / 3 / w);
      raw[i] = 127 + 100 * Math.sin(x / 40) + random() * 20;
      raw[i + 1] = 127 + 100 * Math.cos(y / 30) + random() * 20;
      raw[i + 2] = ((x + y) * 255) / (w + h);
    }
    await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
      .resize(WIDTH, HEIGHT, { kernel: 'cubic' })
      .jpeg({ quality: 90 })
      .toFile(jpeg + '.part');
    renameSync(jpeg + '.part', jpeg);
  }
  if (!existsSync(tiff)) {
    await sharp(jpeg, { limitInputPixels: false, sequentialRead: true })
      .tiff({ tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 90 })
      .toFile(tiff + '.part');
    renameSync(tiff + '.part', tiff);
  }
}

async function timed(get: (q: string) => Promise<{ status: number }>, query: string): Promise<number> {
  const started = performance.now();
  const response = await get(query);
  if (response.status !== 200) throw new Error(`${query}: ${response.status}`);
  return performance.now() - started;
}

function serverFor(env: Record<string, string>) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: DIR + '/', MAX_IMAGE_CACHE_SIZE: '0', ...env });
  const engine = new Engine(engineOptionsFor(config));
  const router = createRouter({ config, engine, log: silentLog });
  return { engine, get: (query: string) => router(plainRequest(query)) };
}

/** Random tiles of every level, the same list for both images. */
function tileQueries(file: string, count: number): string[] {
  const levels: Array<[number, number]> = [[WIDTH, HEIGHT]];
  let [w, h] = [WIDTH, HEIGHT];
  while (w > 256 || h > 256) {
    w = Math.floor(w / 2);
    h = Math.floor(h / 2);
    levels.push([w, h]);
  }
  const smallestFirst = levels.reverse();
  const random = seededRandom(1515);
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    const resolution = Math.floor(random() * smallestFirst.length);
    const [lw, lh] = smallestFirst[resolution]!;
    const across = Math.ceil(lw / 256);
    const tiles = across * Math.ceil(lh / 256);
    queries.push(`FIF=${file}&JTL=${resolution},${Math.floor(random() * tiles)}`);
  }
  return queries;
}

async function later(get: (q: string) => Promise<{ status: number }>, file: string): Promise<string> {
  const times: number[] = [];
  for (const query of tileQueries(file, TILES)) times.push(await timed(get, query));
  times.sort((a, b) => a - b);
  const mean = times.reduce((s, t) => s + t, 0) / times.length;
  return `${TILES} random tiles of every level: mean ${mean.toFixed(2)} ms, median ${times[times.length >> 1]!.toFixed(2)} ms, p95 ${times[Math.floor(times.length * 0.95)]!.toFixed(2)} ms`;
}

await makePictures();
const cache = mkdtempSync(path.join(os.tmpdir(), 'iipsrv-bench-pyramids-'));
try {
  console.log(`# A ${WIDTH}x${HEIGHT} plain JPEG against the same picture as a pyramid TIFF (${os.availableParallelism()} cores)`);
  const plain = serverFor({ PYRAMID_CACHE_DIR: cache });
  const started = performance.now();
  const levels = Math.ceil(Math.log2(Math.max(WIDTH, HEIGHT) / 256)) + 1;
  const lastTile = Math.ceil(WIDTH / 256) * Math.ceil(HEIGHT / 256) - 1;
  const first = [
    'FIF=big.jpg&OBJ=Max-size',
    // The smallest level: the whole picture shrunk while decoding.
    'FIF=big.jpg&JTL=0,0',
    'FIF=big.jpg&WID=800&CVT=jpeg',
    // Full resolution, the last tile: every row above it is decoded.
    `FIF=big.jpg&JTL=${levels - 1},${lastTile}`,
    `FIF=big.jpg&JTL=${levels - 3},5`,
  ];
  for (const query of first) console.log(`first requests, no pyramid yet: ${query}: ${(await timed(plain.get, query)).toFixed(0)} ms`);
  const image = await plain.engine.openImage('big.jpg');
  const source = image.source as PlainSource;
  while (!source.hasPyramid) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    await plain.get('FIF=big.jpg&JTL=0,0');
  }
  console.log(`pyramid built in the background: ready ${((performance.now() - started) / 1000).toFixed(1)} s after the first request`);
  console.log(`later requests, plain JPEG with its pyramid: ${await later(plain.get, 'big.jpg')}`);
  const pyramid = serverFor({});
  console.log(`the same picture as a pyramid TIFF:        ${await later(pyramid.get, 'big.tif')}`);
  const none = serverFor({});
  const q = `FIF=big.jpg&JTL=${levels - 3},5`;
  console.log(`without PYRAMID_CACHE_DIR, every request from the file: ${q}: ${(await timed(none.get, q)).toFixed(0)} ms`);
} finally {
  rmSync(cache, { recursive: true, force: true });
}
process.exit(0);
