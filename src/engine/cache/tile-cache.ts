/**
 * The two cache tiers behind one get/set: the worker's RAM first, then memcached (shared by
 * every worker and instance). A memcached hit is copied into RAM so the next one is local.
 */
import type { LruCache } from './lru.js';
import type { MemcachedTier } from './memcached.js';

export class TileCache {
  constructor(
    private readonly ram: LruCache | null,
    private readonly shared: MemcachedTier | null,
  ) {}

  async get(key: string): Promise<Buffer | null> {
    const local = this.ram?.get(key);
    if (local) return local;
    if (!this.shared) return null;
    const remote = await this.shared.get(key);
    if (remote) this.ram?.set(key, remote);
    return remote;
  }

  set(key: string, value: Buffer): void {
    this.ram?.set(key, value);
    this.shared?.set(key, value);
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
    };
  }

  close(): void {
    this.shared?.close();
  }
}
