/**
 * JPEG through libjpeg-turbo (@julusian/jpeg-turbo, prebuilt). sharp's encoder is mozjpeg, which
 * spends 3-6 times the CPU of plain libjpeg-turbo on a 256x256 tile; tiles are the hot path, so
 * they are decoded and encoded here. Both calls run on libuv's thread pool.
 *
 * The binding is optional at run time: where it cannot load (another platform without a prebuild),
 * `jpegCodec` is null and the engine encodes through sharp instead.
 */
import { createRequire } from 'node:module';
import type * as JpegTurbo from '@julusian/jpeg-turbo';
import type { RawPixels } from '../source.js';

export interface JpegCodec {
  decode(jpeg: Buffer, channels: 1 | 3): Promise<RawPixels>;
  /** 4:2:0 for colour as iipsrv (libjpeg defaults), plain greyscale for one band. */
  encode(pixels: RawPixels, quality: number): Promise<Buffer>;
}

function load(): typeof JpegTurbo | null {
  try {
    return createRequire(import.meta.url)('@julusian/jpeg-turbo') as typeof JpegTurbo;
  } catch {
    return null;
  }
}

function createCodec(turbo: typeof JpegTurbo): JpegCodec {
  return {
    async decode(jpeg, channels) {
      const format = channels === 1 ? turbo.FORMAT_GRAY : turbo.FORMAT_RGB;
      const { data, width, height } = await turbo.decompress(jpeg, { format });
      return { data, width, height, channels, stride: width * channels };
    },
    encode(pixels, quality) {
      const grey = pixels.channels === 1;
      // The result is a view of a worst-case-sized buffer; the RAM cache keeps copies of such views.
      return turbo.compress(pixels.data, {
        format: grey ? turbo.FORMAT_GRAY : turbo.FORMAT_RGB,
        subsampling: grey ? turbo.SAMP_GRAY : turbo.SAMP_420,
        width: pixels.width,
        height: pixels.height,
        stride: pixels.stride / pixels.channels,
        quality,
      });
    },
  };
}

const turbo = load();
export const jpegCodec: JpegCodec | null = turbo ? createCodec(turbo) : null;
