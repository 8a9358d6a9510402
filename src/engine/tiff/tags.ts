/** TIFF tag ids, field types and names (TIFF 6.0, BigTIFF, and the few private tags we read). */

export const Tag = {
  NewSubfileType: 254,
  SubfileType: 255,
  ImageWidth: 256,
  ImageLength: 257,
  BitsPerSample: 258,
  Compression: 259,
  Photometric: 262,
  DocumentName: 269,
  ImageDescription: 270,
  Make: 271,
  Model: 272,
  StripOffsets: 273,
  Orientation: 274,
  SamplesPerPixel: 277,
  RowsPerStrip: 278,
  StripByteCounts: 279,
  XResolution: 282,
  YResolution: 283,
  PlanarConfig: 284,
  Predictor: 317,
  PageName: 285,
  ResolutionUnit: 296,
  Software: 305,
  DateTime: 306,
  Artist: 315,
  TileWidth: 322,
  TileLength: 323,
  TileOffsets: 324,
  TileByteCounts: 325,
  SubIFDs: 330,
  ExtraSamples: 338,
  SampleFormat: 339,
  SMinSampleValue: 340,
  SMaxSampleValue: 341,
  JPEGTables: 347,
  XMP: 700,
  Copyright: 33432,
  ICCProfile: 34675,
  /** StoNits: master iipsrv's scale of a stack page (and OBJ=metadata's "scale"). */
  StoNits: 37439,
} as const;

const tagNames = new Map<number, string>(Object.entries(Tag).map(([name, id]) => [id, name]));

/** A readable name for messages: "TileOffsets (324)", or "tag 12345". */
export function tagName(tag: number): string {
  const name = tagNames.get(tag);
  return name ? `${name} (${tag})` : `tag ${tag}`;
}

/** Field types (TIFF 6.0 1–12, BigTIFF 16–18). */
export const FieldType = {
  BYTE: 1,
  ASCII: 2,
  SHORT: 3,
  LONG: 4,
  RATIONAL: 5,
  SBYTE: 6,
  UNDEFINED: 7,
  SSHORT: 8,
  SLONG: 9,
  SRATIONAL: 10,
  FLOAT: 11,
  DOUBLE: 12,
  IFD: 13,
  LONG8: 16,
  SLONG8: 17,
  IFD8: 18,
} as const;

/** Bytes per value of each field type; 0 for types we do not know (such entries are ignored). */
export function fieldTypeSize(type: number): number {
  switch (type) {
    case FieldType.BYTE:
    case FieldType.ASCII:
    case FieldType.SBYTE:
    case FieldType.UNDEFINED:
      return 1;
    case FieldType.SHORT:
    case FieldType.SSHORT:
      return 2;
    case FieldType.LONG:
    case FieldType.SLONG:
    case FieldType.FLOAT:
    case FieldType.IFD:
      return 4;
    case FieldType.RATIONAL:
    case FieldType.SRATIONAL:
    case FieldType.DOUBLE:
    case FieldType.LONG8:
    case FieldType.SLONG8:
    case FieldType.IFD8:
      return 8;
    default:
      return 0;
  }
}

/** Compression codes (the ones callers care about by name). */
export const Compression = {
  None: 1,
  LZW: 5,
  OldJPEG: 6,
  JPEG: 7,
  AdobeDeflate: 8,
  PackBits: 32773,
  Deflate: 32946,
  ZSTD: 50000,
  WebP: 50001,
} as const;
