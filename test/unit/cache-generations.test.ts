/**
 * Per-image cache generations against a real memcached: a renewal made by one process (the purge
 * tool) reaches another (a server) once its check interval has passed, with one lookup however
 * many requests ask meanwhile; a memcached that stops answering leaves the last known generation
 * in use, and a purge then fails instead of pretending.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CacheGenerations, FIRST_GENERATION } from '../../src/engine/cache/generations.ts';
import { MemcachedTier } from '../../src/engine/cache/memcached.ts';
import { memcachedMissing, memcachedStats, startMemcached } from '../helpers/memcached.ts';
import { stopGroup, type Started } from '../helpers/processes.ts';

describe('cache generations without memcached', () => {
  it('every image keeps the first generation, at once; a renewal is refused', async () => {
    const generations = new CacheGenerations(null, 1000);
    assert.equal(generations.current('/images/a.tif'), FIRST_GENERATION);
    await assert.rejects(generations.renew('/images/a.tif'), /no memcached/);
  });
});

describe('cache generations (real memcached)', { skip: memcachedMissing }, () => {
  let memcached: { port: number; process: Started };
  const tiers: MemcachedTier[] = [];
  const tier = () => {
    const made = new MemcachedTier({ servers: [{ host: '127.0.0.1', port: memcached.port }], lifetimeSeconds: 60 });
    tiers.push(made);
    return made;
  };
  before(async () => {
    memcached = await startMemcached();
  });
  after(async () => {
    for (const made of tiers) made.close();
    await stopGroup(memcached.process);
  });

  it("a server sees another process's renewal after its check interval, asking memcached once per interval", async () => {
    const server = new CacheGenerations(tier(), 300);
    const purger = new CacheGenerations(tier(), 300);
    assert.equal(await server.current('/images/a.tif'), FIRST_GENERATION);
    const renewed = await purger.renew('/images/a.tif');
    assert.notEqual(renewed, FIRST_GENERATION);
    assert.equal(purger.current('/images/a.tif'), renewed, 'the purging process uses it at once');
    assert.equal(server.current('/images/a.tif'), FIRST_GENERATION, 'within the interval the server uses what it read');
    await new Promise((resolve) => setTimeout(resolve, 350));

    const gets = (await memcachedStats(memcached.port)).cmd_get!;
    const answers = await Promise.all(Array.from({ length: 10 }, async () => server.current('/images/a.tif')));
    assert.deepEqual(new Set(answers), new Set([renewed]));
    assert.equal((await memcachedStats(memcached.port)).cmd_get! - gets, 1, 'ten requests, one lookup');
    assert.equal(await server.current('/images/b.tif'), FIRST_GENERATION, 'each image has its own');

    const again = await purger.renew('/images/a.tif');
    assert.notEqual(again, renewed, 'every purge a new generation');
  });

  it('memcached gone: the last known generation stays in use, and a renewal fails', async () => {
    const server = new CacheGenerations(tier(), 0);
    const purger = new CacheGenerations(tier(), 0);
    const renewed = await purger.renew('/images/c.tif');
    assert.equal(await server.current('/images/c.tif'), renewed);
    await stopGroup(memcached.process);
    for (let i = 0; i < 5; i++) assert.equal(await server.current('/images/c.tif'), renewed);
    await assert.rejects(purger.renew('/images/c.tif'));
  });
});
