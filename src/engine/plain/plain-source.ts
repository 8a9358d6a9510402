/**
 * Images without a pyramid (plain JPEG, PNG, WebP, GIF, HEIF/AVIF, striped TIFF, single-level
 * tiled TIFF) as sources,
 * read by libvips through sharp. They are offered like any pyramid: 256x256 tiles, levels halving
 * (as libvips' own pyramids do, rounding down) until the image fits in one tile.
 *
 * - Small images (at most `memoryPixels`) are decoded once; each level is kept whole in a shared,
 *   byte-bounded cache, and a tile is a copy out of it.
 * - Big images get a pyramid TIFF built in the background on first use (pyramid-cache.ts); once it
 *   exists every request is served by our TIFF source from it, stored JPEG tiles as they are.
 *   Until then a request reads the file at reduced size: libvips shrinks JPEG (and WebP, HEIF)
 *   while decoding, so a tile of a low level costs a decode at an eighth of the size, and a tile of
 *   a high level decodes only the rows down to it. These reads take turns in `readSlots`.
 *
 * A single-level tiled TIFF keeps its one level served by our TIFF source (stored JPEG tiles sent
 * as they are, its metadata as read there); only the levels below come from here.
 *
 * Samples are 8-bit grey or sRGB: alpha is flattened onto white (a pyramid of JPEG tiles has none),
 * 16-bit data is reduced to 8, CMYK converted to sRGB.
 */
import sharp, { type Metadata, type Sharp } from 'sharp';
import { FileError } from '../../errors.js';
import { exifWithoutPrefix } from '../codecs/embed.js';
import { decoding } from '../codecs/libvips-errors.js';
import { assertProcessable, type DecodeLimits } from '../decode-limits.js';
import type { ImageFileInfo } from '../files/image-file.js';
import type { LevelSize, Rect } from '../geometry.js';
import type { Slots } from '../slots.js';
import type { DerivedPyramid, ImageDescription, ImageSource, RawPixels, Samples } from '../source.js';
import { TiffSource } from '../tiff/tiff-source.js';
import type { DecodedImages } from './decoded-images.js';
import type { PyramidCache } from './pyramid-cache.js';

/** The tile size non-pyramidal images are offered with, and their pyramids built with. */
export const PLAIN_TILE_SIZE = 256;
/** JPEG quality of built pyramids' tiles: they are sent as stored, so they are kept good. */
const PYRAMID_QUALITY = 90;

export interface PlainSettings {
  limits: DecodeLimits;
  /** PLAIN_MAX_PIXELS: files that claim more pixels are refused before anything is decoded. */
  maxInputPixels: number;
  /** PLAIN_MEMORY_PIXELS: images of at most this many pixels are decoded whole and kept. */
  memoryPixels: number;
  memory: DecodedImages;
  /** Null: big images are always read from the file at reduced size. */
  pyramids: PyramidCache | null;
  /** Whether opening a big image starts building its pyramid. */
  buildOnOpen: boolean;
  /** Reduced-size reads of big files at once. */
  readSlots: Slots;
  /** Pyramid builds at once in this process. */
  buildSlots: Slots;
}

/** libvips' pyramid levels: halved, rounding down, until the image fits in one tile. */
export function plainLevels(width: number, height: number, tile = PLAIN_TILE_SIZE): LevelSize[] {
  const levels: LevelSize[] = [{ width, height, tileWidth: tile, tileHeight: tile }];
  while (width > tile || height > tile) {
    width = Math.max(1, Math.floor(width / 2));
    height = Math.max(1, Math.floor(height / 2));
    levels.push({ width, height, tileWidth: tile, tileHeight: tile });
  }
  return levels;
}

function withoutPath(message: string, path: string, name: string): string {
  return message.split(path).join(name);
}

/** The loaders that shrink while decoding (JPEG's DCT scaling, WebP's and HEIF's scaled decode). */
const SHRINKS_ON_LOAD = new Set(['jpeg', 'webp', 'heif']);

export class PlainSource implements ImageSource {
  readonly description: ImageDescription;
  private readonly grey: boolean;
  private readonly alpha: boolean;
  private readonly small: boolean;
  private readonly cacheKey: string;
  /** The built pyramid, once there is one. */
  private pyramid: TiffSource | null = null;
  private pyramidKey: string | null = null;
  private lastLook = 0;
  private closed = false;

  private constructor(
    private readonly file: ImageFileInfo,
    private readonly name: string,
    private readonly meta: Metadata,
    private readonly settings: PlainSettings,
    /** A single-level tiled TIFF's own source: its one level is served by it, stored tiles as they are. */
    private readonly base: ImageSource | null,
  ) {
    const width = meta.width!;
    const height = meta.height!;
    this.grey = meta.space === 'b-w' || meta.space === 'grey16';
    this.alpha = meta.hasAlpha === true;
    this.small = width * height <= settings.memoryPixels;
    this.cacheKey = `${file.path}\0${file.size}\0${file.mtimeSeconds}\0`;
    const cmyk = meta.space === 'cmyk';
    this.description = {
      format: 'plain',
      levels: plainLevels(width, height),
      channels: this.grey ? 1 : 3,
      bitsPerSample: 8,
      sampleFormat: 'uint',
      colourSpace: this.grey ? 'grey' : 'srgb',
      minValues: [],
      maxValues: [],
      // sharp gives the density in pixels per inch whatever the file's unit.
      resolution: meta.density ? { x: meta.density, y: meta.density, unit: 2 } : null,
      // A CMYK profile does not describe the sRGB pixels it is converted to.
      icc: !cmyk && meta.icc ? meta.icc : null,
      xmp: meta.xmp ? meta.xmp.toString('utf8') : null,
      // As iipsrv master: EXIF is read from JPEG sources only.
      exif: meta.format === 'jpeg' && meta.exif ? exifWithoutPrefix(meta.exif) : null,
      metadata: {},
      undecodable: null,
    };
    if (base) {
      // What our TIFF reader knows of the file beats libvips' summary of it.
      const { resolution, icc, xmp, metadata } = base.description;
      this.description = { ...this.description, format: 'tiff', resolution, icc, xmp, metadata };
    }
  }

  /**
   * Reads the header only.
   * @throws FileError for a file libvips cannot read or that claims more than PLAIN_MAX_PIXELS
   */
  static async open(file: ImageFileInfo, name: string, settings: PlainSettings, base: ImageSource | null = null): Promise<PlainSource> {
    let meta: Metadata;
    try {
      meta = await sharp(file.path, { failOn: 'truncated', limitInputPixels: false }).metadata();
    } catch (error) {
      const reason = error instanceof Error ? error.message.split('\n').filter(Boolean).join('; ') : String(error);
      throw new FileError(`${name}: the image cannot be read (${withoutPath(reason, file.path, name)})`);
    }
    const { width, height } = meta;
    if (!width || !height) throw new FileError(`${name}: the image has no size`);
    if (width * height > settings.maxInputPixels) {
      throw new FileError(`${name}: the image claims ${width}x${height} pixels, more than PLAIN_MAX_PIXELS (${settings.maxInputPixels})`);
    }
    if ((meta.channels ?? 0) > settings.limits.maxSamplesPerPixel) {
      throw new FileError(`${name}: the image has ${meta.channels} samples per pixel, more than MAX_SAMPLES_PER_PIXEL (${settings.limits.maxSamplesPerPixel})`);
    }
    const source = new PlainSource(file, name, meta, settings, base);
    if (!source.small) await source.lookForPyramid(settings.buildOnOpen);
    return source;
  }

  /** Whether requests are served from a built pyramid (tests, the bench). */
  get hasPyramid(): boolean {
    return this.pyramid !== null;
  }

  /**
   * Opens the pyramid if it has been built (by us or another process), at most once a second, and
   * starts building it on first use.
   */
  private async lookForPyramid(start: boolean): Promise<TiffSource | null> {
    const pyramids = this.settings.pyramids;
    const now = Date.now();
    if (this.pyramid && pyramids && now - this.lastLook > 60_000) {
      // A use of the pyramid, for the cache's least-recently-used clean-up (once a minute).
      this.lastLook = now;
      pyramids.find(this.pyramidKey!);
    }
    if (this.pyramid || !pyramids || this.closed) return this.pyramid;
    if (!start && now - this.lastLook < 1000) return null;
    this.lastLook = now;
    this.pyramidKey ??= pyramids.key(this.file);
    const found = pyramids.find(this.pyramidKey);
    if (found) return this.adopt(found);
    if (start) this.startBuild(this.pyramidKey);
    return null;
  }

  /** The pyramid, if its levels are the ones described (a pyramid built otherwise is not used). */
  private async adopt(path: string): Promise<TiffSource | null> {
    let pyramid: TiffSource;
    try {
      pyramid = await TiffSource.open(path, this.name, this.settings.limits);
    } catch {
      return null;
    }
    const theirs = pyramid.description.levels;
    const ours = this.description.levels;
    const same = theirs.length === ours.length && theirs.every((l, i) => l.width === ours[i]!.width && l.height === ours[i]!.height);
    if (!same || this.closed || this.pyramid) {
      await pyramid.close().catch(() => undefined);
      return this.pyramid;
    }
    this.pyramid = pyramid;
    return pyramid;
  }

  derivedPyramid(): DerivedPyramid | null {
    const pyramids = this.settings.pyramids;
    // Small images are decoded whole and kept: they never get a pyramid.
    if (!pyramids || this.small) return null;
    const key = (this.pyramidKey ??= pyramids.key(this.file));
    return {
      path: pyramids.pathOf(key),
      build: async () => {
        if (pyramids.find(key)) {
          await this.adopt(pyramids.pathOf(key));
          return 'present';
        }
        // Joins the build opening the image started, or starts one.
        const path = await pyramids.build(key, (temporary) => this.writePyramid(temporary));
        if (!path) return 'busy';
        await this.adopt(path);
        return 'built';
      },
      remove: () => pyramids.remove(key),
    };
  }

  private startBuild(key: string): void {
    const pyramids = this.settings.pyramids!;
    void this.settings.buildSlots
      .run(() => pyramids.build(key, (path) => this.writePyramid(path)))
      .then((path) => (path ? this.adopt(path) : null))
      // A failed build leaves the image served from the file; the cache says when to try again.
      .catch(() => undefined);
  }

  /** The whole image as a tiled JPEG pyramid TIFF, in one sequential pass over the file. */
  private async writePyramid(path: string): Promise<void> {
    await this.normalised(this.input())
      .tiff({
        pyramid: true,
        tile: true,
        tileWidth: PLAIN_TILE_SIZE,
        tileHeight: PLAIN_TILE_SIZE,
        compression: 'jpeg',
        quality: PYRAMID_QUALITY,
      })
      .toFile(path);
  }

  /** 8-bit grey or sRGB, alpha flattened onto white. */
  private normalised(pipeline: Sharp): Sharp {
    if (this.alpha) pipeline = pipeline.flatten({ background: '#ffffff' });
    return pipeline.toColourspace(this.grey ? 'b-w' : 'srgb');
  }

  private input(): Sharp {
    return sharp(this.file.path, {
      failOn: 'truncated',
      limitInputPixels: false,
      // The samples as stored, in the pyramid too (the profile is embedded by the engine); CMYK is still converted.
      ignoreIcc: this.meta.space !== 'cmyk',
      // Top to bottom, keeping a few rows: random access would have libvips decode a JPEG or PNG
      // whole into memory (or a temporary file) before the first pixel.
      sequentialRead: true,
    });
  }

  private async raw(pipeline: Sharp): Promise<RawPixels> {
    let result;
    try {
      result = await decoding(this.name, () => this.normalised(pipeline).raw().toBuffer({ resolveWithObject: true }));
    } catch (error) {
      // libvips names the file it failed on; clients see only the name they asked for.
      if (error instanceof Error) error.message = withoutPath(error.message, this.file.path, this.name);
      throw error;
    }
    const { data, info } = result;
    const channels = info.channels as 1 | 3;
    return { data, width: info.width, height: info.height, channels, stride: info.width * channels };
  }

  /** A whole level of a small image, decoded once. */
  private level(level: number): Promise<RawPixels> {
    return this.settings.memory.get(this.cacheKey + level, async () => {
      if (level === 0) return this.raw(this.input());
      const full = await this.level(0);
      const size = this.description.levels[level]!;
      return this.raw(
        sharp(full.data, { raw: { width: full.width, height: full.height, channels: full.channels } }).resize(size.width, size.height, { fit: 'fill' }),
      );
    });
  }

  /**
   * A rectangle of a level of a big image, from the file: the whole level decoded at reduced size
   * (loaders that shrink while decoding) or the rows down to the rectangle at full size, whichever
   * decodes fewer pixels.
   */
  private readReduced(level: number, rect: Rect): Promise<RawPixels> {
    assertProcessable(this.name, rect, this.settings.limits, 'reading a non-pyramidal image');
    const full = this.description.levels[0]!;
    const size = this.description.levels[level]!;
    const sx = full.width / size.width;
    const sy = full.height / size.height;
    const left = Math.floor(rect.left * sx);
    const top = Math.floor(rect.top * sy);
    const right = Math.min(full.width, Math.ceil((rect.left + rect.width) * sx));
    const bottom = Math.min(full.height, Math.ceil((rect.top + rect.height) * sy));
    const shrink = SHRINKS_ON_LOAD.has(this.meta.format ?? '') ? Math.min(8, 2 ** Math.floor(Math.log2(Math.min(sx, sy)))) : 1;
    const rowsCost = full.width * bottom;
    const shrunkCost = (full.width * full.height) / (shrink * shrink);
    return this.settings.readSlots.run(() => {
      if (level === 0) return this.raw(this.input().extract(rect));
      if (shrink > 1 && shrunkCost < rowsCost) {
        // Resizing before extracting lets libvips shrink while decoding.
        return this.raw(this.input().resize(size.width, size.height, { fit: 'fill' }).extract(rect));
      }
      return this.raw(
        this.input()
          .extract({ left, top, width: right - left, height: bottom - top })
          .resize(rect.width, rect.height, { fit: 'fill' }),
      );
    });
  }

  async storedJpegTile(level: number, col: number, row: number): Promise<Buffer | null> {
    if (level === 0 && this.base) return this.base.storedJpegTile(level, col, row);
    const pyramid = await this.lookForPyramid(false);
    return pyramid ? pyramid.storedJpegTile(level, col, row) : null;
  }

  async decodeTile(level: number, col: number, row: number): Promise<RawPixels | null> {
    if (level === 0 && this.base) return this.base.decodeTile(level, col, row);
    if (!this.small) {
      const pyramid = await this.lookForPyramid(false);
      return pyramid ? pyramid.decodeTile(level, col, row) : null;
    }
    const pixels = await this.level(level);
    const tile = PLAIN_TILE_SIZE;
    const left = col * tile;
    const top = row * tile;
    if (left >= pixels.width || top >= pixels.height) return null;
    const width = Math.min(tile, pixels.width - left);
    const height = Math.min(tile, pixels.height - top);
    // A copy: the caller owns the samples (the watermark is drawn into them).
    const data = Buffer.allocUnsafe(width * height * pixels.channels);
    const span = width * pixels.channels;
    for (let y = 0; y < height; y++) {
      const at = (top + y) * pixels.stride + left * pixels.channels;
      pixels.data.copy(data, y * span, at, at + span);
    }
    return { data, width, height, channels: pixels.channels, stride: span };
  }

  async decode(level: number, rect: Rect): Promise<Sharp> {
    if (level === 0 && this.base) return this.base.decode(level, rect);
    let pixels: RawPixels;
    if (this.small) {
      const whole = await this.level(level);
      return sharp(whole.data, { raw: { width: whole.width, height: whole.height, channels: whole.channels } }).extract(rect);
    } else {
      const pyramid = await this.lookForPyramid(false);
      if (pyramid) return pyramid.decode(level, rect);
      pixels = await this.readReduced(level, rect);
    }
    return sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: pixels.channels } });
  }

  async samples(level: number, rect: Rect): Promise<Samples> {
    if (level === 0 && this.base) return this.base.samples(level, rect);
    let pixels: RawPixels;
    if (this.small) {
      const whole = await this.level(level);
      pixels = await this.raw(sharp(whole.data, { raw: { width: whole.width, height: whole.height, channels: whole.channels } }).extract(rect));
    } else {
      const pyramid = await this.lookForPyramid(false);
      if (pyramid) return pyramid.samples(level, rect);
      pixels = await this.readReduced(level, rect);
    }
    return { data: pixels.data, width: pixels.width, height: pixels.height, channels: pixels.channels };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.settings.memory.forget(this.cacheKey);
    await this.pyramid?.close();
    await this.base?.close();
  }
}
