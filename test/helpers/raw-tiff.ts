/**
 * TIFFs assembled entry by entry, for tests of damaged and hostile files: any tag of any field
 * type and count, tiles given as their stored bytes, main IFD chains and SubIFDs. Out-of-line
 * values are written before their directory, so a reader cannot find them in the bytes it reads
 * with the directory and must fetch each. Also the TIFF LZW and PackBits encoders (libtiff's
 * conventions) that such files need.
 */

export const TYPE = { BYTE: 1, ASCII: 2, SHORT: 3, LONG: 4, RATIONAL: 5, UNDEFINED: 7, DOUBLE: 12 } as const;

export interface RawTag {
  tag: number;
  type: number;
  /** The values (numbers of the type), or the value bytes as stored. */
  values: number[] | Buffer;
  /** The count written in the entry, when it should lie about the values. */
  count?: number;
}

export interface RawDirectory {
  tags: RawTag[];
  /** Stored tile (or strip) bytes, in order: TileOffsets/TileByteCounts are added for them. */
  tiles?: Buffer[];
  /** The tiles are strips: StripOffsets/StripByteCounts instead. */
  strips?: boolean;
  /** Directories listed in this one's SubIFDs tag. */
  subIfds?: RawDirectory[];
}

const SIZES: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 12: 8 };

function valueBytes(tag: RawTag, little: boolean): Buffer {
  if (Buffer.isBuffer(tag.values)) return tag.values;
  const size = SIZES[tag.type];
  if (!size) throw new Error(`raw-tiff: no writer for field type ${tag.type}`);
  const out = Buffer.alloc(tag.values.length * size);
  tag.values.forEach((v, i) => {
    const at = i * size;
    if (size === 1) out[at] = v;
    else if (size === 2) out[little ? 'writeUInt16LE' : 'writeUInt16BE'](v, at);
    else if (size === 4) out[little ? 'writeUInt32LE' : 'writeUInt32BE'](v >>> 0, at);
    else if (tag.type === TYPE.DOUBLE) out[little ? 'writeDoubleLE' : 'writeDoubleBE'](v, at);
    else {
      out[little ? 'writeUInt32LE' : 'writeUInt32BE'](v >>> 0, at + (little ? 0 : 4));
      out[little ? 'writeUInt32LE' : 'writeUInt32BE'](1, at + (little ? 4 : 0));
    }
  });
  return out;
}

/** A classic TIFF of these directories in the main chain (each with its SubIFDs). */
export function rawTiff(directories: RawDirectory[], options: { bigEndian?: boolean } = {}): Buffer {
  const little = !options.bigEndian;
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
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b[little ? 'writeUInt32LE' : 'writeUInt32BE'](v >>> 0);
    return b;
  };
  /** Writes a directory (and what it points to); returns its offset and where its next-IFD field is. */
  const writeDirectory = (d: RawDirectory): { offset: number; nextAt: number } => {
    const tags = [...d.tags];
    if (d.tiles) {
      const offsets = d.tiles.map((t) => (t.length > 0 ? append(t) : 0));
      tags.push({ tag: d.strips ? 273 : 324, type: TYPE.LONG, values: offsets });
      tags.push({ tag: d.strips ? 279 : 325, type: TYPE.LONG, values: d.tiles.map((t) => t.length) });
    }
    if (d.subIfds) tags.push({ tag: 330, type: TYPE.LONG, values: d.subIfds.map((s) => writeDirectory(s).offset) });
    tags.sort((a, b) => a.tag - b.tag);
    const values = tags.map((t) => valueBytes(t, little));
    const places = values.map((v) => (v.length > 4 ? append(v) : -1));
    const dir = Buffer.alloc(2 + tags.length * 12 + 4);
    dir[little ? 'writeUInt16LE' : 'writeUInt16BE'](tags.length, 0);
    tags.forEach((t, i) => {
      const at = 2 + i * 12;
      dir[little ? 'writeUInt16LE' : 'writeUInt16BE'](t.tag, at);
      dir[little ? 'writeUInt16LE' : 'writeUInt16BE'](t.type, at + 2);
      const count = t.count ?? values[i]!.length / (SIZES[t.type] ?? 1);
      dir[little ? 'writeUInt32LE' : 'writeUInt32BE'](count >>> 0, at + 4);
      if (places[i]! >= 0) u32(places[i]!).copy(dir, at + 8);
      else values[i]!.copy(dir, at + 8);
    });
    const offset = append(dir);
    return { offset, nextAt: offset + 2 + tags.length * 12 };
  };
  const written = directories.map(writeDirectory);
  const header = Buffer.alloc(8);
  header.write(little ? 'II' : 'MM', 0, 'latin1');
  header[little ? 'writeUInt16LE' : 'writeUInt16BE'](42, 2);
  const file = Buffer.concat([header, ...chunks]);
  const put = (at: number, v: number) => file[little ? 'writeUInt32LE' : 'writeUInt32BE'](v, at);
  put(4, written[0]?.offset ?? 0);
  written.forEach((w, i) => put(w.nextAt, written[i + 1]?.offset ?? 0));
  return file;
}

export interface LevelSpec {
  width: number;
  height: number;
  tileWidth: number;
  tileHeight: number;
  samplesPerPixel?: number;
  bitsPerSample?: number;
  /** TIFF code: 1 none, 5 LZW, 7 JPEG, 8 deflate, 32773 PackBits. */
  compression?: number;
  photometric?: number;
  predictor?: number;
  planar?: number;
  /** A reduced-resolution level (NewSubfileType 1). */
  reduced?: boolean;
  tiles: Buffer[];
  /** Further tags, or replacements of the standard ones (same tag number). */
  extra?: RawTag[];
}

/** The directory of one tiled pyramid level with the usual tags. */
export function levelDirectory(spec: LevelSpec): RawDirectory {
  const spp = spec.samplesPerPixel ?? 1;
  const tags: RawTag[] = [
    { tag: 256, type: TYPE.LONG, values: [spec.width] },
    { tag: 257, type: TYPE.LONG, values: [spec.height] },
    { tag: 258, type: TYPE.SHORT, values: [spec.bitsPerSample ?? 8] },
    { tag: 259, type: TYPE.SHORT, values: [spec.compression ?? 1] },
    { tag: 262, type: TYPE.SHORT, values: [spec.photometric ?? (spp >= 3 ? 2 : 1)] },
    { tag: 277, type: TYPE.SHORT, values: [spp] },
    { tag: 284, type: TYPE.SHORT, values: [spec.planar ?? 1] },
    { tag: 322, type: TYPE.LONG, values: [spec.tileWidth] },
    { tag: 323, type: TYPE.LONG, values: [spec.tileHeight] },
  ];
  if (spec.reduced) tags.push({ tag: 254, type: TYPE.LONG, values: [1] });
  if (spec.predictor !== undefined) tags.push({ tag: 317, type: TYPE.SHORT, values: [spec.predictor] });
  for (const extra of spec.extra ?? []) {
    const at = tags.findIndex((t) => t.tag === extra.tag);
    if (at >= 0) tags[at] = extra;
    else tags.push(extra);
  }
  return { tags, tiles: spec.tiles };
}

/**
 * The code writer both LZW makers share: MSB-first codes of the current width (9 to 12 bits), room
 * for 12 bits a byte of input plus the clear codes and the end.
 */
function lzwCodes(inputLength: number) {
  const out = Buffer.alloc(Math.ceil((inputLength * 12) / 8) + 16);
  let length = 0;
  let bits = 0;
  let count = 0;
  const codes = {
    width: 9,
    put(code: number): void {
      bits = (bits << codes.width) | code;
      count += codes.width;
      while (count >= 8) {
        out[length++] = (bits >>> (count - 8)) & 0xff;
        count -= 8;
      }
      bits &= (1 << count) - 1;
    },
    /** The stream, its last bits padded to a byte. */
    finish(): Buffer {
      if (count > 0) out[length++] = (bits << (8 - count)) & 0xff;
      return out.subarray(0, length);
    },
  };
  return codes;
}

/** TIFF LZW as libtiff writes it: MSB-first codes of 9 to 12 bits, the width growing one code early. */
export function lzwEncode(data: Uint8Array): Buffer {
  // At most 12 bits a byte of input, plus the clear codes and the end.
  const codes = lzwCodes(data.length);
  const put = codes.put;
  // The table by (prefix code, byte), and the keys set since the last clear (to forget them fast).
  const table = new Int32Array(4096 * 256).fill(-1);
  const used = new Int32Array(4096);
  let usedCount = 0;
  let next = 258;
  put(256);
  let prefix = -1;
  for (const byte of data) {
    if (prefix < 0) {
      prefix = byte;
      continue;
    }
    const key = prefix * 256 + byte;
    const known = table[key]!;
    if (known >= 0) {
      prefix = known;
      continue;
    }
    put(prefix);
    table[key] = next++;
    used[usedCount++] = key;
    prefix = byte;
    if (next === 4094) {
      put(256);
      for (let i = 0; i < usedCount; i++) table[used[i]!] = -1;
      usedCount = 0;
      next = 258;
      codes.width = 9;
    } else if (next > (1 << codes.width) - 1 && codes.width < 12) codes.width++;
  }
  if (prefix >= 0) {
    put(prefix);
    next++;
    if (next > (1 << codes.width) - 1 && codes.width < 12) codes.width++;
  }
  put(257);
  return codes.finish();
}

/**
 * TIFF LZW made of literal codes only (a valid stream that never uses the strings the table
 * learns): one code a byte, the slowest stream there is to decode per byte, and quick to make.
 */
export function lzwLiterals(data: Uint8Array): Buffer {
  const codes = lzwCodes(data.length);
  const put = codes.put;
  let next = 258;
  put(256);
  for (const byte of data) {
    put(byte);
    next++;
    if (next === 4094) {
      put(256);
      next = 258;
      codes.width = 9;
    } else if (next > (1 << codes.width) - 1 && codes.width < 12) codes.width++;
  }
  put(257);
  return codes.finish();
}

/** Bytes of noise, the same on every run (xorshift32). */
export function noise(length: number, seed = 1): Buffer {
  const words = new Uint32Array(Math.ceil(length / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer, 0, length);
}

/** PackBits: runs of 2 or more equal bytes repeated, the rest as literals of up to 128. */
export function packBitsEncode(data: Uint8Array): Buffer {
  const out: number[] = [];
  let i = 0;
  while (i < data.length) {
    let run = 1;
    while (i + run < data.length && run < 128 && data[i + run] === data[i]) run++;
    if (run >= 2) {
      out.push(257 - run, data[i]!);
      i += run;
      continue;
    }
    const start = i;
    while (i < data.length && i - start < 128 && !(i + 1 < data.length && data[i + 1] === data[i])) i++;
    if (i === start) i++;
    out.push(i - start - 1, ...data.subarray(start, i));
  }
  return Buffer.from(out);
}
