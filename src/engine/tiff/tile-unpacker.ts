/**
 * Unpacking of one stored tile (or strip, or one plane's tile) to its samples exactly as stored:
 * decompression (none, deflate, LZW, PackBits), the predictors, the file's byte order, and 1-bit
 * data unpacked to 0/255 (MinIsWhite inverted) as iipsrv does. Used for the pixel types libvips reinterprets
 * (signed, float as scRGB, 8-bit CIELAB it cannot read, multiband it expands or zeroes), and for
 * the packed depths iipsrv master added: 2, 4 and 6-bit samples widened to 8 bits, 10, 12 and
 * 14-bit to 16, each by repeating its bits (v << (8 - n) | v >> (2n - 8) ...), so that the widest
 * stored value becomes 255 or 65535 and the 8-bit output is master's `>> 8` of it.
 */
import { promisify } from 'node:util';
import { inflate, type ZlibOptions } from 'node:zlib';
import { CHECK_COPY_BYTES, CHECK_ELEMENTS, TimeSlices } from '../time-slices.js';
import { TiffFormatError } from './errors.js';
import type { TiffLevel } from './types.js';

const inflateAsync = promisify<Buffer, ZlibOptions, Buffer>(inflate);

/**
 * Stored data that decodes to more than its tile holds: a decompression bomb, or a writer's bug.
 * Refused as corrupt, and not handed to another decoder for a second try.
 */
export class TileOverflowError extends TiffFormatError {}

export type SampleArray = Uint8Array | Uint16Array | Uint32Array | Int8Array | Int16Array | Int32Array | Float32Array;

/** The compressions decoded here, by TIFF code. */
export const NATIVE_COMPRESSIONS = new Set([1, 5, 8, 32946, 32773]);

/** Can {@link unpackTile} read this level's tiles? */
export function nativelyUnpackable(level: TiffLevel): boolean {
  if (!NATIVE_COMPRESSIONS.has(level.compression) || (level.planarConfig !== 1 && level.planarConfig !== 2)) return false;
  const bits = level.bitsPerSample;
  if (level.sampleFormat === 3) return bits === 32;
  if (bits === 1) return level.predictor === 1 && level.samplesPerPixel === 1;
  // libtiff refuses the horizontal predictor for samples that are not whole bytes, and iipsrv
  // (libtiff) reads the packed depths as unsigned whatever SampleFormat says.
  if (PACKED_DEPTHS.has(bits)) return level.predictor === 1 && level.sampleFormat !== 2;
  return (bits === 8 || bits === 16 || bits === 32) && level.predictor !== 3;
}

/** The depths iipsrv master unpacks from whole rows of packed bits, most significant first. */
export const PACKED_DEPTHS = new Set([2, 4, 6, 10, 12, 14]);

/** The depth a stored depth is decoded to: bytes for 1 to 8 bits, 16 bits for 10 to 14. */
export function decodedBits(bits: number): number {
  return bits < 8 ? 8 : bits < 16 ? 16 : bits;
}

/**
 * MinIsWhite integer samples, inverted on output so that 0 shows white: iipsrv master inverts
 * the depths it unpacks itself (1 to 14 bits) and leaves 8 and 16 bits as stored, which shows
 * them as a negative; inverted at every depth here.
 */
export function isMinIsWhite(level: TiffLevel): boolean {
  return level.photometric === 0 && level.sampleFormat !== 3 && level.sampleFormat !== 2;
}

export interface DecodedTile {
  data: SampleArray;
  /** Pixels across and down as stored (a whole tile, or a strip of rowsPerStrip rows). */
  width: number;
  height: number;
}

/**
 * Work on the event loop (LZW, PackBits, predictors, byte swapping) runs in time slices
 * (../time-slices.ts), so a big tile never holds the worker; `signal` stops it between slices.
 * @param bytes the stored bytes of the tile (empty for a sparse tile, which is zeros)
 * @param rows rows in this tile or strip (the last strip may be shorter)
 */
export async function unpackTile(bytes: Buffer, level: TiffLevel, littleEndian: boolean, rows: number, signal?: AbortSignal): Promise<DecodedTile> {
  const slices = new TimeSlices(signal);
  const width = level.tileWidth;
  const samples = level.samplesPerPixel;
  const bits = level.bitsPerSample;
  // TIFF pads every row to a whole byte.
  const rowBytes = bits === 1 || PACKED_DEPTHS.has(bits) ? Math.ceil((width * samples * bits) / 8) : width * samples * (bits / 8);
  const size = rowBytes * rows;
  let raw: Buffer;
  if (bytes.length === 0) raw = Buffer.alloc(size);
  else raw = await decompress(bytes, level.compression, size, slices);
  slices.check();
  if (raw.length < size) {
    // libtiff fills a short tile with zeros too (and warns).
    const padded = Buffer.alloc(size);
    await slices.run(raw.length, CHECK_COPY_BYTES, (from, to) => raw.copy(padded, from, from, to));
    raw = padded;
  }
  if (bits === 1) return { data: await unpackBits(raw, width, rows, rowBytes, level.photometric === 0, slices), width, height: rows };
  if (PACKED_DEPTHS.has(bits))
    return { data: await unpackPacked(raw, width * samples, rows, rowBytes, bits, isMinIsWhite(level), slices), width, height: rows };
  if (level.predictor === 3) raw = await undoFloatPredictor(raw, rowBytes, rows, bits / 8, samples, slices);
  const float = level.sampleFormat === 3;
  // libtiff applies the horizontal predictor to float data as to 32-bit integers.
  const data = await typed(raw, size, bits, float && level.predictor === 2 ? 1 : level.sampleFormat, littleEndian || level.predictor === 3, slices);
  if (level.predictor === 2) await undoDifferencing(data, width * samples, rows, samples, slices);
  if (float && !(data instanceof Float32Array)) return { data: new Float32Array(data.buffer, data.byteOffset, data.length), width, height: rows };
  if (isMinIsWhite(level)) await invert(data as Uint8Array | Uint16Array | Uint32Array, slices);
  return { data, width, height: rows };
}

async function decompress(bytes: Buffer, compression: number, size: number, slices: TimeSlices): Promise<Buffer> {
  try {
    switch (compression) {
      case 1:
        return bytes;
      case 8:
      case 32946:
        return await inflateTile(bytes, size);
      case 5:
        return await lzwDecode(bytes, size, slices);
      case 32773:
        return await unpackBitsRle(bytes, size, slices);
    }
  } catch (error) {
    if (error instanceof TiffFormatError || (error instanceof Error && error.name === 'AbortError')) throw error;
    throw new TiffFormatError(`corrupt TIFF tile: ${(error as Error).message}`);
  }
  throw new TiffFormatError(`TIFF compression ${compression} is not decoded here`);
}

/**
 * Inflates at most the tile's bytes: zlib stops at the first output beyond them. The output
 * buffer is one byte more than the tile, so a whole tile comes back as one chunk (no copy).
 */
async function inflateTile(bytes: Buffer, size: number): Promise<Buffer> {
  try {
    return await inflateAsync(bytes, { maxOutputLength: Math.max(1, size), chunkSize: Math.max(64, size + 1) });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE') throw error;
    throw new TileOverflowError(`corrupt TIFF tile: its deflate data inflates to more than its ${size} bytes`);
  }
}

/**
 * The samples as a typed array of their type. `nativeOrder`: the bytes are little-endian (the
 * machine's order on every platform Node runs on here), else big-endian and swapped.
 */
async function typed(raw: Buffer, size: number, bits: number, sampleFormat: number, nativeOrder: boolean, slices: TimeSlices): Promise<SampleArray> {
  const bytes = bits / 8;
  let own: Uint8Array;
  if ((bytes === 1 || nativeOrder) && raw.byteOffset % bytes === 0) {
    // The decompressed (or just read) bytes are ours alone: used in place when aligned.
    own = new Uint8Array(raw.buffer, raw.byteOffset, size);
  } else if (bytes === 1 || nativeOrder) {
    own = new Uint8Array(size);
    const copy = own;
    await slices.run(size, CHECK_COPY_BYTES, (from, to) => copy.set(raw.subarray(from, to), from));
  } else {
    own = new Uint8Array(size);
    const swapped = own;
    const step = Math.ceil(CHECK_ELEMENTS / bytes) * bytes;
    await slices.run(size, step, (from, to) => {
      for (let i = from; i < to; i += bytes) for (let b = 0; b < bytes; b++) swapped[i + b] = raw[i + bytes - 1 - b]!;
    });
  }
  const { buffer, byteOffset } = own;
  const count = size / bytes;
  if (sampleFormat === 3) return new Float32Array(buffer, byteOffset, count);
  const signed = sampleFormat === 2;
  if (bytes === 1) return signed ? new Int8Array(buffer, byteOffset, count) : own;
  if (bytes === 2) return signed ? new Int16Array(buffer, byteOffset, count) : new Uint16Array(buffer, byteOffset, count);
  return signed ? new Int32Array(buffer, byteOffset, count) : new Uint32Array(buffer, byteOffset, count);
}

/** Predictor 2: each sample was stored as the difference to the same band of its left neighbour. */
async function undoDifferencing(data: SampleArray, rowSamples: number, rows: number, samples: number, slices: TimeSlices): Promise<void> {
  const rgb = samples === 3 && data instanceof Uint8Array;
  // Whole rows a piece; a row longer than a piece (a wide strip) is cut at pixel boundaries, where
  // the running sum is the sample just written.
  const pixelsPerPiece = Math.max(1, Math.floor(CHECK_ELEMENTS / samples));
  const rowsPerPiece = Math.max(1, Math.floor(CHECK_ELEMENTS / rowSamples));
  const pixels = rowSamples / samples;
  if (rowsPerPiece > 1 || pixels <= pixelsPerPiece) {
    await slices.run(rows, rowsPerPiece, (from, to) => {
      for (let y = from; y < to; y++) {
        if (rgb) undoRgbDifferencing(data, y * rowSamples, y * rowSamples + rowSamples);
        else undoRowDifferencing(data, y * rowSamples + samples, y * rowSamples + rowSamples, samples);
      }
    });
    return;
  }
  for (let y = 0; y < rows; y++) {
    const start = y * rowSamples;
    await slices.run(pixels - 1, pixelsPerPiece, (from, to) => undoRowDifferencing(data, start + (from + 1) * samples, start + (to + 1) * samples, samples));
  }
}

/** Samples [from, to) of one row, from is past the row's first pixel. Typed arrays wrap on assignment, as the integer sums of the predictor do. */
function undoRowDifferencing(data: SampleArray, from: number, to: number, samples: number): void {
  for (let i = from; i < to; i++) data[i] = data[i]! + data[i - samples]!;
}

/** The common 8-bit RGB case, one row, with the running sums in locals: twice as fast as the general loop. */
function undoRgbDifferencing(data: Uint8Array, start: number, end: number): void {
  let r = data[start]!;
  let g = data[start + 1]!;
  let b = data[start + 2]!;
  for (let i = start + 3; i < end; i += 3) {
    r = (r + data[i]!) & 0xff;
    g = (g + data[i + 1]!) & 0xff;
    b = (b + data[i + 2]!) & 0xff;
    data[i] = r;
    data[i + 1] = g;
    data[i + 2] = b;
  }
}

/**
 * Predictor 3 (floating point): per row, the bytes of all samples regrouped most significant byte
 * first, each then stored as its difference from the byte one pixel (`samples` bytes) before, as
 * libtiff writes it. Returns the samples in little-endian order.
 */
async function undoFloatPredictor(raw: Buffer, rowBytes: number, rows: number, bytes: number, samples: number, slices: TimeSlices): Promise<Buffer> {
  const out = Buffer.allocUnsafe(rowBytes * rows);
  const count = rowBytes / bytes;
  for (let y = 0; y < rows; y++) {
    const base = y * rowBytes;
    // The sums in place (the buffer is ours), then each sample's bytes gathered from the groups.
    await slices.run(rowBytes - samples, CHECK_ELEMENTS, (from, to) => {
      for (let i = base + samples + from; i < base + samples + to; i++) raw[i] = (raw[i]! + raw[i - samples]!) & 0xff;
    });
    await slices.run(count, CHECK_ELEMENTS / bytes, (from, to) => {
      if (bytes === 4) {
        for (let s = from, o = base + from * 4; s < to; s++, o += 4) {
          out[o + 3] = raw[base + s]!;
          out[o + 2] = raw[base + count + s]!;
          out[o + 1] = raw[base + 2 * count + s]!;
          out[o] = raw[base + 3 * count + s]!;
        }
      } else {
        for (let s = from; s < to; s++) {
          for (let b = 0; b < bytes; b++) out[base + s * bytes + (bytes - 1 - b)] = raw[base + b * count + s]!;
        }
      }
    });
  }
  return out;
}

/** 1-bit samples to 0/255 bytes; MinIsWhite (photometric 0) inverted, as iipsrv does. */
async function unpackBits(raw: Buffer, width: number, rows: number, rowBytes: number, minIsWhite: boolean, slices: TimeSlices): Promise<Uint8Array> {
  const out = new Uint8Array(width * rows);
  const on = minIsWhite ? 0 : 255;
  const off = minIsWhite ? 255 : 0;
  await slices.run(rows, CHECK_ELEMENTS / width, (from, to) => {
    for (let y = from; y < to; y++) {
      for (let x = 0; x < width; x++) out[y * width + x] = raw[y * rowBytes + (x >> 3)]! & (0x80 >> (x & 7)) ? on : off;
    }
  });
  return out;
}

/**
 * n-bit samples (2, 4, 6, 10, 12, 14), packed most significant bit first in rows of whole bytes, to
 * 8 bits (below 8) or 16, each value's bits repeated to fill the wider sample: 0 stays 0 and the
 * largest value becomes 255 or 65535, as iipsrv master scales them. MinIsWhite is inverted after.
 */
async function unpackPacked(
  raw: Buffer,
  rowSamples: number,
  rows: number,
  rowBytes: number,
  bits: number,
  minIsWhite: boolean,
  slices: TimeSlices,
): Promise<Uint8Array | Uint16Array> {
  const wide = bits > 8;
  const out = wide ? new Uint16Array(rowSamples * rows) : new Uint8Array(rowSamples * rows);
  const target = wide ? 16 : 8;
  const mask = (1 << bits) - 1;
  const flip = minIsWhite ? (1 << target) - 1 : 0;
  // The widened value of each of the 2^bits stored values, inversion included.
  const table = new Uint16Array(1 << bits);
  for (let v = 0; v <= mask; v++) {
    let w = 0;
    for (let filled = 0; filled < target; filled += bits) w |= filled + bits <= target ? v << (target - filled - bits) : v >> (filled + bits - target);
    table[v] = w ^ flip;
  }
  await slices.run(rows, Math.max(1, Math.floor(CHECK_ELEMENTS / rowSamples)), (from, to) => {
    for (let y = from; y < to; y++) {
      const start = y * rowBytes;
      let o = y * rowSamples;
      // A window of at least `bits` unread bits, topped up a byte at a time.
      let buffer = 0;
      let count = 0;
      let i = start;
      for (let s = 0; s < rowSamples; s++) {
        while (count < bits) {
          buffer = ((buffer << 8) | raw[i++]!) & 0xffffff;
          count += 8;
        }
        count -= bits;
        out[o++] = table[(buffer >> count) & mask]!;
      }
    }
  });
  return out;
}

/** MinIsWhite integer samples turned into MinIsBlack ones: each value's bits inverted. */
async function invert(data: Uint8Array | Uint16Array | Uint32Array, slices: TimeSlices): Promise<void> {
  const ones = data instanceof Uint8Array ? 0xff : data instanceof Uint16Array ? 0xffff : 0xffffffff;
  await slices.run(data.length, CHECK_ELEMENTS, (from, to) => {
    for (let i = from; i < to; i++) data[i] = (data[i]! ^ ones) >>> 0;
  });
}

/** PackBits run-length decoding, at most `size` bytes (whatever the runs say; the rest is ignored, as libtiff does). */
async function unpackBitsRle(input: Buffer, size: number, slices: TimeSlices): Promise<Buffer> {
  const out = Buffer.alloc(size);
  let i = 0;
  let o = 0;
  let check = CHECK_ELEMENTS;
  while (i < input.length && o < size) {
    const n = (input[i++]! << 24) >> 24;
    if (n >= 0) {
      const count = Math.min(n + 1, size - o, input.length - i);
      input.copy(out, o, i, i + count);
      i += n + 1;
      o += count;
    } else if (n !== -128) {
      const count = Math.min(1 - n, size - o);
      out.fill(input[i++]!, o, o + count);
      o += count;
    }
    // The input counts too: a stream of no-op codes (-128) writes nothing but takes time.
    if (o + i >= check) {
      check = o + i + CHECK_ELEMENTS;
      if (slices.due()) await slices.pause();
    }
  }
  return out;
}

/**
 * TIFF LZW (MSB-first codes, 9 to 12 bits, the code width growing one code early). At most
 * `size` bytes come out: codes beyond the tile are not decoded (libtiff stops there too).
 */
async function lzwDecode(input: Buffer, size: number, slices: TimeSlices): Promise<Buffer> {
  const CLEAR = 256;
  const EOI = 257;
  const out = Buffer.alloc(size);
  // The table as (prefix code, last byte, length); strings are written out backwards.
  const prefix = new Int32Array(4096);
  const suffix = new Uint8Array(4096);
  const length = new Uint16Array(4096);
  const first = new Uint8Array(4096);
  for (let c = 0; c < 256; c++) {
    suffix[c] = c;
    length[c] = 1;
    first[c] = c;
  }
  let next = 258;
  let width = 9;
  let previous = -1;
  let o = 0;
  let bitBuffer = 0;
  let bitCount = 0;
  let i = 0;
  // Output and input both count: a stream of clear codes writes nothing but takes time.
  let check = CHECK_ELEMENTS;
  while (o < size) {
    if (o + i >= check) {
      check = o + i + CHECK_ELEMENTS;
      if (slices.due()) await slices.pause();
    }
    while (bitCount < width && i < input.length) {
      bitBuffer = ((bitBuffer << 8) | input[i++]!) >>> 0;
      bitCount += 8;
    }
    if (bitCount < width) break;
    const code = (bitBuffer >>> (bitCount - width)) & ((1 << width) - 1);
    bitCount -= width;
    bitBuffer &= (1 << bitCount) - 1;
    if (code === EOI) break;
    if (code === CLEAR) {
      next = 258;
      width = 9;
      previous = -1;
      continue;
    }
    let entry: number;
    if (previous < 0) {
      if (code > 255) throw new Error('LZW stream starts with a non-literal code');
      entry = code;
    } else if (code < next) {
      entry = code;
      if (next < 4096) {
        prefix[next] = previous;
        suffix[next] = first[code]!;
        length[next] = length[previous]! + 1;
        first[next] = first[previous]!;
        next++;
      }
    } else if (code === next && next < 4096) {
      prefix[next] = previous;
      suffix[next] = first[previous]!;
      length[next] = length[previous]! + 1;
      first[next] = first[previous]!;
      entry = next++;
    } else throw new Error(`LZW code ${code} out of sequence`);
    const n = length[entry]!;
    let at = o + n - 1;
    for (let c = entry; c >= 0 && at >= o; c = c > 255 ? prefix[c]! : -1) {
      if (at < size) out[at] = suffix[c]!;
      at--;
    }
    o += n;
    previous = entry;
    if (next + 1 >= 1 << width && width < 12) width++;
  }
  return out;
}
