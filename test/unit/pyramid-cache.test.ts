/**
 * The pyramid cache directory shared by builders in this and other processes: a failed or killed
 * build never leaves a file readers would take for a pyramid, a dead builder's lock is taken over,
 * concurrent builders of one pyramid do the work once, and the directory is kept under its size
 * by removing the least recently used pyramids.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PyramidCache } from '../../src/engine/plain/pyramid-cache.ts';
import { ROOT, tempDir } from '../helpers/daemon.ts';

const source = { path: '/images/a.jpg', size: 1234, mtimeSeconds: 1_700_000_000 };

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('pyramid cache', () => {
  it('keys follow the path, size and time of the source', () => {
    const cache = new PyramidCache({ dir: tempDir(), maxBytes: 1e9 });
    const key = cache.key(source);
    assert.equal(key, cache.key({ ...source }));
    assert.notEqual(key, cache.key({ ...source, size: 1235 }));
    assert.notEqual(key, cache.key({ ...source, mtimeSeconds: source.mtimeSeconds + 1 }));
    assert.notEqual(key, cache.key({ ...source, path: '/images/b.jpg' }));
  });

  it('a build that fails midway leaves no pyramid, no lock and no temporary file; it is tried again after retryFailedMs', async () => {
    const dir = tempDir();
    const cache = new PyramidCache({ dir, maxBytes: 1e9, retryFailedMs: 200 });
    const key = cache.key(source);
    await assert.rejects(
      cache.build(key, async (file) => {
        await writeFile(file, 'half a pyramid');
        throw new Error('the decoder failed');
      }),
      /the decoder failed/,
    );
    assert.equal(cache.find(key), null);
    assert.deepEqual(readdirSync(dir), []);
    // A damaged file is not gone over again at once.
    let tried = false;
    assert.equal(
      await cache.build(key, async () => {
        tried = true;
      }),
      null,
    );
    assert.equal(tried, false);
    await sleep(250);
    const built = await cache.build(key, (file) => writeFile(file, 'a whole pyramid'));
    assert.equal(built, cache.pathOf(key));
    assert.equal(readFileSync(built!, 'utf8'), 'a whole pyramid');
    assert.deepEqual(readdirSync(dir), [path.basename(built!)]);
  });

  it('concurrent builders (two processes sharing the directory, several requests in one): the work is done once, readers only ever see the whole file', async () => {
    const dir = tempDir();
    const one = new PyramidCache({ dir, maxBytes: 1e9 });
    const other = new PyramidCache({ dir, maxBytes: 1e9 });
    const key = one.key(source);
    let writes = 0;
    const slowWrite = async (file: string) => {
      writes++;
      await writeFile(file, 'part');
      await sleep(150);
      // Nothing under the final name while the build runs.
      assert.equal(one.find(key), null);
      await writeFile(file, 'the whole pyramid');
    };
    const results = await Promise.all([one.build(key, slowWrite), one.build(key, slowWrite), other.build(key, slowWrite)]);
    assert.equal(writes, 1);
    assert.equal(results[0], one.pathOf(key));
    assert.equal(results[1], results[0], 'the second request in the same process joins the first build');
    assert.equal(results[2], null, 'the other process sees the lock and leaves the build alone');
    assert.equal(readFileSync(one.pathOf(key), 'utf8'), 'the whole pyramid');
    // Once built, the other finds it without building.
    assert.equal(await other.build(key, slowWrite), one.pathOf(key));
    assert.equal(writes, 1);
  });

  it('a builder killed midway (SIGKILL): no pyramid appears, its stale lock is taken over and its temporary file removed', async () => {
    const dir = tempDir();
    const script = path.join(tempDir(), 'builder.mts');
    const module = path.join(ROOT, 'src/engine/plain/pyramid-cache.ts');
    writeFileSync(
      script,
      `import { writeFile } from 'node:fs/promises';
import { PyramidCache } from ${JSON.stringify(module)};
const cache = new PyramidCache({ dir: ${JSON.stringify(dir)}, maxBytes: 1e9, staleMs: 400 });
await cache.build(cache.key(${JSON.stringify(source)}), async (file) => {
  await writeFile(file, 'part of a pyramid');
  process.stdout.write('writing\\n');
  await new Promise(() => setInterval(() => undefined, 1000));
});
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('writing') && resolve());
      child.on('exit', (code) => reject(new Error(`the builder ended early (${code})`)));
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));

    const cache = new PyramidCache({ dir, maxBytes: 1e9, staleMs: 400 });
    const key = cache.key(source);
    assert.equal(cache.find(key), null, 'no pyramid from a killed build');
    assert.ok(existsSync(path.join(dir, `${key}.lock`)), 'the dead builder left its lock');
    // While the lock is fresh, another builder leaves it alone.
    assert.equal(await cache.build(key, (file) => writeFile(file, 'ours')), null);
    await sleep(500);
    const built = await cache.build(key, (file) => writeFile(file, 'ours'));
    assert.equal(built, cache.pathOf(key));
    assert.equal(readFileSync(built!, 'utf8'), 'ours');
    // The dead builder's temporary file is gone with the clean-up after the build.
    assert.deepEqual(readdirSync(dir), [`${key}.tif`]);
  });

  it('the directory is kept under its size: the least recently used pyramids go first', async () => {
    const dir = tempDir();
    const cache = new PyramidCache({ dir, maxBytes: 2500 });
    const keys = ['a', 'b', 'c'].map((name) => cache.key({ ...source, path: `/images/${name}.jpg` }));
    const now = Date.now() / 1000;
    for (const [i, key] of keys.slice(0, 2).entries()) {
      await cache.build(key, (file) => writeFile(file, Buffer.alloc(1000)));
      // a used an hour ago, b a minute ago.
      const when = now - (i === 0 ? 3600 : 60);
      utimesSync(cache.pathOf(key), when, when);
    }
    // A use of a makes b the least recently used.
    assert.ok(cache.find(keys[0]!));
    await sleep(50);
    await cache.build(keys[2]!, (file) => writeFile(file, Buffer.alloc(1000)));
    assert.ok(existsSync(cache.pathOf(keys[0]!)), 'a, used lately, stays');
    assert.ok(!existsSync(cache.pathOf(keys[1]!)), 'b, least recently used, is removed');
    assert.ok(existsSync(cache.pathOf(keys[2]!)));
  });
});
