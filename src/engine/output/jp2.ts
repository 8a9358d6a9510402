/**
 * JPEG2000 output through native/jp2-encoder.c (built by npm run build next to the decoder, over
 * the same libopenjp2): one child per image, at most one per core at once, killed when it outlives
 * a time that grows with the image. Lossless: a JP2 is asked for to keep or archive an image, not
 * to view it (viewers ask for JPEG), and a lossless file has no quality setting to map.
 *
 * libvips in sharp's binaries has no JPEG2000 writer, and opj_compress reads a whole image as
 * 32-bit integers (500 MB for 5000x5000 RGB), where the encoder takes a strip of tiles at a time.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ServerFailureError } from '../../errors.js';
import { DecodeError, ProcessPool } from '../jp2/process-pool.js';

/** Where npm run build puts the encoder: build/ at the package root (three levels above this file). */
export const JP2_ENCODER = fileURLToPath(new URL('../../../build/jp2-encoder', import.meta.url));

/** Whether this installation writes JPEG2000 (the encoder was built). */
export const jp2Output = existsSync(JP2_ENCODER);

export interface Jp2Pixels {
  /** 8-bit samples, interleaved: grey, grey+alpha, RGB or RGBA. */
  data: Buffer;
  width: number;
  height: number;
  channels: number;
}

let pool: ProcessPool | null = null;

/**
 * Noise, the worst case, takes 1.2 s a megapixel here (31 s for 5000x5000 RGB; smooth images a
 * tenth of that): four times as long, and never under 10 s.
 */
function timeLimit(pixels: number): number {
  return 10_000 + Math.ceil(pixels / 1e6) * 5_000;
}

/** Kills the encoders still running (shutdown). */
export function stopJp2Encoders(): void {
  pool?.killAll();
}

/**
 * A JP2 stating sRGB or greyscale (codecs/embed.ts puts a profile in).
 * @throws ServerFailureError when the encoder fails or overruns its time
 */
export async function encodeJp2(pixels: Jp2Pixels): Promise<Buffer> {
  const { data, width, height, channels } = pixels;
  if (data.length !== width * height * channels) throw new Error(`JPEG2000: ${data.length} bytes for ${width}x${height}x${channels}`);
  pool ??= new ProcessPool(Math.max(1, availableParallelism()));
  const args = [width, height, channels].map(String);
  // A lossless codestream can be a little larger than its samples (noise), never much.
  const maxBytes = Math.ceil(data.length * 1.25) + 65_536;
  try {
    return await pool.run(JP2_ENCODER, args, { timeoutMs: timeLimit(width * height), maxBytes, input: [data] });
  } catch (error) {
    if (error instanceof DecodeError) throw new ServerFailureError(`JPEG2000 encoder: ${error.message}`);
    throw error;
  }
}
