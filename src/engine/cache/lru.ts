/**
 * The in-RAM cache of finished tiles and regions, bounded in bytes (MAX_IMAGE_CACHE_SIZE).
 * A Map keeps insertion order, so re-inserting on every hit makes its first key the least
 * recently used one: eviction is O(1) without a linked list of our own.
 */

/** Per-entry bookkeeping charged on top of the bytes, so that many tiny entries stay bounded too. */
const ENTRY_OVERHEAD = 64;

interface Entry {
  value: Buffer;
  cost: number;
}

export class LruCache {
  private readonly entries = new Map<string, Entry>();
  private used = 0;
  hits = 0;
  misses = 0;

  constructor(private readonly capacityBytes: number) {}

  get size(): number {
    return this.entries.size;
  }

  get bytes(): number {
    return this.used;
  }

  get(key: string): Buffer | undefined {
    const entry = this.entries.get(key);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.hits++;
    return entry.value;
  }

  /** The value without counting a lookup nor refreshing its place. */
  peek(key: string): Buffer | undefined {
    return this.entries.get(key)?.value;
  }

  set(key: string, value: Buffer): void {
    // A small view of a big buffer (an encoder's worst-case output, a network read) would keep
    // all of it alive while being charged for its own length: keep a copy instead.
    if (value.byteLength > 4096 && value.byteLength < value.buffer.byteLength / 2) value = Buffer.from(value);
    const cost = value.length + key.length + ENTRY_OVERHEAD;
    // An entry larger than the whole cache would only evict everything else for nothing.
    if (cost > this.capacityBytes) return;
    const previous = this.entries.get(key);
    if (previous) {
      this.used -= previous.cost;
      this.entries.delete(key);
    }
    this.entries.set(key, { value, cost });
    this.used += cost;
    for (const [oldest, entry] of this.entries) {
      if (this.used <= this.capacityBytes) break;
      this.entries.delete(oldest);
      this.used -= entry.cost;
    }
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }
}
