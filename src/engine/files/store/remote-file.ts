/**
 * One version of an object in a store, read like a local file: structure through the block cache,
 * tile data by exact ranges (merged and coalesced). Reads ask the store for that version only
 * (If-Match), so a file replaced while open fails with 'changed' instead of mixing two versions.
 */
import { checkRead, rangeInside, type RandomAccessFile, type ReadPurpose } from '../../tiff/positioned-file.js';
import type { BlockCache, BlockSource } from './block-cache.js';
import type { ObjectStore } from './object-store.js';
import { RangeReader } from './range-reader.js';

export interface RemoteObject {
  key: string;
  /** Location and version: what caches name it by. */
  identity: string;
  size: number;
  etag: string | null;
}

export class RemoteFile implements RandomAccessFile {
  readonly size: number;
  private readonly blockSource: BlockSource;
  private readonly ranges: RangeReader;

  constructor(
    store: ObjectStore,
    object: RemoteObject,
    private readonly blocks: BlockCache,
    /** Turns a store's failure into the error clients get. */
    failure: (error: unknown) => Error,
  ) {
    this.size = object.size;
    const fetch = async (start: number, end: number) => {
      try {
        return await store.read(object.key, start, end, object.etag);
      } catch (error) {
        throw failure(error);
      }
    };
    this.blockSource = { identity: object.identity, size: object.size, fetch };
    this.ranges = new RangeReader(fetch);
  }

  contains(position: number, length: number): boolean {
    return rangeInside(this.size, position, length);
  }

  async read(position: number, length: number, what: string, headroom = 0, purpose: ReadPurpose = 'structure'): Promise<Buffer> {
    checkRead(this.size, position, length, what);
    const buffer = Buffer.allocUnsafe(headroom + length);
    if (length === 0) return buffer;
    if (purpose === 'structure') await this.blocks.copy(this.blockSource, position, length, buffer, headroom);
    else (await this.ranges.read(position, position + length)).copy(buffer, headroom);
    return buffer;
  }

  /** Reads the structure blocks of a range ahead of their use (in parallel with other reads). */
  prefetch(position: number, length: number): Promise<void> {
    return this.blocks.prefetch(this.blockSource, position, length);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
