/**
 * Images in an object store (FILESYSTEM_PREFIX `s3://bucket/prefix/` or `https://host/path/`): the
 * same names, suffixes and sequences as on a disk, read by byte ranges. What is asked of the store:
 * - a HEAD per image at most every REMOTE_CHECK_INTERVAL (the answer, found or missing, is kept
 *   that long), whose ETag versions every cache key, so a replaced object is never served stale;
 * - the structure of a TIFF in blocks, kept in RAM and shared through memcached;
 * - the bytes of the tiles a request touches, merged and coalesced;
 * - a whole copy only for what reads files itself (see object-copies.ts).
 */
import path from 'node:path';
import type { RemoteStoreConfig } from '../../../config.js';
import { AccessDeniedError, BadGatewayError, FileError, UnavailableError } from '../../../errors.js';
import type { MemcachedTier } from '../../cache/memcached.js';
import type { RandomAccessFile } from '../../tiff/positioned-file.js';
import { identifyByHead, type ImageFileInfo, type ImageFileStat } from '../image-file.js';
import { UnsafePathError } from '../image-path.js';
import type { DirectoryLister, ImageStorage } from '../storage.js';
import { BLOCK_BYTES, BlockCache } from './block-cache.js';
import { createObjectStore, type StoreCounts } from './index.js';
import { ObjectCopies } from './object-copies.js';
import { StoreError, type ObjectInfo, type ObjectStore } from './object-store.js';
import { RemoteFile, type RemoteObject } from './remote-file.js';

/** FILESYSTEM_PREFIX naming a store, and the REMOTE_* settings. */
export type RemoteSettings = RemoteStoreConfig;

/**
 * The end of a file read with its head when it is first opened: TIFF writers put the directories
 * of the smaller levels (libvips, libtiff) or all of them (some scanners) near the end, and each
 * directory found there is a round trip saved on a first view of the image. A hundredth of the
 * file, between two blocks and 1 MB.
 */
const TAIL_SHARE = 0.01;
const MAX_TAIL_BYTES = 1024 * 1024;

/** What /health asks the store about, below the prefix: whether it exists does not matter. */
const HEALTH_PROBE = '.iipsrv-health';

/** Answers (found or missing) remembered per worker; beyond this the oldest go. */
const MAX_LOOKS = 10_000;
/** Keys a sequence's directory may list. */
const MAX_LISTING = 10_000;

interface Look {
  checkedAt: number;
  info: Promise<ObjectInfo | null>;
  /** A look asked ahead of this one's expiry is under way. */
  renewing?: boolean;
}

/**
 * Past this share of the check interval, a request still takes the answer it has but asks the
 * store again in the background: an image being viewed never has a request wait for its HEAD,
 * and no answer is used longer than the interval.
 */
const RENEW_AHEAD = 0.75;

export function createRemoteStorage(settings: RemoteSettings, memcached: MemcachedTier | null): RemoteStorage {
  const shared = memcached ? { get: (key: string) => memcached.get(key, false), set: (key: string, value: Buffer) => memcached.set(key, value) } : null;
  const counts: StoreCounts = { requests: { head: 0, read: 0, download: 0, list: 0 }, failures: {} };
  const store = createObjectStore(settings.location, settings.timeouts, counts);
  return new RemoteStorage(store, settings, new BlockCache(settings.blockCacheBytes, shared), counts);
}

export class RemoteStorage implements ImageStorage {
  readonly local = false;
  readonly directories: DirectoryLister;
  /** What locations start with: `s3://bucket/` or the base URL. */
  private readonly base: string;
  private readonly looks = new Map<string, Look>();
  private readonly copies: ObjectCopies;

  constructor(
    private readonly store: ObjectStore,
    private readonly settings: RemoteSettings,
    private readonly blocks: BlockCache,
    private readonly counts: StoreCounts | null = null,
  ) {
    const { location } = settings;
    this.base = location.kind === 's3' ? `s3://${location.bucket}/` : location.baseUrl;
    this.copies = new ObjectCopies(store, { dir: settings.copiesDir, maxBytes: settings.copiesBytes, waitMs: this.waitMs() }, (error) => this.failure(error));
    this.directories = {
      // Stores keep no time for a "directory": its listing is trusted for one check interval.
      look: async () => {
        const interval = Math.max(1, settings.checkIntervalMs);
        return { version: Math.floor(Date.now() / interval) * interval, settleMs: 0 };
      },
      list: async (directory) => {
        const prefix = this.keyOf(directory) + '/';
        try {
          return (await this.store.list(prefix, MAX_LISTING)).map((key) => key.slice(prefix.length));
        } catch (error) {
          throw this.failure(error);
        }
      },
    };
  }

  /** Longest a request may wait for a whole download: every attempt of a read, and a margin. */
  private waitMs(): number {
    const { requestTimeoutMs, attempts, backoffMs } = this.settings.timeouts;
    return attempts * requestTimeoutMs + attempts * backoffMs * 4 + 1000;
  }

  resolve(name: string, suffix: string): string {
    if (name === '') throw new UnsafePathError('empty image name');
    if (name.includes('\0')) throw new UnsafePathError('image name contains a NUL byte');
    if (name.split(/[/\\]/).some((segment) => segment === '..')) throw new UnsafePathError('image name climbs out of the image directory');
    // As on a disk: `a//b` and `./a` are `a/b` and `a`; a leading slash joins the prefix.
    const key = path.posix.normalize(this.settings.keyPrefix + name + suffix).replace(/^\/+/, '');
    if (key === '.' || key.endsWith('/')) throw new UnsafePathError('image name names a directory');
    return this.base + key;
  }

  private keyOf(location: string): string {
    return location.slice(this.base.length);
  }

  async stat(location: string, printable: string): Promise<ImageFileStat> {
    const info = await this.info(location);
    if (!info) throw new FileError(`${printable} is neither a file nor part of an image sequence`);
    return {
      path: location,
      mtimeSeconds: Math.floor(info.lastModifiedMs / 1000),
      size: info.size,
      version: info.etag ?? `${info.size}:${info.lastModifiedMs}`,
      dev: 0,
      ino: 0,
    };
  }

  /** The store's answer for a location, asked at most once per check interval however many requests want it. */
  private info(location: string): Promise<ObjectInfo | null> {
    const now = Date.now();
    const interval = this.settings.checkIntervalMs;
    const known = this.looks.get(location);
    if (known && now - known.checkedAt < interval) {
      if (!known.renewing && now - known.checkedAt >= interval * RENEW_AHEAD) this.renew(location, known);
      return known.info;
    }
    return this.look(location, now);
  }

  /** Asks the store, and keeps the answer from `now` on (a failure is not kept: the next request asks again). */
  private look(location: string, now: number): Promise<ObjectInfo | null> {
    const info = this.store.head(this.keyOf(location)).catch((error: unknown) => {
      if (this.looks.get(location)?.info === info) this.looks.delete(location);
      throw this.failure(error);
    });
    this.looks.delete(location);
    this.looks.set(location, { checkedAt: now, info });
    if (this.looks.size > MAX_LOOKS) this.looks.delete(this.looks.keys().next().value!);
    return info;
  }

  /** The next answer, asked before this one expires; it replaces it once it has come. */
  private renew(location: string, known: Look): void {
    known.renewing = true;
    const asked = Date.now();
    this.store.head(this.keyOf(location)).then(
      (info) => {
        if (this.looks.get(location) !== known) return;
        this.looks.delete(location);
        this.looks.set(location, { checkedAt: asked, info: Promise.resolve(info) });
      },
      // The answer in hand runs out as it would have; the request after that asks itself.
      () => undefined,
    );
  }

  private object(file: ImageFileStat): RemoteObject {
    return {
      key: this.keyOf(file.path),
      identity: `${file.path}\0${file.version}`,
      size: file.size,
      etag: file.version.startsWith('"') || file.version.startsWith('W/') ? file.version : null,
    };
  }

  async identify(file: ImageFileStat, printable: string): Promise<ImageFileInfo> {
    const opened = this.open(file);
    const tail = Math.min(file.size, Math.max(2 * BLOCK_BYTES, Math.min(MAX_TAIL_BYTES, Math.round(file.size * TAIL_SHARE))));
    const [head] = await Promise.all([
      opened.read(0, Math.min(16, file.size), 'the file head'),
      // Only a help: a failure shows again where the bytes are needed.
      opened.prefetch(file.size - tail, tail).catch(() => undefined),
    ]);
    return identifyByHead(file, head, printable);
  }

  openRandomAccess(file: ImageFileInfo): Promise<RandomAccessFile> {
    return Promise.resolve(this.open(file));
  }

  private open(file: ImageFileStat): RemoteFile {
    return new RemoteFile(this.store, this.object(file), this.blocks, (error) => {
      // Read against a version that is gone: look again at the next request.
      if (error instanceof StoreError && (error.kind === 'changed' || error.kind === 'missing')) this.looks.delete(file.path);
      return this.failure(error);
    });
  }

  localPath(file: ImageFileInfo, printable: string): Promise<string> {
    return this.copies.path(this.object(file), printable);
  }

  usable(file: ImageFileInfo): boolean {
    return this.copies.usable(this.object(file).identity);
  }

  async check(): Promise<{ ok: boolean; folder: string; error?: string }> {
    const folder = this.base + this.settings.keyPrefix;
    try {
      // Any answer but a refusal or silence will do: the probe need not exist. A name of its own,
      // not the prefix: a web server refuses (403) a HEAD of a directory it does not list.
      await this.store.head(`${this.settings.keyPrefix}${HEALTH_PROBE}`);
      return { ok: true, folder };
    } catch (error) {
      return { ok: false, folder, error: error instanceof StoreError ? error.kind : (error as Error).message };
    }
  }

  async listTop(limit: number): Promise<string[]> {
    // A prefix that ends inside a name (`img_`) lists its directory, keeping what starts so.
    const slash = this.settings.keyPrefix.lastIndexOf('/');
    const directory = this.settings.keyPrefix.slice(0, slash + 1);
    try {
      const keys = await this.store.list(directory, limit);
      return keys.filter((key) => key.startsWith(this.settings.keyPrefix)).map((key) => key.slice(this.settings.keyPrefix.length));
    } catch (error) {
      throw this.failure(error);
    }
  }

  /** For /metrics: requests to the store and their failures, by kind; structure blocks by where they came from. */
  stats(): Record<string, number> {
    const stats: Record<string, number> = { blocksFromStore: this.blocks.fetched, blocksFromMemcached: this.blocks.shared };
    if (this.counts) {
      for (const [kind, count] of Object.entries(this.counts.requests)) stats[`request:${kind}`] = count;
      for (const [kind, count] of Object.entries(this.counts.failures)) stats[`failure:${kind}`] = count ?? 0;
    }
    return stats;
  }

  /** SIGHUP: forget what the store said, and the blocks read. */
  flush(): void {
    this.looks.clear();
    this.blocks.clear();
  }

  /**
   * The error clients get for a store's failure, its message naming neither the store nor the
   * key (clients see the image's name in the message of the request's own error handling).
   */
  private failure(error: unknown): Error {
    if (!(error instanceof StoreError)) return error instanceof Error ? error : new Error(String(error));
    const reason = { cause: error };
    switch (error.kind) {
      case 'missing':
        return new FileError('the image is missing from the image store', reason);
      case 'denied':
        return new AccessDeniedError('the image store refused access to the image', reason);
      case 'changed':
        return new UnavailableError('the image changed in the image store while it was read; try again', reason);
      case 'invalid':
        return new BadGatewayError('the image store gave an answer that cannot be used', reason);
      default:
        return new UnavailableError('the image store is not answering; try again later', reason);
    }
  }
}
