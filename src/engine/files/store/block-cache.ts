/**
 * The structure of files in a store (TIFF headers, directories, tile arrays) in whole blocks, kept
 * in RAM per worker and shared through memcached: structure reads are small and close together
 * (a directory, then its tag values), so one block fetched serves the next reads, and an instance
 * that starts, or opens an image another instance has read, gets the blocks from memcached instead
 * of going back to the store for each of them.
 *
 * What is missing of a read is fetched once: contiguous missing blocks in one ranged request, and
 * a block another read is already fetching is waited for, not fetched again.
 */
import { LruCache } from '../../cache/lru.js';

/** The memcached tier's part we use: lookups that never fail nor wait long, fire-and-forget sets. */
export interface SharedBlocks {
  get(key: string): Promise<Buffer | null>;
  set(key: string, value: Buffer): void;
}

/** One version of one object, as the cache reads it. */
export interface BlockSource {
  /** Location and version: a replaced object has other blocks. */
  identity: string;
  size: number;
  /** Bytes [start, end) from the store. */
  fetch(start: number, end: number): Promise<Buffer>;
}

/** Large enough that a TIFF directory and its tag values usually share a block, small enough to waste little. */
export const BLOCK_BYTES = 64 * 1024;

export class BlockCache {
  private readonly ram: LruCache | null;
  private readonly fetching = new Map<string, Promise<Buffer>>();
  /** Blocks fetched from the store, and found in memcached (for tests and metrics). */
  fetched = 0;
  shared = 0;

  constructor(
    maxBytes: number,
    private readonly sharedTier: SharedBlocks | null,
    private readonly blockBytes = BLOCK_BYTES,
  ) {
    this.ram = maxBytes > 0 ? new LruCache(maxBytes) : null;
  }

  /** Copies bytes [position, position + length) of `source` into `target` at `at`. */
  async copy(source: BlockSource, position: number, length: number, target: Buffer, at: number): Promise<void> {
    const first = Math.floor(position / this.blockBytes);
    const last = Math.floor((position + length - 1) / this.blockBytes);
    const blocks = await this.blocks(source, first, last);
    for (let index = first; index <= last; index++) {
      const block = blocks[index - first]!;
      const blockStart = index * this.blockBytes;
      const from = Math.max(position, blockStart) - blockStart;
      const to = Math.min(position + length, blockStart + block.length) - blockStart;
      block.copy(target, at + blockStart + from - position, from, to);
    }
  }

  /** Fetches (or finds) the blocks of bytes [position, position + length) for reads to come. */
  async prefetch(source: BlockSource, position: number, length: number): Promise<void> {
    if (length <= 0) return;
    await this.blocks(source, Math.floor(position / this.blockBytes), Math.floor((position + length - 1) / this.blockBytes));
  }

  clear(): void {
    this.ram?.clear();
  }

  private key(source: BlockSource, index: number): string {
    return `blk\0${source.identity}\0${index}`;
  }

  private async blocks(source: BlockSource, first: number, last: number): Promise<Buffer[]> {
    const found: Array<Promise<Buffer> | undefined> = [];
    const missing: number[] = [];
    for (let index = first; index <= last; index++) {
      const key = this.key(source, index);
      const kept = this.ram?.get(key);
      const known = kept ? Promise.resolve(kept) : this.fetching.get(key);
      found.push(known);
      if (!known) missing.push(index);
    }
    if (missing.length > 0) {
      // Registered before anything is awaited, so that concurrent reads wait for these fetches.
      const loading = this.load(source, missing);
      missing.forEach((index, i) => {
        const key = this.key(source, index);
        const block = loading.then((blocks) => blocks[i]!);
        this.fetching.set(key, block);
        found[index - first] = block;
        void block.then(
          (value) => {
            this.ram?.set(key, value);
            this.fetching.delete(key);
          },
          () => this.fetching.delete(key),
        );
      });
    }
    return Promise.all(found as Array<Promise<Buffer>>);
  }

  /** The blocks `indices` (ascending): from memcached where it has them, the rest from the store. */
  private async load(source: BlockSource, indices: number[]): Promise<Buffer[]> {
    const blocks: Array<Buffer | null> = this.sharedTier
      ? await Promise.all(indices.map((index) => this.sharedTier!.get(this.key(source, index))))
      : indices.map(() => null);
    for (let i = 0; i < indices.length; i++) {
      // A value of the wrong length is not ours (or is damaged): fetch it.
      if (blocks[i] && blocks[i]!.length !== this.blockLength(source, indices[i]!)) blocks[i] = null;
      if (blocks[i]) this.shared++;
    }
    const runs: Array<{ from: number; to: number }> = [];
    for (let i = 0; i < indices.length; i++) {
      if (blocks[i]) continue;
      const run = runs.at(-1);
      if (run && run.to === i - 1 && indices[i - 1] === indices[i]! - 1) run.to = i;
      else runs.push({ from: i, to: i });
    }
    await Promise.all(
      runs.map(async ({ from, to }) => {
        const start = indices[from]! * this.blockBytes;
        const end = Math.min(source.size, (indices[to]! + 1) * this.blockBytes);
        const bytes = await source.fetch(start, end);
        for (let i = from; i <= to; i++) {
          const offset = (indices[i]! - indices[from]!) * this.blockBytes;
          // Copied out: a block kept must not pin the whole run's buffer.
          const block = Buffer.from(bytes.subarray(offset, offset + this.blockLength(source, indices[i]!)));
          blocks[i] = block;
          this.fetched++;
          this.sharedTier?.set(this.key(source, indices[i]!), block);
        }
      }),
    );
    return blocks as Buffer[];
  }

  private blockLength(source: BlockSource, index: number): number {
    return Math.min(this.blockBytes, source.size - index * this.blockBytes);
  }
}
