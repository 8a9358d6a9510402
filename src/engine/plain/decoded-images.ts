/**
 * Small non-pyramidal images decoded whole, one entry a level, bounded in bytes (PLAIN_CACHE_SIZE):
 * a viewer reads tile after tile of the same image, and decoding a PNG or JPEG again for each would
 * cost its whole decode every time. Decodes of one key asked for at once share one run.
 */
import { DecodedPixelsCache } from '../cache/decoded-pixels.js';
import type { RawPixels } from '../source.js';

export class DecodedImages extends DecodedPixelsCache<RawPixels> {}
