/**
 * Mutated JPEG2000 headers through the router (issue 13): a real small JP2 (tiled, layered) and a
 * raw J2K made here by opj_compress, with the fields a hostile file would lie in changed one or
 * two at a time, reproducibly (seeded): SIZ image, offset and tile sizes, component count,
 * precision and subsampling, COD decomposition levels, code-block sizes, precinct flag,
 * progression and layers, marker lengths, JP2 box lengths and the image header, plus cuts; and
 * the costly lie told consistently (huge image and tile sizes, few levels, tiny code-blocks).
 * Every mutant's header, tiles of two resolutions and a CVT must each be answered with a 200 or
 * a 4xx (a 501 only where it says what is not supported) within 3 s, and neither the decoder
 * helpers nor this process may grow without bound.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';
import { tempDir } from '../helpers/daemon.ts';
import { JP2_SKIP, makeJp2, testImage } from '../helpers/jp2.ts';
import { childPids, processInfo } from '../helpers/processes.ts';
import { seededRandom } from '../helpers/random.ts';
import { plainRequest } from '../helpers/requests.ts';

const MB = 1024 * 1024;
const MUTANTS_PER_FILE = 60;
const REQUEST_LIMIT_MS = 3000;
/** Small limits so that the mutants that allocate hit them fast; what is tested is that they hold. */
const HELPER_MEMORY_MB = 512;
const MAX_DECODE_MB = 256;

/** Where the fields are in one file: byte offsets, found by walking its boxes and markers. */
interface Layout {
  /** [offset, bytes] of each field a mutation may change. */
  fields: Array<{ name: string; offset: number; bytes: 1 | 2 | 4 }>;
}

function layoutOf(file: Buffer): Layout {
  const fields: Layout['fields'] = [];
  let codestream = 0;
  if (file.readUInt32BE(0) !== 0xff4fff51) {
    // JP2 boxes: length, type; jp2h holds ihdr and colr.
    const walk = (start: number, end: number) => {
      for (let at = start; at + 8 <= end;) {
        const length = file.readUInt32BE(at);
        const type = file.toString('latin1', at + 4, at + 8);
        fields.push({ name: `${type} box length`, offset: at, bytes: 4 });
        if (type === 'jp2h') walk(at + 8, at + length);
        if (type === 'ihdr') {
          fields.push({ name: 'ihdr height', offset: at + 8, bytes: 4 }, { name: 'ihdr width', offset: at + 12, bytes: 4 });
          fields.push({ name: 'ihdr components', offset: at + 16, bytes: 2 }, { name: 'ihdr bits', offset: at + 18, bytes: 1 });
        }
        if (type === 'jp2c') codestream = at + 8;
        if (length < 8) break;
        at += length;
      }
    };
    walk(0, file.length);
  }
  const siz = codestream + 2;
  fields.push({ name: 'Lsiz', offset: siz + 2, bytes: 2 });
  ['Xsiz', 'Ysiz', 'XOsiz', 'YOsiz', 'XTsiz', 'YTsiz', 'XTOsiz', 'YTOsiz'].forEach((name, i) => fields.push({ name, offset: siz + 6 + 4 * i, bytes: 4 }));
  fields.push({ name: 'Csiz', offset: siz + 38, bytes: 2 });
  const components = file.readUInt16BE(siz + 38);
  for (let c = 0; c < components; c++) {
    fields.push({ name: `Ssiz ${c}`, offset: siz + 40 + 3 * c, bytes: 1 });
    fields.push({ name: `XRsiz ${c}`, offset: siz + 41 + 3 * c, bytes: 1 }, { name: `YRsiz ${c}`, offset: siz + 42 + 3 * c, bytes: 1 });
  }
  for (let at = siz + 2 + file.readUInt16BE(siz + 2); at + 4 <= file.length && file.readUInt16BE(at) !== 0xff90; at += 2 + file.readUInt16BE(at + 2)) {
    if (file.readUInt16BE(at) !== 0xff52) continue;
    fields.push({ name: 'Lcod', offset: at + 2, bytes: 2 }, { name: 'Scod', offset: at + 4, bytes: 1 });
    fields.push({ name: 'progression', offset: at + 5, bytes: 1 }, { name: 'layers', offset: at + 6, bytes: 2 });
    fields.push({ name: 'decomposition levels', offset: at + 9, bytes: 1 });
    fields.push({ name: 'code-block width', offset: at + 10, bytes: 1 }, { name: 'code-block height', offset: at + 11, bytes: 1 });
  }
  return { fields };
}

/** Values a liar would pick for a field of this size, given what it was. */
function candidates(bytes: 1 | 2 | 4, was: number, random: () => number): number[] {
  const max = 2 ** (8 * bytes) - 1;
  const common = [0, 1, 2, 3, was - 1, was + 1, max, Math.floor(random() * (max + 1))];
  const wide =
    bytes === 4
      ? [255, 256, 65535, 65536, 200_000, 2 ** 31 - 1, 2 ** 31, was * 1000]
      : bytes === 2
        ? [4, 5, 16, 257, 16384, 32768]
        : [7, 8, 15, 16, 32, 33, 0x7f, 0x80];
  return [...common, ...wide].filter((v) => v >= 0 && v <= max);
}

const pick = <T>(random: () => number, values: readonly T[]): T => values[Math.floor(random() * values.length)]!;

/**
 * The costly lie: an image size told consistently (SIZ, and the JP2 image header, which must
 * agree), with tile sizes and coding parameters that make the codec's bookkeeping explode.
 */
function claimSize(bytes: Buffer, layout: Layout, random: () => number): string {
  const at = (name: string) => layout.fields.find((f) => f.name === name)?.offset;
  const width = pick(random, [4096, 65535, 100_000, 200_000, 2 ** 20, 2 ** 31 - 1]);
  const height = pick(random, [4096, 65535, 100_000, 200_000, 2 ** 20, 2 ** 31 - 1]);
  const tile = pick(random, [0, 1, 7, 64, 256, 1024, 65535, 'image'] as const);
  bytes.writeUInt32BE(width, at('Xsiz')!);
  bytes.writeUInt32BE(height, at('Ysiz')!);
  if (at('ihdr width') !== undefined) {
    bytes.writeUInt32BE(width, at('ihdr width')!);
    bytes.writeUInt32BE(height, at('ihdr height')!);
  }
  bytes.writeUInt32BE(tile === 'image' ? width : tile, at('XTsiz')!);
  bytes.writeUInt32BE(tile === 'image' ? height : tile, at('YTsiz')!);
  const changes = [`claims ${width}x${height} in tiles of ${tile}`];
  if (random() < 0.5) {
    const levels = pick(random, [0, 1, 5, 32]);
    bytes[at('decomposition levels')!] = levels;
    changes.push(`${levels} levels`);
  }
  if (random() < 0.5) {
    bytes[at('code-block width')!] = 0;
    bytes[at('code-block height')!] = 0;
    changes.push('4x4 code-blocks');
  }
  return changes.join(', ');
}

function mutate(original: Buffer, layout: Layout, random: () => number): { bytes: Buffer; what: string } {
  const bytes = Buffer.from(original);
  const changes: string[] = [];
  if (random() < 0.35) return { bytes, what: claimSize(bytes, layout, random) };
  const count = random() < 0.7 ? 1 : 2;
  for (let i = 0; i < count; i++) {
    const field = layout.fields[Math.floor(random() * layout.fields.length)]!;
    const was = field.bytes === 1 ? bytes[field.offset]! : field.bytes === 2 ? bytes.readUInt16BE(field.offset) : bytes.readUInt32BE(field.offset);
    const options = candidates(field.bytes, was, random);
    const value = options[Math.floor(random() * options.length)]!;
    if (field.bytes === 1) bytes[field.offset] = value;
    else if (field.bytes === 2) bytes.writeUInt16BE(value, field.offset);
    else bytes.writeUInt32BE(value, field.offset);
    changes.push(`${field.name} ${was} -> ${value}`);
  }
  if (random() < 0.1) {
    const cut = Math.floor(random() * bytes.length);
    changes.push(`cut at ${cut}`);
    return { bytes: bytes.subarray(0, cut), what: changes.join(', ') };
  }
  return { bytes, what: changes.join(', ') };
}

function helperPids(): number[] {
  return childPids(process.pid).filter((pid) => /jp2-decoder/.test(processInfo(pid)?.cmdline ?? ''));
}

function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

describe('JPEG2000 with mutated headers', { skip: JP2_SKIP ?? false }, () => {
  const dir = tempDir('iipsrv-jp2-mutants-');
  const originals: Array<{ name: string; bytes: Buffer }> = [];
  let engine: Engine;
  let get: (query: string) => Promise<PlainResponse>;

  before(() => {
    const image = testImage(300, 200, 3, 8);
    // Codestream tiles, three layers, 4 levels; and an untiled raw codestream.
    originals.push({ name: 'jp2', bytes: readFileSync(makeJp2(dir, 'original.jp2', image, ['-n', '4', '-t', '128,128', '-r', '40,10,1'])) });
    originals.push({ name: 'j2k', bytes: readFileSync(makeJp2(dir, 'original.j2k', testImage(300, 200, 1, 8), ['-n', '3'])) });
    const config = loadConfig({
      MEMCACHED_SERVERS: '',
      FILESYSTEM_PREFIX: `${dir}/`,
      MAX_CVT: '1000',
      JP2_MAX_DECODE_MB: String(MAX_DECODE_MB),
      JP2_HELPER_MEMORY_MB: String(HELPER_MEMORY_MB),
    });
    const options = engineOptionsFor(config);
    engine = new Engine({ ...options, jp2Decoder: { ...options.jp2Decoder, concurrency: 2 } });
    const router = createRouter({ config, engine, log: silentLog });
    get = (query) => router(plainRequest(query));
  });

  after(() => engine.close());

  it('answers every mutant with a 200 or a 4xx in bounded time, the helpers and this process in bounded memory', async () => {
    const random = seededRandom(13);
    const statuses = new Map<number, number>();
    let helperPeak = 0;
    const sample = () => {
      for (const pid of helperPids()) helperPeak = Math.max(helperPeak, peakRss(pid));
    };
    const sampler = setInterval(sample, 20);
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const started = Date.now();
    try {
      for (const original of originals) {
        const layout = layoutOf(original.bytes);
        for (let i = 0; i < MUTANTS_PER_FILE; i++) {
          const { bytes, what } = mutate(original.bytes, layout, random);
          const name = `m${i}.${original.name}`;
          writeFileSync(path.join(dir, name), bytes);
          const levels = Number(/Resolution-number:(\d+)/.exec((await get(`FIF=${name}&OBJ=Resolution-number`)).body.toString('latin1'))?.[1] ?? 1);
          for (const query of [
            `FIF=${name}&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number`,
            `FIF=${name}&JTL=${levels - 1},0`,
            `FIF=${name}&JTL=${Math.floor(levels / 2)},1`,
            `FIF=${name}&WID=200&CVT=jpeg`,
          ]) {
            const t0 = Date.now();
            const answer = await get(query);
            const took = Date.now() - t0;
            const body = answer.body.toString('utf8');
            const context = `${original.name} mutant ${i} (${what}): ${query} -> ${answer.status} ${body.slice(0, 300)}`;
            statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
            assert.ok(took < REQUEST_LIMIT_MS, `${context} took ${took} ms`);
            const allowed = answer.status === 200 || (answer.status >= 400 && answer.status < 500) || (answer.status === 501 && /not supported/.test(body));
            assert.ok(allowed, context);
            rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
          }
        }
      }
    } finally {
      clearInterval(sampler);
    }
    sample();
    const summary = `${[...statuses].map(([s, n]) => `${n}x${s}`).join(', ')} in ${Date.now() - started} ms`;
    assert.ok((statuses.get(200) ?? 0) > 0 && [...statuses.keys()].some((s) => s >= 400), `the mutants were all alike: ${summary}`);
    assert.ok(helperPeak <= HELPER_MEMORY_MB * MB, `a helper grew to ${Math.round(helperPeak / MB)} MB (${summary})`);
    assert.ok(rssPeak - rssBefore < 300 * MB, `this process grew by ${Math.round((rssPeak - rssBefore) / MB)} MB (${summary})`);
  });
});
