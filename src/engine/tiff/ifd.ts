/**
 * TIFF/BigTIFF header and image file directory (IFD) parsing: entries are parsed from one read of
 * the directory; values are decoded on demand, from the entry itself (inline values), from the
 * bytes read together with the directory (libtiff writes most out-of-line values right after it),
 * or by one more read each, batched by {@link Ifd.preload}.
 */
import { TiffFormatError } from './errors.js';
import { FieldType, fieldTypeSize, tagName } from './tags.js';
import type { RandomAccessFile } from './positioned-file.js';

export interface TiffHeader {
  littleEndian: boolean;
  bigTiff: boolean;
  /** Offset of the first IFD (0: none). */
  firstIfd: number;
  /** 8 (classic) or 16 (BigTIFF): no IFD can start inside the header. */
  headerSize: number;
}

/** One directory entry. `position` is where the value bytes are in the file (inside the entry for inline values). */
export interface IfdEntry {
  tag: number;
  type: number;
  count: number;
  /** count × type size; Infinity if that does not fit in a safe integer. */
  byteLength: number;
  position: number;
  inline: boolean;
}

/** Directories with more entries than this are taken as corrupt (real files have a few dozen). */
export const MAX_IFD_ENTRIES = 10000;
/**
 * What reading one file's structure (directories and the tag values read with them) may cost,
 * whatever the file says: 1024 directories (pyramid.ts) of 64 entries each, and 64 MiB of tag
 * values (ICC profiles and XMP packets of a few MB included). Real files read a few dozen entries
 * and kilobytes; a crafted one with 65,530 directories cost seconds before these limits.
 */
export const MAX_TAG_ENTRIES = 65536;
export const MAX_TAG_BYTES = 64 * 1024 * 1024;

/** The entries and bytes read so far from one file, against {@link MAX_TAG_ENTRIES} and {@link MAX_TAG_BYTES}. */
export class StructureBudget {
  private entries = 0;
  private bytes = 0;

  spendEntries(count: number, what: string): void {
    if (this.entries + count > MAX_TAG_ENTRIES) {
      throw new TiffFormatError(`corrupt TIFF: ${what} brings the file to more than ${MAX_TAG_ENTRIES} tag entries (the most read from one file)`);
    }
    this.entries += count;
  }

  spendBytes(count: number, what: string): void {
    if (this.bytes + count > MAX_TAG_BYTES) {
      throw new TiffFormatError(
        `corrupt TIFF: ${what} brings the file to more than ${MAX_TAG_BYTES} bytes of directories and tag values (the most read from one file)`,
      );
    }
    this.bytes += count;
  }
}
/** Bytes read at a directory's offset: the entries and, usually, the out-of-line values written after them. */
const IFD_CHUNK = 8192;

export async function readHeader(source: RandomAccessFile): Promise<TiffHeader> {
  if (source.size === 0) throw new TiffFormatError('not a TIFF file: the file is empty');
  const head = await source.read(0, Math.min(source.size, 16), 'TIFF header');
  const order = head.length >= 2 ? head.toString('latin1', 0, 2) : '';
  if (order !== 'II' && order !== 'MM') throw new TiffFormatError('not a TIFF file (no II/MM byte-order mark)');
  const littleEndian = order === 'II';
  if (head.length < 4) throw new TiffFormatError('truncated TIFF header');
  const version = littleEndian ? head.readUInt16LE(2) : head.readUInt16BE(2);
  if (version === 42) {
    if (head.length < 8) throw new TiffFormatError('truncated TIFF header');
    const firstIfd = littleEndian ? head.readUInt32LE(4) : head.readUInt32BE(4);
    return { littleEndian, bigTiff: false, firstIfd, headerSize: 8 };
  }
  if (version === 43) {
    if (head.length < 16) throw new TiffFormatError('truncated BigTIFF header');
    const offsetSize = littleEndian ? head.readUInt16LE(4) : head.readUInt16BE(4);
    const reserved = littleEndian ? head.readUInt16LE(6) : head.readUInt16BE(6);
    if (offsetSize !== 8 || reserved !== 0) throw new TiffFormatError(`unsupported BigTIFF header (offset size ${offsetSize})`);
    const firstIfd = readUint64(head, 8, littleEndian);
    return { littleEndian, bigTiff: true, firstIfd, headerSize: 16 };
  }
  throw new TiffFormatError(`not a TIFF file (version ${version}, expected 42 or 43)`);
}

/** An unsigned 64-bit value as a number (imprecise, and then not a safe integer, above 2^53). */
function readUint64(buffer: Buffer, offset: number, littleEndian: boolean): number {
  const hi = littleEndian ? buffer.readUInt32LE(offset + 4) : buffer.readUInt32BE(offset);
  const lo = littleEndian ? buffer.readUInt32LE(offset) : buffer.readUInt32BE(offset + 4);
  return hi * 0x1_0000_0000 + lo;
}

function readInt64(buffer: Buffer, offset: number, littleEndian: boolean): number {
  const hi = littleEndian ? buffer.readInt32LE(offset + 4) : buffer.readInt32BE(offset);
  const lo = littleEndian ? buffer.readUInt32LE(offset) : buffer.readUInt32BE(offset + 4);
  return hi * 0x1_0000_0000 + lo;
}

/** Random access to the numbers of an array value (e.g. TileOffsets) without decoding it all. */
export class NumberArray {
  readonly length: number;
  private readonly size: number;

  constructor(
    private readonly bytes: Buffer,
    private readonly type: number,
    private readonly littleEndian: boolean,
  ) {
    this.size = fieldTypeSize(type);
    this.length = this.size === 0 ? 0 : Math.floor(bytes.length / this.size);
  }

  get(index: number): number {
    return decodeNumber(this.bytes, index * this.size, this.type, this.littleEndian);
  }

  toArray(): number[] {
    const out = new Array<number>(this.length);
    for (let i = 0; i < this.length; i++) out[i] = this.get(i);
    return out;
  }
}

/** One value of a numeric field type at byte offset `at` (RATIONALs as a quotient, 0 for a zero denominator). */
export function decodeNumber(b: Buffer, at: number, type: number, le: boolean): number {
  switch (type) {
    case FieldType.BYTE:
    case FieldType.ASCII:
    case FieldType.UNDEFINED:
      return b[at]!;
    case FieldType.SBYTE:
      return b.readInt8(at);
    case FieldType.SHORT:
      return le ? b.readUInt16LE(at) : b.readUInt16BE(at);
    case FieldType.SSHORT:
      return le ? b.readInt16LE(at) : b.readInt16BE(at);
    case FieldType.LONG:
    case FieldType.IFD:
      return le ? b.readUInt32LE(at) : b.readUInt32BE(at);
    case FieldType.SLONG:
      return le ? b.readInt32LE(at) : b.readInt32BE(at);
    case FieldType.RATIONAL: {
      const num = le ? b.readUInt32LE(at) : b.readUInt32BE(at);
      const den = le ? b.readUInt32LE(at + 4) : b.readUInt32BE(at + 4);
      return den === 0 ? 0 : num / den;
    }
    case FieldType.SRATIONAL: {
      const num = le ? b.readInt32LE(at) : b.readInt32BE(at);
      const den = le ? b.readInt32LE(at + 4) : b.readInt32BE(at + 4);
      return den === 0 ? 0 : num / den;
    }
    case FieldType.FLOAT:
      return le ? b.readFloatLE(at) : b.readFloatBE(at);
    case FieldType.DOUBLE:
      return le ? b.readDoubleLE(at) : b.readDoubleBE(at);
    case FieldType.LONG8:
    case FieldType.IFD8:
      return readUint64(b, at, le);
    case FieldType.SLONG8:
      return readInt64(b, at, le);
    default:
      return NaN;
  }
}

/** Types whose values are unsigned integers (what offsets, counts and sizes may be stored as). */
export function isUnsignedIntegerType(type: number): boolean {
  return (
    type === FieldType.BYTE ||
    type === FieldType.SHORT ||
    type === FieldType.LONG ||
    type === FieldType.LONG8 ||
    type === FieldType.IFD ||
    type === FieldType.IFD8
  );
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** An ASCII value as libtiff hands it out: up to the first NUL; UTF-8 if valid, else Latin-1. */
export function decodeText(bytes: Buffer): string {
  const nul = bytes.indexOf(0);
  const text = nul >= 0 ? bytes.subarray(0, nul) : bytes;
  try {
    return utf8.decode(text);
  } catch {
    return text.toString('latin1');
  }
}

export class Ifd {
  /** Values read by {@link preload} (those that were neither inline nor in the directory chunk). */
  private readonly loaded = new Map<number, Buffer>();

  constructor(
    /** File offset of the directory. */
    readonly offset: number,
    readonly entries: ReadonlyMap<number, IfdEntry>,
    /** Offset of the next directory in the chain (0: none). */
    readonly next: number,
    readonly littleEndian: boolean,
    /** Bytes read at the directory's offset, and where they start in the file. */
    private readonly chunk: Buffer,
    private readonly chunkStart: number,
    /** The file's, when its structure is read as a whole: preloads spend from it. */
    private readonly budget?: StructureBudget,
  ) {}

  has(tag: number): boolean {
    return this.entries.has(tag);
  }

  entry(tag: number): IfdEntry | undefined {
    return this.entries.get(tag);
  }

  /**
   * Like {@link preload}, for tags that are nice to have (metadata): a value that cannot be read
   * (beyond the end of the file, absurd size) drops the tag, as libtiff ignores such tags with a warning.
   */
  async preloadOptional(source: RandomAccessFile, tags: readonly number[]): Promise<void> {
    await Promise.all(
      tags.map(async (tag) => {
        try {
          await this.preload(source, [tag]);
        } catch (error) {
          if (!(error instanceof TiffFormatError)) throw error;
          (this.entries as Map<number, IfdEntry>).delete(tag);
        }
      }),
    );
  }

  /** The value bytes if available without I/O. */
  peek(entry: IfdEntry): Buffer | undefined {
    const loaded = this.loaded.get(entry.tag);
    if (loaded) return loaded;
    const start = entry.position - this.chunkStart;
    if (start >= 0 && start + entry.byteLength <= this.chunk.length) {
      return this.chunk.subarray(start, start + entry.byteLength);
    }
    return undefined;
  }

  /** Make the values of these tags (those present) available to the synchronous getters: one read each, in parallel. */
  async preload(source: RandomAccessFile, tags: readonly number[]): Promise<void> {
    const wanted: IfdEntry[] = [];
    for (const tag of tags) {
      const entry = this.entries.get(tag);
      if (!entry || this.peek(entry)) continue;
      // Charged before any read starts: a read left running behind a refusal would reject unheard.
      this.budget?.spendBytes(entry.byteLength, `the value of ${tagName(tag)}`);
      wanted.push(entry);
    }
    if (wanted.length === 0) return;
    await Promise.all(
      wanted.map(({ tag, position, byteLength }) =>
        source.read(position, byteLength, `value of ${tagName(tag)}`).then((bytes) => {
          this.loaded.set(tag, bytes);
        }),
      ),
    );
  }

  /** The value bytes of a preloaded tag, or undefined if the tag is absent. */
  bytes(tag: number): Buffer | undefined {
    const entry = this.entries.get(tag);
    if (!entry) return undefined;
    const bytes = this.peek(entry);
    if (!bytes) throw new Error(`internal: ${tagName(tag)} was not preloaded`);
    return bytes;
  }

  /**
   * The values of a numeric tag (undefined if absent or of a non-numeric type), at most `limit` of
   * them: a per-sample tag needs no more values than the image has samples, whatever its count says.
   */
  numbers(tag: number, limit = Infinity): number[] | undefined {
    const entry = this.entries.get(tag);
    if (!entry || entry.type === FieldType.ASCII) return undefined;
    const array = new NumberArray(this.bytes(tag)!, entry.type, this.littleEndian);
    const out = new Array<number>(Math.min(array.length, limit));
    for (let i = 0; i < out.length; i++) out[i] = array.get(i);
    return out;
  }

  /** The first value of a numeric tag, or `fallback` if absent or empty. */
  number(tag: number, fallback: number): number;
  number(tag: number): number | undefined;
  number(tag: number, fallback?: number): number | undefined {
    const entry = this.entries.get(tag);
    if (!entry || entry.count === 0 || entry.type === FieldType.ASCII) return fallback;
    const bytes = this.bytes(tag)!;
    return decodeNumber(bytes, 0, entry.type, this.littleEndian);
  }

  /** A text tag (ASCII, or bytes) as libtiff returns it; undefined if absent. */
  text(tag: number): string | undefined {
    const bytes = this.bytes(tag);
    return bytes === undefined ? undefined : decodeText(bytes);
  }
}

/** Parse the directory at `offset`; `budget`, the file's, is charged for its entries and bytes. */
export async function readIfd(source: RandomAccessFile, header: TiffHeader, offset: number, what: string, budget?: StructureBudget): Promise<Ifd> {
  if (!Number.isSafeInteger(offset) || offset < header.headerSize) {
    throw new TiffFormatError(`corrupt TIFF: ${what} has an invalid offset (${offset})`);
  }
  if (offset >= source.size) {
    throw new TiffFormatError(`truncated TIFF: ${what} at offset ${offset} is beyond the end of the file (${source.size} bytes)`);
  }
  const big = header.bigTiff;
  const le = header.littleEndian;
  const countSize = big ? 8 : 2;
  const entrySize = big ? 20 : 12;
  const nextSize = big ? 8 : 4;

  budget?.spendBytes(Math.min(IFD_CHUNK, source.size - offset), what);
  let chunk = await source.read(offset, Math.min(IFD_CHUNK, source.size - offset), what);
  if (chunk.length < countSize) throw new TiffFormatError(`truncated TIFF: ${what} at offset ${offset} is cut off`);
  const count = big ? readUint64(chunk, 0, le) : le ? chunk.readUInt16LE(0) : chunk.readUInt16BE(0);
  if (count === 0) throw new TiffFormatError(`corrupt TIFF: ${what} at offset ${offset} has no entries`);
  if (count > MAX_IFD_ENTRIES) {
    throw new TiffFormatError(`corrupt TIFF: ${what} at offset ${offset} claims ${count} entries (at most ${MAX_IFD_ENTRIES} accepted)`);
  }
  budget?.spendEntries(count, what);
  const total = countSize + count * entrySize + nextSize;
  if (total > chunk.length) {
    budget?.spendBytes(total, what);
    chunk = await source.read(offset, total, what);
  }

  const entries = new Map<number, IfdEntry>();
  for (let i = 0; i < count; i++) {
    const at = countSize + i * entrySize;
    const tag = le ? chunk.readUInt16LE(at) : chunk.readUInt16BE(at);
    const type = le ? chunk.readUInt16LE(at + 2) : chunk.readUInt16BE(at + 2);
    const size = fieldTypeSize(type);
    if (size === 0 || entries.has(tag)) continue; // unknown type, or a duplicate: ignored (as libtiff does)
    const valueCount = big ? readUint64(chunk, at + 4, le) : le ? chunk.readUInt32LE(at + 4) : chunk.readUInt32BE(at + 4);
    const valueAt = at + (big ? 12 : 8);
    const byteLength = valueCount * size;
    const inline = byteLength <= (big ? 8 : 4);
    const position = inline ? offset + valueAt : big ? readUint64(chunk, valueAt, le) : le ? chunk.readUInt32LE(valueAt) : chunk.readUInt32BE(valueAt);
    entries.set(tag, {
      tag,
      type,
      count: valueCount,
      byteLength: Number.isSafeInteger(byteLength) ? byteLength : Infinity,
      position,
      inline,
    });
  }
  const nextAt = countSize + count * entrySize;
  const next = big ? readUint64(chunk, nextAt, le) : le ? chunk.readUInt32LE(nextAt) : chunk.readUInt32BE(nextAt);
  return new Ifd(offset, entries, next, le, chunk, offset, budget);
}
