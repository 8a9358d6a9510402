/**
 * Hostile JPEG2000 files cannot take the decoder's memory (issue 13): a header that claims huge
 * codestream tiles is refused before any decoder sees it (404 naming the image and
 * JP2_MAX_DECODE_MB); a decode that goes beyond the helper's address-space limit fails by
 * itself (404 naming JP2_HELPER_MEMORY_MB) and the helper is replaced, not the worker; a helper
 * that a large decode grew gives the memory back. Plus what makes these work: the memory
 * estimate against what OpenJPEG really takes, strips for large areas, and the header fields
 * the estimate reads.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { HELPER_BINARY, Jp2Decoder } from '../../src/engine/jp2/decoder.ts';
import { Jp2Source } from '../../src/engine/jp2/jp2-source.ts';
import { DecodedLevelCache } from '../../src/engine/jp2/level-cache.ts';
import { fileHeaderBytes, readJp2Header } from '../../src/engine/jp2/header.ts';
import { decodeMemory } from '../../src/engine/jp2/memory.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';
import { tempDir } from '../helpers/daemon.ts';
import { expectedRect, JP2_SKIP, makeJp2, testImage } from '../helpers/jp2.ts';
import { childPids, processInfo, rssBytes } from '../helpers/processes.ts';
import { plainRequest } from '../helpers/requests.ts';
import { decodePixels, psnr } from '../helpers/images.ts';

const MB = 1024 * 1024;
const HELPER_SKIP = JP2_SKIP ?? (existsSync(HELPER_BINARY) ? false : 'build/jp2-decoder not built (npm run build)');

/** SIZ of a raw codestream: image size and tile size (both from the origin). */
export function patchSiz(j2k: Buffer, width: number, height: number, tileWidth: number, tileHeight: number): Buffer {
  const out = Buffer.from(j2k);
  assert.equal(out.readUInt32BE(0), 0xff4fff51);
  // SOC, SIZ marker, Lsiz, Rsiz: Xsiz at byte 8, then Ysiz, XOsiz, YOsiz, XTsiz, YTsiz.
  [width, height, 0, 0, tileWidth, tileHeight].forEach((v, i) => out.writeUInt32BE(v, 8 + 4 * i));
  return out;
}

/** Peak resident size of a process (VmHWM), 0 when it is gone. */
function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The decoder helpers this test process has started, alive now. */
function helperPids(): number[] {
  return childPids(process.pid).filter((pid) => /jp2-decoder/.test(processInfo(pid)?.cmdline ?? ''));
}

/** Samples the helpers' peak memory every 10 ms while `run` goes on. */
async function watchHelpers<T>(run: () => Promise<T>): Promise<{ result: T; peak: number; pids: Set<number> }> {
  let peak = 0;
  const pids = new Set<number>();
  const sample = () => {
    for (const pid of helperPids()) {
      pids.add(pid);
      peak = Math.max(peak, peakRss(pid));
    }
  };
  const timer = setInterval(sample, 10);
  try {
    const result = await run();
    sample();
    return { result, peak, pids };
  } finally {
    clearInterval(timer);
  }
}

const engines: Engine[] = [];

function serverFor(dir: string, env: Record<string, string> = {}) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', MAX_IMAGE_CACHE_SIZE: '0', FILESYSTEM_PREFIX: `${dir}/`, ...env });
  const options = engineOptionsFor(config);
  const engine = new Engine({ ...options, jp2Decoder: { ...options.jp2Decoder, concurrency: 1 } });
  engines.push(engine);
  const router = createRouter({ config, engine, log: silentLog });
  return (query: string): Promise<PlainResponse> => router(plainRequest(query));
}

const text = (r: PlainResponse) => r.body.toString('utf8');

describe('JPEG2000 memory limits', { skip: HELPER_SKIP }, () => {
  const dir = tempDir('iipsrv-jp2-limits-');
  let small: Buffer;

  before(() => {
    // A real 16x16 codestream with one wavelet level: 239 bytes.
    small = readFileSync(makeJp2(dir, 'small.j2k', testImage(16, 16, 1, 8), ['-n', '2']));
    // The file: the same bytes, its SIZ claiming one 200000x200000 tile (3.8 GB in
    // OpenJPEG's bookkeeping before it reads a byte of data, at any reduction).
    writeFileSync(path.join(dir, 'huge.j2k'), patchSiz(small, 200_000, 200_000, 200_000, 200_000));
  });

  after(async () => {
    for (const engine of engines) engine.close();
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(helperPids(), [], 'a decoder helper is still running');
  });

  it('refuses the 239-byte file claiming a 200000x200000 tile at once (404 naming it and JP2_MAX_DECODE_MB), no decoder growing', async () => {
    const get = serverFor(dir);
    const { result, peak } = await watchHelpers(async () => {
      const answers: PlainResponse[] = [];
      // Full resolution; the codestream's other level; a virtual level scaled from it (4096x4096
      // decoded, in strips); a small region; a whole-image export.
      for (const query of [
        'FIF=huge.j2k&JTL=10,0',
        'FIF=huge.j2k&JTL=9,5',
        'FIF=huge.j2k&JTL=5,3',
        'FIF=huge.j2k&RGN=0.5,0.5,0.001,0.001&CVT=png',
        'FIF=huge.j2k&WID=300&CVT=jpeg',
      ]) {
        const started = Date.now();
        const answer = await get(query);
        answers.push(answer);
        assert.ok(Date.now() - started < 1000, `${query} took ${Date.now() - started} ms`);
      }
      return answers;
    });
    for (const answer of result.slice(0, 4)) {
      assert.equal(answer.status, 404, text(answer));
      assert.match(text(answer), /^huge\.j2k: decoding it would need about \d+ MB .*9771876 code-blocks.*JP2_MAX_DECODE_MB/);
    }
    // Too few wavelet levels for so small a view: a limit of its own, named too.
    assert.equal(result[4]!.status, 404, text(result[4]!));
    assert.match(text(result[4]!), /^huge\.j2k: .* needs 100000x100000 pixels decoded .*more than the 67108864 pixels allowed/);
    assert.ok(peak < 64 * MB, `a helper grew to ${Math.round(peak / MB)} MB`);
    // Its header is harmless: OBJ still answers.
    const size = await get('FIF=huge.j2k&OBJ=Max-size');
    assert.equal(text(size).trim(), 'Max-size:200000 200000');
  });

  it('fails a decode beyond the helper memory limit cleanly (404 naming JP2_HELPER_MEMORY_MB), replaces the helper, and serves on', async () => {
    // The header check off, as for a file whose tile-part headers hide what it costs.
    const get = serverFor(dir, { JP2_MAX_DECODE_MB: '0', JP2_HELPER_MEMORY_MB: '256' });
    writeFileSync(path.join(dir, 'good.j2k'), small);
    const { result, peak, pids } = await watchHelpers(async () => {
      const started = Date.now();
      const refused = await get('FIF=huge.j2k&JTL=10,0');
      const elapsed = Date.now() - started;
      const good = await get('FIF=good.j2k&JTL=0,0');
      return { refused, elapsed, good };
    });
    assert.equal(result.refused.status, 404, text(result.refused));
    assert.match(text(result.refused), /huge\.j2k: the JPEG2000 data cannot be decoded within the decoder's memory limit of 256 MB \(JP2_HELPER_MEMORY_MB\)/);
    assert.ok(result.elapsed < 3000, `took ${result.elapsed} ms`);
    assert.ok(peak <= 256 * MB, `a helper grew to ${Math.round(peak / MB)} MB`);
    // The helper that ran out was replaced: the next request was decoded by another process.
    assert.equal(result.good.status, 200, text(result.good));
    assert.ok(pids.size >= 2, `one helper served both (${[...pids].join(', ')})`);
  });

  it('gives back the memory a large decode grew a helper to', async () => {
    // 3000x3000 grey, lossless and untiled: a 2700x2700 region is 7.3 Mpx decoded at once
    // through OpenJPEG's window buffers (about 100 MB), which glibc would otherwise keep.
    const image = testImage(3000, 3000, 1, 8);
    makeJp2(dir, 'large.jp2', image, ['-n', '4']);
    const get = serverFor(dir, { JP2_HELPER_RSS_MB: '32' });
    const { result, peak } = await watchHelpers(() => get('FIF=large.jp2&RGN=0.05,0.05,0.9,0.9&WID=2700&CVT=png'));
    assert.equal(result.status, 200, text(result));
    assert.ok(peak > 80 * MB, `the decode did not grow the helper (${Math.round(peak / MB)} MB): the test proves nothing`);
    await new Promise((r) => setTimeout(r, 200));
    const left = helperPids().map(rssBytes);
    assert.ok(
      left.every((rss) => rss < 32 * MB),
      `helpers hold ${left.map((b) => Math.round(b / MB)).join(', ')} MB`,
    );
    // And the pixels came out whole.
    const got = await decodePixels(result.body);
    assert.equal(psnr(got, expectedRect(image, 150, 150, 2700, 2700)), Infinity);
  });

  it('decodes a large area in strips, identical to one decode', async () => {
    const rgb = testImage(700, 500, 3, 8);
    const grey16 = testImage(301, 203, 1, 16);
    makeJp2(dir, 'strips.jp2', rgb, ['-n', '3']);
    makeJp2(dir, 'strips16.jp2', grey16, ['-n', '3']);
    const decoder = new Jp2Decoder({ concurrency: 1 });
    try {
      for (const [file, image] of [
        ['strips.jp2', rgb],
        ['strips16.jp2', grey16],
      ] as const) {
        // Strips of 48 rows: 10 of them and a last, shorter one.
        const src = await Jp2Source.open(path.join(dir, file), file, {
          decoder,
          levelCache: new DecodedLevelCache(0),
          maxLayers: -1,
          stripSamples: 48 * image.width * image.channels,
        });
        const samples = await src.samples(0, { left: 0, top: 0, width: image.width, height: image.height });
        assert.deepEqual([samples.width, samples.height, samples.channels], [image.width, image.height, image.channels]);
        assert.ok(samples.data instanceof (image.bits === 16 ? Uint16Array : Uint8Array));
        assert.deepEqual([...samples.data], [...image.data], file);
      }
    } finally {
      decoder.close();
    }
  });

  it('estimates within a factor of two what OpenJPEG really takes, for the shapes that cost', async () => {
    const grey = testImage(64, 64, 1, 8);
    const cases: Array<{ name: string; options: string[]; size: number }> = [
      // Default 64x64 code-blocks, one huge tile.
      { name: 'blocks64', options: ['-n', '6'], size: 40_000 },
      // 4x4 code-blocks.
      { name: 'blocks4', options: ['-n', '6', '-b', '4,4'], size: 3000 },
      // 4x4-pixel precincts: a precinct and a code-block for every 4 pixels of a band.
      { name: 'precincts4', options: ['-n', '6', '-c', '[4,4],[4,4],[4,4],[4,4],[4,4],[4,4]'], size: 1500 },
    ];
    for (const { name, options, size } of cases) {
      const file = path.join(dir, `${name}.j2k`);
      writeFileSync(file, patchSiz(readFileSync(makeJp2(dir, `${name}-src.j2k`, grey, options)), size, size, size, size));
      const handle = await open(file);
      const header = await readJp2Header(fileHeaderBytes(handle), (await handle.stat()).size);
      await handle.close();
      const estimate = decodeMemory(header, readFileSync(file).length, 256 * 256).bytes;
      const measured = await helperPeak(file);
      assert.ok(
        estimate > measured / 2 && estimate < measured * 2,
        `${name}: estimated ${Math.round(estimate / MB)} MB, OpenJPEG took ${Math.round(measured / MB)} MB`,
      );
    }
  });
});

/** The helper's peak memory for one 256x256 decode at full resolution of `file`. */
function helperPeak(file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(HELPER_BINARY, ['2048'], { stdio: ['pipe', 'pipe', 'ignore'] });
    let got = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      got += chunk.length;
      // The whole answer is in once the header's length is: read the peak before it exits.
      if (got >= 28) {
        const peak = peakRss(child.pid!);
        child.stdin.end();
        resolve(peak);
      }
    });
    child.on('error', reject);
    child.stdin.write(`0 1 0 0 256 256 ${file}\n`);
  });
}
