/**
 * Files made from images (pyramids of big plain images, local copies of objects in a store), kept
 * in a directory that several processes (workers, instances on one host or on a shared disk) may
 * use at once. Each is named by a key its user derives from the image's identity and version, so a
 * replaced image never finds the old file.
 *
 * Why it is safe:
 * - a builder writes to a name of its own and renames it onto the final name when complete; rename
 *   is atomic, so a reader sees either no file or a whole one, never a half-written file (a
 *   killed or failed builder leaves only its temporary file, removed by the next clean-up);
 * - a lock file (created exclusively) lets one builder work while the others keep serving from the
 *   source; the builder touches it as it goes, and a lock nobody touched for `staleMs` (its builder
 *   died) is taken over. If two builders ever run at once, both still rename complete files: the
 *   lock saves work, correctness does not depend on it;
 * - the directory is kept under `maxBytes` by removing the least recently used files (each use
 *   touches the file's time); a process still reading a removed file keeps its open descriptor.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { makeDirectories } from '../../make-directories.js';

export interface FileCacheOptions {
  dir: string;
  /** What ends the names of the finished files (`.tif`). */
  suffix: string;
  /** Most bytes of files kept; the least recently used go first. */
  maxBytes: number;
  /** A lock (or temporary file) untouched this long belongs to a dead builder. */
  staleMs?: number;
  /** How often a builder touches its lock. */
  heartbeatMs?: number;
  /**
   * How long a file whose build failed is not tried again by this process: a damaged file
   * would otherwise cost a failed pass over it every time it is opened.
   */
  retryFailedMs?: number;
}

const LOCK = '.lock';
const TEMPORARY = '.tmp';

export class FileCache {
  readonly dir: string;
  private readonly suffix: string;
  private readonly maxBytes: number;
  private readonly staleMs: number;
  private readonly heartbeatMs: number;
  private readonly retryFailedMs: number;
  /** Keys whose build failed, and when. */
  private readonly failed = new Map<string, number>();
  /** Builds running in this process, by key: a second request for one joins it. */
  private readonly building = new Map<string, Promise<string | null>>();
  private made: Promise<void> | null = null;

  constructor(options: FileCacheOptions) {
    this.dir = options.dir;
    this.suffix = options.suffix;
    this.maxBytes = options.maxBytes;
    this.staleMs = options.staleMs ?? 60_000;
    this.heartbeatMs = options.heartbeatMs ?? Math.max(10, Math.floor(this.staleMs / 6));
    this.retryFailedMs = options.retryFailedMs ?? 10 * 60_000;
  }

  pathOf(key: string): string {
    return join(this.dir, key + this.suffix);
  }

  /** The finished file's path, or null; a hit counts as a use for the LRU clean-up. */
  find(key: string): string | null {
    const path = this.pathOf(key);
    if (!existsSync(path)) return null;
    const now = new Date();
    void utimes(path, now, now).catch(() => undefined);
    return path;
  }

  /**
   * Deletes a finished file (`iipsrv purge`); processes that have it open keep reading their
   * descriptor. False when there was none.
   */
  async remove(key: string): Promise<boolean> {
    try {
      await unlink(this.pathOf(key));
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }

  /**
   * Builds the file unless it exists or another builder holds the lock.
   * @param write writes the whole file to the path it is given
   * @returns the finished file's path, or null when another builder is at work or the last
   *   build of this key failed less than `retryFailedMs` ago
   * @throws what `write` throws (its temporary file is removed first)
   */
  build(key: string, write: (path: string) => Promise<void>): Promise<string | null> {
    const running = this.building.get(key);
    if (running) return running;
    const failedAt = this.failed.get(key);
    if (failedAt !== undefined && Date.now() - failedAt < this.retryFailedMs) return Promise.resolve(this.find(key));
    this.failed.delete(key);
    const task = this.buildOnce(key, write)
      .catch((error: unknown) => {
        this.failed.set(key, Date.now());
        throw error;
      })
      .finally(() => this.building.delete(key));
    this.building.set(key, task);
    return task;
  }

  private async buildOnce(key: string, write: (path: string) => Promise<void>): Promise<string | null> {
    const done = this.find(key);
    if (done) return done;
    await (this.made ??= makeDirectories(this.dir));
    const lock = join(this.dir, key + LOCK);
    if (!(await this.lock(lock))) return null;
    const heartbeat = setInterval(() => {
      const now = new Date();
      void utimes(lock, now, now).catch(() => undefined);
    }, this.heartbeatMs);
    heartbeat.unref();
    const temporary = join(this.dir, `${key}.${process.pid}.${randomBytes(6).toString('hex')}${TEMPORARY}`);
    try {
      // Someone may have finished between our look and our lock.
      const finished = this.find(key);
      if (finished) return finished;
      await write(temporary);
      await rename(temporary, this.pathOf(key));
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    } finally {
      clearInterval(heartbeat);
      await unlink(lock).catch(() => undefined);
    }
    await this.clean().catch(() => undefined);
    return this.pathOf(key);
  }

  /** Takes the lock, or a stale one over; false when a live builder holds it. */
  private async lock(lock: string): Promise<boolean> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await open(lock, 'wx');
        await handle.writeFile(`${process.pid}\n`);
        await handle.close();
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const held = await stat(lock).catch(() => null);
      if (held && Date.now() - held.mtimeMs < this.staleMs) return false;
      // Its builder died without removing it.
      await unlink(lock).catch(() => undefined);
    }
    return false;
  }

  /** Removes the least recently used files beyond the size bound, and dead builders' temporary files. */
  async clean(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const files: Array<{ path: string; size: number; used: number }> = [];
    const now = Date.now();
    for (const name of names) {
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => null);
      if (!info?.isFile()) continue;
      if (name.endsWith(this.suffix)) files.push({ path, size: info.size, used: info.mtimeMs });
      else if (name.endsWith(TEMPORARY) && now - info.mtimeMs > this.staleMs) await unlink(path).catch(() => undefined);
    }
    let total = files.reduce((sum, p) => sum + p.size, 0);
    files.sort((a, b) => a.used - b.used);
    for (const file of files) {
      if (total <= this.maxBytes) break;
      await unlink(file.path).catch(() => undefined);
      total -= file.size;
    }
  }
}
