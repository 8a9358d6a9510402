/** TiffFile: open a pyramid TIFF, describe it, and hand out the stored bytes of its tiles. */
import { TiffFormatError } from './errors.js';
import { NumberArray, readHeader, type Ifd, type TiffHeader } from './ifd.js';
import { discoverPyramid, type ArrayRef, type Directory, type LevelLayout } from './pyramid.js';
import { PositionedFile, type RandomAccessFile } from './positioned-file.js';
import { FieldType, fieldTypeSize, Tag, tagName } from './tags.js';
import type { StackPage, TextTagName, TiffInfo } from './types.js';

const TEXT_TAGS: ReadonlyArray<readonly [TextTagName, number]> = [
  ['artist', Tag.Artist],
  ['copyright', Tag.Copyright],
  ['datetime', Tag.DateTime],
  ['description', Tag.ImageDescription],
  ['software', Tag.Software],
  ['documentName', Tag.DocumentName],
  ['pageName', Tag.PageName],
  ['make', Tag.Make],
  ['model', Tag.Model],
];

/** Tags of IFD 0 read at open for {@link TiffInfo}. */
const INFO_TAGS: readonly number[] = [
  Tag.StoNits,
  Tag.XResolution,
  Tag.YResolution,
  Tag.ResolutionUnit,
  Tag.SMinSampleValue,
  Tag.SMaxSampleValue,
  Tag.ICCProfile,
  Tag.XMP,
  ...TEXT_TAGS.map(([, tag]) => tag),
];

/** iipsrv's default maximum when SMaxSampleValue is absent or 0 (§12.2; master's 1.0 for float). */
export function defaultMaxValue(bitsPerSample: number, sampleFormat: number): number {
  if (sampleFormat === 3) return 1.0;
  if (sampleFormat === 2 && isSignedDepth(bitsPerSample)) return 2 ** (bitsPerSample - 1) - 1;
  if (bitsPerSample <= 8) return 255;
  if (bitsPerSample === 12) return 4095;
  if (bitsPerSample === 16) return 65535;
  if (bitsPerSample === 32) return 4294967295;
  return 2 ** bitsPerSample - 1;
}

/** The default minimum: 0, or the type's least value for signed data (iipsrv reads it as unsigned, 0). */
export function defaultMinValue(bitsPerSample: number, sampleFormat: number): number {
  return sampleFormat === 2 && isSignedDepth(bitsPerSample) ? -(2 ** (bitsPerSample - 1)) : 0;
}

/** The signed depths the tile decoder hands out as Int8Array, Int16Array, Int32Array. */
function isSignedDepth(bits: number): boolean {
  return bits === 8 || bits === 16 || bits === 32;
}

function perChannel(values: number[] | undefined, channels: number, fallback: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < channels; i++) {
    const value = values && values.length > 0 ? values[Math.min(i, values.length - 1)]! : fallback;
    out.push(Number.isFinite(value) ? value : fallback);
  }
  return out;
}

/**
 * SMin/SMaxSampleValue of a signed image. libtiff writes them in the sample's own signed type
 * (SBYTE, SSHORT, SLONG), which decodes as it is; a writer that used the unsigned type of the same
 * width stored the bits of a negative value, which as unsigned lie above the signed maximum.
 */
function signedValues(ifd: Ifd, tag: number, bits: number, channels: number): number[] | undefined {
  const values = ifd.numbers(tag, channels);
  const type = ifd.entry(tag)?.type;
  const unsigned = type === FieldType.BYTE || type === FieldType.SHORT || type === FieldType.LONG;
  if (!values || !unsigned || fieldTypeSize(type) * 8 !== bits) return values;
  return values.map((v) => (v >= 2 ** (bits - 1) ? v - 2 ** bits : v));
}

function buildInfo(header: TiffHeader, first: Directory, levels: LevelLayout[], stack: StackPage[]): TiffInfo {
  const ifd: Ifd = first.ifd;
  const channels = first.samplesPerPixel;
  const sampleFormat = first.sampleFormat === 3 ? 'float' : first.sampleFormat === 2 ? 'int' : 'uint';
  const bits = first.bitsPerSample;
  const defaultMax = defaultMaxValue(bits, first.sampleFormat);
  let minValues: number[];
  let maxValues: number[];
  if (sampleFormat === 'int' && isSignedDepth(bits)) {
    // A signed range may end at 0 (depths, bathymetry): a max of 0 is a max, unless the min is 0
    // too, which is no range but the unset value some writers leave.
    const defaultMin = defaultMinValue(bits, 2);
    minValues = perChannel(signedValues(ifd, Tag.SMinSampleValue, bits, channels), channels, defaultMin);
    maxValues = perChannel(signedValues(ifd, Tag.SMaxSampleValue, bits, channels), channels, defaultMax);
    for (let c = 0; c < channels; c++) {
      if (minValues[c] === 0 && maxValues[c] === 0) [minValues[c], maxValues[c]] = [defaultMin, defaultMax];
    }
  } else {
    minValues = perChannel(ifd.numbers(Tag.SMinSampleValue, channels), channels, 0);
    maxValues = perChannel(ifd.numbers(Tag.SMaxSampleValue, channels), channels, 0).map((v) => (v === 0 ? defaultMax : v));
  }

  let resolution: TiffInfo['resolution'] = null;
  const x = ifd.number(Tag.XResolution);
  const y = ifd.number(Tag.YResolution) ?? x;
  if (x !== undefined && y !== undefined && Number.isFinite(x) && Number.isFinite(y) && x > 0 && y > 0) {
    resolution = { x, y, unit: ifd.number(Tag.ResolutionUnit, 2) };
  }

  const icc = ifd.bytes(Tag.ICCProfile);
  const xmpBytes = ifd.bytes(Tag.XMP);
  let xmp: string | null = null;
  if (xmpBytes) {
    let end = xmpBytes.length;
    while (end > 0 && xmpBytes[end - 1] === 0) end--;
    xmp = end > 0 ? xmpBytes.toString('utf8', 0, end) : null;
  }

  const text: TiffInfo['text'] = {};
  for (const [name, tag] of TEXT_TAGS) {
    const value = ifd.text(tag);
    if (value) text[name] = value;
  }

  const stoNits = ifd.number(Tag.StoNits);
  return {
    scale: stoNits !== undefined && Number.isFinite(stoNits) ? stoNits : null,
    bigTiff: header.bigTiff,
    littleEndian: header.littleEndian,
    levels: levels.map((l) => l.level),
    channels,
    bitsPerSample: first.bitsPerSample,
    sampleFormat,
    photometric: first.photometric,
    minValues,
    maxValues,
    resolution,
    icc: icc && icc.length > 0 ? Buffer.from(icc) : null,
    xmp,
    text,
    stack,
  };
}

interface TileArrays {
  offsets: NumberArray;
  byteCounts: NumberArray;
}

/** Errors from our own parsing of bad data (never I/O errors) become TiffFormatErrors. */
function asFormatError(error: unknown): unknown {
  if (error instanceof TiffFormatError) return error;
  if ((error instanceof RangeError || error instanceof TypeError) && !('syscall' in error)) {
    return new TiffFormatError(`corrupt TIFF: ${error.message}`);
  }
  return error;
}

/**
 * A pyramid TIFF opened for reading: structure parsed once at {@link open}, tile offset/byte-count
 * arrays read per level on first use. Safe for concurrent {@link readTileBytes} calls.
 */
export class TiffFile {
  readonly info: TiffInfo;
  private readonly arrays: Array<Promise<TileArrays> | undefined>;

  private constructor(
    private readonly source: RandomAccessFile,
    private readonly header: TiffHeader,
    private readonly layouts: LevelLayout[],
    first: Directory,
    stack: StackPage[],
  ) {
    this.info = buildInfo(header, first, layouts, stack);
    this.arrays = new Array(layouts.length).fill(undefined);
  }

  /**
   * Open and describe a pyramid TIFF. Rejects with TiffFormatError if the file is not a TIFF, is
   * truncated or corrupt, or its first image is not tiled ("TIFF image is not tiled"); with the
   * fs error if it cannot be opened.
   * @param file a path, or a file already opened (which is closed if it is no TIFF we read)
   * @param page the page of a stack to read (counted from 0); a TiffFormatError when there is no such page
   */
  static async open(file: string | RandomAccessFile, page = 0): Promise<TiffFile> {
    const source = typeof file === 'string' ? await PositionedFile.open(file) : file;
    try {
      const header = await readHeader(source);
      const { first, levels, stack } = await discoverPyramid(source, header, INFO_TAGS, page);
      return new TiffFile(source, header, levels, first, stack);
    } catch (error) {
      await source.close().catch(() => undefined);
      throw asFormatError(error);
    }
  }

  /** File size in bytes. */
  get size(): number {
    return this.source.size;
  }

  /**
   * The stored bytes of tile (col, row) of a level (for striped levels: strip `row`, col 0): exactly
   * TileByteCounts bytes at TileOffsets — for JPEG, an abbreviated stream needing the level's
   * JPEGTables. `plane` selects the sample plane of PlanarConfiguration=2 images. A sparse tile
   * (byte count 0) gives an empty buffer. `headroom` bytes before the tile's are left unfilled for
   * the caller (a JPEG's tables). `limit`: at most that many of the tile's first bytes (a header).
   */
  async readTileBytes(level: number, col: number, row: number, plane = 0, headroom = 0, limit = Infinity): Promise<Buffer> {
    const layout = this.layouts[level];
    if (!Number.isInteger(level) || !layout) {
      throw new TiffFormatError(`no resolution level ${level} (the image has ${this.layouts.length})`);
    }
    const { tilesAcross, tilesDown } = layout.level;
    if (!Number.isInteger(col) || !Number.isInteger(row) || col < 0 || row < 0 || col >= tilesAcross || row >= tilesDown) {
      throw new TiffFormatError(`tile ${col},${row} is out of range for level ${level} (${tilesAcross}x${tilesDown} tiles)`);
    }
    if (!Number.isInteger(plane) || plane < 0 || plane >= layout.planes) {
      throw new TiffFormatError(`sample plane ${plane} is out of range for level ${level} (${layout.planes} planes)`);
    }
    const { offsets, byteCounts } = await this.tileArrays(level);
    const index = plane * layout.tilesPerPlane + row * tilesAcross + col;
    const offset = offsets.get(index);
    const length = Math.min(byteCounts.get(index), limit);
    if (length === 0) return Buffer.alloc(0);
    try {
      return await this.source.read(offset, length, `tile ${col},${row} of level ${level} (${layout.what})`, headroom, 'data');
    } catch (error) {
      throw asFormatError(error);
    }
  }

  private tileArrays(level: number): Promise<TileArrays> {
    let arrays = this.arrays[level];
    if (!arrays) {
      arrays = this.loadTileArrays(this.layouts[level]!);
      this.arrays[level] = arrays;
      // A failed read (e.g. the file was truncated meanwhile) is not cached.
      arrays.catch(() => {
        if (this.arrays[level] === arrays) this.arrays[level] = undefined;
      });
    }
    return arrays;
  }

  private async loadTileArrays(layout: LevelLayout): Promise<TileArrays> {
    const le = this.header.littleEndian;
    const { offsets, byteCounts } = layout;
    let offsetBytes = offsets.bytes;
    let countBytes = byteCounts.bytes;
    try {
      if (!offsetBytes && !countBytes && byteCounts.position === offsets.position + offsets.byteLength) {
        // libtiff writes the two arrays next to each other: one read.
        const both = await this.source.read(offsets.position, offsets.byteLength + byteCounts.byteLength, `tile arrays of ${layout.what}`);
        offsetBytes = both.subarray(0, offsets.byteLength);
        countBytes = both.subarray(offsets.byteLength);
      } else {
        [offsetBytes, countBytes] = await Promise.all([offsetBytes ?? this.readArray(offsets, layout), countBytes ?? this.readArray(byteCounts, layout)]);
      }
    } catch (error) {
      throw asFormatError(error);
    }
    return { offsets: new NumberArray(offsetBytes, offsets.type, le), byteCounts: new NumberArray(countBytes, byteCounts.type, le) };
  }

  private readArray(ref: ArrayRef, layout: LevelLayout): Promise<Buffer> {
    return this.source.read(ref.position, ref.byteLength, `${tagName(ref.tag)} of ${layout.what}`);
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}
