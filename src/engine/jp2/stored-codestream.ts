/**
 * A JPEG2000 file in an object store as the persistent helper reads it (jp2/helper.ts), each read
 * fetched the way that suits it:
 * - the boxes and the main header (up to the first tile-part): the store's structure blocks, read
 *   already to parse the header, kept and shared through memcached;
 * - small reads after it: OpenJPEG's look at the header of each tile-part it skips (its 4 KB
 *   buffer, native/jp2-decoder.c), which every decode of the image makes again, walking the
 *   tile-parts in turn: fetched exactly and kept here, so that only the first decode waits for
 *   them; a 64 KB block each would cost more than the tile's own data;
 * - larger reads, tile-part data: exact ranges, merged and coalesced, not kept (the decoded tile
 *   is what the caches keep).
 */
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

  constructor(
    private readonly file: RandomAccessFile,
    /** Where the first tile-part starts: what lies before it is read as structure. */
    private readonly tilePartsOffset: number,
    readonly localPath: () => Promise<string>,
  ) {}

  get size(): number {
    return this.file.size;
  }

  read(offset: number, length: number): Promise<Buffer> {
    if (offset + length <= this.tilePartsOffset) return this.file.read(offset, length, WHAT, 0, 'structure');
    if (length > LOOK_BYTES) return this.file.read(offset, length, WHAT, 0, 'data');
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
}
