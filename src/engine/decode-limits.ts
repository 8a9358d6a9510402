/**
 * What one request may make a worker decode into memory, checked before anything is read: a
 * hostile or broken file (a 1 GiB tile, 3331 bands) or an ambitious request (processing a whole
 * 80 Mpx image) is refused with a 4xx that names the image and the limit, instead of taking the
 * worker's memory and time. Set by MAX_TILE_BYTES, MAX_SAMPLES_PER_PIXEL and
 * MAX_PROCESSING_PIXELS (config.ts); the defaults are far above real pyramids.
 */
import { InvalidArgumentError } from '../errors.js';
import type { Rect } from './geometry.js';

export interface DecodeLimits {
  /** Largest tile or strip decoded, in bytes: width x height x samples x bytes a sample. */
  maxTileBytes: number;
  /** Most samples (bands) a pixel of an image may have. */
  maxSamplesPerPixel: number;
  /** Most pixels of one rectangle decoded whole into memory (the processing pipeline, raw samples). */
  maxProcessingPixels: number;
}

/**
 * 32 MiB holds a 2048x2048 tile of 16-bit RGBA or a 4096x4096 tile of 16-bit grey (pyramids use
 * 256 to 1024). 1024 bands are more than any hyperspectral cube has. 32 Mpx (8192x4096) is a
 * 96 MB region of 8-bit RGB, 300-600 MB with the pipeline's float and output copies.
 */
export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = {
  maxTileBytes: 32 * 1024 * 1024,
  maxSamplesPerPixel: 1024,
  maxProcessingPixels: 32 * 1024 * 1024,
};

/**
 * @param what what would decode the rectangle whole, for the message
 * @throws InvalidArgumentError when the rectangle has more pixels than MAX_PROCESSING_PIXELS
 */
export function assertProcessable(name: string, rect: Rect, limits: DecodeLimits, what: string): void {
  const pixels = rect.width * rect.height;
  if (pixels <= limits.maxProcessingPixels) return;
  throw new InvalidArgumentError(
    `${name}: ${what} would decode a ${rect.width}x${rect.height} region (${pixels} pixels) into memory, ` +
      `more than MAX_PROCESSING_PIXELS (${limits.maxProcessingPixels}); ask for a smaller region or output size`,
  );
}
