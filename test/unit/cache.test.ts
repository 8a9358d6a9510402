/**
 * The cache tiers. The memcached tests run a real memcached (Debian package memcached), then stop
 * and freeze it: requests must never fail and never wait long.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LruCache } from '../../src/engine/cache/lru.ts';
import { MemcachedTier } from '../../src/engine/cache/memcached.ts';
import { TileCache, type CacheResult } from '../../src/engine/cache/tile-cache.ts';
import { freePort, waitFor, type Started } from '../helpers/processes.ts';
import { memcachedMissing, startMemcached } from '../helpers/memcached.ts';

describe('LRU cache', () => {
  it('returns what was stored and counts hits and misses', () => {
    const cache = new LruCache(10_000);
    cache.set('a', Buffer.from('alpha'));
    assert.deepEqual(cache.get('a'), Buffer.from('alpha'));
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.hits, 1);
    assert.equal(cache.misses, 1);
  });
  it('stays within its byte bound and evicts the least recently used entry', () => {
    const cache = new LruCache(3 * (1000 + 1 + 64));
    for (const key of ['a', 'b', 'c']) cache.set(key, Buffer.alloc(1000));
    cache.get('a'); // a is now the most recent, b the least
    cache.set('d', Buffer.alloc(1000));
    assert.equal(cache.get('b'), undefined, 'b evicted');
    assert.ok(cache.get('a') && cache.get('c') && cache.get('d'));
    assert.ok(cache.bytes <= 3 * 1065);
  });
  it('keeps a copy of a small view into a big buffer, so that its bound is real memory', () => {
    const big = Buffer.alloc(200_000);
    const view = big.subarray(1000, 11_000);
    const cache = new LruCache(100_000);
    cache.set('v', view);
    const stored = cache.get('v')!;
    assert.ok(stored.equals(view));
    assert.equal(stored.buffer.byteLength < 100_000, true, 'not the 200 KB buffer');
  });
  it('ignores an entry bigger than the whole cache, replaces an entry with the same key', () => {
    const cache = new LruCache(500);
    cache.set('small', Buffer.alloc(10));
    cache.set('huge', Buffer.alloc(10_000));
    assert.equal(cache.get('huge'), undefined);
    assert.ok(cache.get('small'));
    cache.set('small', Buffer.alloc(20));
    assert.equal(cache.get('small')?.length, 20);
    assert.equal(cache.size, 1);
    cache.clear();
    assert.equal(cache.size, 0);
    assert.equal(cache.bytes, 0);
  });
});

describe('TileCache.fill: identical requests in flight render once', () => {
  const slow = (bytes: Buffer, counter: { n: number; signal?: AbortSignal }) => (signal?: AbortSignal) => {
    counter.n++;
    counter.signal = signal;
    return new Promise<CacheResult>((resolve, reject) => {
      const timer = setTimeout(() => resolve({ bytes, tier: 'computed' }), 50);
      signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(signal.reason as Error);
      });
    });
  };

  it('computes once for concurrent callers, stores the result, and computes again when asked after it', async () => {
    const cache = new TileCache(new LruCache(100_000), null);
    const counter = { n: 0 };
    const results = await Promise.all(Array.from({ length: 5 }, () => cache.fill('k', slow(Buffer.from('v'), counter))));
    assert.equal(counter.n, 1);
    for (const r of results) assert.deepEqual(r.bytes, Buffer.from('v'));
    // The access log's tiers: the one that rendered, then the ones that waited for it.
    assert.deepEqual(
      results.map((r) => r.tier),
      ['computed', 'coalesced', 'coalesced', 'coalesced', 'coalesced'],
    );
    assert.equal(cache.stats().coalesced, 4);
    assert.deepEqual(await cache.get('k'), { bytes: Buffer.from('v'), tier: 'ram' });
  });

  it('a caller whose signal aborts stops waiting; the rendering goes on while another waits', async () => {
    const cache = new TileCache(null, null);
    const counter: { n: number; signal?: AbortSignal } = { n: 0 };
    const leaving = new AbortController();
    const first = cache.fill('k', slow(Buffer.from('v'), counter), leaving.signal);
    const second = cache.fill('k', slow(Buffer.from('v'), counter), new AbortController().signal);
    leaving.abort();
    await assert.rejects(first, { name: 'AbortError' });
    assert.deepEqual(await second, { bytes: Buffer.from('v'), tier: 'coalesced' });
    assert.equal(counter.n, 1);
    assert.equal(counter.signal?.aborted, false);
  });

  it('the rendering is abandoned once every caller has gone, and a new caller starts afresh', async () => {
    const cache = new TileCache(null, null);
    const counter: { n: number; signal?: AbortSignal } = { n: 0 };
    const a = new AbortController();
    const b = new AbortController();
    const first = cache.fill('k', slow(Buffer.from('v'), counter), a.signal);
    const second = cache.fill('k', slow(Buffer.from('v'), counter), b.signal);
    a.abort();
    b.abort();
    await assert.rejects(first, { name: 'AbortError' });
    await assert.rejects(second, { name: 'AbortError' });
    assert.equal(counter.signal?.aborted, true);
    assert.deepEqual(await cache.fill('k', slow(Buffer.from('w'), counter)), { bytes: Buffer.from('w'), tier: 'computed' });
    assert.equal(counter.n, 2);
  });
});

describe('memcached tier (real memcached)', { skip: memcachedMissing }, () => {
  let port: number;
  let server: Started;
  const start = async () => {
    server = (await startMemcached(port)).process;
  };
  before(async () => {
    port = await freePort();
    await start();
  });
  after(async () => {
    try {
      process.kill(server.child.pid!, 'SIGCONT');
    } catch {
      // already gone
    }
    await server.stop();
  });

  it('stores and finds values; a second tier object (another worker) sees them', async () => {
    const a = new MemcachedTier({ servers: [{ host: '127.0.0.1', port }], lifetimeSeconds: 60 });
    const b = new MemcachedTier({ servers: [{ host: '127.0.0.1', port }], lifetimeSeconds: 60 });
    const value = Buffer.from(Array.from({ length: 30_000 }, (_, i) => i % 251));
    assert.equal(await a.get('tile-1'), null);
    a.set('tile-1', value);
    await waitFor(async () => (await b.get('tile-1')) !== null, 2000, 'the value in memcached');
    assert.deepEqual(await b.get('tile-1'), value);
    a.close();
    b.close();
  });

  it('TileCache copies a memcached hit into RAM', async () => {
    const shared = new MemcachedTier({ servers: [{ host: '127.0.0.1', port }], lifetimeSeconds: 60 });
    const writer = new TileCache(new LruCache(1e6), shared);
    writer.set('k2', Buffer.from('shared tile'));
    const ram = new LruCache(1e6);
    const reader = new TileCache(ram, new MemcachedTier({ servers: [{ host: '127.0.0.1', port }], lifetimeSeconds: 60 }));
    await waitFor(async () => (await shared.get('k2')) !== null, 2000, 'shared value');
    assert.deepEqual(await reader.get('k2'), { bytes: Buffer.from('shared tile'), tier: 'memcached' });
    assert.equal(ram.get('k2')?.toString(), 'shared tile');
    assert.equal((await reader.get('k2'))?.tier, 'ram');
    writer.close();
    reader.close();
  });

  it('a rendering another worker holds the lease for is waited for, and reported as such', async () => {
    // A lease memcached does not answer within the deadline is granted (memcached must never hold
    // a request up): a loaded machine must not turn that into a second rendering here.
    const tiers = [0, 1].map(() => new MemcachedTier({ servers: [{ host: '127.0.0.1', port }], lifetimeSeconds: 60, getDeadlineMs: 2000 }));
    // Connected first: a lease memcached does not answer in time is granted to everyone.
    for (const tier of tiers) await waitFor(() => tier.check(), 2000, 'memcached answering');
    const lease = { waitMs: 5000, pollMs: 10 };
    const first = new TileCache(new LruCache(1e6), tiers[0]!, lease);
    const second = new TileCache(new LruCache(1e6), tiers[1]!, lease);
    let renderings = 0;
    let finish: () => void = () => undefined;
    const rendering = first.fill('leased', () => {
      renderings++;
      return new Promise<CacheResult>((resolve) => {
        finish = () => resolve({ bytes: Buffer.from('leased tile'), tier: 'computed' });
      });
    });
    // The first holds the lease once it has started rendering.
    await waitFor(async () => renderings === 1, 2000, 'the first rendering');
    const waiting = second.fill('leased', () => {
      renderings++;
      return Promise.resolve({ bytes: Buffer.from('rendered twice'), tier: 'computed' });
    });
    // Finished only once the second found the lease taken: finished before, the first would have
    // released it, and the second would rightly render.
    await waitFor(async () => tiers[1]!.leasesWaited === 1, 2000, 'the second waiting for the lease');
    finish();
    assert.equal((await rendering).tier, 'computed');
    assert.deepEqual(await waiting, { bytes: Buffer.from('leased tile'), tier: 'lease' });
    assert.equal(renderings, 1);
    first.close();
    second.close();
  });

  it('a stopped memcached never fails a request and soon costs nothing', async () => {
    const tier = new MemcachedTier({ servers: [{ host: '127.0.0.1', port }], lifetimeSeconds: 60 });
    tier.set('x', Buffer.from('1'));
    await server.stop();
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t0 = performance.now();
      assert.equal(await tier.get(`x${i}`), null);
      times.push(performance.now() - t0);
    }
    assert.ok(Math.max(...times) < 250, `slowest lookup ${Math.max(...times).toFixed(1)} ms`);
    assert.ok(tier.skipped >= 45, `lookups skipped by the breaker: ${tier.skipped}`);
    tier.set('y', Buffer.from('2')); // must not throw
    // Back again on the same port: the tier recovers by itself after its back-off.
    await start();
    tier.set('after', Buffer.from('3'));
    await waitFor(
      async () => {
        tier.set('after', Buffer.from('3'));
        return (await tier.get('after'))?.toString() === '3';
      },
      10_000,
      'recovery',
    );
    tier.close();
  });

  it('a frozen memcached (SIGSTOP) delays a lookup by at most the deadline', async () => {
    const tier = new MemcachedTier({ servers: [{ host: '127.0.0.1', port }], lifetimeSeconds: 60, getDeadlineMs: 50 });
    tier.set('warm', Buffer.from('w'));
    await waitFor(async () => (await tier.get('warm')) !== null, 2000, 'warm-up');
    process.kill(server.child.pid!, 'SIGSTOP');
    try {
      const times: number[] = [];
      for (let i = 0; i < 30; i++) {
        const t0 = performance.now();
        assert.equal(await tier.get(`frozen${i}`), null);
        times.push(performance.now() - t0);
      }
      assert.ok(Math.max(...times) < 150, `slowest lookup ${Math.max(...times).toFixed(1)} ms`);
      assert.ok(times.filter((t) => t > 20).length <= 2, 'after the first timeout the breaker skips memcached');
    } finally {
      process.kill(server.child.pid!, 'SIGCONT');
    }
    tier.close();
  });

  it('a freeze with sets in flight is one outage: the tier answers again soon after memcached thaws', async () => {
    const tier = new MemcachedTier({ servers: [{ host: '127.0.0.1', port }], lifetimeSeconds: 60 });
    tier.set('warm', Buffer.from('w'));
    await waitFor(async () => (await tier.get('warm')) !== null, 2000, 'warm-up');
    process.kill(server.child.pid!, 'SIGSTOP');
    let thawed: number;
    try {
      // Tiles made while memcached froze, on their way to it: memjs fails them all together when
      // the socket times out, after the first lookup has opened the breaker.
      for (let i = 0; i < 20; i++) tier.set(`in-flight-${i}`, Buffer.alloc(40_000));
      assert.equal(await tier.get('warm'), null);
      await new Promise((resolve) => setTimeout(resolve, 1500));
    } finally {
      process.kill(server.child.pid!, 'SIGCONT');
      thawed = performance.now();
    }
    // One failure's back-off is 1 s (then 2 s): not the 30 s maximum the twenty sets used to reach.
    await waitFor(async () => (await tier.get('warm')) !== null, 10_000, 'the tier using memcached again');
    const seconds = (performance.now() - thawed) / 1000;
    assert.ok(seconds < 5, `answering again ${seconds.toFixed(1)} s after the thaw`);
    tier.close();
  });

  it('no memcached listening at all (the unset-MEMCACHED_SERVERS default on most machines)', async () => {
    const deadPort = await freePort();
    const tier = new MemcachedTier({ servers: [{ host: '127.0.0.1', port: deadPort }], lifetimeSeconds: 60 });
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) assert.equal(await tier.get(`k${i}`), null);
    assert.ok(performance.now() - t0 < 500, 'a hundred lookups cost almost nothing');
    tier.close();
  });
});
