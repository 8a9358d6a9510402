/**
 * The steps iipsrv runs on the 8-bit pixels it is about to encode, after the float pipeline and
 * any resizing: COL=grey (sRGB sources only), COL=binary (grey, then the image's Otsu threshold;
 * not for sources that are already bi-level), CNT=eq (every band through the equalisation table).
 * Mirroring and rotation follow in the engine.
 */
import { equalisationTable, otsuThreshold } from './histogram.js';
import { toGrey, type Processing } from './processing.js';
import type { ColourSpace, RawPixels } from '../source.js';

/** Whether any of these steps is asked for (and so the image histogram may be needed). */
export function hasOutputSteps(p: Processing): boolean {
  return p.grey || p.binary || p.equalise;
}

/**
 * @param pixels tightly packed (stride = width * channels)
 * @param histogram the image's (see histogram.ts); only read for binary and equalisation
 */
export function applyOutputSteps(pixels: RawPixels, p: Processing, source: ColourSpace, histogram: Uint32Array | null): RawPixels {
  let { data, channels } = pixels;
  const { width, height } = pixels;
  if (((p.grey && source === 'srgb') || (p.binary && source !== 'binary')) && channels === 3) {
    data = toGrey(data);
    channels = 1;
  }
  if (p.binary && source !== 'binary') {
    const threshold = otsuThreshold(histogram!);
    const out = Buffer.allocUnsafe(data.length);
    for (let i = 0; i < data.length; i++) out[i] = data[i]! < threshold ? 0 : 255;
    data = out;
  }
  if (p.equalise) {
    const table = equalisationTable(histogram!, width * height);
    const out = Buffer.allocUnsafe(data.length);
    for (let i = 0; i < data.length; i++) out[i] = table[data[i]!]!;
    data = out;
  }
  return { data, width, height, channels, stride: width * channels };
}
