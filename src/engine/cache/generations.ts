/**
 * Per-image cache generations: how `iipsrv purge` reaches entries it cannot name. memcached keys
 * are hashes and memcached cannot list them, so instead of deleting an image's tiles and regions
 * a purge gives the image a new generation, kept in memcached under a key of its own; every cache
 * key of the image carries it, so everything cached before (in memcached and in every worker's
 * RAM, whichever protocol asked) is never looked up again and ages out.
 *
 * A generation is a fresh random token, never a counter: were its key evicted and the image purged
 * again, a counter could come back to a value whose entries still exist.
 *
 * Servers keep each image's generation for `checkMs` and then ask memcached again (one lookup per
 * image per interval, shared by the requests that arrive meanwhile), so a purge takes effect
 * within that time. A memcached that does not answer leaves the last known generation in use:
 * requests neither fail nor wait beyond the tier's deadline.
 */
import { randomBytes } from 'node:crypto';
import type { MemcachedTier } from './memcached.js';

interface Known {
  generation: string;
  checkedAt: number;
  /** The lookup under way, which requests arriving meanwhile share. */
  looking: Promise<string> | null;
}

/** The generation of an image never purged: cache keys stay as they were before generations existed. */
export const FIRST_GENERATION = '';

export class CacheGenerations {
  private readonly known = new Map<string, Known>();

  /**
   * @param tier where generations live; null: no memcached, so no generations (every image keeps
   *   the first; a purge then has nothing to reach)
   * @param checkMs how long a generation read from memcached is used before asking again
   * @param maxEntries images whose generation is remembered; the least recently checked go first
   */
  constructor(
    private readonly tier: MemcachedTier | null,
    private readonly checkMs: number,
    private readonly maxEntries = 10_000,
  ) {}

  /** memcached's key for the generation of the image file at `path`. */
  private static keyOf(path: string): string {
    return `generation\0${path}`;
  }

  /**
   * The generation of the image file at `path`: at once while the last check is recent, else
   * after one memcached lookup (bounded by the tier's deadline).
   */
  current(path: string): string | Promise<string> {
    if (!this.tier) return FIRST_GENERATION;
    const known = this.known.get(path);
    if (known && (known.looking || Date.now() - known.checkedAt < this.checkMs)) return known.looking ?? known.generation;
    return this.check(path, known?.generation ?? FIRST_GENERATION);
  }

  private check(path: string, previous: string): Promise<string> {
    const entry: Known = { generation: previous, checkedAt: Date.now(), looking: null };
    this.known.delete(path);
    this.known.set(path, entry);
    while (this.known.size > this.maxEntries) this.known.delete(this.known.keys().next().value!);
    entry.looking = this.tier!.lookUp(CacheGenerations.keyOf(path)).then((answer) => {
      // No answer: keep what was known; the next check after the interval asks again.
      if (answer) entry.generation = answer.value?.toString('utf8') ?? FIRST_GENERATION;
      entry.checkedAt = Date.now();
      entry.looking = null;
      return entry.generation;
    });
    return entry.looking;
  }

  /** SIGHUP: every image's generation is read afresh at its next request. */
  clear(): void {
    this.known.clear();
  }

  /**
   * Gives the image file at `path` a new generation (a purge): its cached entries become
   * unreachable for every server within their check interval, and at once for this process.
   * @throws Error without memcached, or when memcached does not confirm the new generation
   */
  async renew(path: string): Promise<string> {
    if (!this.tier) throw new Error('there is no memcached (MEMCACHED_SERVERS) to keep generations in');
    const generation = randomBytes(9).toString('base64url');
    await this.tier.store(CacheGenerations.keyOf(path), Buffer.from(generation, 'utf8'));
    this.known.delete(path);
    this.known.set(path, { generation, checkedAt: Date.now(), looking: null });
    return generation;
  }
}
