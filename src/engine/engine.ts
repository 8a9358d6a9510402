/**
 * The shared tile engine every protocol talks to. It knows image files, never URLs: protocols ask
 * for an image by the name the client used, then for tiles and regions of it; the engine applies
 * the filesystem rules, keeps parsed files open (bounded), and answers through its caches.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { type KernelEnum, type Sharp } from 'sharp';
import { InvalidArgumentError, NotImplementedError } from '../errors.js';
import type { Interpolation } from '../config.js';
import { CacheGenerations, FIRST_GENERATION } from './cache/generations.js';
import { LruCache } from './cache/lru.js';
import type { MemcachedTier } from './cache/memcached.js';
import { TileCache, type CacheResult, type LeaseSettings } from './cache/tile-cache.js';
import { decoding } from './codecs/libvips-errors.js';
import { assertProcessable, DEFAULT_DECODE_LIMITS, type DecodeLimits } from './decode-limits.js';
import { OpenImages, type OpenImage } from './files/open-images.js';
import type { ImagePathRules } from './files/image-path.js';
import { LocalStorage } from './files/local-storage.js';
import type { ImageStorage } from './files/storage.js';
import { createRemoteStorage, type RemoteSettings } from './files/store/remote-storage.js';
import { Formats, type PlainOptions } from './formats.js';
import type { DerivedPyramid, ImageFormat } from './source.js';
import { tileRect, type Rect, type RegionPlan } from './geometry.js';
import type { Jp2DecoderOptions } from './jp2/decoder.js';
import {
  DEFAULT_ENCODER_SETTINGS,
  keepsSixteenBits,
  type EncodeOptions,
  type EncoderSettings,
  type OutputFormat,
  type RequestedQuality,
} from './output/encoders.js';
import { directJpeg, encodeJpegPixels, encodePipeline, encodeRegion, rawPipeline, withProfile, type Marker } from './output/finish.js';
import { stopJp2Encoders } from './output/jp2.js';
import { assertEncodable } from './output/limits.js';
import { streamTile, type StreamTile } from './output/stream-tile.js';
import type { Watermark } from './output/watermark.js';
import { needsPipeline, PixelProcessor } from './pixels/processed-pixels.js';
import { hasOutputSteps } from './pixels/output-steps.js';
import { NO_PROCESSING, isIdentity, processingKey, type Processing } from './pixels/processing.js';
import { cheapRegionConcurrency, Slots } from './slots.js';
import type { Samples } from './source.js';

export type { OpenImage } from './files/open-images.js';
export type { OutputFormat } from './output/encoders.js';
export type { CacheResult, CacheTier } from './cache/tile-cache.js';

export interface EngineOptions {
  paths: ImagePathRules;
  /** FILESYSTEM_PREFIX an object store's (`s3://`, `http(s)://`): how to read it; absent for a local directory. */
  remote?: RemoteSettings | null;
  /** Bytes of finished tiles and regions kept in RAM; 0 = none. */
  cacheBytes?: number;
  memcached?: MemcachedTier | null;
  /** Parsed files kept open; 0 = none (re-read every request), -1 = unbounded. */
  maxOpenImages?: number;
  interpolation?: Interpolation;
  encoders?: EncoderSettings;
  /** FILENAME_PATTERN: what joins a sequence's name and its views' angles. */
  filenamePattern?: string;
  /** WATERMARK, loaded; null = none. */
  watermark?: Watermark | null;
  /** Largest ICC profile embedded in outputs (EMBED_ICC / MAX_ICC); 0 (the default here) = never. */
  maxIcc?: number;
  /** MAX_LAYERS: JPEG2000 quality layers decoded when a request gives no LYR. */
  maxLayers?: number;
  /** How JPEG2000 is decoded (the helper, opj_decompress, time and memory limits); defaults suit a server. */
  jp2Decoder?: Jp2DecoderOptions;
  /** Most memory one JPEG2000 decode may need by its header's account; 0 = no check. Default 1 GiB. */
  jp2MaxDecodeBytes?: number;
  /** Expensive region exports rendered at once (the others queue); default: the cores, at least 2. */
  regionConcurrency?: number;
  /** MAX_TILE_BYTES, MAX_SAMPLES_PER_PIXEL, MAX_PROCESSING_PIXELS; defaults in decode-limits.ts. */
  limits?: DecodeLimits;
  /** Images without a pyramid: size bounds, the decoded-image cache, the pyramid cache directory. */
  plain?: PlainOptions;
  /** How long a request waits for a tile another worker or instance is rendering (memcached lease). */
  lease?: LeaseSettings;
  /** CACHE_GENERATION_CHECK: how long an image's cache generation is used before memcached is asked again. */
  generationCheckMs?: number;
}

/**
 * Regions that decode or produce more pixels than this (a 1448x1448 square) are expensive: they
 * take their turn in the engine's region slots. Below it (thumbnails from a pyramid level, the
 * viewers' small views) a region costs a few milliseconds and is rendered at once.
 */
const CHEAP_REGION_PIXELS = 1 << 21;

export interface TileRequest {
  level: number;
  col: number;
  row: number;
  format: OutputFormat;
  quality: number;
  /** An explicit QLT, for the codecs other than JPEG; null = the site's settings. */
  requested?: RequestedQuality | null;
  /** 16: 16-bit samples of a 16-bit image in PNG or TIFF (the caller has refused processing). */
  bits?: 8 | 16;
  /** May the stored bytes be sent as they are (no processing, no explicit quality)? */
  passthrough: boolean;
  /** Clockwise degrees, a multiple of 90. */
  rotation: number;
  /** Mirror left-right before rotating. */
  mirror: boolean;
  /** iipsrv's processing commands (CNT, GAM ...); none when absent. */
  processing?: Processing;
  /** IIP LYR: JPEG2000 quality layers; absent = MAX_LAYERS. */
  layers?: number;
}

export interface RegionOutput {
  format: OutputFormat;
  quality: number;
  requested?: RequestedQuality | null;
  bits?: 8 | 16;
  /** Clockwise degrees; other than multiples of 90 the corners are filled with white. */
  rotation: number;
  /** Mirror left-right before rotating. */
  mirror: boolean;
  /** IIIF quality: as stored, greyscale, or black and white. Default colour. */
  colour?: ColourMode;
  processing?: Processing;
  /** IIP LYR: JPEG2000 quality layers; absent = MAX_LAYERS. */
  layers?: number;
}

export type ColourMode = 'colour' | 'grey' | 'bitonal';

/** LYR changes JPEG2000 pixels; absent, keys stay as they were. */
function layersKey(layers: number | undefined): string {
  return layers ? `:l${layers}` : '';
}

export class Engine {
  private readonly cache: TileCache;
  private readonly formats: Formats;
  private readonly images: OpenImages;
  private readonly kernel: keyof KernelEnum;
  private readonly encoders: EncoderSettings;
  private readonly watermark: Watermark | null;
  private readonly maxIcc: number;
  /**
   * The engine-wide settings that change output bytes (watermark, ICC limit, codec settings): part
   * of every cache key, so that a memcached shared with differently configured servers never
   * serves one's output to the other.
   */
  private readonly outputTag: string;
  /**
   * Expensive region exports rendered at once: each holds libvips buffers of up to tens of MB and
   * one of libuv's threads for its whole run, and more than the cores can run only adds memory.
   * Cheap regions (thumbnails, small views) never wait here behind them.
   */
  private readonly regionSlots: Slots;
  /**
   * Cheap regions in a lane of their own, so that they never wait behind expensive ones, but
   * bounded too: sixteen thumbnails at once on two cores only lengthen each other's tail.
   */
  private readonly cheapRegionSlots: Slots;
  private readonly limits: DecodeLimits;
  private readonly pixels: PixelProcessor;

  private readonly renders: Record<ImageFormat, { count: number; seconds: number }> = {
    tiff: { count: 0, seconds: 0 },
    jp2: { count: 0, seconds: 0 },
    plain: { count: 0, seconds: 0 },
  };
  private readonly memcached: MemcachedTier | null;
  private readonly storage: ImageStorage;
  /** Each image's cache generation, part of its cache keys: what a purge changes. */
  private readonly generations: CacheGenerations;

  constructor(options: EngineOptions) {
    this.memcached = options.memcached ?? null;
    this.storage = options.remote ? createRemoteStorage(options.remote, this.memcached) : new LocalStorage(options.paths.prefix);
    this.generations = new CacheGenerations(this.memcached, options.generationCheckMs ?? 5000);
    this.regionSlots = new Slots(options.regionConcurrency ?? Math.max(2, availableParallelism()));
    this.cheapRegionSlots = new Slots(cheapRegionConcurrency(this.regionSlots.size));
    const cacheBytes = options.cacheBytes ?? 0;
    this.cache = new TileCache(cacheBytes > 0 ? new LruCache(cacheBytes) : null, options.memcached ?? null, options.lease);
    this.limits = options.limits ?? DEFAULT_DECODE_LIMITS;
    this.pixels = new PixelProcessor(this.limits);
    this.formats = new Formats({
      storage: this.storage,
      maxLayers: options.maxLayers ?? 0,
      jp2Decoder: options.jp2Decoder,
      jp2MaxDecodeBytes: options.jp2MaxDecodeBytes,
      limits: this.limits,
      plain: options.plain,
    });
    this.images = new OpenImages({
      paths: options.paths,
      storage: this.storage,
      maxOpen: options.maxOpenImages ?? 1000,
      filenamePattern: options.filenamePattern ?? '_pyr_',
      openSource: (file, name, page) => this.formats.open(file, name, page),
    });
    this.encoders = options.encoders ?? DEFAULT_ENCODER_SETTINGS;
    this.watermark = options.watermark ?? null;
    this.maxIcc = options.maxIcc ?? 0;
    this.outputTag = createHash('sha1')
      .update(JSON.stringify([this.watermark?.fingerprint ?? '', this.maxIcc, this.encoders]))
      .digest('base64url');
    this.kernel = ({ nearest: 'nearest', bilinear: 'linear', bicubic: 'cubic', lanczos3: 'lanczos3' } as const)[options.interpolation ?? 'bilinear'];
  }

  /**
   * The image a name stands for: its file, or when there is none, the 000_090 view of the image
   * sequence of that name (iipsrv's convention).
   * @param name the decoded image name from the request
   * @throws FileError when the name is unsafe or neither a readable image nor a sequence
   */
  openImage(name: string): Promise<OpenImage> {
    return this.images.openImage(name);
  }

  /**
   * The view of `image`'s sequence at these angles (SDS, JTLS); a single image is its own only
   * view, whatever the angles.
   * @throws FileError when the sequence has no such view
   */
  openView(image: OpenImage, horizontal: number, vertical: number): Promise<OpenImage> {
    return this.images.openView(image, horizontal, vertical);
  }

  /**
   * The samples of a rectangle of a level exactly as stored (SPECTRA, PFL).
   * @throws InvalidArgumentError when the rectangle leaves the level
   */
  async samples(image: OpenImage, level: number, rect: Rect): Promise<Samples> {
    const size = image.source.description.levels[level];
    if (!size) throw new InvalidArgumentError(`${image.name}: no resolution level ${level}`);
    if (rect.left < 0 || rect.top < 0 || rect.width < 1 || rect.height < 1 || rect.left + rect.width > size.width || rect.top + rect.height > size.height) {
      throw new InvalidArgumentError(
        `${image.name}: ${rect.width}x${rect.height} at ${rect.left},${rect.top} lies outside the ${size.width}x${size.height} level`,
      );
    }
    assertRenderable(image);
    assertProcessable(image.name, rect, this.limits, 'reading the samples');
    return image.source.samples(level, rect);
  }

  private async cacheKey(image: OpenImage, kind: string): Promise<string> {
    // The pages of a stack share a file; page 0 keeps the key of a single image.
    const page = image.page ? `\0page ${image.page}` : '';
    // An image never purged keeps the key it had before generations existed.
    const generation = await this.generations.current(image.file.path);
    const purged = generation === FIRST_GENERATION ? '' : `\0gen ${generation}`;
    return `${image.file.path}${page}\0${image.file.version}${purged}\0${kind}\0${this.outputTag}`;
  }

  /**
   * 16 when asked for, the image has 16-bit samples and the format keeps them; never with
   * processing, whose output is 8-bit (protocols refuse that combination before asking).
   */
  private outputBits(image: OpenImage, format: OutputFormat, bits: 8 | 16 | undefined, processing: Processing = NO_PROCESSING): 8 | 16 {
    const wide = bits === 16 && image.source.description.bitsPerSample === 16 && keepsSixteenBits(format);
    return wide && isIdentity(processing) ? 16 : 8;
  }

  /**
   * The image's profile when it still describes the output: not after colour maps, twists or
   * greyscale conversion (iipsrv's rule), and not beyond EMBED_ICC / MAX_ICC.
   */
  private iccFor(image: OpenImage, processing: Processing, colour: ColourMode = 'colour'): Buffer | null {
    const icc = image.source.description.icc;
    if (!icc || icc.length === 0 || icc.length > this.maxIcc) return null;
    // iipsrv drops the profile where the output's colours are no longer the source's.
    const recoloured = processing.colormap !== null || processing.twist !== null || processing.shade !== null || processing.grey || processing.binary;
    if (recoloured || colour !== 'colour') return null;
    return icc;
  }

  /** One tile, encoded, through the caches, and the tier that answered. */
  async tile(image: OpenImage, request: TileRequest): Promise<CacheResult> {
    assertRenderable(image);
    const { level, col, row } = request;
    const processing = request.processing ?? NO_PROCESSING;
    const bits = this.outputBits(image, request.format, request.bits, processing);
    const key = await this.cacheKey(
      image,
      `t:${level}:${col}:${row}:${request.format}:${request.passthrough ? 'stored' : request.quality}:${request.rotation}:${request.mirror ? 1 : 0}` +
        `:${processingKey(processing)}:${qualityKey(request.requested)}:${bits}${layersKey(request.layers)}`,
    );
    // With WATERMARK_PROBABILITY < 1 the cache keeps whichever the first rendering drew: a tile
    // stays as it was first served (marked or not) while it is cached, as in iipsrv 1.3.
    const cached = await this.cache.get(key);
    if (cached) return cached;
    return this.cache.fill(key, () => this.timed(image, () => this.renderTile(image, request, processing, bits)));
  }

  private async renderTile(image: OpenImage, request: TileRequest, processing: Processing, bits: 8 | 16): Promise<CacheResult> {
    const { level, col, row } = request;
    const decodeOptions = { layers: request.layers };
    const upright = request.rotation === 0 && !request.mirror;
    const watermark = this.watermark;
    const mark: Marker = watermark?.draw() ? (pixels) => watermark.markTile(pixels) : null;
    const encoding: EncodeOptions = {
      format: request.format,
      quality: request.quality,
      requested: request.requested ?? null,
      icc: this.iccFor(image, processing),
      bits,
    };
    const icc = encoding.icc ?? null;
    let bytes: Buffer | null = null;
    if (bits === 8 && needsPipeline(image.source.description, processing)) {
      const rect = tileRect(image.source.description.levels[level]!, col, row);
      const pixels = await this.pixels.withOutputSteps(
        image.source,
        await this.pixels.processed(image.source, image.name, level, rect, processing, decodeOptions),
        processing,
      );
      bytes =
        upright && request.format === 'jpeg' && directJpeg
          ? await encodeJpegPixels(pixels, request.quality, icc, mark)
          : await encodePipeline(rawPipeline(pixels), pixels.channels, 8, request, mark, encoding, this.encoders);
    } else if (upright && request.format === 'jpeg') {
      // A watermarked tile is never the stored one.
      if (request.passthrough && !mark) {
        const stored = await image.source.storedJpegTile(level, col, row);
        if (stored) return { bytes: withProfile(stored, icc), tier: 'passthrough' };
      }
      if (directJpeg) {
        const pixels = await image.source.decodeTile(level, col, row, decodeOptions);
        if (pixels) bytes = await encodeJpegPixels(pixels, request.quality, icc, mark);
      }
    }
    if (!bytes) {
      const rect = tileRect(image.source.description.levels[level]!, col, row);
      const { channels } = image.source.description;
      bytes = await decoding(image.name, async () =>
        encodePipeline(await image.source.decode(level, rect, decodeOptions), channels, bits, request, mark, encoding, this.encoders),
      );
    }
    return { bytes, tier: 'computed' };
  }

  /** Times one rendering (decode, processing and encoding of what no cache had) under its codec. */
  private async timed<T>(image: OpenImage, render: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await render();
    } finally {
      const codec = this.renders[image.source.description.format];
      codec.count++;
      codec.seconds += (performance.now() - started) / 1000;
    }
  }

  /** A tile of IIP's TIL stream when it is not JTL's JPEG (see output/stream-tile.ts), else null. */
  async streamTile(image: OpenImage, level: number, col: number, row: number, quality: number): Promise<StreamTile | null> {
    assertRenderable(image);
    return streamTile(image.source, level, col, row, quality);
  }

  /**
   * A region, resized and encoded, through the caches, and the tier that answered.
   * @param signal aborts when the client is gone: queued work is dropped, running work stops at its next step
   */
  async region(image: OpenImage, plan: RegionPlan, requested: RegionOutput, signal?: AbortSignal): Promise<CacheResult> {
    assertRenderable(image);
    // Black and white is iipsrv's COL=binary: grey, then the image histogram's Otsu threshold.
    const output: RegionOutput =
      requested.colour === 'bitonal'
        ? { ...requested, colour: 'colour', processing: { ...(requested.processing ?? NO_PROCESSING), grey: false, binary: true } }
        : requested;
    assertEncodable(image.name, plan.outputWidth, plan.outputHeight, output.format, output.rotation);
    const { source } = plan;
    const key = await this.cacheKey(
      image,
      `r:${plan.level}:${source.left},${source.top},${source.width},${source.height}:${plan.outputWidth}x${plan.outputHeight}:` +
        `${output.rotation}:${output.mirror ? 1 : 0}:${output.format}:${output.quality}:${this.kernel}:${output.colour ?? 'colour'}` +
        `:${processingKey(output.processing ?? NO_PROCESSING)}:${qualityKey(output.requested)}:${this.regionBits(image, output)}${layersKey(output.layers)}`,
    );
    const cached = await this.cache.get(key);
    if (cached) return cached;
    const expensive = Math.max(source.width * source.height, plan.outputWidth * plan.outputHeight) > CHEAP_REGION_PIXELS;
    // Shared by every identical request in flight: `shared` aborts once all their clients have gone.
    const compute = (shared?: AbortSignal) => {
      const render = async (): Promise<CacheResult> => ({
        bytes: await decoding(image.name, () => this.renderRegion(image, plan, output, shared)),
        tier: 'computed',
      });
      return this.timed(image, () => (expensive ? this.regionSlots : this.cheapRegionSlots).run(render, shared));
    };
    return this.cache.fill(key, compute, signal);
  }

  private async renderRegion(image: OpenImage, plan: RegionPlan, output: RegionOutput, signal: AbortSignal | undefined): Promise<Buffer> {
    const { source } = plan;
    const processing = output.processing ?? NO_PROCESSING;
    let channels = image.source.description.channels;
    const bits = this.regionBits(image, output);
    let pipeline: Sharp;
    let atOutputSize = plan.outputWidth === source.width && plan.outputHeight === source.height;
    if (bits === 8 && needsPipeline(image.source.description, processing)) {
      // iipsrv processes the region at its level, then resizes the 8-bit result.
      let pixels = await this.pixels.processed(image.source, image.name, plan.level, source, processing, { layers: output.layers });
      if (!atOutputSize && hasOutputSteps(processing)) {
        // Grey, binary and equalisation work on the pixels as sent, so after the resize.
        let resize = rawPipeline(pixels).resize(plan.outputWidth, plan.outputHeight, { fit: 'fill', kernel: this.kernel });
        // libvips would hand one band back as three (sRGB) otherwise.
        if (pixels.channels === 1) resize = resize.toColourspace('b-w');
        const { data, info } = await resize.raw().toBuffer({ resolveWithObject: true });
        pixels = { data, width: info.width, height: info.height, channels: pixels.channels, stride: info.width * pixels.channels };
        atOutputSize = true;
      }
      pixels = await this.pixels.withOutputSteps(image.source, pixels, processing);
      // Decoded and processed for a client that has gone: the encoding is not worth doing.
      signal?.throwIfAborted();
      pipeline = rawPipeline(pixels);
      channels = pixels.channels;
    } else pipeline = await image.source.decode(plan.level, source, { layers: output.layers });
    if (!atOutputSize) {
      pipeline = pipeline.resize(plan.outputWidth, plan.outputHeight, { fit: 'fill', kernel: this.kernel });
    }
    const encoding: EncodeOptions = {
      format: output.format,
      quality: output.quality,
      requested: output.requested ?? null,
      icc: this.iccFor(image, processing, output.colour),
      xmp: image.source.description.xmp,
      exif: image.source.description.exif ?? null,
      bits,
    };
    const { tileWidth, tileHeight } = image.source.description.levels[0]!;
    const marking = this.watermark && this.watermark.probability > 0 ? { watermark: this.watermark, tileWidth, tileHeight } : null;
    const size = { width: plan.outputWidth, height: plan.outputHeight };
    return encodeRegion(pipeline, channels, { ...output, ...size, colour: output.colour ?? 'colour' }, marking, encoding, this.encoders);
  }

  /** As outputBits; greyscale and bitonal IIIF qualities are 8-bit. */
  private regionBits(image: OpenImage, output: RegionOutput): 8 | 16 {
    const colour = output.colour ?? 'colour';
    return colour === 'colour' ? this.outputBits(image, output.format, output.bits, output.processing) : 8;
  }

  /**
   * `iipsrv purge`: everything cached of the image file (its tiles and regions, every page, for
   * every protocol) becomes unreachable, here at once and in running servers within their
   * CACHE_GENERATION_CHECK, by a new cache generation.
   * @throws Error without memcached, or when memcached does not confirm it
   */
  async purge(image: OpenImage): Promise<void> {
    await this.generations.renew(image.file.path);
  }

  /**
   * The pyramid built for an image that has none of its own (PYRAMID_CACHE_DIR), for the cache tools.
   * @returns null when the image has no such pyramid to build or remove
   */
  derivedPyramid(image: OpenImage): DerivedPyramid | null {
    return image.source.derivedPyramid?.() ?? null;
  }

  /** SIGHUP: forget everything cached so that replaced files and settings are read afresh. */
  flushCaches(): void {
    this.cache.clear();
    this.generations.clear();
    this.formats.flush();
    this.images.flush();
    this.storage.flush?.();
  }

  /** Ends the JPEG2000 decoder and encoder processes (the helpers would also end by themselves when this process goes). */
  close(): void {
    this.formats.close();
    stopJp2Encoders();
  }

  cacheStats(): Record<string, number> {
    return this.cache.stats();
  }

  /**
   * The names directly under FILESYSTEM_PREFIX when it is an object store (the viewer's list), or
   * null for a local folder, which the viewer walks itself.
   * @throws BadGatewayError when the store cannot list (a web server), UnavailableError, AccessDeniedError
   */
  async storedNames(limit: number): Promise<string[] | null> {
    return this.storage.listTop ? this.storage.listTop(limit) : null;
  }

  /** An object store's counters (see RemoteStorage.stats); empty for the local filesystem. */
  storageStats(): Record<string, number> {
    return this.storage.stats?.() ?? {};
  }

  /** Renderings (what no cache had) per source codec, and the seconds they took. */
  renderStats(): Readonly<Record<ImageFormat, { count: number; seconds: number }>> {
    return this.renders;
  }

  /** JPEG2000 decoder helpers that died or were retired and had to be started anew. */
  jp2HelperRestarts(): number {
    return this.formats.jp2HelperRestarts();
  }

  /**
   * The state of what serving depends on, for health checks: whether the image folder
   * (FILESYSTEM_PREFIX, or its directory part when it ends in a file name prefix) can be read, and
   * whether memcached answers (null without one).
   */
  async health(): Promise<{ images: { ok: boolean; folder: string; error?: string }; memcached: boolean | null }> {
    const [images, memcached] = await Promise.all([this.storage.check(), this.memcached ? this.memcached.check() : Promise.resolve(null)]);
    return { images, memcached };
  }
}

function qualityKey(requested: RequestedQuality | null | undefined): string {
  return requested ? `${requested.factor}${requested.tiffCompression ?? ''}` : '';
}

/** Every pixel type renders; only what cannot be decoded at all (a codec we lack) is a 501. */
function assertRenderable(image: OpenImage): void {
  const d = image.source.description;
  if (d.undecodable) throw new NotImplementedError(`${image.name}: ${d.undecodable}`);
}
