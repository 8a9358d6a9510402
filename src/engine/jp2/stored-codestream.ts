/**
 * A JPEG2000 file in an object store as the persistent helper reads it (jp2/helper.ts), each read
 * fetched the way that suits it:
 * - the boxes and the main header (up to the first tile-part): the store's structure blocks, read
 *   already to parse the header, kept and shared through memcached;
 * - small reads after it: OpenJPEG's look at the header of each tile-part it skips (its 4 KB
 *   buffer, native/jp2-decoder.c), which every decode of the image makes again, walking the
 *   tile-parts in turn: fetched exactly and kept here, so that only the first decode waits for
 *   them; a 64 KB block each would cost more than the tile's own data;
 * - larger reads, tile-part data: exact ranges, merged and coalesced, and kept a while in a cache
 *   all stored JPEG2000 images share: a 1024x1024 codestream tile holds sixteen 256x256 tiles, and
 *   each of their decodes reads the whole tile-part (OpenJPEG reads tile-parts whole), so a viewer
 *   asking for neighbouring tiles would otherwise fetch the same tile-part sixteen times.
 * OpenJPEG (2.5.0) finds the tile-parts by walking them, one look after the other: a round trip to
 * the store for each tile-part of the image on its first decode. When the main header has TLM
 * markers (the length of every tile-part), all the looks are asked for at once instead, at the
 * first decode's first read past the main header.
 */
import type { LruCache } from '../cache/lru.js';
import type { RandomAccessFile } from '../tiff/positioned-file.js';
import type { RangedJp2 } from './decoder.js';

/** Reads after the main header up to this size are looks at tile-part headers. */
const LOOK_BYTES = 4096;
/** The looks kept per image: a 4 KB look at each of 1000 tile-parts. Beyond it, they are fetched each time. */
const MAX_KEPT_LOOK_BYTES = 4 * 1024 * 1024;
const WHAT = 'the JPEG2000 codestream';

export class StoredCodestream implements RangedJp2 {
  private readonly looks = new Map<string, Promise<Buffer>>();
  private keptBytes = 0;
  /** Where each tile-part starts, from the TLM markers; null once their looks were asked for, or without TLM. */
  private tilePartStarts: number[] | null;

  constructor(
    private readonly file: RandomAccessFile,
    /** Where the first tile-part starts: what lies before it is read as structure. */
    private readonly tilePartsOffset: number,
    /** Every tile-part's length (TLM), or null. */
    tilePartLengths: number[] | null,
    readonly localPath: () => Promise<string>,
    /** Where tile-parts read are kept (shared by every stored image), and this image's name in it. */
    private readonly tileParts: { cache: LruCache | null; identity: string } = { cache: null, identity: '' },
  ) {
    this.tilePartStarts = tilePartLengths ? startsOf(tilePartsOffset, tilePartLengths, file.size) : null;
  }

  get size(): number {
    return this.file.size;
  }

  read(offset: number, length: number): Promise<Buffer> {
    if (offset + length <= this.tilePartsOffset) return this.file.read(offset, length, WHAT, 0, 'structure');
    this.askForAllLooks();
    if (length > LOOK_BYTES) return this.tilePart(offset, length);
    return this.look(offset, length);
  }

  private async tilePart(offset: number, length: number): Promise<Buffer> {
    const { cache, identity } = this.tileParts;
    const key = `${identity}\0${offset}+${length}`;
    const kept = cache?.get(key);
    if (kept) return kept;
    const bytes = await this.file.read(offset, length, WHAT, 0, 'data');
    cache?.set(key, bytes);
    return bytes;
  }

  private look(offset: number, length: number): Promise<Buffer> {
    const key = `${offset}+${length}`;
    const known = this.looks.get(key);
    if (known) return known;
    const reading = this.file.read(offset, length, WHAT, 0, 'data');
    // Kept once read: a failure, or a read still under way, is asked for again (reads of the same
    // range at once are one request to the store anyway, files/store/range-reader.ts).
    void reading.then(
      () => {
        if (this.looks.has(key) || this.keptBytes + length > MAX_KEPT_LOOK_BYTES) return;
        this.looks.set(key, reading);
        this.keptBytes += length;
      },
      () => undefined,
    );
    return reading;
  }

  /** The looks OpenJPEG is about to take one by one, all at once (a failure shows where it is needed). */
  private askForAllLooks(): void {
    const starts = this.tilePartStarts;
    if (!starts) return;
    this.tilePartStarts = null;
    for (const start of starts) this.look(start, Math.min(LOOK_BYTES, this.file.size - start)).catch(() => undefined);
  }
}

/** The tile-parts' offsets, or null when they run past the file or are more than are kept. */
function startsOf(first: number, lengths: number[], size: number): number[] | null {
  if (lengths.length * LOOK_BYTES > MAX_KEPT_LOOK_BYTES) return null;
  const starts: number[] = [];
  let at = first;
  for (const length of lengths) {
    if (at >= size) return null;
    starts.push(at);
    at += length;
  }
  return starts;
}
