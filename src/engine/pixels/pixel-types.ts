/**
 * The samples of a tile or region as iipsrv reads them, before its float pipeline: CIELAB
 * converted to 8-bit sRGB first, and 8-bit data without processing only cut to its first bands.
 * Signed integers stay signed (Int8Array ...): iipsrv reads their bits as unsigned (§12.1), which
 * we do not copy.
 */
import sharp, { type Sharp } from 'sharp';
import type { Samples } from '../source.js';

/**
 * Decoded 8 or 16-bit samples as a libvips pipeline: what sources that decode themselves hand to
 * the engine's resizing and encoding.
 */
export function samplesPipeline(pixels: { data: Uint8Array | Uint16Array; width: number; height: number; channels: number }): Sharp {
  const pipeline = sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: pixels.channels as 1 | 2 | 3 | 4 } });
  // libvips takes one 16-bit band for sRGB otherwise, and would hand back three.
  return pixels.data instanceof Uint16Array && pixels.channels <= 2 ? pipeline.toColourspace('grey16') : pipeline;
}

/**
 * 8-bit samples cut to what iipsrv sends without processing: the first band of 1 or 2 (grey,
 * grey + alpha), the first three of more. Null when the data is not 8-bit.
 */
export function firstBands(samples: Samples): { data: Buffer; channels: 1 | 3 } | null {
  const { data, width, height, channels } = samples;
  if (!(data instanceof Uint8Array)) return null;
  const bands: 1 | 3 = channels >= 3 ? 3 : 1;
  if (bands === channels) return { data: Buffer.from(data.buffer, data.byteOffset, data.length), channels: bands };
  const pixels = width * height;
  const out = Buffer.allocUnsafe(pixels * bands);
  for (let p = 0, i = 0, o = 0; p < pixels; p++, i += channels) {
    for (let c = 0; c < bands; c++) out[o++] = data[i + c]!;
  }
  return { data: out, channels: bands };
}

// D65 reference white, and XYZ to linear sRGB: the values iipsrv 1.1 uses (§8.3).
const WHITE_X = 95.047;
const WHITE_Y = 100.0;
const WHITE_Z = 108.8827;
const XYZ_TO_RGB = [3.240479, -1.53715, -0.498535, -0.969256, 1.875992, 0.041556, 0.055648, -0.204043, 1.057311];

/** Linear light to an 8-bit sRGB value: the sRGB curve, x 255, clipped, truncated. */
function encode(v: number): number {
  const g = (v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055) * 255;
  return g >= 255 ? 255 : Math.trunc(g);
}

// The curve by table: bin i covers linear values [i/BINS, (i+1)/BINS); where both ends give the
// same byte (all bins but a few hundred) the table answers, elsewhere the formula does.
const BINS = 65536;
const curve = new Uint8Array(BINS);
const exactBin = new Uint8Array(BINS);
for (let i = 0; i < BINS; i++) {
  curve[i] = encode(i / BINS);
  exactBin[i] = curve[i] === encode((i + 1) / BINS) ? 1 : 0;
}

function encodeFast(v: number): number {
  if (v <= 0) return 0;
  if (v >= 1) return 255;
  const bin = Math.floor(v * BINS);
  return exactBin[bin] ? curve[bin]! : encode(v);
}

/** Lab to the X, Y, Z (over 100) iipsrv computes, in its floats. */
function labToXyz(L: number, a: number, b: number, xyz: Float32Array, at: number): void {
  let Y: number;
  let cby: number;
  if (L < 8.0) {
    Y = Math.fround((L * WHITE_Y) / 903.3);
    cby = 7.787 * (Y / WHITE_Y) + 16.0 / 116.0;
  } else {
    cby = (L + 16.0) / 116.0;
    Y = Math.fround(WHITE_Y * cby * cby * cby);
  }
  let t = a / 500.0 + cby;
  const X = Math.fround(t < 0.2069 ? (WHITE_X * (t - 0.13793)) / 7.787 : WHITE_X * t * t * t);
  t = cby - b / 200.0;
  const Z = Math.fround(t < 0.2069 ? (WHITE_Z * (t - 0.13793)) / 7.787 : WHITE_Z * t * t * t);
  xyz[at] = X / 100.0;
  xyz[at + 1] = Y / 100.0;
  xyz[at + 2] = Z / 100.0;
}

function xyzToSrgb(x: number, y: number, z: number, out: Uint8Array, o: number): void {
  out[o] = encodeFast(x * XYZ_TO_RGB[0]! + y * XYZ_TO_RGB[1]! + z * XYZ_TO_RGB[2]!);
  out[o + 1] = encodeFast(x * XYZ_TO_RGB[3]! + y * XYZ_TO_RGB[4]! + z * XYZ_TO_RGB[5]!);
  out[o + 2] = encodeFast(x * XYZ_TO_RGB[6]! + y * XYZ_TO_RGB[7]! + z * XYZ_TO_RGB[8]!);
}

const scratch = new Float32Array(3);

function labPixel(L: number, a: number, b: number, out: Uint8Array, o: number): void {
  labToXyz(L, a, b, scratch, 0);
  xyzToSrgb(scratch[0]!, scratch[1]!, scratch[2]!, out, o);
}

/**
 * For 8-bit Lab: Y depends on L alone, X on L and a, Z on L and b, so three tables (built on first
 * use) hold every value iipsrv can compute, by L byte x 256 + the a or b byte.
 */
let labTables: { x: Float32Array; y: Float32Array; z: Float32Array } | null = null;

function eightBitLabTables(): { x: Float32Array; y: Float32Array; z: Float32Array } {
  if (labTables) return labTables;
  const x = new Float32Array(65536);
  const y = new Float32Array(256);
  const z = new Float32Array(65536);
  const xyz = new Float32Array(3);
  for (let l = 0; l < 256; l++) {
    const L = Math.fround(l / 2.55);
    for (let c = 0; c < 256; c++) {
      const signed = (c << 24) >> 24;
      labToXyz(L, signed, signed, xyz, 0);
      x[l * 256 + c] = xyz[0]!;
      z[l * 256 + c] = xyz[2]!;
    }
    y[l] = xyz[1]!;
  }
  labTables = { x, y, z };
  return labTables;
}

/**
 * CIELAB samples to 8-bit sRGB (3 bands; extra bands dropped). 8-bit: L* = L/2.55, a* b* signed
 * bytes (iipsrv 1.1). 16-bit: L* = L/655.35, a* b* signed in 1/256 (the TIFF encoding, as iipsrv
 * master; 1.1 misreads it). Float: the values themselves.
 */
export function labToSrgb(samples: Samples): Samples {
  const { data, width, height, channels } = samples;
  const pixels = width * height;
  const out = new Uint8Array(pixels * 3);
  if (data instanceof Uint8Array || data instanceof Int8Array) {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.length);
    const tables = eightBitLabTables();
    for (let p = 0, i = 0, o = 0; p < pixels; p++, i += channels, o += 3) {
      const row = bytes[i]! << 8;
      xyzToSrgb(tables.x[row | bytes[i + 1]!]!, tables.y[bytes[i]!]!, tables.z[row | bytes[i + 2]!]!, out, o);
    }
  } else if (data instanceof Uint16Array || data instanceof Int16Array) {
    const words = new Uint16Array(data.buffer, data.byteOffset, data.length);
    const signed = new Int16Array(data.buffer, data.byteOffset, data.length);
    for (let p = 0, i = 0, o = 0; p < pixels; p++, i += channels, o += 3) {
      labPixel(Math.fround(words[i]! / 655.35), Math.fround(signed[i + 1]! / 256), Math.fround(signed[i + 2]! / 256), out, o);
    }
  } else {
    for (let p = 0, i = 0, o = 0; p < pixels; p++, i += channels, o += 3) {
      const [L, a, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
      if (Number.isFinite(L + a + b)) labPixel(L, a, b, out, o);
    }
  }
  return { data: out, width, height, channels: 3 };
}
