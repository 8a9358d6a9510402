/**
 * The object store as the engine sees it (RemoteStorage), against a store faked in memory that
 * counts what it is asked: names to keys, and the looks (HEADs) per check interval, renewed ahead
 * of their expiry so that a request for an image being viewed never waits for one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RemoteStoreConfig } from '../../src/config.ts';
import { FileError } from '../../src/errors.ts';
import { BlockCache } from '../../src/engine/files/store/block-cache.ts';
import { StoreError, type ObjectInfo, type ObjectStore } from '../../src/engine/files/store/object-store.ts';
import { RemoteStorage } from '../../src/engine/files/store/remote-storage.ts';
import { tempDir } from '../helpers/daemon.ts';

class FakeStore implements ObjectStore {
  readonly description = 's3://fake/';
  heads: string[] = [];
  objects = new Map<string, ObjectInfo>();
  /** Set: HEADs fail with it. */
  failure: StoreError | null = null;
  /** Milliseconds each HEAD takes. */
  delayMs = 0;
  async head(key: string): Promise<ObjectInfo | null> {
    this.heads.push(key);
    if (this.delayMs) await sleep(this.delayMs);
    if (this.failure) throw this.failure;
    return this.objects.get(key) ?? null;
  }
  read(): Promise<Buffer> {
    return Promise.reject(new StoreError('invalid', 'not in this test'));
  }
  download(): Promise<ObjectInfo> {
    return Promise.reject(new StoreError('invalid', 'not in this test'));
  }
  list(): Promise<string[]> {
    return Promise.resolve([]);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function storage(store: FakeStore, checkIntervalMs: number, keyPrefix = 'images/'): RemoteStorage {
  const settings: RemoteStoreConfig = {
    location: { kind: 's3', bucket: 'fake', forcePathStyle: false },
    keyPrefix,
    timeouts: { requestTimeoutMs: 1000, attempts: 1, backoffMs: 0 },
    checkIntervalMs,
    blockCacheBytes: 1 << 20,
    copiesDir: tempDir(),
    copiesBytes: 1 << 20,
  };
  return new RemoteStorage(store, settings, new BlockCache(1 << 20, null));
}

describe('object store: names and looks', () => {
  it('turns names into keys below the prefix, as a disk would, and refuses what climbs out', () => {
    const remote = storage(new FakeStore(), 1000);
    assert.equal(remote.resolve('a.tif', ''), 's3://fake/images/a.tif');
    assert.equal(remote.resolve('/sub//./b', '.tif'), 's3://fake/images/sub/b.tif');
    for (const name of ['../secret.tif', 'a/../../b.tif', 'x\\..\\y', 'nul\0.tif', '']) assert.throws(() => remote.resolve(name, ''), name);
    assert.equal(storage(new FakeStore(), 1000, 'img_').resolve('001.tif', ''), 's3://fake/img_001.tif');
  });

  it('asks the store once per image per interval, renews the answer ahead of its expiry without making a request wait', async () => {
    const store = new FakeStore();
    store.objects.set('images/a.tif', { size: 10, etag: '"v1"', lastModifiedMs: 1_000_000 });
    const remote = storage(store, 400);
    const location = remote.resolve('a.tif', '');
    assert.equal((await remote.stat(location, 'a.tif')).version, '"v1"');
    await Promise.all(Array.from({ length: 5 }, () => remote.stat(location, 'a.tif')));
    assert.equal(store.heads.length, 1, 'one look for six requests within the interval');

    // Past three quarters of the interval: the answer in hand, and a look asked in the background.
    await sleep(320);
    store.objects.set('images/a.tif', { size: 12, etag: '"v2"', lastModifiedMs: 2_000_000 });
    store.delayMs = 50;
    const started = Date.now();
    assert.equal((await remote.stat(location, 'a.tif')).version, '"v1"', 'still the answer in hand');
    assert.ok(Date.now() - started < 40, 'without waiting for the store');
    assert.equal(store.heads.length, 2);
    await sleep(120);
    // The renewed answer, past the old one's expiry, without another look.
    const renewed = await remote.stat(location, 'a.tif');
    assert.deepEqual([renewed.version, renewed.size, renewed.mtimeSeconds], ['"v2"', 12, 2000]);
    assert.equal(store.heads.length, 2);
  });

  it('keeps a missing image missing for the interval, and does not keep a failure', async () => {
    const store = new FakeStore();
    const remote = storage(store, 10_000);
    const location = remote.resolve('none.tif', '');
    for (let i = 0; i < 3; i++) await assert.rejects(remote.stat(location, 'none.tif'), FileError);
    assert.equal(store.heads.length, 1);

    const failing = new FakeStore();
    failing.failure = new StoreError('unavailable', 's3://fake/images/b.tif: down');
    const other = storage(failing, 10_000);
    const b = other.resolve('b.tif', '');
    await assert.rejects(other.stat(b, 'b.tif'), { name: 'UnavailableError' });
    failing.failure = null;
    failing.objects.set('images/b.tif', { size: 5, etag: '"x"', lastModifiedMs: 0 });
    assert.equal((await other.stat(b, 'b.tif')).size, 5, 'asked again after the failure');
    assert.equal(failing.heads.length, 2);
  });
});
