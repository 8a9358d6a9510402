/**
 * From decoded pixels to the bytes of an output format. JPEG goes through libjpeg-turbo (see
 * codecs/jpeg.ts); PNG, WebP, AVIF and TIFF through libvips. Which bands are kept follows iipsrv:
 * JPEG gets grey or RGB (alpha dropped, never composited), the other formats keep alpha.
 */
import sharp, { type Sharp } from 'sharp';
import { jpegCodec } from './codecs/jpeg.js';

export type OutputFormat = 'jpeg' | 'png' | 'webp' | 'avif' | 'tiff';

export const CONTENT_TYPES: Record<OutputFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  tiff: 'image/tiff',
};

export const EXTENSIONS: Record<OutputFormat, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', avif: 'avif', tiff: 'tif' };

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

/**
 * @param channels bands of the source image
 * @param quality JPEG quality (the request's QLT or JPEG_QUALITY)
 */
export async function encodeImage(pipeline: Sharp, channels: number, format: OutputFormat, quality: number, settings: EncoderSettings): Promise<Buffer> {
  // sharp would turn greyscale into three identical bands; iipsrv sends one.
  if (channels <= 2) pipeline = pipeline.toColourspace('b-w');
  switch (format) {
    case 'jpeg': {
      // iipsrv writes the first three bands (grey+alpha: the first) and drops alpha without compositing.
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
    case 'png':
      return pipeline.png({ compressionLevel: settings.pngCompression }).toBuffer();
    case 'webp':
      return pipeline.webp(settings.webpQuality < 0 ? { lossless: true } : { quality: Math.max(1, settings.webpQuality) }).toBuffer();
    case 'avif':
      return pipeline.avif(settings.avifQuality < 0 ? { lossless: true } : { quality: Math.max(1, settings.avifQuality) }).toBuffer();
    case 'tiff':
      return pipeline
        .tiff({ compression: settings.tiffCompression, quality: Math.min(100, Math.max(1, settings.tiffQuality)) })
        .toBuffer();
  }
}
