/**
 * The cache tools as an operator runs them (bin/iipsrv warm / purge, configured by the server's
 * environment) beside a running daemon that shares their memcached: what warm stores, the daemon
 * serves without rendering, for IIP, IIIF, DeepZoom and Zoomify tiles alike; after a purge the
 * daemon renders again (the same bytes) within its CACHE_GENERATION_CHECK, its memory cache
 * included; a plain image's built pyramid is made by warm and deleted by purge. memcached's own
 * counters say what was looked up and stored: every rendering stores its tile (cmd_set).
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { BIN, startDaemon, tempDir, testEnv } from '../helpers/daemon.ts';
import { decodePixels, makePyramidTiff, rampPixels } from '../helpers/images.ts';
import { memcachedMissing, memcachedStats, startMemcached } from '../helpers/memcached.ts';
import { freePort, startProgram, stopGroup, waitFor, type Started } from '../helpers/processes.ts';
import { request } from '../helpers/webservers.ts';

interface ToolRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** bin/iipsrv with these arguments and environment, to its end. */
async function iipsrv(args: string[], env: Record<string, string>): Promise<ToolRun> {
  const started = startProgram(BIN, args, { env: testEnv(env) });
  const { code } = await started.exited;
  return { code, stdout: started.stdout(), stderr: started.stderr() };
}

/** 1200x900 in 256x256 tiles: resolutions 0-3 of 1, 2, 6 and 20 tiles. */
const TILES_PER_RESOLUTION = [1, 2, 6, 20];
const ALL_TILES = TILES_PER_RESOLUTION.flatMap((count, resolution) => Array.from({ length: count }, (_, tile) => `FIF=a.tif&JTL=${resolution},${tile}`));

describe('iipsrv warm and purge beside a running daemon', { skip: memcachedMissing }, () => {
  let memcached: { port: number; process: Started };
  let daemon: Started;
  let port: number;
  let pyramids: string;
  let env: Record<string, string>;

  const get = async (query: string) => {
    const reply = await request(port, `/?${query}`);
    assert.equal(reply.status, 200, `${query}: ${reply.body.toString().slice(0, 200)}`);
    return reply.body;
  };

  before(async () => {
    const images = tempDir();
    pyramids = tempDir();
    await makePyramidTiff(path.join(images, 'a.tif'), { width: 1200, height: 900, compression: 'deflate' });
    // An image sequence of two views: a file each.
    for (const angle of ['000', '010']) await makePyramidTiff(path.join(images, `seq_pyr_${angle}_090.tif`), { width: 300, height: 200 });
    await sharp(rampPixels(1200, 900), { raw: { width: 1200, height: 900, channels: 3 } })
      .jpeg({ quality: 90 })
      .toFile(path.join(images, 'big.jpg'));
    memcached = await startMemcached();
    env = {
      FILESYSTEM_PREFIX: images + '/',
      MEMCACHED_SERVERS: `127.0.0.1:${memcached.port}`,
      CACHE_GENERATION_CHECK: '1',
      // big.jpg is then big enough for a built pyramid.
      PLAIN_MEMORY_PIXELS: '100000',
      PYRAMID_CACHE_DIR: pyramids,
    };
    port = await freePort();
    // The memory cache stays on: a purge must reach it too.
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], { env, waitPort: port });
  });
  after(async () => {
    if (daemon) await stopGroup(daemon);
    if (memcached) await stopGroup(memcached.process);
  });

  it('warm renders every tile into memcached; the daemon then serves IIP, IIIF, DeepZoom and Zoomify tiles without rendering one', async () => {
    const warmed = await iipsrv(['warm', 'a.tif'], env);
    assert.equal(warmed.code, 0, warmed.stderr);
    assert.match(warmed.stdout, /^warmed a\.tif: 29 tiles of resolutions 0-3 \(29 rendered, 0 already cached\), \d+ bytes in [\d.]+ s; memcached stored 29\n$/);
    assert.equal(warmed.stderr, '', 'stderr has only failures (from cron, it is mailed)');

    const before = await memcachedStats(memcached.port);
    const bodies = [];
    for (const query of ALL_TILES) bodies.push(await get(query));
    // The same entries, asked for by the other protocols: full-resolution tile 1,1 and a 600x450 one.
    const iiif = await get('IIIF=a.tif/256,256,256,256/256,/0/default.jpg');
    const deepZoom = await get('DeepZoom=a.tif_files/10/1_1.jpg');
    const zoomify = await get('Zoomify=a.tif/TileGroup0/3-1-1.jpg');
    const after = await memcachedStats(memcached.port);
    assert.equal(after.cmd_set, before.cmd_set, 'nothing was rendered (a rendering stores its tile)');
    assert.ok(after.get_hits! - before.get_hits! >= ALL_TILES.length, 'the tiles came from memcached');
    // JTL=3,6 is column 1 of row 1 at full resolution (5 tiles across); JTL=2,4 column 1 of row 1 at 600x450.
    assert.ok(iiif.equals(bodies[1 + 2 + 6 + 6]!), 'the IIIF tile is the JTL tile');
    assert.ok(zoomify.equals(bodies[1 + 2 + 6 + 6]!), 'the Zoomify tile is the JTL tile');
    assert.ok(deepZoom.equals(bodies[1 + 2 + 4]!), 'the DeepZoom tile is the JTL tile');
    const pixels = await decodePixels(bodies.at(-1)!);
    assert.deepEqual([pixels.width, pixels.height], [176, 132], 'the last tile is cropped to the image');

    const again = await iipsrv(['warm', 'a.tif', '--levels', '2-'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /26 tiles of resolutions 2-3 \(0 rendered, 26 already cached\)/);
  });

  it('purge: the daemon renders the image again within CACHE_GENERATION_CHECK, memory cache included, with the same bytes', async () => {
    const before = new Map<string, Buffer>();
    for (const query of ALL_TILES) before.set(query, await get(query));
    const purged = await iipsrv(['purge', 'a.tif'], env);
    assert.equal(purged.code, 0, purged.stderr);
    assert.match(purged.stdout, /^purged a\.tif: new cache generation for its file\n$/);

    // Until the daemon looks again it may serve what it holds; after that, every tile is rendered anew.
    const probe = ALL_TILES.at(-1)!;
    await waitFor(
      async () => {
        const sets = (await memcachedStats(memcached.port)).cmd_set!;
        assert.ok((await get(probe)).equals(before.get(probe)!));
        return (await memcachedStats(memcached.port)).cmd_set! > sets;
      },
      15_000,
      'the daemon to render a purged tile',
    );
    const sets = (await memcachedStats(memcached.port)).cmd_set!;
    const others = ALL_TILES.filter((query) => query !== probe);
    for (const query of others) assert.ok((await get(query)).equals(before.get(query)!), `${query}: the same bytes`);
    await waitFor(async () => (await memcachedStats(memcached.port)).cmd_set! >= sets + others.length, 5000, 'the new tiles stored');

    const rewarmed = await iipsrv(['warm', 'a.tif'], env);
    assert.equal(rewarmed.code, 0, rewarmed.stderr);
    assert.match(
      rewarmed.stdout,
      /29 tiles of resolutions 0-3 \(0 rendered, 29 already cached\)/,
      'what the daemon rendered after the purge is what warm looks up',
    );
  });

  it('purge of an image sequence reaches the tiles of each of its views', async () => {
    const query = 'FIF=seq&SDS=10,90&JTL=1,0';
    // Rendered and stored here, long before the purge below (which takes a process start).
    const first = await get(query);
    const purged = await iipsrv(['purge', 'seq'], env);
    assert.equal(purged.code, 0, purged.stderr);
    assert.match(purged.stdout, /^purged seq: new cache generation for its 2 files\n$/);
    await waitFor(
      async () => {
        const before = (await memcachedStats(memcached.port)).cmd_set!;
        assert.ok((await get(query)).equals(first));
        return (await memcachedStats(memcached.port)).cmd_set! > before;
      },
      15_000,
      'the daemon to render the purged view again',
    );
  });

  it("warm builds a plain image's pyramid (also without memcached), purge deletes it", async () => {
    const pyramidFiles = () => readdirSync(pyramids).filter((name) => name.endsWith('.tif'));
    assert.deepEqual(pyramidFiles(), []);
    const warmed = await iipsrv(['warm', 'big.jpg', '--levels', '0-1', '--concurrency', '3'], env);
    assert.equal(warmed.code, 0, warmed.stderr);
    assert.match(warmed.stdout, /^warmed big\.jpg: pyramid built \(.+\.tif\); 3 tiles of resolutions 0-1 \(3 rendered/);
    assert.equal(pyramidFiles().length, 1);

    const purged = await iipsrv(['purge', 'big.jpg'], env);
    assert.equal(purged.code, 0, purged.stderr);
    assert.match(purged.stdout, /^purged big\.jpg: new cache generation for its file; deleted its pyramid /);
    assert.deepEqual(pyramidFiles(), []);

    const pyramidOnly = await iipsrv(['warm', 'big.jpg'], { ...env, MEMCACHED_SERVERS: '' });
    assert.equal(pyramidOnly.code, 0, pyramidOnly.stderr);
    assert.match(pyramidOnly.stdout, /^warmed big\.jpg: pyramid built \(.+\); no tiles stored \(MEMCACHED_SERVERS is not set\)\n$/);
    assert.equal(pyramidFiles().length, 1);
  });

  it('fails with a clear message and status 1 for a missing or unsafe image, no memcached, or one that does not answer; 2 for a wrong command line', async () => {
    const closedPort = await freePort();
    const cases: Array<{ args: string[]; env?: Record<string, string>; code: number; message: RegExp }> = [
      { args: ['warm', 'missing.tif'], code: 1, message: /^iipsrv warm: cannot open the image: missing\.tif / },
      { args: ['purge', 'missing.tif'], code: 1, message: /^iipsrv purge: cannot open the image: missing\.tif / },
      { args: ['purge', '../a.tif'], code: 1, message: /climbs out of the image directory/ },
      {
        args: ['warm', 'a.tif'],
        env: { MEMCACHED_SERVERS: `127.0.0.1:${closedPort}` },
        code: 1,
        message: /memcached \(MEMCACHED_SERVERS=127\.0\.0\.1:\d+\) does not answer/,
      },
      { args: ['purge', 'a.tif'], env: { MEMCACHED_SERVERS: `127.0.0.1:${closedPort}` }, code: 1, message: /does not answer/ },
      { args: ['purge', 'a.tif'], env: { MEMCACHED_SERVERS: '' }, code: 1, message: /MEMCACHED_SERVERS is not set/ },
      { args: ['warm', 'a.tif'], env: { MEMCACHED_SERVERS: '', PYRAMID_CACHE_DIR: '' }, code: 1, message: /nothing to warm: MEMCACHED_SERVERS is not set/ },
      {
        args: ['warm', 'a.tif'],
        env: { MEMCACHED_SERVERS: '' },
        code: 1,
        message: /nothing to warm: MEMCACHED_SERVERS is not set, and a\.tif needs no built pyramid/,
      },
      { args: ['warm', 'a.tif', '--levels', '7-9'], code: 1, message: /a\.tif has resolutions 0-3 \(0 = the smallest\): --levels selects none of them/ },
      { args: ['warm'], code: 2, message: /^iipsrv warm: which image\?[^]*Usage: iipsrv warm IMAGE/ },
      { args: ['warm', 'a.tif', '--levels', '3-1'], code: 2, message: /--levels expects/ },
      { args: ['purge', 'a.tif', '--levels', '1'], code: 2, message: /unknown option "--levels"/ },
    ];
    for (const { args, env: extra, code, message } of cases) {
      const run = await iipsrv(args, { ...env, ...extra });
      assert.equal(run.code, code, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message, args.join(' '));
      assert.equal(run.stdout, '', `${args.join(' ')}: nothing on stdout`);
    }
    const help = await iipsrv(['purge', '--help'], env);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: iipsrv purge IMAGE/);
  });
});
