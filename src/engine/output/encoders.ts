/**
 * From decoded pixels to the bytes of an output format. JPEG goes through libjpeg-turbo (see
 * codecs/jpeg.ts); PNG, WebP, AVIF, TIFF and GIF through libvips; JPEG2000 through our encoder
 * over libopenjp2 (jp2.ts); PDF is a JPEG in a page (pdf.ts). Which bands are kept follows iipsrv:
 * JPEG (and so PDF) gets grey or RGB (alpha dropped, never composited), the other formats keep alpha.
 */
import sharp, { type Sharp } from 'sharp';
import { NotImplementedError } from '../../errors.js';
import { EmbedError, embedExif, embedInJp2, embedInJpeg, embedInPng, embedInTiff, embedInWebp } from '../codecs/embed.js';
import { jpegCodec } from '../codecs/jpeg.js';
import { encodeJp2, jp2Output } from './jp2.js';
import { pdfWithJpeg } from './pdf.js';

export type OutputFormat = 'jpeg' | 'png' | 'webp' | 'avif' | 'tiff' | 'gif' | 'jp2' | 'pdf';

export const CONTENT_TYPES: Record<OutputFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  tiff: 'image/tiff',
  gif: 'image/gif',
  jp2: 'image/jp2',
  pdf: 'application/pdf',
};

export const EXTENSIONS: Record<OutputFormat, string> = {
  jpeg: 'jpg',
  png: 'png',
  webp: 'webp',
  avif: 'avif',
  tiff: 'tif',
  gif: 'gif',
  jp2: 'jp2',
  pdf: 'pdf',
};

/** Whether this installation writes the format: JPEG2000 needs the encoder npm run build makes. */
export function writesFormat(format: OutputFormat): boolean {
  return format !== 'jp2' || jp2Output;
}

/** Formats without an alpha band: uncovered corners are white there, transparent elsewhere. */
export function hasAlpha(format: OutputFormat): boolean {
  return format !== 'jpeg' && format !== 'pdf';
}

/** The site's settings for the formats whose quality a request does not give (PNG_QUALITY ...). */
export interface EncoderSettings {
  /** zlib level 0-9. */
  pngCompression: number;
  /** 0-100; -1 lossless. */
  webpQuality: number;
  avifQuality: number;
  tiffCompression: 'none' | 'lzw' | 'deflate' | 'jpeg' | 'webp' | 'zstd';
  tiffQuality: number;
}

export const DEFAULT_ENCODER_SETTINGS: EncoderSettings = {
  pngCompression: 1,
  webpQuality: 50,
  avifQuality: 50,
  tiffCompression: 'deflate',
  tiffQuality: 1,
};

/** What a request asks of the encoder beyond the format. */
export interface EncodeOptions {
  format: OutputFormat;
  /** JPEG quality 1-100 (the request's QLT or JPEG_QUALITY). */
  quality: number;
  /** The request's QLT for the other codecs; null = the site's settings (PNG_QUALITY ...). */
  requested?: RequestedQuality | null;
  /** Embedded when given (the caller has applied EMBED_ICC / MAX_ICC and the processing rules). */
  icc?: Buffer | null;
  xmp?: string | null;
  /**
   * A JPEG source's EXIF (TIFF-structured, no "Exif" prefix): iipsrv master writes it into the JPEG,
   * PNG, WebP and AVIF regions it exports (CVT), never into tiles.
   */
  exif?: Buffer | null;
  /** 16 keeps 16-bit samples (PNG and TIFF only; the pipeline must carry them). */
  bits?: 8 | 16;
}

/** `QLT=n` or `QLT=codec:n` as iipsrv 1.3 reads it: one factor for every codec. */
export interface RequestedQuality {
  /** The factor as given (atoi): each codec clamps it to its own range. */
  factor: number;
  tiffCompression: TiffCompression | null;
}

export type TiffCompression = EncoderSettings['tiffCompression'];

/** The formats that carry 16-bit samples. */
export function keepsSixteenBits(format: OutputFormat): boolean {
  return format === 'png' || format === 'tiff';
}

/** Band layout for the output: grey stays one band (sharp would make three), 16-bit stays 16-bit. */
export function outputBands(pipeline: Sharp, channels: number, bits: 8 | 16 = 8): Sharp {
  if (bits === 16) return pipeline.toColourspace(channels <= 2 ? 'grey16' : 'rgb16');
  return channels <= 2 ? pipeline.toColourspace('b-w') : pipeline;
}

function clampQuality(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

/** WebP and AVIF: a request's QLT below 1 (or the site's -1) is lossless, else a quality of 1-100. */
function lossyOrLossless(requested: RequestedQuality | null | undefined, site: number): { lossless: true } | { quality: number } {
  const quality = requested ? (requested.factor < 1 ? -1 : Math.min(100, requested.factor)) : site;
  return quality < 0 ? { lossless: true } : { quality: Math.max(1, quality) };
}

/**
 * @param channels bands of the pipeline's image
 */
export async function encodeImage(pipeline: Sharp, channels: number, options: EncodeOptions, settings: EncoderSettings): Promise<Buffer> {
  const { format, requested } = options;
  const bits = options.bits === 16 && keepsSixteenBits(format) ? 16 : 8;
  pipeline = outputBands(pipeline, channels, bits);
  // sharp writes XMP into the formats it encodes; JPEG and JPEG2000 get it spliced in with the
  // ICC (below), PDF in an object of its own.
  if (options.xmp && format !== 'jpeg' && format !== 'jp2' && format !== 'pdf') pipeline = pipeline.withXmp(options.xmp);
  let bytes: Buffer;
  switch (format) {
    case 'jpeg':
      bytes = await encodeJpeg(pipeline, channels, options.quality);
      break;
    case 'png':
      bytes = await pipeline.png({ compressionLevel: requested ? clampQuality(requested.factor, 0, 9) : settings.pngCompression }).toBuffer();
      break;
    case 'webp': {
      bytes = await pipeline.webp(lossyOrLossless(requested, settings.webpQuality)).toBuffer();
      break;
    }
    case 'avif': {
      const avif = lossyOrLossless(requested, settings.avifQuality);
      // AVIF keeps its profile in a box that cannot be spliced in afterwards; sharp keeps an input's
      // profile as it is (no conversion), so the pixels reach it as a PNG carrying the profile.
      // That costs an uncompressed PNG, next to an AVIF encoding 50-100 times more.
      // EXIF goes the same way: libvips reads a PNG's eXIf chunk and keepExif writes it into the AVIF.
      if (options.icc || options.exif) {
        let png: Buffer = await pipeline.png({ compressionLevel: 0 }).toBuffer();
        if (options.icc) png = embedInPng(png, options.icc);
        if (options.exif) png = embedExif(png, 'png', options.exif);
        pipeline = sharp(png);
        if (options.icc) pipeline = pipeline.keepIccProfile();
        if (options.exif) pipeline = pipeline.keepExif();
        if (options.xmp) pipeline = pipeline.withXmp(options.xmp);
      }
      bytes = await pipeline.avif(avif).toBuffer();
      break;
    }
    case 'tiff': {
      const compression = requested?.tiffCompression ?? settings.tiffCompression;
      bytes = await pipeline
        .tiff({
          // sharp's libtiff is built without zstd: deflate is the lossless codec closest to it.
          compression: compression === 'zstd' ? 'deflate' : compression,
          quality: clampQuality(requested ? requested.factor : settings.tiffQuality, 1, 100),
        })
        .toBuffer();
      break;
    }
    case 'gif':
      // One frame, up to 256 colours chosen for the image (libimagequant), dithered; alpha becomes
      // GIF's one transparent colour.
      bytes = await pipeline.gif({ colours: 256, effort: 7, dither: 1 }).toBuffer();
      break;
    case 'jp2': {
      if (!jp2Output) throw new NotImplementedError('JPEG2000 output needs build/jp2-encoder (npm run build with libopenjp2-7-dev installed)');
      const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
      bytes = await encodeJp2({ data, width: info.width, height: info.height, channels: info.channels });
      break;
    }
    case 'pdf': {
      const jpeg = await encodeJpeg(pipeline, channels, options.quality);
      const { width, height, components } = jpegShape(jpeg);
      return pdfWithJpeg({ jpeg, width, height, channels: components, icc: options.icc, xmp: options.xmp });
    }
  }
  const spliced = format === 'jpeg' || format === 'jp2';
  bytes = embedMetadata(bytes, format, options.icc ?? null, spliced ? (options.xmp ?? null) : null);
  if (options.exif && (format === 'jpeg' || format === 'png' || format === 'webp')) bytes = embedExif(bytes, format, options.exif);
  return bytes;
}

/** iipsrv writes the first three bands (grey+alpha: the first) and drops alpha without compositing. */
async function encodeJpeg(pipeline: Sharp, channels: number, quality: number): Promise<Buffer> {
  if (channels === 2 || channels === 4) pipeline = pipeline.removeAlpha();
  if (jpegCodec) {
    const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    if (info.channels === 1 || info.channels === 3) {
      const { width, height, channels: bands } = info;
      return jpegCodec.encode({ data, width, height, channels: bands, stride: width * bands }, quality);
    }
    pipeline = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  }
  return pipeline.jpeg({ quality, chromaSubsampling: '4:2:0', optimiseCoding: false }).toBuffer();
}

/** The size and components of a JPEG, from its start-of-frame segment. */
function jpegShape(jpeg: Buffer): { width: number; height: number; components: 1 | 3 } {
  let at = 2;
  while (at + 9 < jpeg.length && jpeg[at] === 0xff) {
    const marker = jpeg[at + 1]!;
    // SOF0-SOF15, less DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      const components = jpeg[at + 9]!;
      if (components !== 1 && components !== 3) break;
      return { height: jpeg.readUInt16BE(at + 5), width: jpeg.readUInt16BE(at + 7), components };
    }
    at += 2 + jpeg.readUInt16BE(at + 2);
  }
  throw new Error('PDF: the JPEG encoder wrote no grey or RGB frame');
}

/** Splices the profile (and, for JPEG and JPEG2000, the XMP packet) into encoded bytes; AVIF has it already, GIF takes none, PDF its own. */
export function embedMetadata(bytes: Buffer, format: OutputFormat, icc: Buffer | null, xmp: string | null): Buffer {
  if (!icc && !xmp) return bytes;
  try {
    switch (format) {
      case 'jpeg':
        return embedInJpeg(bytes, icc, xmp);
      case 'png':
        return icc ? embedInPng(bytes, icc) : bytes;
      case 'webp':
        return icc ? embedInWebp(bytes, icc) : bytes;
      case 'tiff':
        return icc ? embedInTiff(bytes, icc) : bytes;
      case 'jp2':
        return embedInJp2(bytes, icc, xmp);
      case 'avif':
      case 'gif':
      case 'pdf':
        return bytes;
    }
  } catch (error) {
    // A profile too large for JPEG markers: the image is still worth sending.
    if (error instanceof EmbedError) return bytes;
    throw error;
  }
}
