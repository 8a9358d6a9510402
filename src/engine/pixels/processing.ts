/**
 * iipsrv's floating-point pipeline, on the decoded samples of a tile or region at its level:
 * normalise each channel by its min/max (the image's SMin/SMaxSampleValue or MINMAX), then hill
 * shading, colour twist, gamma, inversion, colour map, convolution, and contrast with clipping to
 * 8 bits, truncated, in that order. It runs for data wider than 8 bits and whenever a processing
 * command is given, as in iipsrv; plain 8-bit unsigned requests never come here.
 */
import { convolve } from './convolution.js';
import { lightVector, shade } from './hillshade.js';
import type { Samples } from '../source.js';

export type Colormap = 'hot' | 'cold' | 'jet' | 'red' | 'green' | 'blue';

export interface Processing {
  /** MINMAX overrides by channel index (0-based here). */
  ranges: Array<{ channel: number; min: number; max: number }>;
  /** CNT: 1 is none. */
  contrast: number;
  /** GAM: 1 is none; 'log' is log(1 + 255 v) / log(256) (iipsrv 1.3). */
  gamma: number | 'log';
  invert: boolean;
  colormap: Colormap | null;
  /** CTW: one row per output channel, one column per input channel. */
  twist: number[][] | null;
  /** COL=grey: colour made grey at the end, with iipsrv's integer Rec.601 weights. */
  grey: boolean;
  /** COL=binary: grey, then split at the image's Otsu threshold (pixels/histogram.ts). */
  binary: boolean;
  /** CNT=eq: the 8-bit output mapped through the image histogram's equalisation table. */
  equalise: boolean;
  /** SHD=h,v: a normal map lit from azimuth h and elevation v, in degrees (pixels/hillshade.ts). */
  shade: { azimuth: number; elevation: number } | null;
  /** CNV: a square kernel of odd side, row by row (pixels/convolution.ts). */
  convolution: number[] | null;
}

/** CNT's value for a contrast stretch (iipsrv's reserved -1): the engine swaps in the histogram's range. */
export const STRETCH = -1;

export const NO_PROCESSING: Processing = {
  ranges: [],
  contrast: 1,
  gamma: 1,
  invert: false,
  colormap: null,
  twist: null,
  grey: false,
  binary: false,
  equalise: false,
  shade: null,
  convolution: null,
};

export function isIdentity(p: Processing): boolean {
  return (
    p.ranges.length === 0 &&
    p.contrast === 1 &&
    p.gamma === 1 &&
    !p.invert &&
    p.colormap === null &&
    p.twist === null &&
    !p.grey &&
    !p.binary &&
    !p.equalise &&
    p.shade === null &&
    p.convolution === null
  );
}

/** Everything that changes the output, for cache keys. */
export function processingKey(p: Processing): string {
  if (isIdentity(p)) return '';
  return JSON.stringify([p.ranges, p.contrast, p.gamma, p.invert, p.colormap, p.twist, p.grey, p.binary, p.equalise, p.shade, p.convolution]);
}

/** The colour maps, from a normalised value to RGB in 0..1 (iipsrv's definitions). */
function colour(map: Colormap, v: number, out: number[]): void {
  out[0] = out[1] = out[2] = 0;
  switch (map) {
    case 'hot':
      if (v <= 0) return;
      if (v < 1 / 3) out[0] = 3 * v;
      else if (v < 2 / 3) {
        out[0] = 1;
        out[1] = 3 * v - 1;
      } else if (v < 1) {
        out[0] = 1;
        out[1] = 1;
        out[2] = 3 * v - 2;
      } else out[0] = out[1] = out[2] = 1;
      return;
    case 'cold':
      if (v <= 0) return;
      if (v < 1 / 3) out[2] = 3 * v;
      else if (v < 2 / 3) {
        out[1] = 3 * v - 1;
        out[2] = 1;
      } else if (v < 1) {
        out[0] = 3 * v - 2;
        out[1] = 1;
        out[2] = 1;
      } else out[0] = out[1] = out[2] = 1;
      return;
    case 'jet':
      if (v < 0) return;
      if (v < 1 / 8) out[2] = 4 * v + 0.5;
      else if (v < 3 / 8) {
        out[1] = 4 * v - 0.5;
        out[2] = 1;
      } else if (v < 5 / 8) {
        out[0] = 4 * v - 1.5;
        out[1] = 1;
        out[2] = 2.5 - 4 * v;
      } else if (v < 7 / 8) {
        out[0] = 1;
        out[1] = 3.5 - 4 * v;
      } else if (v < 1) out[0] = 4.5 - 4 * v;
      else out[0] = 0.5;
      return;
    case 'red':
      out[0] = v;
      return;
    case 'green':
      out[1] = v;
      return;
    case 'blue':
      out[2] = v;
      return;
  }
}

/**
 * @param minValues,maxValues per source channel (the image's, before MINMAX)
 * @returns 8-bit interleaved samples with 1 or 3 channels (alpha and extra bands dropped, as
 * iipsrv flattens for JPEG output), or the colour map's 3
 */
export function runPipeline(samples: Samples, minValues: number[], maxValues: number[], p: Processing): { data: Buffer; channels: 1 | 3 } {
  const { data } = samples;
  // Without a twist every output band depends on one input sample: integer data goes through a
  // table, built once per setting and reused by every tile (a pow() per sample costs 8x a tile).
  const tabulated = !p.twist && !p.shade && isTableData(data);
  const colour = !tabulated
    ? !p.twist && !p.shade && !p.convolution
      ? processBandwise(samples, minValues, maxValues, p)
      : processPerPixel(samples, minValues, maxValues, p)
    : p.convolution
      ? convolveByTable(samples, data as TableData, minValues, maxValues, p)
      : processByTable(samples, data as TableData, minValues, maxValues, p);
  return p.grey && colour.channels === 3 ? { data: toGrey(colour.data), channels: 1 } : colour;
}

/** iipsrv's COL=grey: Y = (1254097 R + 2462056 G + 478151 B) >> 22, no linearisation. */
export function toGrey(rgb: Buffer): Buffer {
  const out = Buffer.allocUnsafe(rgb.length / 3);
  for (let i = 0, j = 0; i < out.length; i++, j += 3) out[i] = (1254097 * rgb[j]! + 2462056 * rgb[j + 1]! + 478151 * rgb[j + 2]!) >>> 22;
  return out;
}

type TableData = Uint8Array | Uint16Array | Int8Array | Int16Array;

function isTableData(data: ArrayLike<number>): data is TableData {
  return data instanceof Uint8Array || data instanceof Uint16Array || data instanceof Int8Array || data instanceof Int16Array;
}

/**
 * Tables are indexed by a sample's bits: signed data is looked up through an unsigned view of the
 * same memory, and its table made from the signed view of the ramp 0..size-1 (so entry 65535 is -1).
 */
function tableLayout(data: TableData): { size: number; index: Uint8Array | Uint16Array; ramp: (channels: number) => TableData; tag: string } {
  const wide = data.BYTES_PER_ELEMENT === 2;
  const signed = data instanceof Int8Array || data instanceof Int16Array;
  const size = wide ? 65536 : 256;
  const index = !signed
    ? (data as Uint8Array | Uint16Array)
    : wide
      ? new Uint16Array(data.buffer, data.byteOffset, data.length)
      : new Uint8Array(data.buffer, data.byteOffset, data.length);
  const ramp = (channels: number): TableData => {
    const bits = new (wide ? Uint16Array : Uint8Array)(size * channels);
    for (let v = 0; v < size; v++) for (let c = 0; c < channels; c++) bits[v * channels + c] = v;
    if (!signed) return bits;
    return wide ? new Int16Array(bits.buffer) : new Int8Array(bits.buffer);
  };
  return { size, index, ramp, tag: `${signed ? 'int' : 'uint'}${size}` };
}

const TABLES_KEPT = 64;
const tables = new Map<string, Uint8Array[]>();

function processByTable(samples: Samples, stored: TableData, minValues: number[], maxValues: number[], p: Processing): { data: Buffer; channels: 1 | 3 } {
  const { width, height, channels } = samples;
  const { size, index: data, ramp, tag } = tableLayout(stored);
  const bands: 1 | 3 = p.colormap || channels >= 3 ? 3 : 1;
  const key = `${tag}:${channels}:${minValues.join(',')}:${maxValues.join(',')}:${processingKey(p)}`;
  let luts = tables.get(key);
  if (!luts) {
    // Each table: the pipeline run on every possible value of its source channel.
    const sourceChannels = p.colormap ? [0, 0, 0] : bands === 3 ? [0, 1, 2] : [0];
    const all = processPerPixel({ data: ramp(channels), width: size, height: 1, channels }, minValues, maxValues, p);
    luts = sourceChannels.map((_, band) => {
      const lut = new Uint8Array(size);
      for (let v = 0; v < size; v++) lut[v] = all.data[v * all.channels + band]!;
      return lut;
    });
    if (tables.size >= TABLES_KEPT) tables.delete(tables.keys().next().value!);
    tables.set(key, luts);
  }
  const out = Buffer.allocUnsafe(width * height * bands);
  const pixels = width * height;
  if (p.colormap) {
    const [r, g, b] = luts as [Uint8Array, Uint8Array, Uint8Array];
    for (let i = 0, o = 0; i < pixels; i++, o += 3) {
      const v = data[i * channels]!;
      out[o] = r[v]!;
      out[o + 1] = g[v]!;
      out[o + 2] = b[v]!;
    }
  } else if (bands === 3) {
    const [r, g, b] = luts as [Uint8Array, Uint8Array, Uint8Array];
    for (let i = 0, j = 0, o = 0; i < pixels; i++, j += channels, o += 3) {
      out[o] = r[data[j]!]!;
      out[o + 1] = g[data[j + 1]!]!;
      out[o + 2] = b[data[j + 2]!]!;
    }
  } else {
    const grey = luts[0]!;
    for (let i = 0; i < pixels; i++) out[i] = grey[data[i * channels]!]!;
  }
  return { data: out, channels: bands };
}

/** Fewer than the byte tables: a 16-bit setting's floats take 768 kB. */
const FLOAT_TABLES_KEPT = 8;
const floatTables = new Map<string, Float32Array>();

/**
 * CNV on integer data without SHD or CTW: every band before the convolution depends on one
 * sample, so it comes from a table of floats (made once per setting, as processByTable's); only
 * the convolution itself is per pixel.
 */
function convolveByTable(samples: Samples, stored: TableData, minValues: number[], maxValues: number[], p: Processing): { data: Buffer; channels: 1 | 3 } {
  const { width, height, channels } = samples;
  const { size, index: data, ramp, tag } = tableLayout(stored);
  const key = `${tag}:${channels}:${minValues.join(',')}:${maxValues.join(',')}:${processingKey({ ...p, convolution: null, contrast: 1 })}`;
  let table = floatTables.get(key);
  if (!table) {
    table = processPerPixel({ data: ramp(channels), width: size, height: 1, channels }, minValues, maxValues, p, true).floats!;
    if (floatTables.size >= FLOAT_TABLES_KEPT) floatTables.delete(floatTables.keys().next().value!);
    floatTables.set(key, table);
  }
  const bands = table.length / size;
  const floats = new Float32Array(width * height * bands);
  for (let i = 0, o = 0; i < width * height; i++) {
    // A colour map reads the first channel only; otherwise band b is channel b's own value.
    for (let b = 0; b < bands; b++) floats[o++] = table[data[i * channels + (p.colormap ? 0 : b)]! * bands + b]!;
  }
  return { data: convolvedBytes(floats, width, height, bands, p), channels: bands as 1 | 3 };
}

/** CNV works on the neighbourhood, so it runs once the whole rectangle is through CMP; then contrast and clipping. */
function convolvedBytes(floats: Float32Array, width: number, height: number, bands: number, p: Processing): Buffer {
  const convolved = convolve(floats, width, height, bands, p.convolution!);
  const gain = 255 * p.contrast;
  const out = Buffer.allocUnsafe(convolved.length);
  for (let i = 0; i < out.length; i++) {
    const v = convolved[i]! * gain;
    out[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
  }
  return out;
}

/** @param floatsOnly with CNV: return the bands as they go into the convolution (for convolveByTable) */
/**
 * processPerPixel's arithmetic, to the last rounding, for the common case where each output band
 * comes from one input band (no twist, shading or convolution): 32-bit and float data, which no
 * table covers, at a third of the general loop's cost.
 */
function processBandwise(samples: Samples, minValues: number[], maxValues: number[], p: Processing): { data: Buffer; channels: 1 | 3 } {
  const { data, width, height, channels } = samples;
  const f = Math.fround;
  const { min, scale } = channelRanges(channels, minValues, maxValues, p);
  const bands: 1 | 3 = p.colormap || channels >= 3 ? 3 : 1;
  // Colour maps read the first band only.
  const used = p.colormap ? 1 : bands;
  const out = Buffer.alloc(width * height * bands);
  const contrast = f(p.contrast);
  const gamma = p.gamma === 'log' ? p.gamma : f(p.gamma);
  const logScale = 1 / Math.log(256);
  const invert = p.invert;
  const map = p.colormap;
  const mapped = [0, 0, 0];
  const pixels = width * height;
  // One band at a time through a Float32Array: every store rounds to single precision as iipsrv's
  // floats do, and the loops stay monomorphic whatever the source array is.
  const v = new Float32Array(pixels);
  for (let c = 0; c < used; c++) {
    for (let i = 0, j = c; i < pixels; i++, j += channels) v[i] = data[j]!;
    const lo = min[c]!;
    const k = scale[c]!;
    for (let i = 0; i < pixels; i++) v[i] = v[i]! - lo;
    for (let i = 0; i < pixels; i++) {
      v[i] = v[i]! * k;
      if (!Number.isFinite(v[i]!)) v[i] = 0;
    }
    if (gamma === 'log') for (let i = 0; i < pixels; i++) v[i] = Math.log(1 + 255 * Math.max(v[i]!, 0)) * logScale;
    else if (gamma !== 1) for (let i = 0; i < pixels; i++) v[i] = Math.max(v[i]!, 0) ** gamma;
    if (invert) for (let i = 0; i < pixels; i++) v[i] = 1 - v[i]!;
    if (map) {
      for (let i = 0, o = 0; i < pixels; i++, o += 3) {
        colour(map, v[i]!, mapped);
        out[o] = toByte(f(f(mapped[0]! * 255) * contrast));
        out[o + 1] = toByte(f(f(mapped[1]! * 255) * contrast));
        out[o + 2] = toByte(f(f(mapped[2]! * 255) * contrast));
      }
    } else for (let i = 0, o = c; i < pixels; i++, o += bands) out[o] = toByte(f(f(v[i]! * 255) * contrast));
  }
  return { data: out, channels: bands };
}

/** Clipped to 0..255 and truncated, as iipsrv converts back to 8 bits. */
function toByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
}

/** Each channel's min and 1 / (max - min) in single precision, MINMAX applied (iipsrv's normalisation). */
function channelRanges(channels: number, minValues: number[], maxValues: number[], p: Processing): { min: number[]; scale: number[] } {
  const min = minValues.slice(0, channels);
  const max = maxValues.slice(0, channels);
  for (let c = 0; c < channels; c++) {
    min[c] ??= 0;
    max[c] ??= 255;
  }
  for (const r of p.ranges) {
    if (r.channel >= 0 && r.channel < channels) [min[r.channel], max[r.channel]] = [r.min, r.max];
  }
  // iipsrv works in single precision (its min/max are floats): the same roundings here, so that
  // truncation to 8 bits lands where it does (1 - 127/255 is 127.99999 there, not 128).
  const f = Math.fround;
  for (let c = 0; c < channels; c++) [min[c], max[c]] = [f(min[c]!), f(max[c]!)];
  const scale = min.map((lo, c) => {
    const span = f(max[c]! - lo!);
    return f(Math.abs(span) < 1e-30 ? 1e30 : 1 / span);
  });
  return { min, scale };
}

function processPerPixel(
  samples: Samples,
  minValues: number[],
  maxValues: number[],
  p: Processing,
  floatsOnly = false,
): { data: Buffer; channels: 1 | 3; floats?: Float32Array } {
  const { data, width, height, channels } = samples;
  const f = Math.fround;
  const { min, scale } = channelRanges(channels, minValues, maxValues, p);
  // The bands that go out: the twist's rows, else the first three (or the one grey) channels.
  const twist = p.twist;
  // SHD makes one band of the normal map before everything else.
  const light = p.shade ? lightVector(p.shade.azimuth, p.shade.elevation) : null;
  const bandsIn = light ? 1 : channels;
  const outBands = p.colormap ? 3 : twist ? Math.min(twist.length, 3) : bandsIn >= 3 ? 3 : 1;
  const bands: 1 | 3 = outBands >= 3 ? 3 : 1;
  const out = Buffer.alloc(p.convolution ? 0 : width * height * bands);
  const floats = p.convolution ? new Float32Array(width * height * bands) : null;
  const pixel = new Array<number>(channels).fill(0);
  const twisted = new Array<number>(twist ? twist.length : channels).fill(0);
  const mapped = [0, 0, 0];
  const contrast = f(p.contrast);
  const gamma = p.gamma === 'log' ? p.gamma : f(p.gamma);
  const logScale = 1 / Math.log(256);
  for (let i = 0, o = 0; i < width * height; i++) {
    for (let c = 0; c < channels; c++) {
      const v = f(f(f(data[i * channels + c]!) - min[c]!) * scale[c]!);
      pixel[c] = Number.isFinite(v) ? v : 0;
    }
    if (light) pixel[0] = shade(pixel, channels, light);
    let values = pixel;
    if (twist) {
      for (let k = 0; k < twist.length; k++) {
        let sum = 0;
        const row = twist[k]!;
        for (let j = 0; j < Math.min(row.length, bandsIn); j++) sum += row[j]! * pixel[j]!;
        twisted[k] = sum;
      }
      values = twisted;
    }
    const count = p.colormap ? 1 : bands;
    for (let c = 0; c < count; c++) {
      let v = values[c] ?? 0;
      if (gamma === 'log') v = f(Math.log(1 + 255 * Math.max(v, 0)) * logScale);
      else if (gamma !== 1) v = f(Math.max(v, 0) ** gamma);
      if (p.invert) v = f(1 - v);
      values[c] = v;
    }
    if (p.colormap) {
      colour(p.colormap, values[0]!, mapped);
      values = mapped;
    }
    if (floats) for (let c = 0; c < bands; c++) floats[o++] = values[c]!;
    else
      for (let c = 0; c < bands; c++) {
        const v = f(f(values[c]! * 255) * contrast);
        out[o++] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
      }
  }
  if (floats) return floatsOnly ? { data: out, channels: bands, floats } : { data: convolvedBytes(floats, width, height, bands, p), channels: bands };
  return { data: out, channels: bands };
}
