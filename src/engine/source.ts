/**
 * What every image source (pyramid TIFF, JPEG2000) offers the engine: a description
 * read once per file, the stored bytes of a tile when they can be sent as they are, and decoding
 * of any rectangle of any level. Nothing here assumes 8-bit RGB: samples, bands and colour space
 * are described, and decoders say what they return.
 */
import type { Sharp } from 'sharp';
import type { LevelSize, Rect } from './geometry.js';

/**
 * The file formats a source reads, told apart by their first bytes: pyramid TIFF, JPEG2000, and
 * the images without a pyramid that libvips reads (plain JPEG, PNG, WebP, GIF, HEIF/AVIF, JPEG XL,
 * PNM; a TIFF that is not tiled is read as one too).
 */
export type ImageFormat = 'tiff' | 'jp2' | 'plain';

/** Interleaved 8-bit samples, rows of `stride` bytes (at least width x channels). */
export interface RawPixels {
  data: Buffer;
  width: number;
  height: number;
  /** 1 (grey) or 3 (RGB). */
  channels: 1 | 3;
  stride: number;
}

/** Samples of any type as stored, interleaved: what iipsrv's processing pipeline works on. */
export interface Samples {
  /** Interleaved samples: Uint8Array, Uint16Array, Float32Array ... */
  data: ArrayLike<number>;
  width: number;
  height: number;
  channels: number;
}

export type SampleFormat = 'uint' | 'int' | 'float';

/** The colour spaces iipsrv distinguishes (OBJ=Colorspace, processing choices). */
export type ColourSpace = 'srgb' | 'grey' | 'binary' | 'cielab' | 'multiband';

/** Textual metadata, by iipsrv 1.1's OBJ names' meaning. */
export interface ImageMetadata {
  copyright?: string;
  title?: string;
  /** ImageDescription. */
  description?: string;
  /** Artist. */
  author?: string;
  /** DateTime. */
  date?: string;
  software?: string;
  make?: string;
  model?: string;
  /** PageName (master iipsrv's "pagename"). */
  pageName?: string;
  /** StoNits (master iipsrv's "scale"). */
  scale?: number;
}

/** A page of a multi-page stack (master iipsrv's OBJ=stack): its name (DocumentName) and scale (StoNits, else 1). */
export interface StackPage {
  name: string;
  scale: number;
}

export interface ImageDescription {
  format: ImageFormat;
  /** Largest first: levels[0] is full resolution. */
  levels: LevelSize[];
  channels: number;
  bitsPerSample: number;
  sampleFormat: SampleFormat;
  colourSpace: ColourSpace;
  /** Per channel, used to normalise data wider than 8 bits. */
  minValues: number[];
  maxValues: number[];
  /**
   * The depth and range as the file states them, when decoding widens the samples (a 12-bit TIFF
   * decoded to 16 bits, its range scaled with it): what OBJ reports, as iipsrv does. Absent when
   * the samples are decoded as stored.
   */
  stored?: { bitsPerSample: number; minValues: number[]; maxValues: number[] };
  /** Pixels per unit (unit 2 = inch, 3 = centimetre), or null when the file has none. */
  resolution: { x: number; y: number; unit: number } | null;
  icc: Buffer | null;
  xmp: string | null;
  /** A JPEG source's EXIF, TIFF-structured (without JPEG's "Exif\0\0"): carried into region outputs as iipsrv master does. */
  exif?: Buffer | null;
  metadata: ImageMetadata;
  /** Why the pixels cannot be decoded here although the file could be read (a codec we lack), or null. */
  undecodable: string | null;
  /**
   * Set when the file is a stack of pages (multi-page TIFF, as master iipsrv reads them): every
   * page, counted from 0; this description is of one of them. Absent for a single image.
   */
  stack?: readonly StackPage[];
}

/** What a request may ask of a decoder beyond the rectangle. */
export interface DecodeOptions {
  /** JPEG2000 quality layers (IIP LYR); absent or 0 = the server's MAX_LAYERS rule. */
  layers?: number;
}

export interface ImageSource {
  readonly description: ImageDescription;
  /**
   * The stored bytes of a whole tile when they already form a complete baseline JPEG of exactly
   * that tile (no padding, 8-bit, 1 or 3 bands); null when the tile must be decoded.
   */
  storedJpegTile(level: number, col: number, row: number): Promise<Buffer | null>;
  /**
   * The 8-bit samples of a whole tile, cropped to the image, when the source has a cheaper way to
   * them than a general decode (JPEG tiles through libjpeg-turbo); null when it has none. The
   * caller owns the samples (the watermark is added to them in place).
   */
  decodeTile(level: number, col: number, row: number, options?: DecodeOptions): Promise<RawPixels | null>;
  /**
   * A decoder positioned on a rectangle of a level, delivering 8 or 16-bit samples; the caller
   * adds resizing and encoding.
   */
  decode(level: number, rect: Rect, options?: DecodeOptions): Promise<Sharp>;
  /**
   * The samples of a rectangle of a level exactly as stored (bands, sample type and precision),
   * interleaved: what iipsrv's processing pipeline works on.
   */
  samples(level: number, rect: Rect, options?: DecodeOptions): Promise<Samples>;
  /**
   * The pyramid built for this image when it has none of its own (plain images with
   * PYRAMID_CACHE_DIR); absent or null when there is none to build (a pyramidal file, a small image).
   */
  derivedPyramid?(): DerivedPyramid | null;
  close(): Promise<void>;
}

/** A pyramid file built from an image that has none, for the cache tools. */
export interface DerivedPyramid {
  /** Where it is kept (whether it exists yet or not). */
  readonly path: string;
  /**
   * Builds it now unless it exists, and serves from it.
   * @returns 'built', 'present' (it was there), or 'busy' (another process is building it)
   */
  build(): Promise<'built' | 'present' | 'busy'>;
  /** Deletes it; false when there was none. */
  remove(): Promise<boolean>;
}
