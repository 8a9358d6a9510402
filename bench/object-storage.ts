/**
 * Tiles from object storage against the same file on disk, side by side in one run:
 *  1. throughput: distinct random tiles (no cache answers) from disk, from a bucket (s3rver) and
 *     from a web server's Range requests (nginx), each through one worker over HTTP; the ratios;
 *  2. bytes fetched per tile once the image's structure is known, against the tile's stored size
 *     (a counting proxy in front of the bucket);
 *  3. a viewer's first screen of a never-seen image (info.json, then a level's tiles six at a time,
 *     as a browser does) with 20 ms added to every request to the bucket: how many requests reach
 *     the store, and how long the screen takes in round trips, against one round trip per tile in
 *     sequence.
 *
 *   npm run build && node --import tsx bench/object-storage.ts
 *
 * Knobs: BENCH_OS_TILES=1500 (tiles per throughput run), BENCH_OS_JP2_TILES=300, BENCH_OS_CONCURRENCY=8,
 * BENCH_OS_DELAY=20 (ms). Uses the benchmark's 10000x7000 JPEG-tiled pyramid and its JPEG2000 copy
 * (bench/lib/image.ts, made once and kept).
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { TiffFile } from '../src/engine/tiff/index.ts';
import { benchImage, benchJp2 } from './lib/image.ts';
import { startLoad } from './lib/load.ts';
import { treeCpuSeconds } from './lib/procs.ts';
import { startDaemon, tempDir } from '../test/helpers/daemon.ts';
import { s3Env, startS3 } from '../test/helpers/object-stores.ts';
import { freePort, type Started } from '../test/helpers/processes.ts';
import { seededRandom } from '../test/helpers/random.ts';
import { startStoreProxy } from '../test/helpers/store-proxy.ts';
import { startStaticNginx, webTempDir } from '../test/helpers/webservers.ts';

const TILES = Number(process.env.BENCH_OS_TILES ?? 1500);
const CONCURRENCY = Number(process.env.BENCH_OS_CONCURRENCY ?? 8);
const DELAY_MS = Number(process.env.BENCH_OS_DELAY ?? 20);
const JP2_TILES = Number(process.env.BENCH_OS_JP2_TILES ?? 300);

const log = (line: string) => process.stdout.write(line + '\n');

interface Level {
  resolution: number;
  across: number;
  down: number;
}

async function daemon(env: Record<string, string>): Promise<{ port: number; process: Started }> {
  const port = await freePort();
  // No cache answers: every tile is read from the image (RAM cache off, no memcached).
  const started = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
    env: { MAX_IMAGE_CACHE_SIZE: '0', REMOTE_CACHE_DIR: tempDir('iipsrv-bench-objects-'), ...env },
    waitPort: port,
  });
  return { port, process: started };
}

async function get(port: number, query: string): Promise<Buffer> {
  const response = await fetch(`http://127.0.0.1:${port}/?${query}`);
  const body = Buffer.from(await response.arrayBuffer());
  if (response.status !== 200) throw new Error(`${query}: ${response.status} ${body.toString().slice(0, 200)}`);
  return body;
}

/** Distinct tiles of the three largest levels, in a random order. */
function tilePaths(name: string, levels: Level[], count: number): string[] {
  const all: string[] = [];
  for (const level of levels.slice(-3)) {
    for (let tile = 0; tile < level.across * level.down; tile++) all.push(`/?FIF=${name}&JTL=${level.resolution},${tile}`);
  }
  const random = seededRandom(17);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, count);
}

async function throughput(port: number, pid: number, paths: string[]): Promise<{ perSecond: number; p99: number; failed: number; cpuMs: number }> {
  const cpu = treeCpuSeconds([pid]).seconds;
  const started = performance.now();
  const load = startLoad({ host: '127.0.0.1', port, paths, concurrency: CONCURRENCY, timeoutMs: 30_000 });
  while (load.records.length < paths.length) await new Promise((resolve) => setTimeout(resolve, 50));
  await load.stop();
  const seconds = (performance.now() - started) / 1000;
  const times = load.records.map((r) => r.ms).sort((a, b) => a - b);
  return {
    perSecond: load.records.length / seconds,
    p99: times[Math.floor(times.length * 0.99)] ?? 0,
    failed: load.records.filter((r) => r.status !== 200).length,
    cpuMs: ((treeCpuSeconds([pid]).seconds - cpu) * 1000) / load.records.length,
  };
}

async function main(): Promise<void> {
  const image = benchImage(log);
  const tiff = await TiffFile.open(image.file);
  const levels: Level[] = tiff.info.levels
    .map((level, index) => ({ resolution: tiff.info.levels.length - 1 - index, across: level.tilesAcross, down: level.tilesDown }))
    .reverse();
  const name = image.name;

  const jp2 = benchJp2(log);
  const s3 = await startS3();
  await s3.put(`bench/${name}`, { file: image.file });
  await s3.put(`bench/${jp2.name}`, { file: jp2.file });
  const web = webTempDir();
  mkdirSync(path.join(web, 'root'));
  symlinkSync(image.dir, path.join(web, 'root', 'bench'));
  const nginx = await startStaticNginx({ dir: path.join(web, 'nginx'), root: path.join(web, 'root') });
  const counting = await startStoreProxy({ host: '127.0.0.1', port: s3.port });
  const delayed = await startStoreProxy({ host: '127.0.0.1', port: s3.port }, DELAY_MS);

  const disk = await daemon({ FILESYSTEM_PREFIX: image.dir });
  const bucket = await daemon({ ...s3Env(s3), FILESYSTEM_PREFIX: `s3://${s3.bucket}/bench/` });
  const http = await daemon({ FILESYSTEM_PREFIX: `http://127.0.0.1:${nginx.port}/bench/` });
  const proxied = await daemon({ ...s3Env({ endpoint: counting.url }), FILESYSTEM_PREFIX: `s3://${s3.bucket}/bench/` });
  const slow = await daemon({ ...s3Env({ endpoint: delayed.url }), FILESYSTEM_PREFIX: `s3://${s3.bucket}/bench/` });
  try {
    log(`\n## Object storage (${new Date().toISOString()}): ${name}, one worker each, RAM cache off, no memcached\n`);

    // 1. Throughput, each source on its own distinct tiles (the same list: each daemon reads each tile once).
    const paths = tilePaths(name, levels, TILES);
    const rows: Array<[string, Awaited<ReturnType<typeof throughput>>]> = [];
    for (const [label, server] of [
      ['disk', disk],
      ['S3 (s3rver)', bucket],
      ['HTTP (nginx)', http],
    ] as const) {
      await get(server.port, `FIF=${name}&OBJ=Max-size`);
      rows.push([label, await throughput(server.port, server.process.child.pid!, paths)]);
    }
    log(`| ${TILES} distinct tiles, ${CONCURRENCY} at a time | tiles/s | p99 ms | failed | against disk | our CPU ms a tile |`);
    log('|---|---|---|---|---|---|');
    for (const [label, result] of rows) {
      const ratio = (result.perSecond / rows[0]![1].perSecond).toFixed(2);
      log(`| ${label} | ${result.perSecond.toFixed(0)} | ${result.p99.toFixed(1)} | ${result.failed} | ${ratio} | ${result.cpuMs.toFixed(3)} |`);
    }

    // 1b. JPEG2000 (1024x1024 codestream tiles with TLM markers): distinct full-size tiles, read by
    // ranges through the decoder helper, against disk.
    const resolutions = Number(/Resolution-number:(\d+)/.exec((await get(disk.port, `FIF=${jp2.name}&OBJ=Resolution-number`)).toString())?.[1]);
    const jp2Paths = Array.from({ length: JP2_TILES }, (_, i) => `/?FIF=${jp2.name}&JTL=${resolutions - 1},${(i * 37) % 1000}`);
    const jp2Rows: Array<[string, Awaited<ReturnType<typeof throughput>>]> = [];
    for (const [label, server] of [
      ['disk', disk],
      ['S3 (s3rver)', bucket],
    ] as const) {
      await get(server.port, `FIF=${jp2.name}&OBJ=Max-size`);
      jp2Rows.push([label, await throughput(server.port, server.process.child.pid!, jp2Paths)]);
    }
    log(`\n| ${JP2_TILES} distinct full-size JPEG2000 tiles | tiles/s | p99 ms | failed | against disk | our CPU ms a tile |`);
    log('|---|---|---|---|---|---|');
    for (const [label, result] of jp2Rows) {
      const ratio = (result.perSecond / jp2Rows[0]![1].perSecond).toFixed(2);
      log(`| ${label} | ${result.perSecond.toFixed(0)} | ${result.p99.toFixed(1)} | ${result.failed} | ${ratio} | ${result.cpuMs.toFixed(3)} |`);
    }

    // 2. Bytes fetched per tile once the structure is known.
    await get(proxied.port, `FIF=${name}&OBJ=Max-size`);
    const sample = tilePaths(name, levels, 200);
    for (const level of levels.slice(-3)) await get(proxied.port, `FIF=${name}&JTL=${level.resolution},0`);
    counting.reset();
    let stored = 0;
    for (const query of sample) {
      const [, resolution, tile] = /JTL=(\d+),(\d+)/.exec(query)!;
      const level = levels.find((l) => l.resolution === Number(resolution))!;
      const index = tiff.info.levels.length - 1 - level.resolution;
      stored += (await tiff.readTileBytes(index, Number(tile) % level.across, Math.floor(Number(tile) / level.across))).length;
      await get(proxied.port, query.slice(2));
    }
    const fetched = counting.requests.reduce((sum, r) => sum + r.bytes, 0);
    log(
      `\nBytes fetched for ${sample.length} tiles after the structure was read: ${fetched} for ${stored} stored bytes ` +
        `(${(fetched / stored).toFixed(3)}x), in ${counting.requests.filter((r) => r.method === 'GET').length} ranged requests and ` +
        `${counting.requests.filter((r) => r.method === 'HEAD').length} HEADs.`,
    );

    // 3. A first screen of a new image, without and with a delay on every store request: the
    // difference, in delays, is the number of round trips on the screen's critical path.
    const level = levels.find((l) => l.across >= 8 && l.down >= 6)!;
    const screenOf = (top: number) =>
      Array.from({ length: 12 }, (_, i) => `FIF=${name}&JTL=${level.resolution},${(top + Math.floor(i / 4)) * level.across + (i % 4)}`);
    const show = async (port: number, tiles: string[], first: boolean): Promise<number> => {
      const started = performance.now();
      if (first) await get(port, `IIIF=${name}/info.json`);
      const queue = [...tiles];
      await Promise.all(
        Array.from({ length: 6 }, async () => {
          for (let next = queue.shift(); next; next = queue.shift()) await get(port, next);
        }),
      );
      return performance.now() - started;
    };
    const slowAgain = await daemon({ ...s3Env({ endpoint: delayed.url }), FILESYSTEM_PREFIX: `s3://${s3.bucket}/bench/` });
    try {
      const results: Array<{ label: string; fast: number; delayed: number; requests: typeof delayed.requests }> = [];
      for (const [label, tiles, first] of [
        ['first screen (info.json + 12 tiles, 6 at a time)', screenOf(0), true],
        ['next screen (12 more tiles of that level)', screenOf(3), false],
      ] as const) {
        delayed.delayMs = 0;
        const fast = await show(slowAgain.port, tiles, first);
        delayed.delayMs = DELAY_MS;
        delayed.reset();
        const slowMs = await show(slow.port, tiles, first);
        results.push({ label, fast, delayed: slowMs, requests: delayed.requests });
      }
      log(`\n| ${DELAY_MS} ms added to every store request | without | with | round trips | store requests |`);
      log('|---|---|---|---|---|');
      for (const r of results) {
        const heads = r.requests.filter((q) => q.method === 'HEAD').length;
        log(
          `| ${r.label} | ${r.fast.toFixed(0)} ms | ${r.delayed.toFixed(0)} ms | ${((r.delayed - r.fast) / DELAY_MS).toFixed(1)} | ${r.requests.length} (${heads} HEAD) |`,
        );
      }
      log(`\nRanges of the first screen: ${results[0]!.requests.map((q) => q.range ?? q.method).join(' ')}`);
    } finally {
      await slowAgain.process.stop();
    }
  } finally {
    await Promise.all([disk, bucket, http, proxied, slow].map((d) => d.process.stop()));
    await Promise.all([counting.stop(), delayed.stop(), nginx.stop(), s3.stop(), tiff.close()]);
  }
}

await main();
