/** The public description of a pyramid TIFF (see {@link TiffFile}). */

export interface TiffLevel {
  width: number;
  height: number;
  /** For untiled (striped) levels: tiled=false, tileWidth=width and tileHeight=rowsPerStrip. */
  tileWidth: number;
  tileHeight: number;
  tiled: boolean;
  /**
   * Where this level lives, for decoders: sharp uses {page} for main-chain IFDs and {page, subifd} for SubIFDs.
   * subifd = -1 for main-chain IFDs; for SubIFD levels: page of the parent and the index 0..n-1 in its SubIFDs tag.
   */
  page: number;
  subifd: number;
  /** TIFF code (1 none, 5 LZW, 7 JPEG, 8/32946 deflate, 32773 packbits, 50000 zstd, 50001 webp, 6 old-JPEG) */
  compression: number;
  photometric: number;
  samplesPerPixel: number;
  bitsPerSample: number;
  /** 1 uint, 2 int, 3 float */
  sampleFormat: number;
  planarConfig: number;
  /** 1 none, 2 horizontal differencing, 3 floating point. */
  predictor: number;
  extraSamples: number[];
  /** JPEGTables tag bytes, if any */
  jpegTables: Buffer | null;
  tilesAcross: number;
  tilesDown: number;
}

/** A page of a stack as master iipsrv lists it (OBJ=stack): its DocumentName and StoNits (1 when absent). */
export interface StackPage {
  name: string;
  scale: number;
}

export type TextTagName = 'artist' | 'copyright' | 'datetime' | 'description' | 'software' | 'documentName' | 'pageName' | 'make' | 'model';

export interface TiffInfo {
  bigTiff: boolean;
  littleEndian: boolean;
  /** Levels largest first: level 0 = full resolution. */
  levels: TiffLevel[];
  channels: number;
  bitsPerSample: number;
  sampleFormat: 'uint' | 'int' | 'float';
  photometric: number;
  /**
   * Per channel; from SMinSampleValue/SMaxSampleValue (one value or per sample), else iipsrv's defaults:
   * min 0; max 255 for <=8-bit, 4095 12-bit, 65535 16-bit, 4294967295 32-bit integer, 1.0 for float
   * (iipsrv master), 2^bits-1 for other integer depths; signed 8, 16 and 32-bit data the type's
   * range (-128..127 ...), where iipsrv reads the bits as unsigned.
   */
  minValues: number[];
  maxValues: number[];
  /** XResolution/YResolution and ResolutionUnit (1 none, 2 inch, 3 cm) of the full-resolution level, or null */
  resolution: { x: number; y: number; unit: number } | null;
  /** ICC profile (tag 34675) */
  icc: Buffer | null;
  /** XMP packet (tag 700) */
  xmp: string | null;
  /** Textual tags of the full-resolution IFD: only present, non-empty ones, up to the first NUL. */
  text: Partial<Record<TextTagName, string>>;
  /** StoNits (37439), master iipsrv's "scale" metadata, or null. */
  scale: number | null;
  /** The pages of a multi-page stack (master iipsrv's), or empty when the file is one image; this info is of one page. */
  stack: StackPage[];
}
