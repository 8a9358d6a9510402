/**
 * Small non-pyramidal images decoded whole, one entry a level, bounded in bytes (PLAIN_CACHE_SIZE):
 * a viewer reads tile after tile of the same image, and decoding a PNG or JPEG again for each would
 * cost its whole decode every time. Decodes of one key asked for at once share one run.
 */
import type { RawPixels } from '../source.js';

export class DecodedImages {
  private readonly entries = new Map<string, RawPixels>();
  private readonly pending = new Map<string, Promise<RawPixels>>();
  private used = 0;

  constructor(private readonly capacityBytes: number) {}

  get bytes(): number {
    return this.used;
  }

  async get(key: string, decode: () => Promise<RawPixels>): Promise<RawPixels> {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    const running = this.pending.get(key);
    if (running) return running;
    const decoding = decode().finally(() => this.pending.delete(key));
    this.pending.set(key, decoding);
    const pixels = await decoding;
    this.store(key, pixels);
    return pixels;
  }

  private store(key: string, pixels: RawPixels): void {
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
}
