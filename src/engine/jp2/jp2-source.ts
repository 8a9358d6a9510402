/**
 * JPEG2000 (JP2 / JPX files and raw J2K codestreams) as an image source. The header is read here
 * (jp2/header.ts); pixels come from OpenJPEG (jp2/decoder.ts), asked for exactly the resolution,
 * area and quality layers a request needs.
 *
 * Levels: the codestream's resolutions with the codec's own sizes (ceil division per level) down
 * to one that fits a tile, as iipsrv; when even the smallest is larger, virtual levels halving
 * further (decoded from the smallest real one and scaled; iipsrv 1.1 crashes on these). Tiles
 * are virtual too, 256x256, as in iipsrv.
 *
 * A file in an object store is read by byte ranges: its header here through the store's block
 * cache, its codestream by the persistent helper, which asks for what OpenJPEG reads (jp2/helper.ts).
 * What needs a file on the disk (HTJ2K, decoded by OpenJPH; opj_decompress, when the helper is not
 * built or leaves a colour conversion to it) gets the object's local copy.
 */
import { open } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import { samplesPipeline } from '../pixels/pixel-types.js';
import { FileError, ServerFailureError, UnavailableError } from '../../errors.js';
import type { DecodeArea } from './decode-area.js';
import { type Jp2Decoder, type Jp2File } from './decoder.js';
import { HelperUnsupported } from './helper.js';
import { fileHeaderBytes, Jp2FormatError, readJp2Header, type HeaderBytes, type Jp2Header } from './header.js';
import { type DecodedLevelCache } from './level-cache.js';
import { decodeMemory } from './memory.js';
import { StoredCodestream } from './stored-codestream.js';
import type { LruCache } from '../cache/lru.js';
import type { DecodedPixels } from './pnm.js';
import { DecodeError } from './process-pool.js';
import type { ColourSpace, DecodeOptions, ImageDescription, ImageSource, RawPixels, Samples } from '../source.js';
import { tileRect, type LevelSize, type Rect } from '../geometry.js';
import type { RandomAccessFile } from '../tiff/positioned-file.js';

export const JP2_TILE_SIZE = 256;
/** A level this small is decoded whole once and its tiles cut from it. */
const WHOLE_LEVEL_PIXELS = 1024 * 1024;
/**
 * Larger levels: a 512x512 block (2x2 tiles) costs the codec about twice one tile (measured: 40
 * against 20 ms on a 10000x7000 lossy JP2 with 1024x1024 codestream tiles; 1024x1024 costs 78 ms).
 * It is decoded when a second tile of the same block is asked for within BLOCK_WINDOW_MS, which
 * is how viewers ask (a screenful at once, then panning), and pays for itself from its third
 * tile; scattered requests (the random benchmark) almost never trigger it.
 */
const BLOCK = 512;
/**
 * Most pixels of the smallest real level decoded for one rectangle of a virtual level: a file with
 * too few wavelet levels would otherwise need gigabytes for a thumbnail.
 */
const MAX_VIRTUAL_SOURCE_PIXELS = 64 * 1024 * 1024;
const BLOCK_WINDOW_MS = 250;
const RECENT_BLOCKS = 1024;
/**
 * A larger area (a big region export) is decoded in strips of about this many samples, one after
 * the other, so that what a decoder holds (14 bytes a sample, jp2/memory.ts) stays near 230 MB
 * however large the export: the decoder's memory is bounded by its limit, not by MAX_CVT.
 */
const STRIP_SAMPLES = 16 * 1024 * 1024;
/**
 * How many more pixels OpenJPH may decode than OpenJPEG for an HTJ2K area and still be asked
 * (decodeOnce): measured on a 10000x7000 lossy HTJ2K with 1024x1024 codestream tiles, OpenJPEG
 * 80 ms for one whole tile (1 Mpx), OpenJPH 1.6 s for the 41 Mpx of lines down to the same tile;
 * on a 2000x1500 lossless untiled one, 30 ms against 120-210 for the whole image.
 */
const OPENJPH_ADVANTAGE = 2;
/** Whole codestream tiles of an HTJ2K image decoded by OpenJPEG are kept up to this size (a 1024x1024 RGB tile is 3 MiB). */
const MAX_KEPT_TILES_BYTES = 8 * 1024 * 1024;
/** JP2_MAX_DECODE_MB's default. */
export const DEFAULT_MAX_DECODE_BYTES = 1024 * 1024 * 1024;

export interface Jp2SourceOptions {
  decoder: Jp2Decoder;
  /** Decoded whole levels shared by all JPEG2000 images. */
  levelCache: DecodedLevelCache;
  /** MAX_LAYERS: -1 all, 0 half of them (rounded up), n at most n. */
  maxLayers: number;
  /** Tile-parts of JPEG2000 images in a store read lately, shared by all of them (see stored-codestream.ts). */
  storedTileParts?: LruCache | null;
  /** Decode 512x512 blocks for tiles asked for together (default on). */
  blocks?: boolean;
  /** Most pixels decoded for one rectangle of a virtual level (default 64 Mpx). */
  maxVirtualSourcePixels?: number;
  /**
   * Most memory one decode may need by the header's account (jp2/memory.ts): a file claiming more
   * is refused (404 naming the limit) before a decoder sees it. 0 = no check; default 1 GiB.
   */
  maxDecodeBytes?: number;
  /** Decode larger areas in strips of at most this many samples (tests; default 16 Mi). */
  stripSamples?: number;
}

/** A JPEG2000 file in an object store: read by ranges, and its local copy for what needs a file. */
export interface StoredJp2 {
  file: RandomAccessFile;
  /** Location and version: what the tile-parts kept are named by. */
  identity: string;
  localPath(): Promise<string>;
}

let openedSources = 0;

const ceilDiv = (value: number, power: number) => Math.ceil(value / 2 ** power);

/**
 * The levels, largest first, down to the first that fits in one tile, as iipsrv counts them (so
 * that IIP resolution numbers mean the same as in 1.1): codestream resolutions, then virtual
 * halvings when the codestream has no level that small.
 */
export function jp2Levels(header: Jp2Header): LevelSize[] {
  const tile = { tileWidth: JP2_TILE_SIZE, tileHeight: JP2_TILE_SIZE };
  const fits = (level: LevelSize) => level.width <= JP2_TILE_SIZE && level.height <= JP2_TILE_SIZE;
  const levels: LevelSize[] = [{ width: header.x1 - header.x0, height: header.y1 - header.y0, ...tile }];
  for (let r = 1; r <= header.dwtLevels && !fits(levels[r - 1]!); r++) {
    levels.push({ width: ceilDiv(header.x1, r) - ceilDiv(header.x0, r), height: ceilDiv(header.y1, r) - ceilDiv(header.y0, r), ...tile });
  }
  for (let last = levels[levels.length - 1]!; !fits(last); last = levels[levels.length - 1]!) {
    levels.push({ width: Math.ceil(last.width / 2), height: Math.ceil(last.height / 2), ...tile });
  }
  return levels;
}

/** iipsrv's rule: LYR when given, else MAX_LAYERS (0 = half, rounded up; -1 = all); MAX_LAYERS > 0 caps both. */
export function effectiveLayers(total: number, maxLayers: number, requested?: number): number {
  let layers = requested !== undefined && requested > 0 ? requested : maxLayers < 0 ? total : maxLayers === 0 ? Math.ceil(total / 2) : maxLayers;
  if (maxLayers > 0) layers = Math.min(layers, maxLayers);
  return Math.max(1, Math.min(total, layers));
}

/**
 * The components decoded: all of up to 4; of more, the first three as RGB (the decoder drops the
 * rest), which is what iipsrv master sends of them in every output format.
 */
export function decodedComponents(header: Jp2Header): number {
  const count = header.components.length;
  return count > 4 ? 3 : count;
}

function colourSpaceOf(header: Jp2Header): ColourSpace {
  const channels = decodedComponents(header);
  if (header.enumeratedColourSpace === 14) return 'cielab';
  // 1-bit data is widened to 0/255 when decoded: plain grey from then on.
  if (channels <= 2) return 'grey';
  return 'srgb';
}

function undecodable(header: Jp2Header): string | null {
  // Its L*a*b* coding (the colr box's range and offset parameters) is not TIFF's.
  if (header.enumeratedColourSpace === 14) return 'JPEG2000 CIELab is not supported';
  const precisions = new Set(header.components.slice(0, decodedComponents(header)).map((c) => c.precision));
  if (precisions.size > 1) return 'JPEG2000 components of different bit depths are not supported';
  if ([...precisions][0]! > 16) return 'JPEG2000 samples wider than 16 bits are not supported';
  return null;
}

function describe(header: Jp2Header): ImageDescription {
  const precision = header.components[0]!.precision;
  const channels = decodedComponents(header);
  const wide = precision > 8;
  return {
    format: 'jp2',
    levels: jp2Levels(header),
    channels,
    // Samples are widened when decoded, by repeating their bits as iipsrv master does: fewer than
    // 8 bits to 8, 9 to 15 to 16; signed ones are offset by half their range first (as
    // opj_decompress writes them), so they are unsigned from then on.
    bitsPerSample: wide ? 16 : 8,
    sampleFormat: 'uint',
    colourSpace: colourSpaceOf(header),
    minValues: new Array<number>(channels).fill(0),
    maxValues: new Array<number>(channels).fill(wide ? 65535 : 255),
    // OBJ reports the codestream's precision and range (iipsrv master: 2^n for 9-15 bits).
    ...(precision !== 8 && precision !== 16
      ? {
          stored: { bitsPerSample: precision, minValues: new Array<number>(channels).fill(0), maxValues: new Array<number>(channels).fill(2 ** precision - 1) },
        }
      : {}),
    // iipsrv reports JP2 resolution per centimetre.
    resolution: header.resolution ? { x: header.resolution.x / 100, y: header.resolution.y / 100, unit: 3 } : null,
    icc: header.icc,
    xmp: header.xmp,
    metadata: {},
    undecodable: undecodable(header),
  };
}

export class Jp2Source implements ImageSource {
  readonly description: ImageDescription;
  /** Index of the smallest level the codestream holds; levels after it are virtual. */
  private readonly smallestReal: number;
  /**
   * This open file's prefix in the shared cache of decoded pixels: a file replaced under the same
   * name is a new source, whose keys never meet the old one's.
   */
  private readonly cacheId = `jp2:${++openedSources}\0`;
  /** When a tile of each block was last asked for (insertion order = age). */
  private readonly recentBlocks = new Map<string, number>();

  private constructor(
    private readonly file: Jp2File,
    private readonly name: string,
    readonly header: Jp2Header,
    private readonly fileBytes: number,
    private readonly options: Jp2SourceOptions,
  ) {
    this.description = describe(header);
    this.smallestReal = Math.min(header.dwtLevels, this.description.levels.length - 1);
  }

  /**
   * A file on the disk (a path), or in a store.
   * @throws FileError for a file whose JPEG2000 header cannot be read (404, as iipsrv); a store's errors
   */
  static async open(location: string | StoredJp2, name: string, options: Jp2SourceOptions): Promise<Jp2Source> {
    if (typeof location !== 'string') return Jp2Source.openStored(location, name, options);
    const path = location;
    let handle;
    try {
      handle = await open(path, 'r');
    } catch {
      throw new FileError(`${name} cannot be read`);
    }
    try {
      const { size } = await handle.stat();
      return new Jp2Source(path, name, await readHeader(fileHeaderBytes(handle), size, name), size, options);
    } finally {
      await handle.close();
    }
  }

  /**
   * Read by ranges when the helper is there to decode it so and the codestream is tiled; otherwise
   * from the object's local copy: OpenJPH (HTJ2K) reads files, and an untiled codestream is one
   * tile-part that every decode would fetch whole again.
   */
  private static async openStored(stored: StoredJp2, name: string, options: Jp2SourceOptions): Promise<Jp2Source> {
    if (!options.decoder.helpers) return Jp2Source.open(await stored.localPath(), name, options);
    const { file } = stored;
    const bytes: HeaderBytes = {
      read: async (position, length) =>
        position >= file.size ? Buffer.alloc(0) : file.read(position, Math.min(length, file.size - position), 'the JPEG2000 header'),
    };
    const header = await readHeader(bytes, file.size, name);
    if (header.highThroughput || codestreamTiles(header) < 2) return Jp2Source.open(await stored.localPath(), name, options);
    const codestream = new StoredCodestream(file, header.tilePartsOffset, header.tilePartLengths, () => stored.localPath(), {
      cache: options.storedTileParts ?? null,
      identity: stored.identity,
    });
    return new Jp2Source(codestream, name, header, file.size, options);
  }

  async storedJpegTile(): Promise<Buffer | null> {
    return null;
  }

  /**
   * 8-bit grey or RGB tiles as raw pixels, so that the engine encodes them with libjpeg-turbo
   * directly (1.2 ms less per tile than through a sharp pipeline). Alpha and wider samples take
   * the general path.
   */
  async decodeTile(level: number, col: number, row: number, options?: DecodeOptions): Promise<RawPixels | null> {
    const d = this.description;
    if (d.bitsPerSample !== 8 || (d.channels !== 1 && d.channels !== 3)) return null;
    const pixels = await this.pixels(level, tileRect(d.levels[level]!, col, row), options);
    const data = pixels.data instanceof Uint8Array ? Buffer.from(pixels.data.buffer, pixels.data.byteOffset, pixels.data.byteLength) : null;
    if (!data) return null;
    return { data, width: pixels.width, height: pixels.height, channels: pixels.channels as 1 | 3, stride: pixels.width * pixels.channels };
  }

  async decode(level: number, rect: Rect, options?: DecodeOptions): Promise<Sharp> {
    return samplesPipeline(await this.pixels(level, rect, options));
  }

  async samples(level: number, rect: Rect, options?: DecodeOptions): Promise<Samples> {
    return this.pixels(level, rect, options);
  }

  /** The samples of a rectangle of any level, real or virtual. */
  private async pixels(level: number, rect: Rect, options?: DecodeOptions): Promise<DecodedPixels> {
    const layers = effectiveLayers(this.header.qualityLayers, this.options.maxLayers, options?.layers);
    if (level <= this.smallestReal) return this.realPixels(level, rect, layers);
    // A virtual level: the same area of the smallest real level, scaled down.
    const real = this.description.levels[this.smallestReal]!;
    const target = this.description.levels[level]!;
    const sx = real.width / target.width;
    const sy = real.height / target.height;
    const left = Math.floor(rect.left * sx);
    const top = Math.floor(rect.top * sy);
    const source: Rect = {
      left,
      top,
      width: Math.max(1, Math.min(real.width - left, Math.round((rect.left + rect.width) * sx) - left)),
      height: Math.max(1, Math.min(real.height - top, Math.round((rect.top + rect.height) * sy) - top)),
    };
    const maxSource = this.options.maxVirtualSourcePixels ?? MAX_VIRTUAL_SOURCE_PIXELS;
    if (source.width * source.height > maxSource) {
      // A limit the file runs into (too few wavelet levels for its size): its fault, a 4xx.
      throw new FileError(
        `${this.name}: a ${rect.width}x${rect.height} view of this level needs ${source.width}x${source.height} pixels decoded ` +
          `(the codestream has only ${this.header.dwtLevels} wavelet levels), more than the ${maxSource} pixels allowed`,
      );
    }
    const full = await this.realPixels(this.smallestReal, source, layers);
    const wide = full.data instanceof Uint16Array;
    const { data, info } = await sharp(full.data, { raw: { width: full.width, height: full.height, channels: full.channels as 1 | 2 | 3 | 4 } })
      .resize(rect.width, rect.height, { fit: 'fill' })
      .raw({ depth: wide ? 'ushort' : 'uchar' })
      .toBuffer({ resolveWithObject: true });
    const values = wide ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : data;
    return { data: values, width: info.width, height: info.height, channels: info.channels };
  }

  private async realPixels(reduce: number, rect: Rect, layers: number): Promise<DecodedPixels> {
    const level = this.description.levels[reduce]!;
    if (level.width * level.height <= WHOLE_LEVEL_PIXELS && (rect.width < level.width || rect.height < level.height)) {
      const whole = await this.options.levelCache.get(`${this.cacheId}${reduce}\0${layers}`, () =>
        this.decodeArea(reduce, { left: 0, top: 0, width: level.width, height: level.height }, layers),
      );
      return crop(whole, rect);
    }
    const block = this.options.blocks === false ? null : this.blockOf(level, rect);
    if (block) {
      const key = `${this.cacheId}${reduce}\0${layers}\0${block.left},${block.top}`;
      const kept = this.options.levelCache.peek(key);
      if (kept) return crop(await kept, { ...rect, left: rect.left - block.left, top: rect.top - block.top });
      const now = Date.now();
      const last = this.recentBlocks.get(key);
      this.recentBlocks.delete(key);
      this.recentBlocks.set(key, now);
      if (this.recentBlocks.size > RECENT_BLOCKS) this.recentBlocks.delete(this.recentBlocks.keys().next().value!);
      if (last !== undefined && now - last < BLOCK_WINDOW_MS) {
        const pixels = await this.options.levelCache.get(key, () => this.decodeArea(reduce, block, layers));
        return crop(pixels, { ...rect, left: rect.left - block.left, top: rect.top - block.top });
      }
    }
    return this.decodeArea(reduce, rect, layers);
  }

  /** The 512x512 block (cropped to the level) holding the whole rectangle, or null if it spans more. */
  private blockOf(level: LevelSize, rect: Rect): Rect | null {
    const left = Math.floor(rect.left / BLOCK) * BLOCK;
    const top = Math.floor(rect.top / BLOCK) * BLOCK;
    if (rect.left + rect.width > left + BLOCK || rect.top + rect.height > top + BLOCK) return null;
    return { left, top, width: Math.min(BLOCK, level.width - left), height: Math.min(BLOCK, level.height - top) };
  }

  /** Large areas in strips of whole rows, each a decode of its own, joined here. */
  private async decodeArea(reduce: number, rect: Rect, layers: number): Promise<DecodedPixels> {
    const channels = decodedComponents(this.header);
    const stripRows = Math.max(1, Math.floor((this.options.stripSamples ?? STRIP_SAMPLES) / (rect.width * channels)));
    if (stripRows >= rect.height) return this.decodeOnce(reduce, rect, layers);
    let joined: Uint8Array | Uint16Array | null = null;
    for (let top = 0; top < rect.height; top += stripRows) {
      const height = Math.min(stripRows, rect.height - top);
      const strip = await this.decodeOnce(reduce, { ...rect, top: rect.top + top, height }, layers);
      joined ??=
        strip.data instanceof Uint16Array ? new Uint16Array(rect.width * rect.height * channels) : Buffer.allocUnsafe(rect.width * rect.height * channels);
      joined.set(strip.data, top * rect.width * channels);
    }
    return { data: joined!, width: rect.width, height: rect.height, channels };
  }

  private async decodeOnce(reduce: number, rect: Rect, layers: number): Promise<DecodedPixels> {
    const h = this.header;
    if (h.highThroughput) {
      // HTJ2K. OpenJPEG decodes HT code-blocks into its tile buffer only, never into the buffers
      // of a decode smaller than a codestream tile, which it then reads as zeros (a flat grey
      // picture): with it, a decode is done on the whole codestream tiles it touches and cut out
      // here. OpenJPH decodes whole lines from the top of the level down to the area's last, at
      // less cost a pixel: it is asked when those lines are not many more pixels than those tiles
      // (always for an untiled codestream), and OpenJPEG when they are (an area low in a large
      // tiled image), or when OpenJPH cannot.
      const tiles = this.codestreamTilesAround(reduce, rect);
      const lines = this.description.levels[reduce]!.width * (rect.top + rect.height);
      if (this.options.decoder.decodesHighThroughputAreas && lines <= OPENJPH_ADVANTAGE * tiles.width * tiles.height) {
        try {
          return await this.decodeExactly(reduce, rect, layers, true);
        } catch (error) {
          if (!(error instanceof HelperUnsupported)) throw error;
        }
      }
      if (tiles.left !== rect.left || tiles.top !== rect.top || tiles.width !== rect.width || tiles.height !== rect.height) {
        // Kept for the other tiles they hold (16 of 256x256 in a 1024x1024 codestream tile), and
        // shared by the requests asking for them at the same time.
        const bytes = tiles.width * tiles.height * decodedComponents(h) * (h.components[0]!.precision > 8 ? 2 : 1);
        const decodeTiles = () => this.decodeExactly(reduce, tiles, layers);
        const key = `${this.cacheId}${reduce}\0${layers}\0tiles ${tiles.left},${tiles.top},${tiles.width},${tiles.height}`;
        const pixels = bytes <= MAX_KEPT_TILES_BYTES ? await this.options.levelCache.get(key, decodeTiles) : await decodeTiles();
        return crop(pixels, { ...rect, left: rect.left - tiles.left, top: rect.top - tiles.top });
      }
    }
    return this.decodeExactly(reduce, rect, layers);
  }

  /** The smallest union of whole codestream tiles (at that reduction, in level coordinates) holding the rectangle. */
  private codestreamTilesAround(reduce: number, rect: Rect): Rect {
    const h = this.header;
    const span = (start: number, end: number, tileOrigin: number, tileSize: number, imageStart: number, imageEnd: number) => {
      const level0 = ceilDiv(imageStart, reduce);
      // The tile holding level pixel u is the last one starting at or before it on the reference grid.
      const tileOf = (u: number) => Math.max(0, Math.floor(((level0 + u) * 2 ** reduce - tileOrigin) / tileSize));
      const first = tileOf(start);
      const last = tileOf(end - 1);
      const from = ceilDiv(Math.max(imageStart, tileOrigin + first * tileSize), reduce) - level0;
      const to = ceilDiv(Math.min(imageEnd, tileOrigin + (last + 1) * tileSize), reduce) - level0;
      return { from: Math.max(0, Math.min(from, start)), to: Math.max(to, end) };
    };
    const x = span(rect.left, rect.left + rect.width, h.tileX0, h.tileWidth, h.x0, h.x1);
    const y = span(rect.top, rect.top + rect.height, h.tileY0, h.tileHeight, h.y0, h.y1);
    return { left: x.from, top: y.from, width: x.to - x.from, height: y.to - y.from };
  }

  private async decodeExactly(reduce: number, rect: Rect, layers: number, highThroughput = false): Promise<DecodedPixels> {
    const h = this.header;
    const channels = decodedComponents(h);
    const limit = this.options.maxDecodeBytes ?? DEFAULT_MAX_DECODE_BYTES;
    // Every component is decoded, however many are kept.
    const needed = decodeMemory(h, this.fileBytes, rect.width * rect.height * h.components.length);
    if (limit > 0 && needed.bytes > limit) {
      throw new FileError(
        `${this.name}: decoding it would need about ${megabytes(needed.bytes)} MB in the JPEG2000 decoder (${needed.reason}), ` +
          `more than the ${megabytes(limit)} MB allowed (JP2_MAX_DECODE_MB)`,
      );
    }
    const scale = 2 ** reduce;
    const originX = ceilDiv(h.x0, reduce);
    const originY = ceilDiv(h.y0, reduce);
    const area: DecodeArea = {
      reduce,
      layers,
      x0: (originX + rect.left) * scale,
      y0: (originY + rect.top) * scale,
      x1: Math.min(h.x1, (originX + rect.left + rect.width) * scale),
      y1: Math.min(h.y1, (originY + rect.top + rect.height) * scale),
      width: rect.width,
      height: rect.height,
      // The bound of the output: opj_decompress writes up to 4 of more components.
      channels: Math.min(h.components.length, 4),
    };
    let pixels: DecodedPixels;
    try {
      const decoder = this.options.decoder;
      pixels = highThroughput ? await decoder.decodeHighThroughput(await this.localPath(), area) : await decoder.decode(this.file, area);
    } catch (error) {
      if (!(error instanceof DecodeError)) throw error;
      // The codec refusing the data is the file's fault (404, as iipsrv); a hang or a missing
      // decoder is ours.
      if (error.kind === 'failed') throw new FileError(`${this.name}: the JPEG2000 data cannot be decoded (${error.message})`);
      if (error.kind === 'memory') {
        const cap = this.options.decoder.memoryBytes;
        throw new FileError(
          `${this.name}: the JPEG2000 data cannot be decoded within the decoder's memory limit` +
            `${cap > 0 ? ` of ${megabytes(cap)} MB` : ''} (JP2_HELPER_MEMORY_MB): ${error.message}`,
        );
      }
      if (error.kind === 'stalled') throw new UnavailableError(`${this.name}: the image store did not deliver the JPEG2000 data in time; try again later`);
      throw new ServerFailureError(`${this.name}: JPEG2000 decoding failed: ${error.message}`);
    }
    // opj_decompress (the fallback for sYCC and subsampled data) writes what PNM holds of more
    // components: the same first three are kept, and fewer than asked for is the file's damage.
    if (pixels.channels > channels) pixels = firstChannels(pixels, channels);
    if (pixels.channels !== channels) {
      throw new FileError(`${this.name}: the JPEG2000 decoder gave ${pixels.channels} components where ${channels} were expected`);
    }
    const precision = h.components[0]!.precision;
    if (precision < 8 && pixels.data instanceof Uint8Array) widenTo8Bits(pixels.data, precision);
    if (precision > 8 && precision < 16 && pixels.data instanceof Uint16Array) widenTo16Bits(pixels.data, precision);
    return pixels;
  }

  private localPath(): Promise<string> {
    return typeof this.file === 'string' ? Promise.resolve(this.file) : this.file.localPath();
  }

  close(): Promise<void> {
    this.options.levelCache.forget(this.cacheId);
    return Promise.resolve();
  }
}

const megabytes = (bytes: number) => Math.ceil(bytes / (1024 * 1024));

function codestreamTiles(h: Jp2Header): number {
  return Math.ceil((h.x1 - h.tileX0) / h.tileWidth) * Math.ceil((h.y1 - h.tileY0) / h.tileHeight);
}

/** @throws FileError for what is not a readable JPEG2000 header */
async function readHeader(bytes: HeaderBytes, size: number, name: string): Promise<Jp2Header> {
  try {
    return await readJp2Header(bytes, size);
  } catch (error) {
    if (error instanceof Jp2FormatError) throw new FileError(`${name}: not a readable JPEG2000 file (${error.message})`);
    throw error;
  }
}

function firstChannels(pixels: DecodedPixels, channels: number): DecodedPixels {
  const { width, height, channels: all } = pixels;
  const out = pixels.data instanceof Uint16Array ? new Uint16Array(width * height * channels) : Buffer.allocUnsafe(width * height * channels);
  for (let p = 0, i = 0, o = 0; p < width * height; p++, i += all) for (let c = 0; c < channels; c++) out[o++] = pixels.data[i + c]!;
  return { data: out, width, height, channels };
}

function crop(pixels: DecodedPixels, rect: Rect): DecodedPixels {
  const { channels } = pixels;
  const rowLength = rect.width * channels;
  const out = pixels.data instanceof Uint16Array ? new Uint16Array(rowLength * rect.height) : new Uint8Array(rowLength * rect.height);
  for (let y = 0; y < rect.height; y++) {
    const start = ((rect.top + y) * pixels.width + rect.left) * channels;
    out.set(pixels.data.subarray(start, start + rowLength), y * rowLength);
  }
  const data = out instanceof Uint8Array ? Buffer.from(out.buffer, out.byteOffset, out.byteLength) : out;
  return { data, width: rect.width, height: rect.height, channels };
}

/**
 * 9 to 15-bit samples to 16 bits by repeating their bits (12 bits: v << 4 | v >> 8), as iipsrv
 * master widens 10, 12 and 14-bit ones: 0 stays 0, the largest value becomes 65535.
 */
function widenTo16Bits(data: Uint16Array, precision: number): void {
  const table = new Uint16Array(2 ** precision);
  for (let v = 0; v < table.length; v++) table[v] = (v << (16 - precision)) | (v >> (2 * precision - 16));
  for (let i = 0; i < data.length; i++) data[i] = table[data[i]! & (table.length - 1)]!;
}

/** 1 to 7-bit samples scaled to 0..255, so that the 8-bit paths show them as they are meant. */
function widenTo8Bits(data: Uint8Array, precision: number): void {
  const max = 2 ** precision - 1;
  for (let i = 0; i < data.length; i++) data[i] = Math.round((Math.min(data[i]!, max) * 255) / max);
}
