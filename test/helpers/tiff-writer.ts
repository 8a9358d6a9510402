/**
 * A small tiled-TIFF writer for tests: any sample type (1, 8, 16, 32-bit; unsigned, signed,
 * float; and the packed unsigned depths 2, 4, 6, 10, 12, 14, most significant bit first),
 * float), any band count and photometric, SMin/SMaxSampleValue, resolution, uncompressed or
 * deflate (with the horizontal or floating-point predictor), either byte order, several levels in
 * the main IFD chain (the layout iipsrv 1.1 reads). libvips cannot write most of these (signed,
 * MinIsWhite, SMin..., a resolution without its unit).
 */
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

export type SampleKind = 'uint' | 'int' | 'float';

export interface TiffLevelData {
  width: number;
  height: number;
  /** Interleaved samples, one number per sample (for 1-bit: 0 or 1). */
  samples: ArrayLike<number>;
}

export interface TiffSpec {
  levels: TiffLevelData[];
  channels: number;
  bits: 1 | 2 | 4 | 6 | 8 | 10 | 12 | 14 | 16 | 32;
  kind?: SampleKind;
  /** 0 MinIsWhite, 1 MinIsBlack, 2 RGB, 8 CIELAB. Default: 1 for 1-2 bands, else 2. */
  photometric?: number;
  tile?: number;
  compression?: 'none' | 'deflate';
  /** 1 none, 2 horizontal differencing, 3 floating point. */
  predictor?: 1 | 2 | 3;
  bigEndian?: boolean;
  smin?: number[];
  smax?: number[];
  /** Field type of smin/smax: 12 DOUBLE (default), 8 SSHORT, or 3 SHORT (a negative value as its 16 bits). */
  rangeType?: 3 | 8 | 12;
  /** 2: each band in its own tiles (PlanarConfiguration separate). */
  planar?: 1 | 2;
  /** ExtraSamples values (e.g. [2] for unassociated alpha). */
  extraSamples?: number[];
  /** X/YResolution (RATIONAL, to 1/1000) and ResolutionUnit when `unit` is given (1 none, 2 inch, 3 cm). */
  resolution?: { x: number; y: number; unit?: number };
}

/** Halves a level by taking every other pixel (enough for test pyramids). */
export function halve(level: TiffLevelData, channels: number): TiffLevelData {
  const width = Math.max(1, Math.floor(level.width / 2));
  const height = Math.max(1, Math.floor(level.height / 2));
  const samples = new Float64Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) samples[(y * width + x) * channels + c] = level.samples[(2 * y * level.width + 2 * x) * channels + c]!;
    }
  }
  return { width, height, samples };
}

/** Levels down to one tile, by {@link halve}. */
export function pyramid(full: TiffLevelData, channels: number, tile = 256): TiffLevelData[] {
  const levels = [full];
  while (levels.at(-1)!.width > tile || levels.at(-1)!.height > tile) levels.push(halve(levels.at(-1)!, channels));
  return levels;
}

function tileBytes(spec: TiffSpec, level: TiffLevelData, col: number, row: number): Buffer {
  const tile = spec.tile ?? 256;
  const { channels, bits } = spec;
  const kind = spec.kind ?? 'uint';
  const little = !spec.bigEndian;
  const bytes = bits / 8;
  let out: Buffer;
  if (bits === 1) {
    const rowBytes = Math.ceil((tile * channels) / 8);
    out = Buffer.alloc(rowBytes * tile);
    for (let y = 0; y < tile; y++) {
      for (let x = 0; x < tile; x++) {
        const sx = col * tile + x;
        const sy = row * tile + y;
        if (sx >= level.width || sy >= level.height) continue;
        if (level.samples[sy * level.width + sx]) out[y * rowBytes + (x >> 3)]! |= 0x80 >> (x & 7);
      }
    }
    return out;
  }
  if (bits !== 8 && bits !== 16 && bits !== 32) {
    // Packed: each row's samples one after the other, most significant bit first, the row padded
    // to a whole byte (as libtiff writes them). No predictor: libtiff allows none here.
    const rowBytes = Math.ceil((tile * channels * bits) / 8);
    out = Buffer.alloc(rowBytes * tile);
    for (let y = 0; y < tile; y++) {
      let bit = y * rowBytes * 8;
      for (let x = 0; x < tile; x++) {
        for (let c = 0; c < channels; c++, bit += bits) {
          const sx = col * tile + x;
          const sy = row * tile + y;
          if (sx >= level.width || sy >= level.height) continue;
          const v = level.samples[(sy * level.width + sx) * channels + c]!;
          for (let b = 0; b < bits; b++) if ((v >> (bits - 1 - b)) & 1) out[(bit + b) >> 3]! |= 0x80 >> ((bit + b) & 7);
        }
      }
    }
    return out;
  }
  const rowBytes = tile * channels * bytes;
  out = Buffer.alloc(rowBytes * tile);
  const values = new Float64Array(tile * tile * channels);
  for (let y = 0; y < tile; y++) {
    for (let x = 0; x < tile; x++) {
      const sx = col * tile + x;
      const sy = row * tile + y;
      if (sx >= level.width || sy >= level.height) continue;
      for (let c = 0; c < channels; c++) values[(y * tile + x) * channels + c] = level.samples[(sy * level.width + sx) * channels + c]!;
    }
  }
  const predictor = spec.predictor ?? 1;
  if (predictor === 2) {
    // Differences of the integer values, wrapping at the sample size.
    const modulo = 2 ** bits;
    for (let y = 0; y < tile; y++) {
      for (let i = tile * channels - 1; i >= channels; i--) {
        const at = y * tile * channels + i;
        values[at] = (((values[at]! - values[at - channels]!) % modulo) + modulo) % modulo;
      }
    }
  }
  const order = little ? 'LE' : 'BE';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const at = i * bytes;
    if (kind === 'float') out[`writeFloat${order}`](v, at);
    else if (predictor === 2 || kind === 'uint') {
      const u = bits === 32 ? v >>> 0 : v & (2 ** bits - 1);
      if (bits === 8) out[at] = u;
      else if (bits === 16) out[`writeUInt16${order}`](u, at);
      else out[`writeUInt32${order}`](u, at);
    } else if (bits === 8) out.writeInt8(v, at);
    else if (bits === 16) out[`writeInt16${order}`](v, at);
    else out[`writeInt32${order}`](v, at);
  }
  if (predictor === 3) {
    // Bytes of each row regrouped most significant first, then byte-wise differences to the
    // byte one pixel's worth of bytes before (stride: the samples per pixel, as libtiff's fpDiff).
    const regrouped = Buffer.alloc(out.length);
    const count = tile * channels;
    for (let y = 0; y < tile; y++) {
      const base = y * rowBytes;
      for (let s = 0; s < count; s++) {
        for (let b = 0; b < bytes; b++) {
          const source = little ? base + s * bytes + (bytes - 1 - b) : base + s * bytes + b;
          regrouped[base + b * count + s] = out[source]!;
        }
      }
      for (let i = rowBytes - 1; i >= channels; i--) regrouped[base + i] = (regrouped[base + i]! - regrouped[base + i - channels]!) & 0xff;
    }
    out = regrouped;
  }
  return out;
}

/** Writes the TIFF; returns its bytes too. */
export function writeTiff(file: string, spec: TiffSpec): Buffer {
  const little = !spec.bigEndian;
  const tile = spec.tile ?? 256;
  const kind = spec.kind ?? 'uint';
  const compression = spec.compression ?? 'none';
  const photometric = spec.photometric ?? (spec.channels <= 2 ? 1 : 2);
  const chunks: Buffer[] = [];
  let size = 8;
  const append = (b: Buffer): number => {
    const at = size;
    chunks.push(b);
    size += b.length;
    if (size % 2) {
      chunks.push(Buffer.alloc(1));
      size++;
    }
    return at;
  };
  const u16 = (v: number) => {
    const b = Buffer.alloc(2);
    if (little) b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    return b;
  };
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    if (little) b.writeUInt32LE(v >>> 0);
    else b.writeUInt32BE(v >>> 0);
    return b;
  };
  const header = Buffer.alloc(8);
  header.write(little ? 'II' : 'MM', 0, 'latin1');
  if (little) header.writeUInt16LE(42, 2);
  else header.writeUInt16BE(42, 2);
  chunks.push(header);
  const ifdOffsets: number[] = [];
  const ifds: Array<Array<[number, number, number, Buffer]>> = [];
  for (const level of spec.levels) {
    const across = Math.ceil(level.width / tile);
    const down = Math.ceil(level.height / tile);
    const offsets: number[] = [];
    const counts: number[] = [];
    // Separate planes: every tile of band 0, then of band 1 ...
    const planes =
      spec.planar === 2
        ? Array.from({ length: spec.channels }, (_, p) => ({
            spec: { ...spec, channels: 1 },
            level: { ...level, samples: Array.from({ length: level.width * level.height }, (_, i) => level.samples[i * spec.channels + p]!) },
          }))
        : [{ spec, level }];
    for (const plane of planes) {
      for (let row = 0; row < down; row++) {
        for (let col = 0; col < across; col++) {
          let data = tileBytes(plane.spec, plane.level, col, row);
          if (compression === 'deflate') data = deflateSync(data);
          offsets.push(append(data));
          counts.push(data.length);
        }
      }
    }
    const SHORT = 3;
    const LONG = 4;
    const entries: Array<[number, number, number, Buffer]> = [];
    const shorts = (tag: number, values: number[]) => entries.push([tag, SHORT, values.length, Buffer.concat(values.map(u16))]);
    const longs = (tag: number, values: number[]) => entries.push([tag, LONG, values.length, Buffer.concat(values.map(u32))]);
    const doubles = (tag: number, values: number[]) => {
      const b = Buffer.alloc(values.length * 8);
      values.forEach((v, i) => (little ? b.writeDoubleLE(v, i * 8) : b.writeDoubleBE(v, i * 8)));
      entries.push([tag, 12, values.length, b]);
    };
    if (ifds.length > 0) longs(254, [1]);
    longs(256, [level.width]);
    longs(257, [level.height]);
    shorts(258, new Array(spec.channels).fill(spec.bits));
    shorts(259, [compression === 'deflate' ? 8 : 1]);
    shorts(262, [photometric]);
    shorts(277, [spec.channels]);
    shorts(284, [spec.planar ?? 1]);
    if (spec.predictor && spec.predictor !== 1) shorts(317, [spec.predictor]);
    longs(322, [tile]);
    longs(323, [tile]);
    longs(324, offsets);
    longs(325, counts);
    if (spec.extraSamples) shorts(338, spec.extraSamples);
    shorts(339, new Array(spec.channels).fill(kind === 'float' ? 3 : kind === 'int' ? 2 : 1));
    const range = (tag: number, values: number[]) => {
      if ((spec.rangeType ?? 12) === 12) return doubles(tag, values);
      const b = Buffer.alloc(values.length * 2);
      values.forEach((v, i) => (little ? b.writeUInt16LE(v & 0xffff, i * 2) : b.writeUInt16BE(v & 0xffff, i * 2)));
      entries.push([tag, spec.rangeType!, values.length, b]);
    };
    if (spec.smin) range(340, spec.smin);
    if (spec.smax) range(341, spec.smax);
    if (spec.resolution) {
      const rational = (tag: number, v: number) => entries.push([tag, 5, 1, Buffer.concat([u32(Math.round(v * 1000)), u32(1000)])]);
      rational(282, spec.resolution.x);
      rational(283, spec.resolution.y);
      if (spec.resolution.unit !== undefined) shorts(296, [spec.resolution.unit]);
    }
    ifds.push(entries.sort((a, b) => a[0] - b[0]));
  }
  for (const entries of ifds) {
    // Out-of-line values first, then the directory.
    const values = entries.map(([, , , bytes]) => (bytes.length > 4 ? append(bytes) : -1));
    const dir = Buffer.alloc(2 + entries.length * 12 + 4);
    if (little) dir.writeUInt16LE(entries.length, 0);
    else dir.writeUInt16BE(entries.length, 0);
    entries.forEach(([tag, type, count, bytes], i) => {
      const at = 2 + i * 12;
      u16(tag).copy(dir, at);
      u16(type).copy(dir, at + 2);
      u32(count).copy(dir, at + 4);
      if (values[i]! >= 0) u32(values[i]!).copy(dir, at + 8);
      else bytes.copy(dir, at + 8);
    });
    ifdOffsets.push(append(dir));
  }
  const all = Buffer.concat(chunks);
  // Chain: header -> first IFD -> next ...
  const put = (at: number, v: number) => (little ? all.writeUInt32LE(v, at) : all.writeUInt32BE(v, at));
  put(4, ifdOffsets[0]!);
  ifds.forEach((entries, i) => put(ifdOffsets[i]! + 2 + entries.length * 12, ifdOffsets[i + 1] ?? 0));
  writeFileSync(file, all);
  return all;
}
