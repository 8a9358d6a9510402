/**
 * The image sources by file format: one entry a format, each opening a file it has been told is
 * of that format (by its magic bytes, files/image-file.ts). What sources of a format share across
 * files (the JPEG2000 decoder processes and the levels they decoded whole) is made on first use,
 * so a server that never sees a JPEG2000 file starts no decoder.
 */
import { availableParallelism } from 'node:os';
import type { DecodeLimits } from './decode-limits.js';
import { FileError } from '../errors.js';
import type { ImageFileInfo } from './files/image-file.js';
import type { ImageStorage } from './files/storage.js';
import { Jp2Decoder, type Jp2DecoderOptions } from './jp2/decoder.js';
import { Jp2Source } from './jp2/jp2-source.js';
import { DecodedLevelCache } from './jp2/level-cache.js';
import { DecodedImages } from './plain/decoded-images.js';
import { PLAIN_TILE_SIZE, PlainSource, type PlainSettings } from './plain/plain-source.js';
import { PyramidCache } from './plain/pyramid-cache.js';
import { Slots } from './slots.js';
import { LruCache } from './cache/lru.js';
import type { ImageFormat, ImageSource } from './source.js';
import { TiffSource } from './tiff/tiff-source.js';

export interface FormatSettings {
  /** Where the files are: sources of files in a store read by ranges or from a local copy. */
  storage: ImageStorage;
  /** MAX_LAYERS: JPEG2000 quality layers decoded when a request gives no LYR. */
  maxLayers: number;
  /** How JPEG2000 is decoded (the helper, opj_decompress, time and memory limits); defaults suit a server. */
  jp2Decoder?: Jp2DecoderOptions;
  /** Most memory one JPEG2000 decode may need by its header's account; 0 = no check. */
  jp2MaxDecodeBytes?: number;
  /** MAX_TILE_BYTES, MAX_SAMPLES_PER_PIXEL, MAX_PROCESSING_PIXELS (decode-limits.ts). */
  limits: DecodeLimits;
  /** Images without a pyramid (PLAIN_* and PYRAMID_CACHE_* settings); defaults in PLAIN_DEFAULTS. */
  plain?: PlainOptions;
}

export interface PlainOptions {
  /** PLAIN_MAX_PIXELS: files claiming more pixels are refused. */
  maxInputPixels: number;
  /** PLAIN_MEMORY_PIXELS: images up to this size are decoded whole and kept. */
  memoryPixels: number;
  /** PLAIN_CACHE_SIZE: bytes of decoded small images kept. */
  memoryBytes: number;
  /** PYRAMID_CACHE_DIR: where pyramids of big images are built; '' = never built. */
  pyramidDir: string;
  /** PYRAMID_CACHE_SIZE: bytes of pyramids kept there. */
  pyramidBytes: number;
  /**
   * Whether opening a big image starts building its pyramid (a server); false for `iipsrv purge`,
   * which opens the image to delete its pyramid. Default true.
   */
  buildOnOpen?: boolean;
}

export const PLAIN_DEFAULTS: Readonly<PlainOptions> = {
  maxInputPixels: 1 << 30,
  memoryPixels: 16 * 1024 * 1024,
  memoryBytes: 128 * 1024 * 1024,
  pyramidDir: '',
  pyramidBytes: 10 * 1024 * 1024 * 1024,
};

/** Decoded whole JPEG2000 levels kept per worker (each at most 1 Mpx). */
const JP2_LEVEL_CACHE_BYTES = 32 * 1024 * 1024;
/** Tile-parts of JPEG2000 images in a store kept per worker: a few dozen codestream tiles a viewer is looking at. */
const STORED_TILE_PART_BYTES = 32 * 1024 * 1024;

/**
 * A tiled TIFF of one level, larger than a tile, in 256x256 tiles of 8-bit grey or RGB: the levels
 * a viewer needs below it are made as for a plain image. Other tile sizes keep their own grid, and
 * other pixel types the float pipeline that libvips' 8-bit reading would not match.
 */
function lacksPyramid(source: ImageSource): boolean {
  const d = source.description;
  const level = d.levels[0]!;
  return (
    d.levels.length === 1 &&
    d.undecodable === null &&
    level.tileWidth === PLAIN_TILE_SIZE &&
    level.tileHeight === PLAIN_TILE_SIZE &&
    (level.width > PLAIN_TILE_SIZE || level.height > PLAIN_TILE_SIZE) &&
    d.bitsPerSample === 8 &&
    d.sampleFormat === 'uint' &&
    ((d.colourSpace === 'srgb' && d.channels === 3) || (d.colourSpace === 'grey' && d.channels === 1))
  );
}

/** Opens a file of a format as a source; `page` selects a page of a stack (0 for any other image). */
type PageOpener = (file: ImageFileInfo, name: string, page: number) => Promise<ImageSource>;

export class Formats {
  private jp2: { decoder: Jp2Decoder; levelCache: DecodedLevelCache; storedTileParts: LruCache | null } | null = null;
  private plain: PlainSettings | null = null;

  private readonly openers: Readonly<Record<Exclude<ImageFormat, 'plain'>, PageOpener>> = {
    tiff: async (file, name, page) => {
      const { storage } = this.settings;
      const opened = storage.local ? file.path : { file: await storage.openRandomAccess(file), localCopy: () => storage.localPath(file, name) };
      return TiffSource.open(opened, name, this.settings.limits, page);
    },
    // A JPEG2000 image in a store is read by ranges where the decoder can (jp2/jp2-source.ts).
    jp2: async (file, name) => {
      const { storage } = this.settings;
      const location = storage.local
        ? file.path
        : { file: await storage.openRandomAccess(file), identity: `${file.path}\0${file.version}`, localPath: () => storage.localPath(file, name) };
      return Jp2Source.open(location, name, { ...this.jp2Shared(), maxLayers: this.settings.maxLayers, maxDecodeBytes: this.settings.jp2MaxDecodeBytes });
    },
  };

  constructor(private readonly settings: FormatSettings) {}

  /** The source of a file whose format is known (a page of it when it is a stack); `name` is for messages. */
  async open(file: ImageFileInfo, name: string, page = 0): Promise<ImageSource> {
    // Plain sources take the whole file description: the pyramid cache keys on its size and time.
    const format = file.format;
    if (format === 'plain') return PlainSource.open(await this.onDisk(file, name), name, this.plainShared());
    let source: ImageSource;
    try {
      source = await this.openers[format](file, name, page);
    } catch (error) {
      // A striped TIFF (a scan, a camera's export) is an image without a pyramid like a JPEG.
      if (format === 'tiff' && page === 0 && error instanceof FileError && error.message.endsWith('TIFF image is not tiled')) {
        return PlainSource.open(await this.onDisk(file, name), name, this.plainShared());
      }
      throw error;
    }
    // Not for the later pages of a stack: the plain source reads a file's first page.
    if (format === 'tiff' && page === 0 && lacksPyramid(source)) {
      // Its one level stays with the TIFF source; the levels below come from the plain source.
      return this.onDisk(file, name)
        .then((local) => PlainSource.open(local, name, this.plainShared(), source))
        .catch(() => source);
    }
    return source;
  }

  /**
   * libvips reads plain images itself: one in a store is given a local copy. Its path is named
   * after the object's version, so the pyramids and decoded images keyed on it follow changes.
   */
  private async onDisk(file: ImageFileInfo, name: string): Promise<ImageFileInfo> {
    const { storage } = this.settings;
    return storage.local ? file : { ...file, path: await storage.localPath(file, name) };
  }

  /** SIGHUP: forget decoded pixels kept across requests. */
  flush(): void {
    this.jp2?.levelCache.clear();
    this.jp2?.storedTileParts?.clear();
    this.plain?.memory.clear();
  }

  /** JPEG2000 decoder helpers that went and were replaced (see HelperPool.restarts). */
  jp2HelperRestarts(): number {
    return this.jp2?.decoder.helpers?.restarts ?? 0;
  }

  /** Ends the decoder processes (they would also end by themselves when this process goes). */
  close(): void {
    this.jp2?.decoder.close();
  }

  private plainShared(): PlainSettings {
    if (this.plain) return this.plain;
    const options = this.settings.plain ?? PLAIN_DEFAULTS;
    // Reduced-size reads of big files and pyramid builds each hold a core for their whole run.
    const cores = Math.max(1, availableParallelism());
    this.plain = {
      limits: this.settings.limits,
      maxInputPixels: options.maxInputPixels,
      memoryPixels: options.memoryPixels,
      memory: new DecodedImages(options.memoryBytes),
      pyramids: options.pyramidDir ? new PyramidCache({ dir: options.pyramidDir, maxBytes: options.pyramidBytes }) : null,
      buildOnOpen: options.buildOnOpen ?? true,
      readSlots: new Slots(cores),
      buildSlots: new Slots(1),
    };
    return this.plain;
  }

  private jp2Shared(): { decoder: Jp2Decoder; levelCache: DecodedLevelCache; storedTileParts: LruCache | null } {
    this.jp2 ??= {
      decoder: new Jp2Decoder(this.settings.jp2Decoder),
      levelCache: new DecodedLevelCache(JP2_LEVEL_CACHE_BYTES),
      // Only where images come from a store.
      storedTileParts: this.settings.storage.local ? null : new LruCache(STORED_TILE_PART_BYTES),
    };
    return this.jp2;
  }
}
