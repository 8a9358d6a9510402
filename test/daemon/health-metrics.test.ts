/**
 * Health, Prometheus metrics and request coalescing on the real daemon: workers, the primary's
 * aggregation, a real memcached shared by two daemons, and nginx in front (examples/nginx).
 */
import assert from 'node:assert/strict';
import { renameSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon, tempDir } from '../helpers/daemon.ts';
import { childPids, freePort, stopGroup, waitFor, type Started } from '../helpers/processes.ts';
import { memcachedMissing, startMemcached } from '../helpers/memcached.ts';
import { makePyramidTiff } from '../helpers/images.ts';
import {
  copyExampleImages,
  nginxAvailability,
  nginxErrors,
  nginxSiteReplacements,
  renderExample,
  request,
  startNginx,
  webTempDir,
} from '../helpers/webservers.ts';

/** The sum of a metric's samples whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    const match = /^([a-z0-9_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      total += Number(match[3]);
      found = true;
    }
  }
  assert.ok(found, `no ${name}${JSON.stringify(labels)} in the metrics:\n${text}`);
  return total;
}

async function scrape(port: number, url = '/metrics'): Promise<string> {
  const reply = await request(port, url);
  assert.equal(reply.status, 200, reply.body.toString());
  assert.match(String(reply.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return reply.body.toString();
}

describe('health and metrics over HTTP (2 workers)', () => {
  let dir: string;
  let images: string;
  let port: number;
  let daemon: Started;

  before(async () => {
    dir = tempDir();
    images = path.join(dir, 'images');
    await import('node:fs').then((fs) => fs.mkdirSync(images));
    await makePyramidTiff(path.join(images, 'a.tif'), { width: 1024, height: 768, compression: 'deflate' });
    port = await freePort();
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '2'], {
      env: { FILESYSTEM_PREFIX: images + '/', URI_MAP: 'iiif=>IIIF' },
      waitPort: port,
    });
    // The port answers once the first worker listens; the scrape counts the workers that are ready.
    await waitFor(async () => sample(await scrape(port), 'iipsrv_workers') === 2, 15_000, 'both workers');
  });
  after(async () => {
    await stopGroup(daemon);
  });

  it('/health answers 200 with JSON while the image folder is readable, 503 once it is gone', async () => {
    const ok = await request(port, '/health');
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['content-type'], 'application/json');
    const body = JSON.parse(ok.body.toString()) as Record<string, unknown>;
    assert.equal(body.status, 'ok');
    assert.equal(body.images, 'readable');
    assert.equal(body.memcached, 'off');
    assert.ok(!ok.body.toString().includes(images), 'the folder path stays out of the answer');

    renameSync(images, images + '.moved');
    try {
      const failing = await request(port, '/health');
      assert.equal(failing.status, 503);
      const state = JSON.parse(failing.body.toString()) as Record<string, unknown>;
      assert.equal(state.status, 'failing');
      assert.equal(state.images, 'unreadable');
      // ?HEALTH, the FastCGI sites' form, is the same answer.
      assert.equal((await request(port, '/?HEALTH')).status, 503);
    } finally {
      renameSync(images + '.moved', images);
    }
    assert.equal((await request(port, '/?health')).status, 200);
  });

  it('/metrics sums every worker: requests by protocol, kind and status, bytes, latencies, caches, decodes', async () => {
    const before = await scrape(port);
    const tiles = 12;
    let bytes = 0;
    for (let i = 0; i < tiles; i++) {
      // 6 different tiles twice each: the second of a pair is a RAM hit in the worker that made it, or a miss in the other.
      const reply = await request(port, `/?FIF=a.tif&JTL=2,${i % 6}`);
      assert.equal(reply.status, 200);
      bytes += reply.body.length;
    }
    const info = await request(port, '/iiif/a.tif/info.json');
    assert.equal(info.status, 200);
    const missing = await request(port, '/?FIF=missing.tif&JTL=0,0');
    assert.equal(missing.status, 404);

    const after = await scrape(port);
    const delta = (name: string, labels: Record<string, string> = {}) =>
      sample(after, name, labels) - (before.includes(`${name}`) && hasSample(before, name, labels) ? sample(before, name, labels) : 0);
    assert.equal(delta('iipsrv_requests_total', { protocol: 'iip', kind: 'tile', status: '200' }), tiles);
    assert.equal(delta('iipsrv_requests_total', { protocol: 'iip', kind: 'tile', status: '404' }), 1);
    assert.equal(delta('iipsrv_requests_total', { protocol: 'iiif', kind: 'info', status: '200' }), 1);
    assert.equal(delta('iipsrv_response_bytes_total', { protocol: 'iip', kind: 'tile' }), bytes + missing.body.length);
    assert.equal(delta('iipsrv_request_duration_seconds_count', { protocol: 'iip', kind: 'tile' }), tiles + 1);
    assert.equal(delta('iipsrv_request_duration_seconds_bucket', { protocol: 'iip', kind: 'tile', le: '+Inf' }), tiles + 1);
    assert.ok(delta('iipsrv_request_duration_seconds_sum', { protocol: 'iip', kind: 'tile' }) > 0);
    const hits = delta('iipsrv_cache_hits_total', { tier: 'ram' });
    const misses = delta('iipsrv_cache_misses_total', { tier: 'ram' });
    assert.equal(hits + misses, tiles, 'each tile request looked in its worker RAM once');
    assert.ok(misses >= 6 && misses <= 12, `misses ${misses}`);
    assert.equal(delta('iipsrv_decodes_total', { codec: 'tiff' }), misses, 'every miss was rendered');
    assert.ok(delta('iipsrv_decode_seconds_total', { codec: 'tiff' }) > 0);
    assert.equal(sample(after, 'iipsrv_workers'), 2);
    assert.equal(sample(after, 'iipsrv_jp2_helper_restarts_total'), 0);
  });

  it('a worker that dies is replaced and counted in iipsrv_worker_restarts_total', async () => {
    assert.equal(sample(await scrape(port), 'iipsrv_worker_restarts_total'), 0);
    const workers = childPids(daemon.child.pid!);
    assert.equal(workers.length, 2);
    process.kill(workers[0]!, 'SIGKILL');
    await waitFor(async () => childPids(daemon.child.pid!).filter((pid) => pid !== workers[0]).length === 2, 15_000, 'a new worker');
    await waitFor(async () => sample(await scrape(port), 'iipsrv_workers') === 2, 15_000, 'the new worker to answer');
    assert.equal(sample(await scrape(port), 'iipsrv_worker_restarts_total'), 1);
  });
});

function hasSample(text: string, name: string, labels: Record<string, string>): boolean {
  try {
    sample(text, name, labels);
    return true;
  } catch {
    return false;
  }
}

describe('health reports memcached without failing on it', { skip: memcachedMissing }, () => {
  it('up while memcached answers, down (and still 200) once it is stopped', async () => {
    const dir = tempDir();
    const memcached = await startMemcached();
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { FILESYSTEM_PREFIX: dir + '/', MEMCACHED_SERVERS: `127.0.0.1:${memcached.port}` },
      waitPort: port,
    });
    try {
      const up = await request(port, '/health');
      assert.equal(up.status, 200);
      assert.equal((JSON.parse(up.body.toString()) as Record<string, unknown>).memcached, 'up');
      await stopGroup(memcached.process);
      const down = await request(port, '/health');
      assert.equal(down.status, 200);
      assert.deepEqual(JSON.parse(down.body.toString()), {
        status: 'ok',
        version: (JSON.parse(up.body.toString()) as { version: string }).version,
        images: 'readable',
        memcached: 'down',
      });
    } finally {
      await stopGroup(daemon);
      await stopGroup(memcached.process);
    }
  });
});

/** An export big enough to take a while to render (so that the concurrent requests overlap). */
const SLOW_REGION = 'FIF=big.tif&WID=3000&CVT=jpeg';

/** A keep-alive agent with `count` connections to the daemon already open. */
async function openConnections(port: number, count: number): Promise<http.Agent> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: count });
  await Promise.all(Array.from({ length: count }, () => request(port, '/health', { agent })));
  return agent;
}

describe('request coalescing', () => {
  let dir: string;
  before(async () => {
    dir = tempDir();
    await makePyramidTiff(path.join(dir, 'big.tif'), { width: 6000, height: 4000, compression: 'deflate' });
  });

  it('8 identical concurrent requests in one worker render once', async () => {
    const port = await freePort();
    // No RAM tier: a request arriving after the rendering would render again, so only coalescing keeps the count at 1.
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { FILESYSTEM_PREFIX: dir + '/', MAX_IMAGE_CACHE_SIZE: '0' },
      waitPort: port,
    });
    try {
      // Connections opened first, so that the 8 requests arrive together even on a loaded machine.
      const agent = await openConnections(port, 8);
      const replies = await Promise.all(Array.from({ length: 8 }, () => request(port, `/?${SLOW_REGION}`, { agent })));
      agent.destroy();
      for (const reply of replies) {
        assert.equal(reply.status, 200);
        assert.deepEqual(reply.body, replies[0]!.body);
      }
      const text = await scrape(port);
      assert.equal(sample(text, 'iipsrv_decodes_total', { codec: 'tiff' }), 1);
      assert.equal(sample(text, 'iipsrv_cache_coalesced_total'), 7);
    } finally {
      await stopGroup(daemon);
    }
  });

  it('two daemons sharing one memcached render a new region once (the memcached lease)', { skip: memcachedMissing }, async () => {
    const memcached = await startMemcached();
    const daemons: Started[] = [];
    const ports: number[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const port = await freePort();
        ports.push(port);
        daemons.push(
          await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
            env: { FILESYSTEM_PREFIX: dir + '/', MAX_IMAGE_CACHE_SIZE: '0', MEMCACHED_SERVERS: `127.0.0.1:${memcached.port}`, MEMCACHED_LEASE: '5' },
            waitPort: port,
          }),
        );
      }
      const agents = await Promise.all(ports.map((port) => openConnections(port, 4)));
      const replies = await Promise.all(
        ports.flatMap((port, i) => Array.from({ length: 4 }, () => request(port, `/?${SLOW_REGION}&QLT=81`, { agent: agents[i]! }))),
      );
      for (const agent of agents) agent.destroy();
      for (const reply of replies) {
        assert.equal(reply.status, 200);
        assert.deepEqual(reply.body, replies[0]!.body);
      }
      const scraped = await Promise.all(ports.map((port) => scrape(port)));
      const decodes = scraped.map((text) => sample(text, 'iipsrv_decodes_total', { codec: 'tiff' }));
      assert.deepEqual(
        decodes.reduce((a, b) => a + b, 0),
        1,
        `decodes per daemon: ${decodes.join(', ')}`,
      );
      // The daemon that did not render either waited for the other's lease (its 4 requests coalesced
      // into one wait) or, on a slow machine, asked memcached after the value was there.
      const other = decodes.indexOf(0);
      const waited = sample(scraped[other]!, 'iipsrv_cache_lease_waits_total');
      const found = sample(scraped[other]!, 'iipsrv_cache_hits_total', { tier: 'memcached' });
      assert.ok((waited === 1 && found === 0) || (waited === 0 && found >= 1), `lease waits ${waited}, memcached hits ${found}`);
      assert.equal(
        scraped.map((text) => sample(text, 'iipsrv_cache_lease_timeouts_total')).reduce((a, b) => a + b, 0),
        0,
      );
    } finally {
      for (const daemon of daemons) await stopGroup(daemon);
      await stopGroup(memcached.process);
    }
  });
});

const nginx = nginxAvailability();

describe('health and metrics through nginx (examples/nginx/iipsrv.conf)', { skip: nginx.skip ?? false }, () => {
  it('/health and ?HEALTH reach iipsrv; /metrics only with METRICS=1', async () => {
    const dir = webTempDir();
    const { images } = copyExampleImages(dir);
    for (const metrics of ['', '1']) {
      const fastcgiPort = await freePort();
      const port = await freePort();
      const daemon = await startDaemon(['--bind', `127.0.0.1:${fastcgiPort}`, '--workers', '2'], {
        env: { FILESYSTEM_PREFIX: images + '/', ...(metrics ? { METRICS: metrics } : {}) },
        waitPort: fastcgiPort,
      });
      const front = await startNginx({
        dir: path.join(dir, `m${metrics}`),
        port,
        site: renderExample('nginx/iipsrv.conf', nginxSiteReplacements({ port, fastcgiPort })),
      });
      try {
        for (const url of ['/health', '/fcgi-bin/iipsrv.fcgi?HEALTH']) {
          const reply = await request(port, url);
          assert.equal(reply.status, 200, `${url}: ${reply.body.toString()}`);
          assert.equal((JSON.parse(reply.body.toString()) as Record<string, unknown>).images, 'readable');
        }
        assert.equal((await request(port, '/fcgi-bin/iipsrv.fcgi?FIF=example.tif&JTL=0,0')).status, 200);
        const reply = await request(port, '/metrics');
        if (metrics === '') {
          // Off by default in FastCGI mode: the path is no command, and gets the banner page.
          assert.equal(reply.status, 200);
          assert.match(String(reply.headers['content-type']), /^text\/html/);
        } else {
          assert.match(String(reply.headers['content-type']), /^text\/plain; version=0\.0\.4/);
          const text = reply.body.toString();
          assert.equal(sample(text, 'iipsrv_requests_total', { protocol: 'iip', kind: 'tile', status: '200' }), 1);
          assert.equal(sample(text, 'iipsrv_requests_total', { protocol: 'server', kind: 'health', status: '200' }), 2);
        }
        assert.deepEqual(nginxErrors(front.errorLog()), []);
      } finally {
        await front.stop();
        await stopGroup(daemon);
      }
    }
  });
});
