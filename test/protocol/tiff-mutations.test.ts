/**
 * Mutated TIFFs: small real pyramids (JPEG, deflate with a predictor, LZW, PackBits, 16-bit,
 * separate planes, SubIFDs) with their header fields changed at random, seeded: sizes, counts,
 * field types, value offsets, tile sizes, samples per pixel, compression, the IFD chain, tile
 * bytes, the file's end. Each mutant gets the requests a viewer and an export make, through the
 * router; every answer must be a 200 or a 4xx (a 501 only for what the server does not decode),
 * in bounded time, and the process's memory must stay bounded over the whole run.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp, { type TiffOptions } from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';
import { tempDir } from '../helpers/daemon.ts';
import { rampPixels } from '../helpers/images.ts';
import { seededRandom } from '../helpers/random.ts';
import { plainRequest } from '../helpers/requests.ts';
import { pyramid, writeTiff } from '../helpers/tiff-writer.ts';

const MUTANTS = Number(process.env.MUTANTS ?? 140);
const SEED = Number(process.env.MUTANT_SEED ?? 20240613);
/** Per request: the unbounded decodes this guards against took 1 to 19 s. */
const REQUEST_MS = 2000;
/** Peak RSS growth over the run (the bombs took 1-2 GB each). */
const MEMORY_MB = 600;

let dir: string;
const bases: Array<{ name: string; bytes: Buffer; entries: Entry[]; ifds: number[] }> = [];

/** One directory entry of a base file, where it is. */
interface Entry {
  /** File offset of the 12-byte entry. */
  at: number;
  tag: number;
  type: number;
  count: number;
  /** Out-of-line value: its offset, else -1. */
  valueOffset: number;
}

const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4 };

/** The entries of every directory (main chain and SubIFDs) of a little-endian classic TIFF. */
function parseEntries(bytes: Buffer): { entries: Entry[]; ifds: number[] } {
  assert.equal(bytes.toString('latin1', 0, 2), 'II', 'base files are little-endian classic TIFFs');
  const entries: Entry[] = [];
  const ifds: number[] = [];
  const pending = [bytes.readUInt32LE(4)];
  while (pending.length > 0) {
    const offset = pending.shift()!;
    if (offset === 0 || ifds.includes(offset)) continue;
    ifds.push(offset);
    const count = bytes.readUInt16LE(offset);
    for (let i = 0; i < count; i++) {
      const at = offset + 2 + i * 12;
      const tag = bytes.readUInt16LE(at);
      const type = bytes.readUInt16LE(at + 2);
      const values = bytes.readUInt32LE(at + 4);
      const size = (TYPE_SIZE[type] ?? 1) * values;
      const valueOffset = size > 4 ? bytes.readUInt32LE(at + 8) : -1;
      entries.push({ at, tag, type, count: values, valueOffset });
      if (tag === 330) {
        for (let k = 0; k < values; k++) pending.push(values === 1 ? bytes.readUInt32LE(at + 8) : bytes.readUInt32LE(valueOffset + 4 * k));
      }
    }
    pending.push(bytes.readUInt32LE(offset + 2 + count * 12));
  }
  return { entries, ifds };
}

async function makeBases(): Promise<void> {
  const width = 300;
  const height = 200;
  const rgb = rampPixels(width, height, (x, y) => (x * y) & 0xff);
  const viaSharp = async (name: string, options: TiffOptions) => {
    await sharp(rgb, { raw: { width, height, channels: 3 } })
      .tiff({ tile: true, pyramid: true, tileWidth: 128, tileHeight: 128, ...options })
      .toFile(path.join(dir, name));
  };
  await viaSharp('jpeg.tif', { compression: 'jpeg', quality: 80 });
  await viaSharp('deflate.tif', { compression: 'deflate', predictor: 'horizontal' });
  await viaSharp('lzw.tif', { compression: 'lzw' });
  await viaSharp('packbits.tif', { compression: 'packbits' });
  await sharp(rgb, { raw: { width, height, channels: 3 } })
    .tiff({ tile: true, pyramid: true, subifd: true, tileWidth: 128, tileHeight: 128, compression: 'jpeg' } as TiffOptions)
    .toFile(path.join(dir, 'subifd.tif'));
  const grey16 = new Float64Array(width * height).map((_, i) => (i * 37) & 0xffff);
  writeTiff(path.join(dir, 'grey16.tif'), {
    channels: 1,
    bits: 16,
    compression: 'deflate',
    predictor: 2,
    tile: 128,
    levels: pyramid({ width, height, samples: grey16 }, 1, 128),
  });
  const planar = new Float64Array(width * height * 3).map((_, i) => (i * 13) & 0xff);
  writeTiff(path.join(dir, 'planar.tif'), { channels: 3, bits: 8, planar: 2, tile: 128, levels: pyramid({ width, height, samples: planar }, 3, 128) });
  for (const name of ['jpeg.tif', 'deflate.tif', 'lzw.tif', 'packbits.tif', 'subifd.tif', 'grey16.tif', 'planar.tif']) {
    const bytes = readFileSync(path.join(dir, name));
    bases.push({ name, bytes, ...parseEntries(bytes) });
  }
}

type Rand = () => number;
const pick = <T>(r: Rand, items: readonly T[]): T => items[Math.floor(r() * items.length)]!;

/** Values that find edges: zero, one, powers of two and their neighbours, the largest, the file's end. */
function interesting(r: Rand, current: number, fileSize: number): number {
  return pick(r, [
    0,
    1,
    2,
    3,
    7,
    255,
    256,
    3331,
    32768,
    65535,
    65536,
    0x7fffffff,
    0xffffffff,
    current + 1,
    current - 1,
    current * 2,
    current * 256,
    fileSize,
    fileSize - 1,
    Math.floor(r() * 2 ** 32),
  ]);
}

const WATCHED_TAGS = [256, 257, 258, 259, 262, 277, 284, 317, 322, 323, 324, 325, 330, 338, 339, 347];
const COMPRESSIONS = [1, 2, 5, 6, 7, 8, 32773, 32946, 34712, 50000, 50001, 9999];

/** One seeded mutation of `bytes` (in place, or a shorter copy); returns what it did. */
function mutate(r: Rand, bytes: Buffer, entries: Entry[], ifds: number[]): { bytes: Buffer; what: string } {
  const watched = entries.filter((e) => WATCHED_TAGS.includes(e.tag));
  const entry = r() < 0.7 && watched.length > 0 ? pick(r, watched) : pick(r, entries);
  const size = bytes.length;
  // An earlier cut may have taken what a later mutation aims at: such writes and reads are skipped.
  const fits = (at: number, n: number) => at >= 0 && at + n <= size;
  const put16 = (at: number, v: number) => fits(at, 2) && bytes.writeUInt16LE(v & 0xffff, at);
  const put32 = (at: number, v: number) => fits(at, 4) && bytes.writeUInt32LE(v >>> 0, at);
  const get16 = (at: number) => (fits(at, 2) ? bytes.readUInt16LE(at) : 0);
  const get32 = (at: number) => (fits(at, 4) ? bytes.readUInt32LE(at) : 0);
  const kind = Math.floor(r() * 10);
  switch (kind) {
    case 0:
    case 1: {
      // The value (inline) or the first value (out of line), as a SHORT or a LONG.
      const at = entry.valueOffset >= 0 ? entry.valueOffset : entry.at + 8;
      const old = entry.type === 3 ? get16(at) : get32(at);
      let value = entry.tag === 259 && r() < 0.5 ? pick(r, COMPRESSIONS) : interesting(r, old, size);
      if (entry.type === 3) put16(at, (value &= 0xffff));
      else put32(at, (value >>>= 0));
      return { bytes, what: `tag ${entry.tag} value ${old} -> ${value}` };
    }
    case 2: {
      const count = interesting(r, entry.count, size) >>> 0;
      put32(entry.at + 4, count);
      return { bytes, what: `tag ${entry.tag} count ${entry.count} -> ${count}` };
    }
    case 3: {
      const type = Math.floor(r() * 20);
      put16(entry.at + 2, type);
      return { bytes, what: `tag ${entry.tag} type ${entry.type} -> ${type}` };
    }
    case 4: {
      // Where an out-of-line value (an offsets array ...) is.
      const target = entries.filter((e) => e.valueOffset >= 0);
      if (target.length === 0) return { bytes, what: 'nothing' };
      const e = pick(r, target);
      const offset = interesting(r, e.valueOffset, size) >>> 0;
      put32(e.at + 8, offset);
      return { bytes, what: `tag ${e.tag} value offset ${e.valueOffset} -> ${offset}` };
    }
    case 5: {
      // One value of TileOffsets or TileByteCounts.
      const arrays = entries.filter((e) => (e.tag === 324 || e.tag === 325) && e.valueOffset >= 0);
      if (arrays.length === 0) return { bytes, what: 'nothing' };
      const e = pick(r, arrays);
      const at = e.valueOffset + 4 * Math.floor(r() * e.count);
      const old = get32(at);
      const value = interesting(r, old, size) >>> 0;
      put32(at, value);
      return { bytes, what: `tag ${e.tag} item ${old} -> ${value}` };
    }
    case 6: {
      // The tag itself becomes another one the reader cares about.
      const tag = pick(r, WATCHED_TAGS);
      put16(entry.at, tag);
      return { bytes, what: `tag ${entry.tag} -> tag ${tag}` };
    }
    case 7: {
      // The chain: a directory's next pointer, or the header's first.
      const ifd = pick(r, ifds);
      const at = r() < 0.2 ? 4 : ifd + 2 + get16(ifd) * 12;
      const offset = pick(r, [0, 4, 8, ifd, ...ifds, size - 2, size + 100, Math.floor(r() * size)]);
      put32(at, offset);
      return { bytes, what: `IFD pointer at ${at} -> ${offset}` };
    }
    case 8: {
      // Noise over a run of bytes (tile data, mostly).
      const start = Math.floor(r() * size);
      const length = 1 + Math.floor(r() * 64);
      for (let i = start; i < Math.min(size, start + length); i++) bytes[i] = Math.floor(r() * 256);
      return { bytes, what: `noise at ${start}+${length}` };
    }
    default: {
      const end = Math.floor(r() * size);
      return { bytes: bytes.subarray(0, end), what: `cut at ${end}` };
    }
  }
}

const ALLOWED = new Set([200, 400, 403, 404, 501]);

describe('mutated TIFFs', () => {
  before(async () => {
    dir = tempDir('iipsrv-mutants-');
    await makeBases();
  });

  it(`${MUTANTS} seeded mutants: a 200 or a 4xx each, in bounded time and memory`, async () => {
    const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: `${dir}/`, MAX_IMAGE_CACHE_SIZE: '0' });
    // What the router logs for a 500 goes into the failure message.
    let logged = '';
    const log = { ...silentLog, error: (fields: { err?: Error }) => void (logged = fields.err?.stack ?? JSON.stringify(fields)) };
    const router = createRouter({ config, engine: new Engine(engineOptionsFor(config)), log });
    const get = (query: string): Promise<PlainResponse> => router(plainRequest(query));
    const r = seededRandom(SEED);
    const rssBefore = process.memoryUsage().rss;
    const started = performance.now();
    const counts = new Map<number, number>();
    for (let n = 0; n < MUTANTS; n++) {
      const base = pick(r, bases);
      let mutant: { bytes: Buffer; what: string } = { bytes: Buffer.from(base.bytes), what: '' };
      const steps: string[] = [];
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
        mutant = mutate(r, mutant.bytes, base.entries, base.ifds);
        steps.push(mutant.what);
      }
      const name = `mutant-${n}.tif`;
      writeFileSync(path.join(dir, name), mutant.bytes);
      for (const query of [
        `FIF=${name}&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number`,
        `FIF=${name}&JTL=0,0`,
        `FIF=${name}&JTL=2,1`,
        `FIF=${name}&QLT=60&JTL=1,0`,
        `FIF=${name}&WID=160&CVT=jpeg`,
        `FIF=${name}&CNT=1.2&WID=120&CVT=png`,
      ]) {
        const what = `mutant ${n} of ${base.name} (${steps.join('; ')}): ${query}`;
        logged = '';
        const t = performance.now();
        let response: PlainResponse;
        try {
          response = await get(query);
        } catch (error) {
          assert.fail(`${what}: threw ${(error as Error).stack}`);
        }
        const ms = performance.now() - t;
        const body = response.body.toString('utf8', 0, 300);
        assert.ok(ALLOWED.has(response.status), `${what}: ${response.status} ${body} ${logged}`);
        // 501 only for what is not decoded here (a compression, a sample layout), said so.
        if (response.status === 501) assert.match(body, /not supported|not decoded/, `${what}: 501 ${body}`);
        // A damaged or unsupported file is named (a 400 is about the request's own arguments).
        // A damaged or unsupported file is named (JTL's out-of-range resolution is iipsrv's message).
        if (response.status === 404 || response.status === 501) assert.match(body, new RegExp(`${name}|non-existent resolution`), `${what}: ${body}`);
        assert.ok(ms < REQUEST_MS, `${what}: ${ms.toFixed(0)} ms`);
        counts.set(response.status, (counts.get(response.status) ?? 0) + 1);
      }
    }
    const peakMb = (process.resourceUsage().maxRSS * 1024 - rssBefore) / 2 ** 20;
    const seconds = (performance.now() - started) / 1000;
    // Both outcomes occur, so the mutations reach the decoders and not only the parser.
    assert.ok((counts.get(200) ?? 0) > MUTANTS, `answers by status: ${JSON.stringify([...counts])}`);
    assert.ok((counts.get(404) ?? 0) > MUTANTS / 4, `answers by status: ${JSON.stringify([...counts])}`);
    assert.ok(peakMb < MEMORY_MB, `peak RSS grew ${peakMb.toFixed(0)} MB over ${MUTANTS} mutants (${seconds.toFixed(1)} s)`);
  });
});
