/**
 * The memcached tier as a site uses it: two separate iipsrv instances (two daemons, as on two
 * machines) share one real memcached, so a tile made by one is served by the other from the cache;
 * and a memcached that freezes or dies mid-traffic never fails a request or holds one up.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { startDaemon, tempDir } from '../helpers/daemon.ts';
import { memcachedMissing, memcachedStats, startMemcached } from '../helpers/memcached.ts';
import { freePort, waitFor, type Started } from '../helpers/processes.ts';
import { makePyramidTiff } from '../helpers/images.ts';

function get(port: number, query: string): Promise<{ status: number; body: Buffer; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: `/?${query}`, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks), ms: performance.now() - started }));
      })
      .on('error', reject);
  });
}

describe('memcached shared by two iipsrv instances', { skip: memcachedMissing }, () => {
  let memcachedPort: number;
  let memcached: Started;
  const daemons: Started[] = [];
  const ports: number[] = [];

  before(async () => {
    const dir = tempDir();
    await makePyramidTiff(path.join(dir, 'shared.tif'), { width: 1200, height: 900, compression: 'deflate' });
    ({ port: memcachedPort, process: memcached } = await startMemcached());
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      ports.push(port);
      daemons.push(
        await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
          // No RAM tier: every repeat has to come from memcached.
          env: { FILESYSTEM_PREFIX: dir + '/', MEMCACHED_SERVERS: `127.0.0.1:${memcachedPort}`, MAX_IMAGE_CACHE_SIZE: '0' },
          waitPort: port,
        }),
      );
    }
  });
  after(async () => {
    try {
      process.kill(memcached.child.pid!, 'SIGCONT');
    } catch {
      // already gone
    }
    await Promise.all([...daemons.map((d) => d.stop()), memcached.stop()]);
  });

  it('a tile made by instance A is a memcached hit for instance B, with the same bytes', async () => {
    const query = 'FIF=shared.tif&QLT=60&JTL=3,3';
    const before = await memcachedStats(memcachedPort);
    const fromA = await get(ports[0]!, query);
    assert.equal(fromA.status, 200);
    // Sets are sent without waiting: give this one a moment to land.
    await waitFor(async () => (await memcachedStats(memcachedPort)).cmd_set! > before.cmd_set!, 3000, 'the set');
    const middle = await memcachedStats(memcachedPort);
    const fromB = await get(ports[1]!, query);
    assert.equal(fromB.status, 200);
    assert.ok(fromB.body.equals(fromA.body));
    const afterB = await memcachedStats(memcachedPort);
    assert.equal(afterB.get_hits! - middle.get_hits!, 1, 'B found it in memcached');
    assert.equal(afterB.cmd_set, middle.cmd_set, 'and did not make it again');
    assert.equal((await sharp(fromB.body).metadata()).width, 256);
  });

  it('a frozen memcached (SIGSTOP) delays no request by more than a moment, and fails none', async () => {
    process.kill(memcached.child.pid!, 'SIGSTOP');
    try {
      const times: number[] = [];
      for (let tile = 0; tile < 12; tile++) {
        const reply = await get(ports[0]!, `FIF=shared.tif&JTL=3,${tile}`);
        assert.equal(reply.status, 200, reply.body.toString());
        times.push(reply.ms);
      }
      // One lookup waits for the deadline (tens of ms); after that the breaker skips memcached.
      assert.ok(Math.max(...times) < 1000, `slowest ${Math.max(...times).toFixed(0)} ms`);
      assert.ok(times.filter((t) => t > 150).length <= 1, `times ${times.map((t) => t.toFixed(0)).join(',')}`);
    } finally {
      process.kill(memcached.child.pid!, 'SIGCONT');
    }
  });

  it('a dead memcached: every request still succeeds', async () => {
    await memcached.stop();
    for (let tile = 0; tile < 12; tile++) {
      const reply = await get(ports[1]!, `FIF=shared.tif&QLT=50&JTL=3,${tile}`);
      assert.equal(reply.status, 200);
      assert.ok(reply.ms < 1000, `${reply.ms.toFixed(0)} ms`);
    }
  });
});
