/**
 * Decoded JPEG2000 pixels kept for the tiles they contain, bounded in bytes: whole small levels (a
 * small level costs one decode of all of it: the codec reads every codestream tile for it anyway)
 * and 512x512 blocks of larger ones that a viewer is reading tile after tile. Decodes of the same
 * key asked for at the same time share one child.
 */
import { DecodedPixelsCache } from '../cache/decoded-pixels.js';
import type { DecodedPixels } from './pnm.js';

export class DecodedLevelCache extends DecodedPixelsCache<DecodedPixels> {}
