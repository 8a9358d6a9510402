/**
 * The largest outputs this server makes, checked before any pixel is decoded: an output beyond
 * its encoder, or beyond what fits Node's buffers, is a clear 400 rather than a worker out of
 * memory. They stand even with MAX_CVT=-1.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { OutputFormat } from './encoders.js';

/**
 * The largest side each encoder writes (libjpeg 65500, and so the JPEG inside a PDF; WebP 16383,
 * HEIF 16384 here; GIF's 16-bit screen size).
 */
const MAX_OUTPUT_SIDE: Readonly<Record<OutputFormat, number>> = {
  jpeg: 65_500,
  pdf: 65_500,
  webp: 16_383,
  avif: 16_384,
  gif: 65_535,
  png: 1e8,
  tiff: 1e8,
  jp2: 1e8,
};
/**
 * sharp's own default input limit: beyond it the samples (and the float pipeline's copy) no longer
 * fit Node's buffers, and the process would die instead of answering.
 */
const MAX_OUTPUT_PIXELS = 0x3fff * 0x3fff;

/**
 * @param rotation clockwise degrees: an arbitrary angle widens the box by up to √2
 * @throws InvalidArgumentError for an output no encoder here can write
 */
export function assertEncodable(name: string, width: number, height: number, format: OutputFormat, rotation: number): void {
  const grow = rotation % 90 === 0 ? 1 : Math.SQRT2;
  const w = Math.ceil(width * grow);
  const h = Math.ceil(height * grow);
  const side = MAX_OUTPUT_SIDE[format];
  if (w > side || h > side) {
    throw new InvalidArgumentError(`${name}: a ${w}x${h} ${format.toUpperCase()} is larger than the encoder writes (${side} pixels a side)`);
  }
  if (w * h > MAX_OUTPUT_PIXELS) {
    throw new InvalidArgumentError(`${name}: a ${w}x${h} output is larger than the server makes (${MAX_OUTPUT_PIXELS} pixels)`);
  }
}
