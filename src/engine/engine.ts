/**
 * The shared tile engine every protocol talks to. It knows image files, never URLs: protocols ask
 * for an image by the name the client used, then for tiles and regions of it; the engine applies
 * the filesystem rules, keeps parsed files open (bounded), and answers through its caches.
 */
import { availableParallelism } from 'node:os';
import sharp, { type KernelEnum, type Sharp } from 'sharp';
import { FileError, NotImplementedError } from '../errors.js';
import type { Interpolation } from '../config.js';
import { LruCache } from './cache/lru.js';
import { jpegCodec, type RawPixels } from './codecs/jpeg.js';
import { NO_PROCESSING, isIdentity, process as runPipeline, processingKey, type Processing } from './processing.js';
import { DEFAULT_ENCODER_SETTINGS, encodeImage, type EncoderSettings, type OutputFormat } from './encoders.js';
import type { MemcachedTier } from './cache/memcached.js';
import { TileCache } from './cache/tile-cache.js';
import { identifyImageFile, statImageFile, type ImageFileInfo } from './image-file.js';
import { resolveImagePath, UnsafePathError, type ImagePathRules } from './image-path.js';
import { asUnsigned, firstBands, labToSrgb } from './pixel-types.js';
import type { ImageDescription, ImageSource } from './source.js';
import { streamTile, type StreamTile } from './stream-tile.js';
import { TiffSource } from './tiff-source.js';
import { tileRect, type Rect, type RegionPlan } from './view.js';

export interface EngineOptions {
  paths: ImagePathRules;
  /** Bytes of finished tiles and regions kept in RAM; 0 = none. */
  cacheBytes?: number;
  memcached?: MemcachedTier | null;
  /** Parsed files kept open; 0 = none (re-read every request), -1 = unbounded. */
  maxOpenImages?: number;
  interpolation?: Interpolation;
  encoders?: EncoderSettings;
}

export interface OpenImage {
  /** The name as the client gave it (decoded): used in messages and file names. */
  name: string;
  file: ImageFileInfo;
  source: ImageSource;
}

export type { OutputFormat } from './encoders.js';

export interface TileRequest {
  level: number;
  col: number;
  row: number;
  format: OutputFormat;
  quality: number;
  /** May the stored bytes be sent as they are (no processing, no explicit quality)? */
  passthrough: boolean;
  /** Clockwise degrees, a multiple of 90. */
  rotation: number;
  /** Mirror left-right before rotating. */
  mirror: boolean;
  /** iipsrv's processing commands (CNT, GAM ...); none when absent. */
  processing?: Processing;
}

export interface RegionOutput {
  format: OutputFormat;
  quality: number;
  /** Clockwise degrees; other than multiples of 90 the corners are filled with white. */
  rotation: number;
  /** Mirror left-right before rotating. */
  mirror: boolean;
  /** IIIF quality: as stored, greyscale, or black and white. Default colour. */
  colour?: ColourMode;
  processing?: Processing;
}

export type ColourMode = 'colour' | 'grey' | 'bitonal';

const REC601_GREY: [[number, number, number], [number, number, number], [number, number, number]] = [
  [0.299, 0.587, 0.114],
  [0.299, 0.587, 0.114],
  [0.299, 0.587, 0.114],
];

/** Most open files a worker keeps, whatever MAX_METADATA_CACHE_SIZE says: file descriptors are finite. */
const OPEN_FILE_CEILING = 256;

export class Engine {
  private readonly cache: TileCache;
  private readonly open = new Map<string, Promise<OpenImage>>();
  private readonly maxOpen: number;
  private readonly kernel: keyof KernelEnum;
  private readonly encoders: EncoderSettings;
  /**
   * Region exports decoded at once: each holds libvips buffers of up to tens of MB, and more than
   * the cores can run only adds memory, not speed.
   */
  private readonly regionSlots = new Slots(Math.max(2, availableParallelism()));

  constructor(private readonly options: EngineOptions) {
    const cacheBytes = options.cacheBytes ?? 0;
    this.cache = new TileCache(cacheBytes > 0 ? new LruCache(cacheBytes) : null, options.memcached ?? null);
    const requested = options.maxOpenImages ?? 1000;
    this.maxOpen = requested < 0 ? OPEN_FILE_CEILING : Math.min(requested, OPEN_FILE_CEILING);
    this.encoders = options.encoders ?? DEFAULT_ENCODER_SETTINGS;
    this.kernel = ({ nearest: 'nearest', bilinear: 'linear', bicubic: 'cubic', lanczos3: 'lanczos3' } as const)[
      options.interpolation ?? 'bilinear'
    ];
  }

  /**
   * @param name the decoded image name from the request
   * @throws FileError when the name is unsafe or the file is not a readable image
   */
  async openImage(name: string): Promise<OpenImage> {
    const printable = safeName(name);
    let path: string;
    try {
      path = resolveImagePath(name, this.options.paths);
    } catch (error) {
      if (error instanceof UnsafePathError) throw new FileError(`${printable}: ${error.message}`);
      throw error;
    }
    // Every request looks at the file's time, so that a replaced file is never served stale; only
    // a file not seen before, or changed since, is opened and parsed.
    const stat = await statImageFile(path, printable);
    const known = this.open.get(path);
    if (known) {
      const image = await known.catch(() => null);
      if (image && image.file.mtimeSeconds === stat.mtimeSeconds && image.file.size === stat.size) {
        // Most recently used last, so that eviction takes the oldest.
        this.open.delete(path);
        this.open.set(path, known);
        return { ...image, name };
      }
      this.forget(path);
      // libvips caches opened files by name: without this it would go on decoding the old file.
      dropDecoderCache();
    }
    const opening = identifyImageFile(stat, printable).then(async (file) => ({ name, file, source: await this.load(file, printable) }));
    if (this.maxOpen > 0) {
      this.open.set(path, opening);
      opening.catch(() => {
        if (this.open.get(path) === opening) this.open.delete(path);
      });
      while (this.open.size > this.maxOpen) this.forget(this.open.keys().next().value!);
    }
    return opening;
  }

  private async load(file: ImageFileInfo, name: string): Promise<ImageSource> {
    if (file.format === 'tiff') return TiffSource.open(file.path, name);
    throw new FileError(`${name}: JPEG2000 images are not supported yet`);
  }

  private forget(path: string): void {
    const entry = this.open.get(path);
    this.open.delete(path);
    // Requests still using it hold their own reference; closing later costs nothing.
    entry?.then((image) => setTimeout(() => void image.source.close().catch(() => undefined), 30_000).unref(), () => undefined);
  }

  private cacheKey(image: OpenImage, kind: string): string {
    return `${image.file.path}\0${image.file.mtimeSeconds}\0${kind}`;
  }

  /** One tile, encoded, through the caches. */
  async tile(image: OpenImage, request: TileRequest): Promise<Buffer> {
    assertRenderable(image);
    const { level, col, row } = request;
    const key = this.cacheKey(
      image,
      `t:${level}:${col}:${row}:${request.format}:${request.passthrough ? 'stored' : request.quality}:${request.rotation}:${request.mirror ? 1 : 0}` +
        `:${processingKey(request.processing ?? NO_PROCESSING)}`,
    );
    const cached = await this.cache.get(key);
    if (cached) return cached;

    let bytes: Buffer | null = null;
    const unchanged = request.rotation === 0 && !request.mirror;
    const processing = request.processing ?? NO_PROCESSING;
    if (needsPipeline(image, processing)) {
      const rect = tileRect(image.source.description.levels[level]!, col, row);
      const pixels = await this.processedPixels(image, level, rect, processing);
      if (unchanged && request.format === 'jpeg' && jpegCodec) bytes = await jpegCodec.encode(pixels, request.quality);
      else {
        let pipeline = sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: pixels.channels } });
        if (request.mirror) pipeline = pipeline.flop();
        if (request.rotation !== 0) pipeline = pipeline.rotate(request.rotation);
        bytes = await encodeImage(pipeline, pixels.channels, request.format, request.quality, this.encoders);
      }
    } else if (unchanged && request.format === 'jpeg') {
      if (request.passthrough) bytes = await image.source.storedJpegTile(level, col, row);
      if (!bytes && jpegCodec) {
        const pixels = await image.source.decodeTile(level, col, row);
        if (pixels) bytes = await jpegCodec.encode(pixels, request.quality);
      }
    }
    if (!bytes) {
      const rect = tileRect(image.source.description.levels[level]!, col, row);
      let pipeline = await image.source.decode(level, rect);
      if (request.mirror) pipeline = pipeline.flop();
      if (request.rotation !== 0) pipeline = pipeline.rotate(request.rotation);
      bytes = await encodeImage(pipeline, image.source.description.channels, request.format, request.quality, this.encoders);
    }
    this.cache.set(key, bytes);
    return bytes;
  }

  /** A tile of IIP's TIL stream when it is not JTL's JPEG (see stream-tile.ts), else null. */
  async streamTile(image: OpenImage, level: number, col: number, row: number, quality: number): Promise<StreamTile | null> {
    assertRenderable(image);
    return streamTile(image.source, level, col, row, quality);
  }

  /** A region, resized and encoded, through the caches. */
  async region(image: OpenImage, plan: RegionPlan, output: RegionOutput): Promise<Buffer> {
    assertRenderable(image);
    const { source } = plan;
    const key = this.cacheKey(
      image,
      `r:${plan.level}:${source.left},${source.top},${source.width},${source.height}:${plan.outputWidth}x${plan.outputHeight}:` +
        `${output.rotation}:${output.mirror ? 1 : 0}:${output.format}:${output.quality}:${this.kernel}:${output.colour ?? 'colour'}` +
        `:${processingKey(output.processing ?? NO_PROCESSING)}`,
    );
    const cached = await this.cache.get(key);
    if (cached) return cached;
    await this.regionSlots.acquire();
    try {
      const bytes = await this.renderRegion(image, plan, output);
      this.cache.set(key, bytes);
      return bytes;
    } finally {
      this.regionSlots.release();
    }
  }

  private async renderRegion(image: OpenImage, plan: RegionPlan, output: RegionOutput): Promise<Buffer> {
    const { source } = plan;
    const processing = output.processing ?? NO_PROCESSING;
    let channels = image.source.description.channels;
    let pipeline: Sharp;
    if (needsPipeline(image, processing)) {
      // iipsrv processes the region at its level, then resizes the 8-bit result.
      const pixels = await this.processedPixels(image, plan.level, source, processing);
      pipeline = sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: pixels.channels } });
      channels = pixels.channels;
    } else pipeline = await image.source.decode(plan.level, source);
    if (plan.outputWidth !== source.width || plan.outputHeight !== source.height) {
      pipeline = pipeline.resize(plan.outputWidth, plan.outputHeight, { fit: 'fill', kernel: this.kernel });
    }
    if (output.mirror) pipeline = pipeline.flop();
    if (output.rotation % 360 !== 0) {
      // The corners an arbitrary angle uncovers: white in JPEG (as iipsrv), transparent where the
      // format has alpha (as the IIIF specification recommends).
      const square = output.rotation % 90 === 0;
      if (square || output.format === 'jpeg') pipeline = pipeline.rotate(output.rotation, { background: '#ffffff' });
      else {
        pipeline = pipeline.ensureAlpha().rotate(output.rotation, { background: { r: 255, g: 255, b: 255, alpha: 0 } });
        if (channels === 1 || channels === 3) channels++;
      }
    }
    if (output.colour === 'grey' || output.colour === 'bitonal') {
      // One band, alpha dropped, from the encoded values with Rec. 601 weights as iipsrv does
      // (libvips' own b-w works in linear light: pure red would be 127 instead of 76); bitonal
      // splits it at the middle grey.
      if (channels >= 3) pipeline = pipeline.removeAlpha().recomb(REC601_GREY).extractChannel(0);
      pipeline = pipeline.removeAlpha().toColourspace('b-w');
      if (output.colour === 'bitonal') pipeline = pipeline.threshold(128, { greyscale: true });
      channels = 1;
    }
    return encodeImage(pipeline, channels, output.format, output.quality, this.encoders);
  }

  /**
   * The samples of a rectangle at their full precision, through iipsrv's pipeline to 8 bits
   * (see processing.ts).
   */
  private async processedPixels(image: OpenImage, level: number, rect: Rect, processing: Processing): Promise<RawPixels> {
    const d = image.source.description;
    let samples = await image.source.samples(level, rect);
    let [minValues, maxValues] = [d.minValues, d.maxValues];
    if (d.colourSpace === 'cielab') {
      // iipsrv converts to 8-bit sRGB before anything else, so the pipeline sees 0..255.
      samples = labToSrgb(samples);
      [minValues, maxValues] = [[0, 0, 0], [255, 255, 255]];
    } else samples = asUnsigned(samples);
    const out = (isIdentity(processing) && firstBands(samples)) || runPipeline(samples, minValues, maxValues, processing);
    return { data: out.data, width: samples.width, height: samples.height, channels: out.channels, stride: samples.width * out.channels };
  }

  /** SIGHUP: forget everything cached so that replaced files and settings are read afresh. */
  flushCaches(): void {
    this.cache.clear();
    dropDecoderCache();
    for (const path of [...this.open.keys()]) this.forget(path);
  }

  cacheStats(): Record<string, number> {
    return this.cache.stats();
  }
}

/**
 * iipsrv runs its float pipeline for data wider than 8 bits and for any processing command; the
 * pixel types libvips does not read as iipsrv (signed, CIELAB, multiband) come the same way.
 */
function needsPipeline(image: OpenImage, processing: Processing): boolean {
  return !isIdentity(processing) || !plainEightBit(image.source.description);
}

function plainEightBit(d: ImageDescription): boolean {
  const space = d.colourSpace === 'srgb' || d.colourSpace === 'grey' || d.colourSpace === 'binary';
  return d.sampleFormat === 'uint' && d.bitsPerSample <= 8 && space && d.channels <= 4;
}

/** Every pixel type renders; only what cannot be decoded at all (a codec we lack) is a 501. */
function assertRenderable(image: OpenImage): void {
  const d = image.source.description;
  if (d.undecodable) throw new NotImplementedError(`${image.name}: ${d.undecodable}`);
}

/** A counting semaphore: at most `size` holders, the others wait in order. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(size: number) {
    this.free = size;
  }

  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/** Empties libvips' cache of opened files and operations, keeping its limits. */
function dropDecoderCache(): void {
  const { memory, files, items } = sharp.cache();
  sharp.cache(false);
  sharp.cache({ memory: memory.max, files: files.max, items: items.max });
}

/** Names go back to clients in error bodies: keep them printable. */
function safeName(name: string): string {
  return name.replace(/[\0-\x1f\x7f]/g, '?');
}
