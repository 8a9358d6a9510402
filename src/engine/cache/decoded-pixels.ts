/**
 * Decoded pixels kept between requests, bounded in bytes, least recently used first out. A viewer
 * reads tile after tile of the same picture, so what one decode produced serves the next ones; and
 * decodes of one key asked for at the same time share one run. Used for the JPEG2000 levels and
 * blocks and for small images without a pyramid.
 */
export class DecodedPixelsCache<T extends { data: ArrayBufferView }> {
  private readonly entries = new Map<string, T>();
  private readonly pending = new Map<string, Promise<T>>();
  private used = 0;

  constructor(private readonly capacityBytes: number) {}

  get bytes(): number {
    return this.used;
  }

  /** What is kept or being decoded under `key`, without decoding anything. */
  peek(key: string): T | Promise<T> | undefined {
    return this.touch(key) ?? this.pending.get(key);
  }

  async get(key: string, decode: () => Promise<T>): Promise<T> {
    const hit = this.touch(key);
    if (hit) return hit;
    const running = this.pending.get(key);
    if (running) return running;
    const decoding = decode().finally(() => this.pending.delete(key));
    this.pending.set(key, decoding);
    const pixels = await decoding;
    this.store(key, pixels);
    return pixels;
  }

  /** Drops every entry whose key starts with `prefix` (a closed or replaced file). */
  forget(prefix: string): void {
    for (const [key, entry] of this.entries) {
      if (!key.startsWith(prefix)) continue;
      this.entries.delete(key);
      this.used -= entry.data.byteLength;
    }
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }

  /** The entry, made the most recently used. */
  private touch(key: string): T | undefined {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
    }
    return hit;
  }

  private store(key: string, pixels: T): void {
    const cost = pixels.data.byteLength;
    if (cost > this.capacityBytes || this.entries.has(key)) return;
    this.entries.set(key, pixels);
    this.used += cost;
    for (const [oldest, entry] of this.entries) {
      if (this.used <= this.capacityBytes) break;
      this.entries.delete(oldest);
      this.used -= entry.data.byteLength;
    }
  }
}
