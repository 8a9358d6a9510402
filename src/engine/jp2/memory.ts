/**
 * What one OpenJPEG decode will need in memory, from the header alone, so that a file whose
 * header claims more is refused before any decoder sees it. OpenJPEG 2.5 (read in its tcd.c and
 * j2k.c, then measured with the helper):
 *
 *  - reading the main header sets up the coding parameters of every codestream tile: about 9 KB
 *    a tile and 1.1 KB more per component (65025 tiles of 1 component: 633 MB);
 *  - decoding sets up, for the codestream tile being decoded, every precinct and code-block of
 *    every resolution, whatever area and resolution are asked for: about 430 bytes a code-block
 *    and 100 a precinct of a band (a 213-byte J2K whose SIZ claims one 200000x200000 tile:
 *    9.8 million code-blocks, 3.8 GB, at any reduction). Tiles are decoded one after the other
 *    on the same structures, so the largest tile counts, not their sum;
 *  - samples are 32-bit, held in the output image, in the tile's window and in the wavelet's
 *    buffers (a 4000x4000 grey area: 232 MB, 14 bytes a sample with ours);
 *  - the compressed data of the tile is read whole.
 *
 * The constants below are those measurements rounded up; tile-part headers (which may change
 * code-block sizes again) are not read here, which is what the helper's address-space limit is
 * for.
 */
import type { Jp2Header } from './header.js';

const TILE_BYTES = 9 * 1024;
const TILE_COMPONENT_BYTES = 1280;
const CODE_BLOCK_BYTES = 448;
const PRECINCT_BYTES = 128;
/** Per decoded sample: OpenJPEG's image, tile window and wavelet buffers (32-bit each) and ours. */
const SAMPLE_BYTES = 14;

export interface DecodeMemory {
  bytes: number;
  /** The largest part, in words, for a message that says why. */
  reason: string;
}

const ceilDiv = (value: number, divisor: number) => Math.ceil(value / divisor);

/** Code-blocks and precincts (counted per band) of one tile-component of this size. */
function tileComponentBlocks(header: Jp2Header, width: number, height: number): { codeBlocks: number; precincts: number } {
  let codeBlocks = 0;
  let precincts = 0;
  const resolutions = header.dwtLevels + 1;
  for (let r = 0; r < resolutions; r++) {
    const scale = 2 ** (resolutions - 1 - r);
    const resWidth = ceilDiv(width, scale);
    const resHeight = ceilDiv(height, scale);
    const precinct = header.precincts[r] ?? { widthExp: 15, heightExp: 15 };
    // Bands of resolutions above the lowest are half its size, with precincts halved too.
    const [bands, bandWidth, bandHeight, shrink] = r === 0 ? [1, resWidth, resHeight, 0] : [3, ceilDiv(resWidth, 2), ceilDiv(resHeight, 2), 1];
    const precinctWidth = 2 ** Math.max(0, precinct.widthExp - shrink);
    const precinctHeight = 2 ** Math.max(0, precinct.heightExp - shrink);
    const blockWidth = Math.min(2 ** header.codeBlock.widthExp, precinctWidth);
    const blockHeight = Math.min(2 ** header.codeBlock.heightExp, precinctHeight);
    // +1: a tile not aligned on the precinct grid starts and ends in partial ones.
    precincts += bands * (ceilDiv(bandWidth, precinctWidth) + 1) * (ceilDiv(bandHeight, precinctHeight) + 1);
    codeBlocks += bands * ceilDiv(bandWidth, blockWidth) * ceilDiv(bandHeight, blockHeight);
  }
  return { codeBlocks, precincts };
}

/**
 * @param fileBytes the file's size (the compressed data read for a tile is at most its share)
 * @param samples decoded samples asked for (width x height x components at the reduction)
 */
export function decodeMemory(header: Jp2Header, fileBytes: number, samples: number): DecodeMemory {
  const tilesAcross = ceilDiv(header.x1 - header.tileX0, header.tileWidth);
  const tilesDown = ceilDiv(header.y1 - header.tileY0, header.tileHeight);
  const tiles = tilesAcross * tilesDown;
  const components = header.components.length;
  // The largest codestream tile: the tile grid clipped to the image.
  const tileWidth = Math.min(header.tileWidth, header.x1 - header.x0);
  const tileHeight = Math.min(header.tileHeight, header.y1 - header.y0);
  let codeBlocks = 0;
  let precincts = 0;
  for (const component of header.components) {
    const blocks = tileComponentBlocks(header, ceilDiv(tileWidth, component.dx), ceilDiv(tileHeight, component.dy));
    codeBlocks += blocks.codeBlocks;
    precincts += blocks.precincts;
  }
  const parts: Array<[number, string]> = [
    [tiles * (TILE_BYTES + components * TILE_COMPONENT_BYTES), `${tiles} codestream tiles`],
    [codeBlocks * CODE_BLOCK_BYTES + precincts * PRECINCT_BYTES, `${codeBlocks} code-blocks in a ${tileWidth}x${tileHeight} codestream tile`],
    [samples * SAMPLE_BYTES, `${samples} decoded samples`],
    [Math.ceil(fileBytes / tiles), 'the compressed data of a tile'],
  ];
  const bytes = parts.reduce((sum, [part]) => sum + part, 0);
  const largest = parts.reduce((a, b) => (b[0] > a[0] ? b : a));
  return { bytes, reason: largest[1] };
}
