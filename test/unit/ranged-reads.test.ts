/**
 * How files in a store are read: structure in blocks (kept, shared, fetched once however many
 * reads want them), tile data by exact ranges merged when they touch. A fake store that counts
 * what it is asked stands for the network; the stores themselves are tested against s3rver and
 * nginx in object-stores.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BlockCache, type BlockSource, type SharedBlocks } from '../../src/engine/files/store/block-cache.ts';
import { RangeReader } from '../../src/engine/files/store/range-reader.ts';

const FILE = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));

function countingSource(identity = 'obj\0v1'): BlockSource & { asked: Array<[number, number]> } {
  const asked: Array<[number, number]> = [];
  return {
    identity,
    size: FILE.length,
    asked,
    fetch: async (start, end) => {
      asked.push([start, end]);
      await new Promise((resolve) => setTimeout(resolve, 5));
      return Buffer.from(FILE.subarray(start, end));
    },
  };
}

function mapShared(): SharedBlocks & { map: Map<string, Buffer> } {
  const map = new Map<string, Buffer>();
  return { map, get: async (key) => map.get(key) ?? null, set: (key, value) => void map.set(key, value) };
}

async function read(cache: BlockCache, source: BlockSource, position: number, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length + 3);
  await cache.copy(source, position, length, out, 3);
  return out.subarray(3);
}

describe('block cache', () => {
  it('copies exact bytes across block boundaries and up to the end of the object', async () => {
    const cache = new BlockCache(1 << 20, null, 1000);
    const source = countingSource();
    for (const [position, length] of [
      [0, 16],
      [990, 30],
      [1999, 2002],
      [FILE.length - 10, 10],
    ] as const) {
      assert.ok((await read(cache, source, position, length)).equals(FILE.subarray(position, position + length)), `${position}+${length}`);
    }
  });
  it('fetches contiguous missing blocks in one request, and nothing twice', async () => {
    const cache = new BlockCache(1 << 20, null, 1000);
    const source = countingSource();
    await read(cache, source, 500, 3000); // blocks 0-3
    assert.deepEqual(source.asked, [[0, 4000]]);
    await read(cache, source, 2500, 2000); // blocks 2-4: only 4 is missing
    assert.deepEqual(source.asked, [
      [0, 4000],
      [4000, 5000],
    ]);
  });
  it('lets concurrent reads of the same blocks wait for one fetch', async () => {
    const cache = new BlockCache(1 << 20, null, 1000);
    const source = countingSource();
    const results = await Promise.all(Array.from({ length: 10 }, () => read(cache, source, 100, 50)));
    assert.equal(source.asked.length, 1);
    for (const bytes of results) assert.ok(bytes.equals(FILE.subarray(100, 150)));
  });
  it('shares blocks through the shared tier: a second cache (another instance) asks the store nothing', async () => {
    const shared = mapShared();
    const first = countingSource();
    await read(new BlockCache(1 << 20, shared, 1000), first, 0, 2500);
    assert.equal(first.asked.length, 1);
    const second = countingSource();
    const other = new BlockCache(1 << 20, shared, 1000);
    assert.ok((await read(other, second, 0, 2500)).equals(FILE.subarray(0, 2500)));
    assert.equal(second.asked.length, 0);
    assert.equal(other.shared, 3);
  });
  it("does not take a shared value of the wrong length, nor another version's blocks", async () => {
    const shared = mapShared();
    await read(new BlockCache(1 << 20, shared, 1000), countingSource('obj\0v1'), 0, 10);
    for (const key of shared.map.keys()) shared.map.set(key, Buffer.alloc(7));
    const source = countingSource('obj\0v1');
    assert.ok((await read(new BlockCache(1 << 20, shared, 1000), source, 0, 10)).equals(FILE.subarray(0, 10)));
    assert.equal(source.asked.length, 1, 'the damaged value was fetched again');
    const changed = countingSource('obj\0v2');
    await read(new BlockCache(1 << 20, shared, 1000), changed, 0, 10);
    assert.equal(changed.asked.length, 1, 'another version is another object');
  });
  it('fetches a prefetched range once: the reads that follow ask the store nothing', async () => {
    const cache = new BlockCache(1 << 20, null, 1000);
    const source = countingSource();
    await Promise.all([read(cache, source, 0, 16), cache.prefetch(source, FILE.length - 2500, 2500)]);
    assert.deepEqual(source.asked, [
      [0, 1000],
      [297_000, 300_000],
    ]);
    assert.ok((await read(cache, source, FILE.length - 1200, 1100)).equals(FILE.subarray(FILE.length - 1200, FILE.length - 100)));
    assert.equal(source.asked.length, 2);
  });
  it('passes a failure to every waiting read and fetches again afterwards', async () => {
    const cache = new BlockCache(1 << 20, null, 1000);
    let fail = true;
    const source: BlockSource = {
      identity: 'x',
      size: FILE.length,
      fetch: async (start, end) => {
        if (fail) throw new Error('store down');
        return Buffer.from(FILE.subarray(start, end));
      },
    };
    const failures = await Promise.allSettled([read(cache, source, 0, 10), read(cache, source, 5, 10)]);
    assert.deepEqual(
      failures.map((f) => f.status),
      ['rejected', 'rejected'],
    );
    fail = false;
    assert.ok((await read(cache, source, 0, 10)).equals(FILE.subarray(0, 10)));
  });
});

describe('range reader', () => {
  it('merges reads of the same turn that touch or overlap, and keeps the others apart', async () => {
    const asked: Array<[number, number]> = [];
    const reader = new RangeReader(async (start, end) => {
      asked.push([start, end]);
      return Buffer.from(FILE.subarray(start, end));
    });
    const ranges: Array<[number, number]> = [
      [1000, 2000],
      [2000, 2500],
      [2400, 3000],
      [5000, 6000],
    ];
    const results = await Promise.all(ranges.map(([start, end]) => reader.read(start, end)));
    ranges.forEach(([start, end], i) => assert.ok(results[i]!.equals(FILE.subarray(start, end))));
    assert.deepEqual(asked, [
      [1000, 3000],
      [5000, 6000],
    ]);
    assert.equal(reader.requests, 2);
  });
  it('answers a read of bytes already being fetched from that fetch', async () => {
    let calls = 0;
    const reader = new RangeReader(async (start, end) => {
      calls++;
      await new Promise((resolve) => setTimeout(resolve, 10));
      return Buffer.from(FILE.subarray(start, end));
    });
    const first = reader.read(100, 200);
    await new Promise((resolve) => setImmediate(resolve));
    const second = reader.read(100, 200);
    assert.ok((await first).equals(await second));
    assert.equal(calls, 1);
  });
  it('rejects every read of a failed request', async () => {
    const reader = new RangeReader(async () => {
      throw new Error('gone');
    });
    const results = await Promise.allSettled([reader.read(0, 10), reader.read(10, 20)]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected'],
    );
  });
});
