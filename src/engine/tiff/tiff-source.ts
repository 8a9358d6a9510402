/**
 * Pyramid TIFF as an image source: our own structure reader for the pyramid, the metadata and the
 * stored tile bytes (JPEG tiles are sent as stored), libvips through sharp for decoding (it reads
 * only the tiles a rectangle touches, whatever their compression).
 */
import sharp, { type Sharp } from 'sharp';
import { FileError } from '../../errors.js';
import { jpegCodec } from '../codecs/jpeg.js';
import { jpegFrame } from '../codecs/jpeg-frame.js';
import { decoding } from '../codecs/libvips-errors.js';
import { assertProcessable, DEFAULT_DECODE_LIMITS, type DecodeLimits } from '../decode-limits.js';
import { firstBands, samplesPipeline } from '../pixels/pixel-types.js';
import type { ColourSpace, ImageDescription, ImageSource, RawPixels, SampleFormat, Samples } from '../source.js';
import { CHECK_COPY_BYTES, CHECK_ELEMENTS, TimeSlices } from '../time-slices.js';
import { TiffFile, TiffFormatError, type TiffInfo, type TiffLevel } from './index.js';
import type { RandomAccessFile } from './positioned-file.js';
import { decodedBits, unpackTile, nativelyUnpackable, PACKED_DEPTHS, TileOverflowError, type SampleArray } from './tile-unpacker.js';
import type { Rect } from '../geometry.js';

const COMPRESSION_JPEG = 7;
const PHOTOMETRIC = { minIsWhite: 0, minIsBlack: 1, rgb: 2, palette: 3, ycbcr: 6, cielab: 8, icclab: 9, itulab: 10 } as const;

function colourSpaceOf(info: TiffInfo): ColourSpace {
  const photometric = info.photometric;
  if (photometric === PHOTOMETRIC.cielab || photometric === PHOTOMETRIC.icclab || photometric === PHOTOMETRIC.itulab) return 'cielab';
  if (photometric === PHOTOMETRIC.minIsBlack || photometric === PHOTOMETRIC.minIsWhite) {
    if (info.bitsPerSample === 1) return 'binary';
    return info.channels > 2 ? 'multiband' : 'grey';
  }
  return 'srgb';
}

/**
 * The TIFF compressions libvips decodes in sharp's build. Others (zstd: its libtiff lacks it;
 * LERC, JPEG-XL, JPEG2000-in-TIFF ...) would come out as blank pixels without an error.
 */
const DECODABLE_COMPRESSIONS = new Map<number, string>([
  [1, 'none'],
  [2, 'CCITT RLE'],
  [3, 'CCITT G3'],
  [4, 'CCITT G4'],
  [5, 'LZW'],
  [7, 'JPEG'],
  [8, 'deflate'],
  [32946, 'deflate'],
  [32773, 'PackBits'],
  [50001, 'WebP'],
]);
const COMPRESSION_NAMES: Record<number, string> = { 6: 'old-style JPEG', 34712: 'JPEG2000', 34887: 'LERC', 34925: 'LZMA', 50000: 'zstd', 50002: 'JPEG XL' };

/**
 * What libvips (through sharp) decodes as iipsrv does: 8 and 16-bit unsigned grey, RGB and their
 * alpha, and bilevel. It reads float RGB as scRGB (gamma-encoding it), fails on 8-bit CIELAB,
 * takes grey + extra bands as alpha, and reads signed data as signed (iipsrv: as unsigned).
 */
function sharpDecodesAsIipsrv(info: TiffInfo): boolean {
  const bits = info.bitsPerSample;
  if (info.sampleFormat !== 'uint' || !(bits === 1 || bits === 8 || bits === 16)) return false;
  // MinIsWhite above 1 bit is inverted by our decoder, not left to libvips' reading of it.
  if (info.photometric === PHOTOMETRIC.minIsWhite && bits > 1) return false;
  const space = colourSpaceOf(info);
  return (space === 'srgb' || space === 'grey' || space === 'binary') && info.channels <= 4;
}

/**
 * The photometric interpretations shown (MinIsWhite, MinIsBlack, RGB, palette, CMYK, YCbCr and the
 * three Labs) and the samples each needs at least: libvips reads others, or too few bands, as
 * "multiband", which no colour conversion takes.
 */
const PHOTOMETRIC_SAMPLES = new Map<number, number>([
  [0, 1],
  [1, 1],
  [2, 3],
  [3, 1],
  [5, 4],
  [6, 3],
  [8, 1],
  [9, 1],
  [10, 1],
]);

function undecodable(info: TiffInfo): string | null {
  const level = info.levels.find((l) => !DECODABLE_COMPRESSIONS.has(l.compression));
  if (level) return `TIFF compression ${COMPRESSION_NAMES[level.compression] ?? level.compression} is not supported`;
  // Each level as libvips will read it: their photometrics are their own.
  for (const { photometric, samplesPerPixel } of info.levels) {
    const needs = PHOTOMETRIC_SAMPLES.get(photometric);
    if (needs === undefined) return `TIFF photometric interpretation ${photometric} is not supported`;
    if (samplesPerPixel < needs) return `TIFF photometric interpretation ${photometric} with ${samplesPerPixel} samples per pixel is not supported`;
  }
  // libvips reads these, except in tiled separate planes, which are left to our decoder.
  const sharpReads = sharpDecodesAsIipsrv(info);
  const other = info.levels.find((l) => !nativelyUnpackable(l) && !(sharpReads && l.planarConfig === 1));
  if (!other) return null;
  const kind = `${info.bitsPerSample}-bit ${info.sampleFormat} ${colourSpaceOf(info)}`;
  const depths = info.sampleFormat === 'float' ? [32] : [1, 2, 4, 6, 8, 10, 12, 14, 16, 32];
  if (!depths.includes(info.bitsPerSample))
    return `${kind} TIFF samples are not supported (iipsrv reads 1, 2, 4, 6, 8, 10, 12, 14, 16 and 32-bit integers and 32-bit floats)`;
  if (PACKED_DEPTHS.has(info.bitsPerSample) && other.predictor !== 1)
    return `${kind} TIFF with a predictor is not supported (libtiff allows none for samples that are not whole bytes)`;
  if (PACKED_DEPTHS.has(info.bitsPerSample) && info.sampleFormat === 'int') return `${kind} TIFF samples are not supported (packed depths are read unsigned)`;
  if (other.planarConfig !== 1) return `${kind} TIFF with separate planes is not supported`;
  const compression = COMPRESSION_NAMES[other.compression] ?? DECODABLE_COMPRESSIONS.get(other.compression) ?? other.compression;
  return `${kind} TIFF with compression ${compression} is not supported (uncompressed, deflate, LZW and PackBits are)`;
}

/**
 * A stated value of a packed depth on the scale of its widened samples: the stored range
 * 0..2^n-1 maps onto 0..255 or 0..65535 as the bit repetition does (v x 65535/4095 is
 * (v << 4 | v >> 8) within one unit for 12 bits); what lies above the stored range (iipsrv's
 * default 255 for fewer than 8 bits) is the widened maximum.
 */
function widenedValue(v: number, bits: number): number {
  const storedMax = 2 ** bits - 1;
  const max = 2 ** decodedBits(bits) - 1;
  return v >= storedMax ? max : (v * max) / storedMax;
}

function describe(info: TiffInfo): ImageDescription {
  const bits = info.bitsPerSample;
  const packed = PACKED_DEPTHS.has(bits) && info.sampleFormat === 'uint';
  return {
    undecodable: undecodable(info),
    format: 'tiff',
    levels: info.levels.map((l) => ({ width: l.width, height: l.height, tileWidth: l.tileWidth, tileHeight: l.tileHeight })),
    channels: info.channels,
    // Packed depths are decoded to 8 or 16 bits: the pipeline sees those, OBJ the stored depth.
    bitsPerSample: packed ? decodedBits(bits) : bits,
    sampleFormat: info.sampleFormat as SampleFormat,
    colourSpace: colourSpaceOf(info),
    minValues: packed ? info.minValues.map((v) => widenedValue(v, bits)) : info.minValues,
    maxValues: packed ? info.maxValues.map((v) => widenedValue(v, bits)) : info.maxValues,
    ...(packed ? { stored: { bitsPerSample: bits, minValues: info.minValues, maxValues: info.maxValues } } : {}),
    resolution: info.resolution,
    icc: info.icc,
    xmp: info.xmp,
    metadata: {
      copyright: info.text.copyright,
      title: info.text.documentName,
      description: info.text.description,
      author: info.text.artist,
      date: info.text.datetime,
      software: info.text.software,
      make: info.text.make,
      model: info.text.model,
      pageName: info.text.pageName,
      ...(info.scale !== null ? { scale: info.scale } : {}),
    },
    ...(info.stack.length > 0 ? { stack: info.stack } : {}),
  };
}

/** Bytes of one tile (or strip) decoded: every sample in a byte or more (1-bit data becomes 0/255 bytes). */
function decodedTileBytes(level: TiffLevel): number {
  return level.tileWidth * level.tileHeight * level.samplesPerPixel * Math.ceil(level.bitsPerSample / 8);
}

/** Enough of a JPEG tile to reach its frame header (tables written into the tile come first). */
const JPEG_HEAD_BYTES = 4096;

/**
 * A TIFF read from a store by byte ranges: the reader gets the file, and libvips (which reads
 * files itself) a local copy, made only for what our own decoders do not read.
 */
export interface RemoteTiff {
  file: RandomAccessFile;
  localCopy: () => Promise<string>;
}

/** A JPEG tile our decoder could not take: libvips is to read the region. */
class NeedsLibvips extends Error {}

export class TiffSource implements ImageSource {
  readonly description: ImageDescription;
  /** Per level: why its tiles may not be decoded (beyond MAX_TILE_BYTES), or null. */
  private readonly oversized: Array<string | null>;
  /** Per JPEG level, a bit a tile: its frame header was found to fit (for libvips' decodes). */
  private readonly framesChecked: Array<Uint8Array | undefined> = [];
  /** Packed depths and MinIsWhite above 1 bit: always our decoder, also where libvips reads them. */
  private readonly ownDecoding: boolean;

  private constructor(
    /** A path, or for a file in a store the local copy's, made on first need. */
    private readonly path: string | (() => Promise<string>),
    private readonly tiff: TiffFile,
    /** As the client gave it, for messages. */
    private readonly name: string,
    private readonly limits: DecodeLimits,
  ) {
    this.description = describe(tiff.info);
    const { bitsPerSample, photometric } = tiff.info;
    this.ownDecoding = PACKED_DEPTHS.has(bitsPerSample) || (photometric === PHOTOMETRIC.minIsWhite && bitsPerSample > 1);
    this.oversized = tiff.info.levels.map((level, i) => {
      const bytes = decodedTileBytes(level);
      if (bytes <= limits.maxTileBytes) return null;
      const kind = level.tiled ? 'tiles' : 'strips';
      return (
        `${name}: level ${i}'s ${level.tileWidth}x${level.tileHeight} ${kind} of ${level.samplesPerPixel} ${level.bitsPerSample}-bit samples ` +
        `decode to ${bytes} bytes each, more than MAX_TILE_BYTES (${limits.maxTileBytes})`
      );
    });
  }

  /**
   * @param file a path, or a file in a store
   * @param name the image name as the client gave it, for messages
   * @param page the page of a stack, counted from 0 (0 for any other TIFF)
   * @throws FileError for a file that is not a TIFF we read, has no such page, or has more bands than MAX_SAMPLES_PER_PIXEL
   */
  static async open(file: string | RemoteTiff, name: string, limits: DecodeLimits = DEFAULT_DECODE_LIMITS, page = 0): Promise<TiffSource> {
    let tiff: TiffFile;
    try {
      tiff = await TiffFile.open(typeof file === 'string' ? file : file.file, page);
    } catch (error) {
      if (error instanceof TiffFormatError) throw new FileError(`${name}: ${error.message}`);
      throw error;
    }
    const { channels } = tiff.info;
    if (channels > limits.maxSamplesPerPixel) {
      await tiff.close().catch(() => undefined);
      throw new FileError(`${name}: the image has ${channels} samples per pixel, more than MAX_SAMPLES_PER_PIXEL (${limits.maxSamplesPerPixel})`);
    }
    return new TiffSource(typeof file === 'string' ? file : file.localCopy, tiff, name, limits);
  }

  /**
   * A file in a store whose JPEG tiles our decoder reads: regions are assembled from the tiles
   * they touch, fetched by their byte ranges, rather than from a local copy of the whole file.
   */
  private assemblesJpeg(level: number): boolean {
    return typeof this.path !== 'string' && jpegCodec !== null && this.jpegLevel(level) !== null;
  }

  /** @throws FileError when the level's tiles are larger decoded than MAX_TILE_BYTES */
  private assertTileSize(level: number): void {
    const oversized = this.oversized[level];
    if (oversized) throw new FileError(oversized);
  }

  /**
   * A JPEG tile's frame header against its level, before any decoder sees it: what libtiff refuses
   * (a frame larger than the tile, other bands or precision) is refused here, as the tile's damage.
   * A stream without a frame header is left to the decoders, which say what is wrong.
   */
  private assertJpegFrame(jpeg: Uint8Array, stored: TiffLevel, level: number, col: number, row: number): boolean {
    const frame = jpegFrame(jpeg);
    if (!frame) return false;
    const bands = stored.planarConfig === 2 ? 1 : stored.samplesPerPixel;
    if (frame.width <= stored.tileWidth && frame.height <= stored.tileHeight && frame.components === bands && frame.precision === stored.bitsPerSample)
      return true;
    throw new FileError(
      `${this.name}: tile ${col},${row} of level ${level}: its JPEG frame is ${frame.width}x${frame.height}, ${frame.components} components of ${frame.precision} bits; ` +
        `the tile is ${stored.tileWidth}x${stored.tileHeight}, ${bands} of ${stored.bitsPerSample}`,
    );
  }

  /**
   * The frames of the JPEG tiles a rectangle touches, before libvips decodes them: libtiff refuses
   * the same frames, but says only "decompress error". A few kB read a tile, once a tile while the
   * file is open.
   */
  private async checkJpegFrames(level: number, rect: Rect): Promise<void> {
    const stored = this.tiff.info.levels[level]!;
    if (stored.compression !== COMPRESSION_JPEG) return;
    const checked = (this.framesChecked[level] ??= new Uint8Array(Math.ceil((stored.tilesAcross * stored.tilesDown) / 8)));
    const slices = new TimeSlices();
    const firstCol = Math.floor(rect.left / stored.tileWidth);
    const lastCol = Math.floor((rect.left + rect.width - 1) / stored.tileWidth);
    const firstRow = Math.floor(rect.top / stored.tileHeight);
    const lastRow = Math.floor((rect.top + rect.height - 1) / stored.tileHeight);
    for (let row = firstRow; row <= lastRow; row++) {
      for (let col = firstCol; col <= lastCol; col++) {
        const index = row * stored.tilesAcross + col;
        if (checked[index >> 3]! & (1 << (index & 7))) continue;
        let head = await this.readTileBytes(level, col, row, 0, 0, JPEG_HEAD_BYTES);
        // libvips fails on an empty JPEG tile without saying why (and its encoder then reports the failure as its own).
        if (head.length === 0) throw new FileError(`${this.name}: tile ${col},${row} of level ${level} is empty (a sparse JPEG tile, which cannot be decoded)`);
        if (head.length === JPEG_HEAD_BYTES && !jpegFrame(head)) head = await this.readTileBytes(level, col, row);
        if (this.assertJpegFrame(head, stored, level, col, row)) checked[index >> 3]! |= 1 << (index & 7);
        if (slices.due()) await slices.pause();
      }
    }
  }

  /** The level if its tiles are baseline JPEGs of 8-bit grey or RGB samples, else null. */
  private jpegLevel(level: number) {
    const stored = this.tiff.info.levels[level];
    if (!stored || !stored.tiled || stored.compression !== COMPRESSION_JPEG) return null;
    if (stored.bitsPerSample !== 8 || stored.planarConfig !== 1) return null;
    if (stored.samplesPerPixel !== 1 && stored.samplesPerPixel !== 3) return null;
    if (this.description.colourSpace === 'cielab') return null;
    return stored;
  }

  /** A damaged file (a tile beyond its end ...) is the image's fault: 404, as iipsrv. */
  private async readTileBytes(level: number, col: number, row: number, plane = 0, headroom = 0, limit = Infinity): Promise<Buffer> {
    try {
      return await this.tiff.readTileBytes(level, col, row, plane, headroom, limit);
    } catch (error) {
      if (error instanceof TiffFormatError) throw new FileError(`${this.name}: ${error.message}`);
      throw error;
    }
  }

  /** The tile as a standalone JPEG: abbreviated streams get the shared tables spliced in. */
  private async jpegTileBytes(level: number, col: number, row: number, tables: Buffer | null): Promise<Buffer | null> {
    // Tables minus their EOI, then the tile minus its SOI: the tile is read in place after room for
    // the tables, whose last two bytes land where the tile's SOI was (one buffer, no concatenation).
    const spliced = tables !== null && tables.length > 4;
    const headroom = spliced ? tables.length - 4 : 0;
    const bytes = await this.readTileBytes(level, col, row, 0, headroom);
    // A sparse tile (no bytes) is left to the general decoder, which fills it.
    if (bytes.length - headroom < 4) return null;
    if (!spliced) return bytes;
    if (bytes[headroom] === 0xff && bytes[headroom + 1] === 0xd8) {
      tables.copy(bytes, 0, 0, tables.length - 2);
      return bytes;
    }
    return bytes.subarray(headroom);
  }

  async storedJpegTile(level: number, col: number, row: number): Promise<Buffer | null> {
    const stored = this.jpegLevel(level);
    if (!stored) return null;
    // Edge tiles are stored padded to the full tile size: the client wants them cropped.
    if ((col + 1) * stored.tileWidth > stored.width || (row + 1) * stored.tileHeight > stored.height) return null;
    const jpeg = await this.jpegTileBytes(level, col, row, stored.jpegTables);
    // Bytes not framed as a JPEG (damaged data) are not sent as one: the decoders say what is wrong.
    const framed = jpeg !== null && jpeg[0] === 0xff && jpeg[1] === 0xd8 && jpeg[jpeg.length - 2] === 0xff && jpeg[jpeg.length - 1] === 0xd9;
    return framed ? jpeg : null;
  }

  async decodeTile(level: number, col: number, row: number): Promise<RawPixels | null> {
    const stored = this.tiff.info.levels[level];
    if (!stored || !stored.tiled || stored.bitsPerSample !== 8 || stored.planarConfig !== 1) return null;
    this.assertTileSize(level);
    // Plain grey, RGB and YCbCr-in-JPEG only: MinIsWhite, palettes and CIELAB need the general path.
    if (![PHOTOMETRIC.minIsBlack, PHOTOMETRIC.rgb, PHOTOMETRIC.ycbcr].includes(stored.photometric as 1 | 2 | 6)) return null;
    const pixels = stored.compression === COMPRESSION_JPEG ? await this.decodeJpegTile(level, col, row) : await this.decodeStoredEightBit(level, col, row);
    if (!pixels) return null;
    const width = Math.min(stored.tileWidth, stored.width - col * stored.tileWidth);
    const height = Math.min(stored.tileHeight, stored.height - row * stored.tileHeight);
    if (pixels.width < width || pixels.height < height) return null;
    // Cropping an edge tile is only a smaller width and height over the same rows.
    return { ...pixels, width, height };
  }

  private async decodeJpegTile(level: number, col: number, row: number): Promise<RawPixels | null> {
    const stored = this.jpegLevel(level);
    if (!stored || !jpegCodec) return null;
    const jpeg = await this.jpegTileBytes(level, col, row, stored.jpegTables);
    if (!jpeg) return null;
    if (!this.assertJpegFrame(jpeg, stored, level, col, row)) return null;
    try {
      return await jpegCodec.decode(jpeg, stored.samplesPerPixel as 1 | 3);
    } catch {
      // Let the general decoder have a go (and report the damage if it fails too).
      return null;
    }
  }

  /**
   * 8-bit tiles in the compressions decoded here (deflate, LZW, PackBits, none): zlib is much
   * cheaper than a libvips pipeline per tile. Alpha and other extra bands are dropped, as iipsrv
   * does for JPEG output.
   */
  private async decodeStoredEightBit(level: number, col: number, row: number): Promise<RawPixels | null> {
    const stored = this.tiff.info.levels[level]!;
    if (!nativelyUnpackable(stored) || stored.samplesPerPixel > 4) return null;
    let tile;
    try {
      tile = await unpackTile(await this.readTileBytes(level, col, row), stored, this.tiff.info.littleEndian, stored.tileHeight);
    } catch (error) {
      // Data that would decode beyond its tile is refused, not tried again by libvips.
      if (error instanceof TileOverflowError) throw new FileError(`${this.name}: tile ${col},${row} of level ${level}: ${error.message}`);
      // Let the general decoder have a go (and report the damage if it fails too).
      return null;
    }
    const bands = firstBands({ data: tile.data, width: tile.width, height: tile.height, channels: stored.samplesPerPixel });
    if (!bands) return null;
    return { data: bands.data, width: tile.width, height: tile.height, channels: bands.channels, stride: tile.width * bands.channels };
  }

  async decode(level: number, rect: Rect): Promise<Sharp> {
    const stored = this.tiff.info.levels[level]!;
    this.assertTileSize(level);
    // libvips does not read tiled separate planes, and the packed depths and MinIsWhite are
    // widened and inverted as iipsrv master does; a file in a store has its JPEG tiles fetched by
    // their ranges: decoded here, handed over raw.
    const own = (stored.planarConfig === 2 || this.ownDecoding) && nativelyUnpackable(stored);
    if (own || this.assemblesJpeg(level)) {
      assertProcessable(this.name, rect, this.limits, 'decoding the samples here');
      const samples = own ? await this.decodeSamples(level, stored, rect) : await this.assembledJpeg(level, stored, rect);
      if (samples) return samplesPipeline(samples as Samples & { data: Uint8Array | Uint16Array });
    }
    await this.checkJpegFrames(level, rect);
    return (await this.open(level)).extract(rect);
  }

  async samples(level: number, rect: Rect): Promise<Samples> {
    const stored = this.tiff.info.levels[level]!;
    this.assertTileSize(level);
    if (nativelyUnpackable(stored)) return this.decodeSamples(level, stored, rect);
    if (this.assemblesJpeg(level)) {
      const assembled = await this.assembledJpeg(level, stored, rect);
      if (assembled) return assembled;
    }
    await this.checkJpegFrames(level, rect);
    return this.sharpSamples(level, rect);
  }

  /** The rectangle from its JPEG tiles decoded here, or null when one of them needs libvips. */
  private async assembledJpeg(level: number, stored: TiffLevel, rect: Rect): Promise<Samples | null> {
    try {
      return await this.decodeSamples(level, stored, rect);
    } catch (error) {
      if (error instanceof NeedsLibvips) return null;
      throw error;
    }
  }

  /** One JPEG tile's samples, for {@link assembledJpeg}. */
  private async jpegTileSamples(level: number, col: number, row: number): Promise<{ data: SampleArray; width: number }> {
    const stored = this.tiff.info.levels[level]!;
    const pixels = await this.decodeJpegTile(level, col, row);
    // Its frame was checked to fit the tile (assertJpegFrame): only a smaller one is left to libvips.
    if (!pixels || pixels.width !== stored.tileWidth || pixels.height !== stored.tileHeight) throw new NeedsLibvips();
    return { data: pixels.data, width: stored.tileWidth };
  }

  /**
   * The rectangle assembled from the stored tiles (or strips) it touches, decoded here, all at
   * once. The first tile to fail stops the others at their next slice: its error is the answer.
   */
  private async decodeSamples(level: number, stored: TiffLevel, rect: Rect): Promise<Samples> {
    const channels = stored.samplesPerPixel;
    const { tileWidth, tileHeight } = stored;
    const firstCol = Math.floor(rect.left / tileWidth);
    const firstRow = Math.floor(rect.top / tileHeight);
    const lastCol = Math.floor((rect.left + rect.width - 1) / tileWidth);
    const lastRow = Math.floor((rect.top + rect.height - 1) / tileHeight);
    let out: SampleArray | null = null;
    const stop = new AbortController();
    const slices = new TimeSlices(stop.signal);
    const jobs: Array<Promise<void>> = [];
    for (let row = firstRow; row <= lastRow; row++) {
      for (let col = firstCol; col <= lastCol; col++) {
        const job = async () => {
          // A strip is as long as the rows left in the image; a tile is always whole.
          const rows = stored.tiled ? tileHeight : Math.min(tileHeight, stored.height - row * tileHeight);
          const tile = await this.readTileSamples(level, stored, col, row, rows, stop.signal);
          const whole = rect.left === col * tileWidth && rect.top === row * tileHeight && rect.width === tileWidth && rect.height === rows;
          if (whole && firstCol === lastCol && firstRow === lastRow) {
            // A whole stored tile (most tile requests): its samples as they are.
            out = tile.data;
            return;
          }
          const target = (out ??= new (tile.data.constructor as new (n: number) => SampleArray)(rect.width * rect.height * channels));
          const x0 = Math.max(rect.left, col * tileWidth);
          const x1 = Math.min(rect.left + rect.width, (col + 1) * tileWidth);
          const y0 = Math.max(rect.top, row * tileHeight);
          const y1 = Math.min(rect.top + rect.height, row * tileHeight + rows);
          const span = (x1 - x0) * channels;
          const rowsPerPiece = (CHECK_COPY_BYTES / Math.max(1, span * tile.data.BYTES_PER_ELEMENT)) | 0;
          await slices.run(y1 - y0, rowsPerPiece, (from, to) => {
            for (let y = y0 + from; y < y0 + to; y++) {
              const at = ((y - row * tileHeight) * tile.width + (x0 - col * tileWidth)) * channels;
              target.set(tile.data.subarray(at, at + span), ((y - rect.top) * rect.width + (x0 - rect.left)) * channels);
            }
          });
        };
        jobs.push(
          job().catch((error: unknown) => {
            stop.abort(error);
            throw error;
          }),
        );
      }
    }
    await Promise.all(jobs);
    return { data: out!, width: rect.width, height: rect.height, channels };
  }

  /** One tile's samples, interleaved; separate planes (one tile each) are interleaved here. */
  private async readTileSamples(
    level: number,
    stored: TiffLevel,
    col: number,
    row: number,
    rows: number,
    signal: AbortSignal,
  ): Promise<{ data: SampleArray; width: number }> {
    try {
      if (stored.compression === COMPRESSION_JPEG) return await this.jpegTileSamples(level, col, row);
      return await this.decodePlanes(level, stored, col, row, rows, signal);
    } catch (error) {
      // Damaged tile data is the image's fault: 404, as for a tile beyond the end of the file.
      if (error instanceof TiffFormatError) throw new FileError(`${this.name}: tile ${col},${row} of level ${level}: ${error.message}`);
      throw error;
    }
  }

  private async decodePlanes(
    level: number,
    stored: TiffLevel,
    col: number,
    row: number,
    rows: number,
    signal: AbortSignal,
  ): Promise<{ data: SampleArray; width: number }> {
    const { littleEndian } = this.tiff.info;
    const read = async (plane: number, layout: TiffLevel) => {
      // Another tile of the request failed: this one is not wanted any more.
      signal.throwIfAborted();
      return unpackTile(await this.readTileBytes(level, col, row, plane), layout, littleEndian, rows, signal);
    };
    if (stored.planarConfig === 1) return read(0, stored);
    const bands = stored.samplesPerPixel;
    const plane = { ...stored, samplesPerPixel: 1 };
    const planes = await Promise.all(Array.from({ length: bands }, async (_, p) => (await read(p, plane)).data));
    const data = new (planes[0]!.constructor as new (n: number) => SampleArray)(planes[0]!.length * bands);
    const slices = new TimeSlices(signal);
    for (let p = 0; p < bands; p++) {
      const samples = planes[p]!;
      await slices.run(samples.length, CHECK_ELEMENTS, (from, to) => {
        for (let i = from, o = from * bands + p; i < to; i++, o += bands) data[o] = samples[i]!;
      });
    }
    return { data, width: stored.tileWidth };
  }

  /** 8 and 16-bit unsigned data in compressions only libvips decodes (JPEG, WebP, CCITT). */
  private async sharpSamples(level: number, rect: Rect): Promise<Samples> {
    const d = this.description;
    const wide = d.bitsPerSample > 8;
    // Keep the bands and the precision as stored: sharp would otherwise convert to 8-bit sRGB.
    const space = d.channels <= 2 ? (wide ? 'grey16' : 'b-w') : wide ? 'rgb16' : 'srgb';
    // A pipeline of its own for each try: decoding() may run it twice, and a pipeline given extract
    // twice crops the crop ("bad extract area").
    const { data, info } = await decoding(this.name, async () =>
      (await this.open(level))
        .extract(rect)
        .toColourspace(space)
        .raw({ depth: wide ? 'ushort' : 'uchar' })
        .toBuffer({ resolveWithObject: true }),
    );
    const values = wide ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : data;
    return { data: values, width: info.width, height: info.height, channels: info.channels };
  }

  private async open(level: number): Promise<Sharp> {
    const stored = this.tiff.info.levels[level]!;
    return sharp(typeof this.path === 'string' ? this.path : await this.path(), {
      page: stored.page,
      ...(stored.subifd >= 0 ? { tiff: { subifd: stored.subifd } } : {}),
      limitInputPixels: false,
      limitInputChannels: 64,
      // libtiff warns about tags it does not know (GeoTIFF, private tags): not a reason to fail.
      failOn: 'none',
      // The samples as stored, as iipsrv sends them: without this sharp converts an image with an
      // ICC profile to sRGB on output (the profile itself is embedded by the engine, see encoders).
      ignoreIcc: true,
    });
  }

  close(): Promise<void> {
    return this.tiff.close();
  }
}
