/**
 * Pyramid TIFFs built from big non-pyramidal images, kept in a directory that several processes
 * (workers, instances on one host or on a shared disk) may use at once. A pyramid is named after
 * the source file's path, size and modification time, so a replaced file never finds the old one.
 *
 * Why it is safe:
 * - a builder writes to a name of its own and renames it onto the final name when complete; rename
 *   is atomic, so a reader sees either no pyramid or a whole one, never a half-written file (a
 *   killed or failed builder leaves only its temporary file, removed by the next clean-up);
 * - a lock file (created exclusively) lets one builder work while the others keep serving from the
 *   source; the builder touches it as it goes, and a lock nobody touched for `staleMs` (its builder
 *   died) is taken over. If two builders ever run at once, both still rename complete files: the
 *   lock saves work, correctness does not depend on it;
 * - the directory is kept under `maxBytes` by removing the least recently used pyramids (each use
 *   touches the file's time); a process still reading a removed file keeps its open descriptor.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';

export interface PyramidCacheOptions {
  dir: string;
  /** Most bytes of pyramids kept; the least recently used go first. */
  maxBytes: number;
  /** A lock (or temporary file) untouched this long belongs to a dead builder. */
  staleMs?: number;
  /** How often a builder touches its lock. */
  heartbeatMs?: number;
  /**
   * How long a pyramid whose build failed is not tried again by this process: a damaged file
   * would otherwise cost a failed pass over it every time it is opened.
   */
  retryFailedMs?: number;
}

/** What names a source file's pyramid: a changed file is another file. */
export interface SourceIdentity {
  path: string;
  size: number;
  mtimeSeconds: number;
}

const SUFFIX = '.tif';
const LOCK = '.lock';
const TEMPORARY = '.tmp';

export class PyramidCache {
  readonly dir: string;
  private readonly maxBytes: number;
  private readonly staleMs: number;
  private readonly heartbeatMs: number;
  private readonly retryFailedMs: number;
  /** Keys whose build failed, and when. */
  private readonly failed = new Map<string, number>();
  /** Builds running in this process, by key: a second request for one joins it. */
  private readonly building = new Map<string, Promise<string | null>>();
  private made: Promise<void> | null = null;

  constructor(options: PyramidCacheOptions) {
    this.dir = options.dir;
    this.maxBytes = options.maxBytes;
    this.staleMs = options.staleMs ?? 60_000;
    this.heartbeatMs = options.heartbeatMs ?? Math.max(10, Math.floor(this.staleMs / 6));
    this.retryFailedMs = options.retryFailedMs ?? 10 * 60_000;
  }

  key(source: SourceIdentity): string {
    return createHash('sha256').update(`${source.path}\0${source.size}\0${source.mtimeSeconds}`).digest('hex').slice(0, 40);
  }

  pathOf(key: string): string {
    return join(this.dir, key + SUFFIX);
  }

  /** The finished pyramid's path, or null; a hit counts as a use for the LRU clean-up. */
  find(key: string): string | null {
    const path = this.pathOf(key);
    if (!existsSync(path)) return null;
    const now = new Date();
    void utimes(path, now, now).catch(() => undefined);
    return path;
  }

  /**
   * Deletes a finished pyramid (`iipsrv purge`); processes that have it open keep reading their
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
   * Builds the pyramid unless it exists or another builder holds the lock.
   * @param write writes the whole pyramid TIFF to the path it is given
   * @returns the finished pyramid's path, or null when another builder is at work or the last
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
    await (this.made ??= mkdir(this.dir, { recursive: true }).then(() => undefined));
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

  /** Removes the least recently used pyramids beyond the size bound, and dead builders' temporary files. */
  async clean(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const pyramids: Array<{ path: string; size: number; used: number }> = [];
    const now = Date.now();
    for (const name of names) {
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => null);
      if (!info?.isFile()) continue;
      if (name.endsWith(SUFFIX)) pyramids.push({ path, size: info.size, used: info.mtimeMs });
      else if (name.endsWith(TEMPORARY) && now - info.mtimeMs > this.staleMs) await unlink(path).catch(() => undefined);
    }
    let total = pyramids.reduce((sum, p) => sum + p.size, 0);
    pyramids.sort((a, b) => a.used - b.used);
    for (const pyramid of pyramids) {
      if (total <= this.maxBytes) break;
      await unlink(pyramid.path).catch(() => undefined);
      total -= pyramid.size;
    }
  }
}
