/**
 * Decoded JPEG2000 pixels kept for the tiles they contain, bounded in bytes: whole small levels (a
 * small level costs one decode of all of it: the codec reads every codestream tile for it anyway)
 * and 512x512 blocks of larger ones that a viewer is reading tile after tile. Decodes of the same
 * key asked for at the same time share one child.
 */
import type { DecodedPixels } from './pnm.js';

export class DecodedLevelCache {
  private readonly entries = new Map<string, DecodedPixels>();
  private readonly pending = new Map<string, Promise<DecodedPixels>>();
  private used = 0;

  constructor(private readonly capacityBytes: number) {}

  get bytes(): number {
    return this.used;
  }

  /** What is kept or being decoded under `key`, without decoding anything. */
  peek(key: string): DecodedPixels | Promise<DecodedPixels> | undefined {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    return this.pending.get(key);
  }

  async get(key: string, decode: () => Promise<DecodedPixels>): Promise<DecodedPixels> {
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

  private store(key: string, pixels: DecodedPixels): void {
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
