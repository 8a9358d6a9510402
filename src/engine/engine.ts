/**
 * The shared tile engine every protocol talks to. It knows image files, never URLs: protocols ask
 * for an image by the name the client used, then for tiles and regions of it; the engine applies
 * the filesystem rules, keeps parsed files open (bounded), and answers through its caches.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import sharp, { type KernelEnum, type Sharp } from 'sharp';
import { FileError, InvalidArgumentError, NotImplementedError } from '../errors.js';
import type { Interpolation } from '../config.js';
import { LruCache } from './cache/lru.js';
import { decoding } from './codecs/libvips-errors.js';
import { jpegCodec } from './codecs/jpeg.js';
import { NO_PROCESSING, STRETCH, isIdentity, processingKey, runPipeline, type Processing } from './pixels/processing.js';
import { imageHistogram, stretchRange } from './pixels/histogram.js';
import { applyOutputSteps, hasOutputSteps } from './pixels/output-steps.js';
import { DEFAULT_ENCODER_SETTINGS, embedMetadata, encodeImage, keepsSixteenBits, type EncodeOptions, type EncoderSettings, type OutputFormat, type RequestedQuality } from './output/encoders.js';
import type { MemcachedTier } from './cache/memcached.js';
import { TileCache } from './cache/tile-cache.js';
import { identifyImageFile, statImageFile, type ImageFileInfo, type ImageFileStat } from './files/image-file.js';
import { resolveImagePath, UnsafePathError, type ImagePathRules } from './files/image-path.js';
import { SequenceFinder, viewFileName, viewPath, type ImageSequence } from './files/image-sequence.js';
import { firstBands, labToSrgb } from './pixels/pixel-types.js';
import type { DecodeOptions, ImageDescription, ImageSource, RawPixels, Samples } from './source.js';
import { streamTile, type StreamTile } from './output/stream-tile.js';
import { TiffSource } from './tiff/tiff-source.js';
import { Jp2Source } from './jp2/jp2-source.js';
import { Jp2Decoder, type Jp2DecoderOptions } from './jp2/decoder.js';
import { DecodedLevelCache } from './jp2/level-cache.js';
import { tileRect, type Rect, type RegionPlan } from './geometry.js';
import { Slots } from './slots.js';
import { markPipeline, type Watermark } from './output/watermark.js';

export interface EngineOptions {
  paths: ImagePathRules;
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
  /** How JPEG2000 is decoded (the helper, opj_decompress, time limit); defaults suit a server. */
  jp2Decoder?: Jp2DecoderOptions;
}

export interface OpenImage {
  /** The name as the client gave it (decoded): used in messages and file names. */
  name: string;
  /** The file read (for a sequence, the file of the selected view): cache keys follow it. */
  file: ImageFileInfo;
  source: ImageSource;
  /**
   * The time clients see (Last-Modified, If-Modified-Since), in seconds: the file's, or for every
   * view of a sequence its 000_090 file's, as iipsrv does.
   */
  modifiedSeconds: number;
  /** Set when the name is an image sequence; this image is then one of its views. */
  sequence?: ImageSequence;
}

/** What the open-file cache keeps of a parsed file. */
type OpenFile = Pick<OpenImage, 'file' | 'source'>;

export type { OutputFormat } from './output/encoders.js';

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

const REC601_GREY: [[number, number, number], [number, number, number], [number, number, number]] = [
  [0.299, 0.587, 0.114],
  [0.299, 0.587, 0.114],
  [0.299, 0.587, 0.114],
];

/** Decoded whole JPEG2000 levels kept per worker (each at most 1 Mpx). */
const JP2_LEVEL_CACHE_BYTES = 32 * 1024 * 1024;

/** LYR changes JPEG2000 pixels; absent, keys stay as they were. */
function layersKey(layers: number | undefined): string {
  return layers ? `:l${layers}` : '';
}

/** Most open files a worker keeps, whatever MAX_METADATA_CACHE_SIZE says: file descriptors are finite. */
const OPEN_FILE_CEILING = 256;

export class Engine {
  private readonly cache: TileCache;
  private readonly open = new Map<string, Promise<OpenFile>>();
  private readonly maxOpen: number;
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
   * Region exports decoded at once: each holds libvips buffers of up to tens of MB, and more than
   * the cores can run only adds memory, not speed.
   */
  private readonly regionSlots = new Slots(Math.max(2, availableParallelism()));
  private readonly sequences = new SequenceFinder();
  /** Each open file's histogram (CNT=st/eq, COL=binary), made on first use: a replaced file has a new source. */
  private readonly histograms = new WeakMap<ImageSource, Promise<Uint32Array>>();
  /** JPEG2000 decoder children (bounded by the cores) and the small levels they decoded whole. */
  private jp2: { decoder: Jp2Decoder; levelCache: DecodedLevelCache } | null = null;

  constructor(private readonly options: EngineOptions) {
    const cacheBytes = options.cacheBytes ?? 0;
    this.cache = new TileCache(cacheBytes > 0 ? new LruCache(cacheBytes) : null, options.memcached ?? null);
    const requested = options.maxOpenImages ?? 1000;
    this.maxOpen = requested < 0 ? OPEN_FILE_CEILING : Math.min(requested, OPEN_FILE_CEILING);
    this.encoders = options.encoders ?? DEFAULT_ENCODER_SETTINGS;
    this.watermark = options.watermark ?? null;
    this.maxIcc = options.maxIcc ?? 0;
    this.outputTag = createHash('sha1').update(JSON.stringify([this.watermark?.fingerprint ?? '', this.maxIcc, this.encoders])).digest('base64url');
    this.kernel = ({ nearest: 'nearest', bilinear: 'linear', bicubic: 'cubic', lanczos3: 'lanczos3' } as const)[
      options.interpolation ?? 'bilinear'
    ];
  }

  /**
   * The image a name stands for: its file, or when there is none, the 000_090 view of the image
   * sequence of that name (iipsrv's convention).
   * @param name the decoded image name from the request
   * @throws FileError when the name is unsafe or neither a readable image nor a sequence
   */
  async openImage(name: string): Promise<OpenImage> {
    const printable = safeName(name);
    const path = this.resolve(name, this.options.paths.suffix, printable);
    // Every request looks at the file's time, so that a replaced file is never served stale; only
    // a file not seen before, or changed since, is opened and parsed.
    let stat;
    try {
      stat = await statImageFile(path, printable);
    } catch (error) {
      if (!(error instanceof FileError)) throw error;
      return this.openSequence(name, printable);
    }
    const file = await this.openFile(stat, printable);
    return { ...file, name, modifiedSeconds: file.file.mtimeSeconds };
  }

  private async openSequence(name: string, printable: string): Promise<OpenImage> {
    const pattern = this.options.filenamePattern ?? '_pyr_';
    // Sequences take the pattern where single files take FILESYSTEM_SUFFIX (as iipsrv 1.3).
    const stem = this.resolve(name, pattern, printable);
    const sequence = await this.sequences.find(stem, printable + pattern, printable);
    const first = viewPath(sequence, 0, 90);
    const stat = await statImageFile(first, printable + pattern + viewFileName(sequence, 0, 90));
    const file = await this.openFile(stat, printable);
    return { ...file, name, modifiedSeconds: file.file.mtimeSeconds, sequence };
  }

  /**
   * The view of `image`'s sequence at these angles (SDS, JTLS), an image like any other whose
   * caches follow its own file; a single image is its own only view, whatever the angles.
   * @throws FileError when the sequence has no such view
   */
  async openView(image: OpenImage, horizontal: number, vertical: number): Promise<OpenImage> {
    const { sequence } = image;
    if (!sequence) return image;
    const path = viewPath(sequence, horizontal, vertical);
    const printable = sequence.printableStem + viewFileName(sequence, horizontal, vertical);
    let stat;
    try {
      stat = await statImageFile(path, printable);
    } catch (error) {
      if (error instanceof FileError) throw new FileError(`${safeName(image.name)} has no view ${horizontal},${vertical}: ${printable} is missing`);
      throw error;
    }
    const file = await this.openFile(stat, safeName(image.name));
    return { ...file, name: image.name, modifiedSeconds: image.modifiedSeconds, sequence };
  }

  /**
   * The samples of a rectangle of a level exactly as stored (SPECTRA, PFL).
   * @throws InvalidArgumentError when the rectangle leaves the level
   */
  async samples(image: OpenImage, level: number, rect: Rect): Promise<Samples> {
    const size = image.source.description.levels[level];
    if (!size) throw new InvalidArgumentError(`${image.name}: no resolution level ${level}`);
    if (rect.left < 0 || rect.top < 0 || rect.width < 1 || rect.height < 1 || rect.left + rect.width > size.width || rect.top + rect.height > size.height) {
      throw new InvalidArgumentError(`${image.name}: ${rect.width}x${rect.height} at ${rect.left},${rect.top} lies outside the ${size.width}x${size.height} level`);
    }
    assertRenderable(image);
    return image.source.samples(level, rect);
  }

  private resolve(name: string, suffix: string, printable: string): string {
    try {
      return resolveImagePath(name, { prefix: this.options.paths.prefix, suffix });
    } catch (error) {
      if (error instanceof UnsafePathError) throw new FileError(`${printable}: ${error.message}`);
      throw error;
    }
  }

  /** A parsed file, from the open-file cache when it has not changed since. */
  private async openFile(stat: ImageFileStat, printable: string): Promise<OpenFile> {
    const { path } = stat;
    const known = this.open.get(path);
    if (known) {
      const image = await known.catch(() => null);
      if (image && image.file.mtimeSeconds === stat.mtimeSeconds && image.file.size === stat.size) {
        // Most recently used last, so that eviction takes the oldest.
        this.open.delete(path);
        this.open.set(path, known);
        return image;
      }
      this.forget(path);
      // libvips caches opened files by name: without this it would go on decoding the old file.
      dropDecoderCache();
    }
    const opening = identifyImageFile(stat, printable).then(async (file) => ({ file, source: await this.load(file, printable) }));
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
    this.jp2 ??= { decoder: new Jp2Decoder(this.options.jp2Decoder), levelCache: new DecodedLevelCache(JP2_LEVEL_CACHE_BYTES) };
    return Jp2Source.open(file.path, name, { ...this.jp2, maxLayers: this.options.maxLayers ?? 0 });
  }

  private forget(path: string): void {
    const entry = this.open.get(path);
    this.open.delete(path);
    // Requests still using it hold their own reference; closing later costs nothing.
    entry?.then((image) => setTimeout(() => void image.source.close().catch(() => undefined), 30_000).unref(), () => undefined);
  }

  private cacheKey(image: OpenImage, kind: string): string {
    return `${image.file.path}\0${image.file.mtimeSeconds}\0${kind}\0${this.outputTag}`;
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

  /** One tile, encoded, through the caches. */
  async tile(image: OpenImage, request: TileRequest): Promise<Buffer> {
    assertRenderable(image);
    const { level, col, row } = request;
    const processing = request.processing ?? NO_PROCESSING;
    const bits = this.outputBits(image, request.format, request.bits, processing);
    const key = this.cacheKey(
      image,
      `t:${level}:${col}:${row}:${request.format}:${request.passthrough ? 'stored' : request.quality}:${request.rotation}:${request.mirror ? 1 : 0}` +
        `:${processingKey(processing)}:${qualityKey(request.requested)}:${bits}${layersKey(request.layers)}`,
    );
    // With WATERMARK_PROBABILITY < 1 the cache keeps whichever the first rendering drew: a tile
    // stays as it was first served (marked or not) while it is cached, as in iipsrv 1.3.
    const cached = await this.cache.get(key);
    if (cached) return cached;

    const decodeOptions = { layers: request.layers };
    let bytes: Buffer | null = null;
    const unchanged = request.rotation === 0 && !request.mirror;
    const marked = this.watermark?.draw() ?? false;
    const encoding: EncodeOptions = {
      format: request.format,
      quality: request.quality,
      requested: request.requested ?? null,
      icc: this.iccFor(image, processing),
      bits,
    };
    const withProfile = (jpeg: Buffer) => embedMetadata(jpeg, 'jpeg', encoding.icc ?? null, null);
    if (bits === 8 && needsPipeline(image, processing)) {
      const rect = tileRect(image.source.description.levels[level]!, col, row);
      const pixels = await this.withOutputSteps(image, await this.processedPixels(image, level, rect, processing, decodeOptions), processing);
      if (unchanged && request.format === 'jpeg' && jpegCodec) {
        if (marked) this.watermark!.markTile(pixels);
        bytes = withProfile(await jpegCodec.encode(pixels, request.quality));
      } else {
        let pipeline = rawPipeline(pixels);
        if (request.mirror) pipeline = pipeline.flop();
        if (request.rotation !== 0) pipeline = pipeline.rotate(request.rotation);
        if (marked) pipeline = await markPipeline(pipeline, pixels.channels, 8, (p) => this.watermark!.markTile(p));
        bytes = await encodeImage(pipeline, pixels.channels, encoding, this.encoders);
      }
    } else if (unchanged && request.format === 'jpeg') {
      // A watermarked tile is never the stored one.
      if (request.passthrough && !marked) {
        const stored = await image.source.storedJpegTile(level, col, row);
        if (stored) bytes = withProfile(stored);
      }
      if (!bytes && jpegCodec) {
        const pixels = await image.source.decodeTile(level, col, row, decodeOptions);
        if (pixels) {
          if (marked) this.watermark!.markTile(pixels);
          bytes = withProfile(await jpegCodec.encode(pixels, request.quality));
        }
      }
    }
    if (!bytes) {
      const rect = tileRect(image.source.description.levels[level]!, col, row);
      const channels = image.source.description.channels;
      bytes = await decoding(image.name, async () => {
        let pipeline = await image.source.decode(level, rect, decodeOptions);
        if (request.mirror) pipeline = pipeline.flop();
        if (request.rotation !== 0) pipeline = pipeline.rotate(request.rotation);
        if (marked) pipeline = await markPipeline(pipeline, channels, bits, (p) => this.watermark!.markTile(p));
        return encodeImage(pipeline, channels, encoding, this.encoders);
      });
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
  async region(image: OpenImage, plan: RegionPlan, requested: RegionOutput): Promise<Buffer> {
    assertRenderable(image);
    // Black and white is iipsrv's COL=binary: grey, then the image histogram's Otsu threshold.
    const output: RegionOutput =
      requested.colour === 'bitonal' ? { ...requested, colour: 'colour', processing: { ...(requested.processing ?? NO_PROCESSING), grey: false, binary: true } } : requested;
    assertEncodable(image, plan, output);
    const { source } = plan;
    const key = this.cacheKey(
      image,
      `r:${plan.level}:${source.left},${source.top},${source.width},${source.height}:${plan.outputWidth}x${plan.outputHeight}:` +
        `${output.rotation}:${output.mirror ? 1 : 0}:${output.format}:${output.quality}:${this.kernel}:${output.colour ?? 'colour'}` +
        `:${processingKey(output.processing ?? NO_PROCESSING)}:${qualityKey(output.requested)}:${this.regionBits(image, output)}${layersKey(output.layers)}`,
    );
    const cached = await this.cache.get(key);
    if (cached) return cached;
    const bytes = await this.regionSlots.run(() => decoding(image.name, () => this.renderRegion(image, plan, output)));
    this.cache.set(key, bytes);
    return bytes;
  }

  private async renderRegion(image: OpenImage, plan: RegionPlan, output: RegionOutput): Promise<Buffer> {
    const { source } = plan;
    const processing = output.processing ?? NO_PROCESSING;
    let channels = image.source.description.channels;
    const bits = this.regionBits(image, output);
    let pipeline: Sharp;
    let atOutputSize = plan.outputWidth === source.width && plan.outputHeight === source.height;
    if (bits === 8 && needsPipeline(image, processing)) {
      // iipsrv processes the region at its level, then resizes the 8-bit result.
      let pixels = await this.processedPixels(image, plan.level, source, processing, { layers: output.layers });
      if (!atOutputSize && hasOutputSteps(processing)) {
        // Grey, binary and equalisation work on the pixels as sent, so after the resize.
        let resize = rawPipeline(pixels).resize(plan.outputWidth, plan.outputHeight, { fit: 'fill', kernel: this.kernel });
        // libvips would hand one band back as three (sRGB) otherwise.
        if (pixels.channels === 1) resize = resize.toColourspace('b-w');
        const { data, info } = await resize.raw().toBuffer({ resolveWithObject: true });
        pixels = { data, width: info.width, height: info.height, channels: pixels.channels, stride: info.width * pixels.channels };
        atOutputSize = true;
      }
      pixels = await this.withOutputSteps(image, pixels, processing);
      pipeline = rawPipeline(pixels);
      channels = pixels.channels;
    } else pipeline = await image.source.decode(plan.level, source, { layers: output.layers });
    if (!atOutputSize) {
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
    if (output.colour === 'grey') {
      // One band, alpha dropped, from the encoded values with Rec. 601 weights as iipsrv does
      // (libvips' own b-w works in linear light: pure red would be 127 instead of 76).
      if (channels >= 3) pipeline = pipeline.removeAlpha().recomb(REC601_GREY).extractChannel(0);
      pipeline = pipeline.removeAlpha().toColourspace('b-w');
      channels = 1;
    }
    if (this.watermark && this.watermark.probability > 0) {
      const { tileWidth, tileHeight } = image.source.description.levels[0]!;
      const watermark = this.watermark;
      if (output.rotation % 90 === 0) {
        // The output size is known: draw first, and leave the pipeline whole when nothing is drawn.
        const turned = output.rotation % 180 !== 0;
        const [width, height] = turned ? [plan.outputHeight, plan.outputWidth] : [plan.outputWidth, plan.outputHeight];
        const blocks = watermark.drawBlocks(width, height, tileWidth, tileHeight);
        if (blocks.length > 0) pipeline = await markPipeline(pipeline, channels, bits, (p) => watermark.markBlocks(p, blocks));
      } else pipeline = await markPipeline(pipeline, channels, bits, (p) => watermark.markRegion(p, tileWidth, tileHeight));
    }
    const encoding: EncodeOptions = {
      format: output.format,
      quality: output.quality,
      requested: output.requested ?? null,
      icc: this.iccFor(image, processing, output.colour),
      xmp: image.source.description.xmp,
      bits,
    };
    return encodeImage(pipeline, channels, encoding, this.encoders);
  }

  /** As outputBits; greyscale and bitonal IIIF qualities are 8-bit. */
  private regionBits(image: OpenImage, output: RegionOutput): 8 | 16 {
    const colour = output.colour ?? 'colour';
    return colour === 'colour' ? this.outputBits(image, output.format, output.bits, output.processing) : 8;
  }

  /**
   * The samples of a rectangle at their full precision, through iipsrv's pipeline to 8 bits
   * (see processing.ts).
   */
  private async processedPixels(image: OpenImage, level: number, rect: Rect, processing: Processing, options: DecodeOptions): Promise<RawPixels> {
    const d = image.source.description;
    if (processing.shade && d.channels < 3) {
      throw new InvalidArgumentError(`${image.name}: SHD needs a surface-normal image of 3 bands; this one has ${d.channels}`);
    }
    let samples = await image.source.samples(level, rect, options);
    let [minValues, maxValues] = [d.minValues, d.maxValues];
    if (d.colourSpace === 'cielab') {
      // iipsrv converts to 8-bit sRGB before anything else, so the pipeline sees 0..255.
      samples = labToSrgb(samples);
      [minValues, maxValues] = [[0, 0, 0], [255, 255, 255]];
    }
    // Grey, binary and equalisation come later, on the pixels as sent (withOutputSteps).
    let floatSteps: Processing = { ...processing, grey: false, binary: false, equalise: false };
    if (processing.contrast === STRETCH) {
      // iipsrv's stretch replaces every channel's range (MINMAX too) and then contrast is 1.
      const { min, max } = stretchRange(await this.histogram(image), d.bitsPerSample, d.sampleFormat === 'int');
      minValues = minValues.map(() => min);
      maxValues = maxValues.map(() => max);
      floatSteps = { ...floatSteps, contrast: 1, ranges: [] };
    }
    // As in iipsrv, 8-bit data with nothing for the float pipeline to do goes out as stored.
    const stored = isIdentity(floatSteps) && processing.contrast !== STRETCH ? firstBands(samples) : null;
    const out = stored ?? runPipeline(samples, minValues, maxValues, floatSteps);
    return { data: out.data, width: samples.width, height: samples.height, channels: out.channels, stride: samples.width * out.channels };
  }

  /**
   * The image's histogram, from the first tile of its smallest resolution, made once per open
   * file (iipsrv keeps it in its metadata cache).
   */
  private histogram(image: OpenImage): Promise<Uint32Array> {
    const { source } = image;
    let histogram = this.histograms.get(source);
    if (!histogram) {
      const d = source.description;
      const smallest = d.levels.length - 1;
      histogram = source.samples(smallest, tileRect(d.levels[smallest]!, 0, 0)).then((samples) => imageHistogram(samples, d.bitsPerSample > 8 || d.sampleFormat === 'int', d.minValues, d.maxValues));
      this.histograms.set(source, histogram);
      histogram.catch(() => this.histograms.delete(source));
    }
    return histogram;
  }

  /** COL=grey, COL=binary and CNT=eq on the 8-bit pixels about to be mirrored, rotated and encoded. */
  private async withOutputSteps(image: OpenImage, pixels: RawPixels, processing: Processing): Promise<RawPixels> {
    if (!hasOutputSteps(processing)) return pixels;
    const histogram = processing.binary || processing.equalise ? await this.histogram(image) : null;
    return applyOutputSteps(pixels, processing, image.source.description.colourSpace, histogram);
  }

  /** SIGHUP: forget everything cached so that replaced files and settings are read afresh. */
  flushCaches(): void {
    this.cache.clear();
    this.jp2?.levelCache.clear();
    this.sequences.clear();
    dropDecoderCache();
    for (const path of [...this.open.keys()]) this.forget(path);
  }

  /** Ends the decoder processes (they would also end by themselves when this process goes). */
  close(): void {
    this.jp2?.decoder.close();
  }

  cacheStats(): Record<string, number> {
    return this.cache.stats();
  }
}

/** The largest side each encoder writes (libjpeg 65500, WebP 16383, HEIF 16384 here). */
const MAX_OUTPUT_SIDE: Readonly<Record<OutputFormat, number>> = { jpeg: 65_500, webp: 16_383, avif: 16_384, png: 1e8, tiff: 1e8 };
/**
 * sharp's own default input limit: beyond it the samples (and the float pipeline's copy) no longer
 * fit Node's buffers, and the process would die instead of answering. Matters with MAX_CVT=-1.
 */
const MAX_OUTPUT_PIXELS = 0x3fff * 0x3fff;

/** @throws InvalidArgumentError for an output no encoder here can write, before any pixel is made */
function assertEncodable(image: OpenImage, plan: RegionPlan, output: RegionOutput): void {
  // An arbitrary angle widens the box by up to √2.
  const grow = output.rotation % 90 === 0 ? 1 : Math.SQRT2;
  const width = Math.ceil(plan.outputWidth * grow);
  const height = Math.ceil(plan.outputHeight * grow);
  const side = MAX_OUTPUT_SIDE[output.format];
  if (width > side || height > side) {
    throw new InvalidArgumentError(`${image.name}: a ${width}x${height} ${output.format.toUpperCase()} is larger than the encoder writes (${side} pixels a side)`);
  }
  if (width * height > MAX_OUTPUT_PIXELS) {
    throw new InvalidArgumentError(`${image.name}: a ${width}x${height} output is larger than the server makes (${MAX_OUTPUT_PIXELS} pixels)`);
  }
}

function rawPipeline(pixels: RawPixels): Sharp {
  return sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: pixels.channels } });
}

function qualityKey(requested: RequestedQuality | null | undefined): string {
  return requested ? `${requested.factor}${requested.tiffCompression ?? ''}` : '';
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
