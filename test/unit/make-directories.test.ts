/**
 * Making the folders of LOGFILE, ACCESS_LOG, PYRAMID_CACHE_DIR and REMOTE_CACHE_DIR: nested ones
 * are made, and a path that cannot be made fails at once; Node's own recursive mkdir never
 * returns for `/proc/nope/...`.
 */
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { makeDirectories, makeDirectoriesSync } from '../../src/make-directories.ts';
import { tempDir } from '../helpers/daemon.ts';

describe('making folders', () => {
  it('makes nested folders, and accepts ones that exist', async () => {
    const root = tempDir();
    makeDirectoriesSync(path.join(root, 'a/b/c'));
    makeDirectoriesSync(path.join(root, 'a/b/c'));
    await makeDirectories(path.join(root, 'x/y/z'));
    await Promise.all(Array.from({ length: 4 }, () => makeDirectories(path.join(root, 'p/q'))));
    for (const dir of ['a/b/c', 'x/y/z', 'p/q']) assert.ok(statSync(path.join(root, dir)).isDirectory());
  });
  it('fails at once where a folder cannot be: under /proc, under a file', async () => {
    assert.throws(() => makeDirectoriesSync('/proc/nope/logs'), { code: 'ENOENT' });
    await assert.rejects(makeDirectories('/proc/nope/cache'), { code: 'ENOENT' });
    const file = path.join(tempDir(), 'file');
    writeFileSync(file, 'x');
    assert.throws(() => makeDirectoriesSync(path.join(file, 'sub')), { code: 'ENOTDIR' });
    await assert.rejects(makeDirectories(file), { code: 'EEXIST' });
  });
});
