/**
 * Our own TIFF structure reader (no pixel decoding): classic TIFF and BigTIFF, both byte orders,
 * pyramid discovery (main IFD chain or SubIFDs), iipsrv's metadata, and the stored bytes of tiles.
 */
export { TiffFile, defaultMaxValue } from './reader.js';
export { TiffFormatError } from './errors.js';
export type { StackPage, TiffInfo, TiffLevel, TextTagName } from './types.js';
export { Tag, FieldType, Compression, tagName } from './tags.js';
