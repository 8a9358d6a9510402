/**
 * The last steps of a tile or region, whichever way its pixels came: orientation, greyscale, the
 * watermark, encoding and the image's profile. Tiles take one of two routes: 8-bit pixels in
 * memory go to libjpeg-turbo directly when nothing turns them (the hot path of viewers),
 * everything else through a libvips pipeline.
 */
import sharp, { type Sharp } from 'sharp';
import { jpegCodec } from '../codecs/jpeg.js';
import type { RawPixels } from '../source.js';
import { embedMetadata, encodeImage, hasAlpha, type EncodeOptions, type EncoderSettings } from './encoders.js';
import { markPipeline, type MarkablePixels, type Watermark } from './watermark.js';

/** Draws the watermark into pixels in place; null when this output gets none. */
export type Marker = ((pixels: MarkablePixels) => void) | null;

/** Clockwise degrees (a multiple of 90 for tiles) and a left-right mirror applied first. */
export interface Orientation {
  rotation: number;
  mirror: boolean;
}

export function rawPipeline(pixels: RawPixels): Sharp {
  return sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: pixels.channels } });
}

/** Whether {@link encodeJpegPixels} can run here (libjpeg-turbo loaded). */
export const directJpeg = jpegCodec !== null;

/**
 * Upright 8-bit pixels to a JPEG through libjpeg-turbo: watermark, encode, profile. The caller
 * owns the pixels (the watermark is drawn into them).
 * @throws Error when libjpeg-turbo is not loaded (check {@link directJpeg})
 */
export async function encodeJpegPixels(pixels: RawPixels, quality: number, icc: Buffer | null, mark: Marker): Promise<Buffer> {
  if (!jpegCodec) throw new Error('libjpeg-turbo is not loaded');
  mark?.(pixels);
  return withProfile(await jpegCodec.encode(pixels, quality), icc);
}

/** A stored JPEG tile with the image's profile added (when it has one to embed). */
export function withProfile(jpeg: Buffer, icc: Buffer | null): Buffer {
  return embedMetadata(jpeg, 'jpeg', icc, null);
}

/** Mirror, rotate, watermark, encode. */
export async function encodePipeline(
  pipeline: Sharp,
  channels: number,
  bits: 8 | 16,
  orientation: Orientation,
  mark: Marker,
  encoding: EncodeOptions,
  settings: EncoderSettings,
): Promise<Buffer> {
  if (orientation.mirror) pipeline = pipeline.flop();
  if (orientation.rotation % 360 !== 0) pipeline = pipeline.rotate(orientation.rotation);
  if (mark) pipeline = await markPipeline(pipeline, channels, bits, mark);
  return encodeImage(pipeline, channels, encoding, settings);
}

/** How a region comes out: its size before rotation, any angle, and the IIIF quality. */
export interface RegionShape extends Orientation {
  width: number;
  height: number;
  /** 'grey': one band from Rec. 601 weights; 'colour' as the pipeline has it. */
  colour: 'colour' | 'grey' | 'bitonal';
}

/** The watermark of a region, placed on a grid of blocks twice the image's tile size. */
export interface RegionMarking {
  watermark: Watermark;
  tileWidth: number;
  tileHeight: number;
}

const REC601_GREY: [[number, number, number], [number, number, number], [number, number, number]] = [
  [0.299, 0.587, 0.114],
  [0.299, 0.587, 0.114],
  [0.299, 0.587, 0.114],
];

/** Mirror, rotate by any angle, make grey, watermark, encode: a region at its output size. */
export async function encodeRegion(
  pipeline: Sharp,
  channels: number,
  shape: RegionShape,
  marking: RegionMarking | null,
  encoding: EncodeOptions,
  settings: EncoderSettings,
): Promise<Buffer> {
  const bits = encoding.bits ?? 8;
  if (shape.mirror) pipeline = pipeline.flop();
  if (shape.rotation % 360 !== 0) {
    // The corners an arbitrary angle uncovers: white in JPEG and PDF (as iipsrv), transparent
    // where the format has alpha (as the IIIF specification recommends).
    const square = shape.rotation % 90 === 0;
    if (square || !hasAlpha(encoding.format)) pipeline = pipeline.rotate(shape.rotation, { background: '#ffffff' });
    else {
      pipeline = pipeline.ensureAlpha().rotate(shape.rotation, { background: { r: 255, g: 255, b: 255, alpha: 0 } });
      if (channels === 1 || channels === 3) channels++;
    }
  }
  if (shape.colour === 'grey') {
    // One band, alpha dropped, from the encoded values with Rec. 601 weights as iipsrv does
    // (libvips' own b-w works in linear light: pure red would be 127 instead of 76).
    if (channels >= 3) pipeline = pipeline.removeAlpha().recomb(REC601_GREY).extractChannel(0);
    pipeline = pipeline.removeAlpha().toColourspace('b-w');
    channels = 1;
  }
  if (marking) {
    const { watermark, tileWidth, tileHeight } = marking;
    if (shape.rotation % 90 === 0) {
      // The output size is known: draw first, and leave the pipeline whole when nothing is drawn.
      const turned = shape.rotation % 180 !== 0;
      const [width, height] = turned ? [shape.height, shape.width] : [shape.width, shape.height];
      const blocks = watermark.drawBlocks(width, height, tileWidth, tileHeight);
      if (blocks.length > 0) pipeline = await markPipeline(pipeline, channels, bits, (p) => watermark.markBlocks(p, blocks));
    } else pipeline = await markPipeline(pipeline, channels, bits, (p) => watermark.markRegion(p, tileWidth, tileHeight));
  }
  return encodeImage(pipeline, channels, encoding, settings);
}
