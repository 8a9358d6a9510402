/**
 * Positioned reads are synchronous while the storage answers from memory and asynchronous for a
 * while after a slow one (src/engine/tiff/positioned-file.ts): the same bytes either way.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { readAt, readsAreSynchronous, setStorageSlowForTests } from '../../src/engine/tiff/positioned-file.ts';
import { tempDir } from '../helpers/daemon.ts';

const dir = tempDir();
const file = path.join(dir, 'bytes.bin');
const content = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31 + (i >> 8)) & 0xff));
writeFileSync(file, content);

describe('positioned reads', () => {
  afterEach(() => setStorageSlowForTests(false));

  for (const slow of [false, true]) {
    it(`read the bytes at their place, ${slow ? 'through the thread pool' : 'synchronously'}`, async () => {
      setStorageSlowForTests(slow);
      assert.equal(readsAreSynchronous(), !slow);
      const handle = await open(file, 'r');
      try {
        const buffer = Buffer.alloc(40_010, 0xee);
        assert.equal(await readAt(handle, buffer, 10, 40_000, 54_321), 40_000);
        assert.ok(buffer.subarray(10).equals(content.subarray(54_321, 94_321)));
        assert.ok(buffer.subarray(0, 10).equals(Buffer.alloc(10, 0xee)), 'nothing written before the offset');
        // At the end of the file: what is there, then nothing.
        assert.equal(await readAt(handle, buffer, 0, 1000, 99_500), 500);
        assert.equal(await readAt(handle, buffer, 0, 1000, 100_000), 0);
      } finally {
        await handle.close();
      }
      assert.equal(readsAreSynchronous(), !slow, 'fast reads change nothing');
    });
  }

  it('a slow synchronous read sends the next reads to the thread pool for a while', async () => {
    // Every read counts as slow with a threshold below zero.
    setStorageSlowForTests(false, -1);
    assert.equal(readsAreSynchronous(), true);
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(100);
      assert.equal(await readAt(handle, buffer, 0, 100, 0), 100);
      assert.equal(readsAreSynchronous(), false);
      assert.equal(readsAreSynchronous(performance.now() + 9_000), false, 'still asynchronous 9 s later');
      assert.equal(readsAreSynchronous(performance.now() + 10_500), true, 'synchronous again after 10 s');
      assert.equal(await readAt(handle, buffer, 0, 100, 200), 100);
      assert.ok(buffer.equals(content.subarray(200, 300)));
    } finally {
      await handle.close();
    }
  });
});
