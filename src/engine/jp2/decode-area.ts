/**
 * What one JPEG2000 decode is asked for, in the codestream's own terms: both decoders (the
 * persistent helper and opj_decompress) take it, and the source computes it from a level and a
 * rectangle.
 */
export interface DecodeArea {
  /** Resolutions discarded from the top (0 = full resolution). */
  reduce: number;
  /** Quality layers decoded (1 .. all). */
  layers: number;
  /** On the full-resolution reference grid: x0 <= x < x1, y0 <= y < y1. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  /** What the area decodes to, to bound the output. */
  width: number;
  height: number;
  channels: number;
}
