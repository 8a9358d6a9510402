/**
 * The two cache tiers behind one get/set: the worker's RAM first, then memcached (shared by
 * every worker and instance). A memcached hit is copied into RAM so the next one is local.
 *
 * What is missing from both is computed once: concurrent requests for the same key in this
 * worker wait for the first one's result, and with memcached a short lease (an `add` of a lock
 * key that expires by itself) makes other workers and instances poll for the value a while
 * instead of decoding it too; past that wait they compute it themselves.
 */
import type { LruCache } from './lru.js';
import type { MemcachedTier } from './memcached.js';

export interface LeaseSettings {
  /** Longest a request waits for a value another worker or instance is computing; 0 = no lease. */
  waitMs: number;
  /** Between two looks at memcached while waiting. */
  pollMs: number;
}

export const DEFAULT_LEASE: LeaseSettings = { waitMs: 2000, pollMs: 25 };

/**
 * Where a value came from, for the access log: a tier that had it (`ram`, `memcached`), another
 * request's rendering waited for (`coalesced` in this worker, `lease` in another worker or
 * instance), or rendered for this request (`computed`, or `passthrough` when the stored bytes
 * were taken as they were).
 */
export type CacheTier = 'ram' | 'memcached' | 'coalesced' | 'lease' | 'computed' | 'passthrough';

export interface CacheResult {
  bytes: Buffer;
  tier: CacheTier;
}

/** A rendering under way, and who waits for it. */
interface Inflight {
  work: Promise<CacheResult>;
  /** Aborts the rendering: once every waiter that came with a signal has gone, and none without. */
  controller: AbortController;
  waiting: number;
  /** A caller without a signal waits: the rendering is never abandoned. */
  unbounded: boolean;
}

export class TileCache {
  private readonly inflight = new Map<string, Inflight>();
  /** Requests answered by another request's computation in this worker. */
  coalesced = 0;
  /** Values computed here (cache misses that rendered). */
  computed = 0;

  constructor(
    private readonly ram: LruCache | null,
    private readonly shared: MemcachedTier | null,
    private readonly lease: LeaseSettings = DEFAULT_LEASE,
  ) {}

  async get(key: string): Promise<CacheResult | null> {
    const local = this.ram?.get(key);
    if (local) return { bytes: local, tier: 'ram' };
    if (!this.shared) return null;
    const remote = await this.shared.get(key);
    if (!remote) return null;
    this.ram?.set(key, remote);
    return { bytes: remote, tier: 'memcached' };
  }

  set(key: string, value: Buffer): void {
    this.ram?.set(key, value);
    this.shared?.set(key, value);
  }

  /**
   * A value missing from the tiers (the caller has looked with get()): computed once however many
   * ask for it at the same time, stored in both tiers.
   * @param compute given a signal that aborts once every caller that passed a signal has gone (never
   *   while one without a signal waits); says whether it rendered or passed stored bytes through
   * @param signal this caller's: when it aborts, this caller stops waiting (rejected with its reason)
   */
  fill(key: string, compute: (signal?: AbortSignal) => Promise<CacheResult>, signal?: AbortSignal): Promise<CacheResult> {
    let entry = this.inflight.get(key);
    // A rendering all its callers left is ending: a new caller starts afresh.
    if (entry?.controller.signal.aborted) entry = undefined;
    const joined = entry !== undefined;
    if (entry) this.coalesced++;
    else {
      // Finished while this caller was looking in memcached.
      const local = this.ram?.peek(key);
      if (local) return Promise.resolve({ bytes: local, tier: 'ram' });
      const controller = new AbortController();
      const created: Inflight = { work: this.produce(key, () => compute(controller.signal)), controller, waiting: 0, unbounded: false };
      const forget = () => {
        if (this.inflight.get(key) === created) this.inflight.delete(key);
      };
      created.work.then(forget, forget);
      this.inflight.set(key, created);
      entry = created;
    }
    const answer = joined ? entry.work.then(({ bytes }) => ({ bytes, tier: 'coalesced' as const })) : entry.work;
    if (!signal) {
      entry.unbounded = true;
      return answer;
    }
    signal.throwIfAborted();
    const shared = entry;
    shared.waiting++;
    return new Promise<CacheResult>((resolve, reject) => {
      const leave = () => {
        shared.waiting--;
        if (shared.waiting === 0 && !shared.unbounded) shared.controller.abort(signal.reason);
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', leave, { once: true });
      answer.then(
        (value) => {
          signal.removeEventListener('abort', leave);
          resolve(value);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', leave);
          reject(error as Error);
        },
      );
    });
  }

  private async produce(key: string, compute: () => Promise<CacheResult>): Promise<CacheResult> {
    const shared = this.shared;
    const leased = shared !== null && this.lease.waitMs > 0 && (await shared.lease(key, Math.max(1, Math.ceil(this.lease.waitMs / 1000))));
    if (shared !== null && this.lease.waitMs > 0 && !leased) {
      const value = await shared.waitFor(key, this.lease.waitMs, this.lease.pollMs);
      if (value) {
        this.ram?.set(key, value);
        return { bytes: value, tier: 'lease' };
      }
    }
    try {
      this.computed++;
      const made = await compute();
      this.set(key, made.bytes);
      return made;
    } finally {
      if (leased) shared?.release(key);
    }
  }

  /** SIGHUP: the RAM tier only; memcached entries carry the file time in their key. */
  clear(): void {
    this.ram?.clear();
  }

  stats(): Record<string, number> {
    return {
      ramHits: this.ram?.hits ?? 0,
      ramMisses: this.ram?.misses ?? 0,
      ramEntries: this.ram?.size ?? 0,
      ramBytes: this.ram?.bytes ?? 0,
      memcachedHits: this.shared?.hits ?? 0,
      memcachedMisses: this.shared?.misses ?? 0,
      memcachedSkipped: this.shared?.skipped ?? 0,
      memcachedLeasesWaited: this.shared?.leasesWaited ?? 0,
      memcachedLeaseTimeouts: this.shared?.leaseTimeouts ?? 0,
      coalesced: this.coalesced,
      computed: this.computed,
    };
  }

  close(): void {
    this.shared?.close();
  }
}
