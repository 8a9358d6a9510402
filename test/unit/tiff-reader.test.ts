import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import sharp, { type TiffOptions } from 'sharp';
import { TiffFile, TiffFormatError, Tag, FieldType } from '../../src/engine/tiff/index.ts';
import { readHeader, readIfd } from '../../src/engine/tiff/ifd.ts';
import { PositionedFile } from '../../src/engine/tiff/positioned-file.ts';
import { fixtureDir } from '../helpers/daemon.ts';
import { seededRandom } from '../helpers/random.ts';

const run = promisify(execFile);
const CANTALOUPE = fixtureDir('cantaloupe');

let dir = '';
const file = (name: string) => join(dir, name);

/** An RGB test picture with detail everywhere (so that JPEG tiles differ). */
function picture(width: number, height: number): Buffer {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 255) / width;
      data[i + 1] = (y * 255) / height;
      data[i + 2] = ((x >> 3) ^ (y >> 3)) & 1 ? 220 : 40;
    }
  }
  return data;
}

const rawPicture = (width: number, height: number) => sharp(picture(width, height), { raw: { width, height, channels: 3 } });
const pyramid = (tile: number, compression: 'jpeg' | 'deflate' | 'lzw' | 'none', extra: TiffOptions = {}): TiffOptions => ({
  tile: true,
  pyramid: true,
  tileWidth: tile,
  tileHeight: tile,
  compression,
  quality: 90,
  ...extra,
});

async function isFormatError(promise: Promise<unknown>, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof TiffFormatError, `expected a TiffFormatError, got ${String(error)}`);
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

async function maxAbsDiff(a: Buffer, b: Buffer): Promise<number> {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

// ---------------------------------------------------------------------------------------------
// A minimal TIFF writer for hand-made files (any byte order, classic or BigTIFF, any field type).

type Value = number[] | string | Buffer;
interface RawEntry {
  tag: number;
  type: number;
  value: Value;
}
const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8 };

function encode(entry: RawEntry, le: boolean): { bytes: Buffer; count: number } {
  const { type, value } = entry;
  if (typeof value === 'string') return { bytes: Buffer.from(value + '\0', 'latin1'), count: value.length + 1 };
  if (Buffer.isBuffer(value)) return { bytes: value, count: value.length };
  const size = TYPE_SIZE[type] ?? 1;
  const rational = type === FieldType.RATIONAL || type === FieldType.SRATIONAL;
  const count = rational ? value.length / 2 : value.length;
  const b = Buffer.alloc(count * size);
  value.forEach((v, i) => {
    const at = rational ? i * 4 : i * size;
    switch (type) {
      case 1:
      case 7:
        b.writeUInt8(v, at);
        break;
      case 6:
        b.writeInt8(v, at);
        break;
      case 3:
        if (le) b.writeUInt16LE(v, at);
        else b.writeUInt16BE(v, at);
        break;
      case 8:
        if (le) b.writeInt16LE(v, at);
        else b.writeInt16BE(v, at);
        break;
      case 4:
      case 13:
      case 5:
        if (le) b.writeUInt32LE(v, at);
        else b.writeUInt32BE(v, at);
        break;
      case 9:
      case 10:
        if (le) b.writeInt32LE(v, at);
        else b.writeInt32BE(v, at);
        break;
      case 11:
        if (le) b.writeFloatLE(v, at);
        else b.writeFloatBE(v, at);
        break;
      case 12:
        if (le) b.writeDoubleLE(v, at);
        else b.writeDoubleBE(v, at);
        break;
      case 16:
      case 18:
        if (le) b.writeBigUInt64LE(BigInt(v), at);
        else b.writeBigUInt64BE(BigInt(v), at);
        break;
      case 17:
        if (le) b.writeBigInt64LE(BigInt(v), at);
        else b.writeBigInt64BE(BigInt(v), at);
        break;
      default:
        b.writeUInt8(v & 255, at);
    }
  });
  return { bytes: b, count };
}

interface BuildOptions {
  le: boolean;
  big: boolean;
  /** Tile data, placed right after the header (at offset dataStart(big)). */
  data: Buffer;
  ifds: RawEntry[][];
  /** Override the next-IFD pointer of IFD i (given all IFD offsets). */
  next?: (index: number, offsets: number[]) => number | undefined;
}
const dataStart = (big: boolean) => (big ? 16 : 8);

function buildTiff(o: BuildOptions): Buffer {
  const { le, big } = o;
  const inlineMax = big ? 8 : 4;
  const entrySize = big ? 20 : 12;
  const encoded = o.ifds.map((entries) => [...entries].sort((a, b) => a.tag - b.tag).map((e) => ({ e, ...encode(e, le) })));
  const sizes = encoded.map((list) => {
    const extra = list.reduce((sum, x) => sum + (x.bytes.length > inlineMax ? x.bytes.length + (x.bytes.length & 1) : 0), 0);
    return (big ? 8 : 2) + list.length * entrySize + (big ? 8 : 4) + extra;
  });
  const offsets: number[] = [];
  let at = dataStart(big) + o.data.length + (o.data.length & 1);
  for (const size of sizes) {
    offsets.push(at);
    at += size;
  }
  const out = Buffer.alloc(at);
  out.write(le ? 'II' : 'MM', 0, 'latin1');
  const u16 = (v: number, p: number) => (le ? out.writeUInt16LE(v, p) : out.writeUInt16BE(v, p));
  const u32 = (v: number, p: number) => (le ? out.writeUInt32LE(v, p) : out.writeUInt32BE(v, p));
  const u64 = (v: number, p: number) => (le ? out.writeBigUInt64LE(BigInt(v), p) : out.writeBigUInt64BE(BigInt(v), p));
  const first = offsets[0] ?? 0;
  if (big) {
    u16(43, 2);
    u16(8, 4);
    u16(0, 6);
    u64(first, 8);
  } else {
    u16(42, 2);
    u32(first, 4);
  }
  o.data.copy(out, dataStart(big));
  encoded.forEach((list, i) => {
    let p = offsets[i]!;
    if (big) u64(list.length, p);
    else u16(list.length, p);
    p += big ? 8 : 2;
    let extraAt = p + list.length * entrySize + (big ? 8 : 4);
    for (const { e, bytes, count } of list) {
      u16(e.tag, p);
      u16(e.type, p + 2);
      if (big) u64(count, p + 4);
      else u32(count, p + 4);
      const valueAt = p + (big ? 12 : 8);
      if (bytes.length <= inlineMax) bytes.copy(out, valueAt);
      else {
        if (big) u64(extraAt, valueAt);
        else u32(extraAt, valueAt);
        bytes.copy(out, extraAt);
        extraAt += bytes.length + (bytes.length & 1);
      }
      p += entrySize;
    }
    const next = o.next?.(i, offsets) ?? offsets[i + 1] ?? 0;
    if (big) u64(next, p);
    else u32(next, p);
  });
  return out;
}

/** A grey 8-bit, uncompressed tiled level. */
function levelEntries(o: { width: number; height: number; tile: number; offsets: number[]; counts: number[]; big: boolean; extra?: RawEntry[] }): RawEntry[] {
  return [
    { tag: Tag.ImageWidth, type: FieldType.LONG, value: [o.width] },
    { tag: Tag.ImageLength, type: FieldType.SHORT, value: [o.height] },
    { tag: Tag.BitsPerSample, type: FieldType.SHORT, value: [8] },
    { tag: Tag.Compression, type: FieldType.SHORT, value: [1] },
    { tag: Tag.Photometric, type: FieldType.SHORT, value: [1] },
    { tag: Tag.SamplesPerPixel, type: FieldType.SHORT, value: [1] },
    { tag: Tag.TileWidth, type: o.tile > 0xffff ? FieldType.LONG : FieldType.SHORT, value: [o.tile] },
    { tag: Tag.TileLength, type: FieldType.LONG, value: [o.tile] },
    { tag: Tag.TileOffsets, type: o.big ? FieldType.LONG8 : FieldType.LONG, value: o.offsets },
    { tag: Tag.TileByteCounts, type: FieldType.SHORT, value: o.counts },
    ...(o.extra ?? []),
  ];
}

/**
 * A hand-made 3-level pyramid (32x20 → 16x10 → 8x5, 16x16 grey tiles; tile k filled with byte k+1)
 * with a striped thumbnail and a tiled mask in between that must be skipped.
 */
function handMade(le: boolean, big: boolean, firstExtra: RawEntry[] = []): Buffer {
  const tileBytes = 256;
  const data = Buffer.alloc(6 * tileBytes);
  for (let k = 0; k < 6; k++) data.fill(k + 1, k * tileBytes, (k + 1) * tileBytes);
  const at = (k: number) => dataStart(big) + k * tileBytes;
  const ifds: RawEntry[][] = [
    levelEntries({ width: 32, height: 20, tile: 16, offsets: [at(0), at(1), at(2), at(3)], counts: [256, 256, 256, 256], big, extra: firstExtra }),
    levelEntries({
      width: 16,
      height: 10,
      tile: 16,
      offsets: [at(4)],
      counts: [256],
      big,
      extra: [{ tag: Tag.NewSubfileType, type: FieldType.LONG, value: [1] }],
    }),
    // striped thumbnail: skipped
    [
      { tag: Tag.ImageWidth, type: FieldType.SHORT, value: [8] },
      { tag: Tag.ImageLength, type: FieldType.SHORT, value: [5] },
      { tag: Tag.BitsPerSample, type: FieldType.SHORT, value: [8] },
      { tag: Tag.Photometric, type: FieldType.SHORT, value: [1] },
      { tag: Tag.StripOffsets, type: FieldType.LONG, value: [at(5)] },
      { tag: Tag.StripByteCounts, type: FieldType.LONG, value: [40] },
      { tag: Tag.RowsPerStrip, type: FieldType.LONG, value: [5] },
    ],
    // transparency mask: skipped
    levelEntries({
      width: 8,
      height: 5,
      tile: 16,
      offsets: [at(5)],
      counts: [256],
      big,
      extra: [{ tag: Tag.NewSubfileType, type: FieldType.LONG, value: [4] }],
    }),
    levelEntries({ width: 8, height: 5, tile: 16, offsets: [at(5)], counts: [256], big }),
  ];
  return buildTiff({ le, big, data, ifds });
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tiff-reader-'));
  await Promise.all([
    rawPicture(1000, 700).tiff(pyramid(256, 'jpeg')).toFile(file('jpeg.tif')),
    rawPicture(1001, 733).tiff(pyramid(512, 'jpeg')).toFile(file('odd.tif')),
    rawPicture(1000, 700)
      .tiff(pyramid(256, 'jpeg', { bigtiff: true }))
      .toFile(file('big.tif')),
    rawPicture(1000, 700).tiff(pyramid(256, 'deflate')).toFile(file('deflate.tif')),
    rawPicture(1000, 700).tiff(pyramid(256, 'lzw')).toFile(file('lzw.tif')),
    rawPicture(600, 400).toColourspace('rgb16').tiff(pyramid(256, 'deflate')).toFile(file('rgb16.tif')),
    rawPicture(600, 400).toColourspace('scrgb').tiff(pyramid(256, 'deflate')).toFile(file('float.tif')),
  ]);
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('TiffFile: pyramids written by sharp', () => {
  it('1000x700 JPEG, 256 tiles: three levels, tile grid, JPEGTables, photometric', async () => {
    const tiff = await TiffFile.open(file('jpeg.tif'));
    try {
      const { info } = tiff;
      assert.equal(info.bigTiff, false);
      assert.equal(info.littleEndian, true);
      assert.deepEqual(
        info.levels.map((l) => [l.width, l.height]),
        [
          [1000, 700],
          [500, 350],
          [250, 175],
        ],
      );
      assert.deepEqual(
        info.levels.map((l) => [l.tilesAcross, l.tilesDown]),
        [
          [4, 3],
          [2, 2],
          [1, 1],
        ],
      );
      assert.deepEqual(
        info.levels.map((l) => [l.page, l.subifd]),
        [
          [0, -1],
          [1, -1],
          [2, -1],
        ],
      );
      for (const level of info.levels) {
        assert.equal(level.tiled, true);
        assert.equal(level.tileWidth, 256);
        assert.equal(level.tileHeight, 256);
        assert.equal(level.compression, 7);
        assert.equal(level.photometric, 2);
        assert.equal(level.samplesPerPixel, 3);
        assert.equal(level.bitsPerSample, 8);
        assert.equal(level.planarConfig, 1);
        assert.ok(level.jpegTables && level.jpegTables.length > 100, 'JPEGTables present');
        assert.deepEqual([...level.jpegTables.subarray(0, 2)], [0xff, 0xd8]);
        assert.deepEqual([...level.jpegTables.subarray(-2)], [0xff, 0xd9]);
      }
      assert.equal(info.channels, 3);
      assert.equal(info.bitsPerSample, 8);
      assert.equal(info.sampleFormat, 'uint');
      assert.equal(info.photometric, 2);
      assert.deepEqual(info.minValues, [0, 0, 0]);
      assert.deepEqual(info.maxValues, [255, 255, 255]);
      assert.ok(info.resolution);
      assert.equal(info.resolution.unit, 2);
      // every stored tile is an abbreviated JPEG stream: SOI ... EOI
      for (let level = 0; level < info.levels.length; level++) {
        const { tilesAcross, tilesDown } = info.levels[level]!;
        for (let row = 0; row < tilesDown; row++) {
          for (let col = 0; col < tilesAcross; col++) {
            const bytes = await tiff.readTileBytes(level, col, row);
            assert.deepEqual([bytes[0], bytes[1], bytes.at(-2), bytes.at(-1)], [0xff, 0xd8, 0xff, 0xd9]);
          }
        }
      }
    } finally {
      await tiff.close();
    }
  });

  it('odd size 1001x733 with 512 tiles', async () => {
    const tiff = await TiffFile.open(file('odd.tif'));
    const { levels } = tiff.info;
    try {
      // libvips stops once a level fits in one tile
      assert.deepEqual(
        levels.map((l) => [l.width, l.height]),
        [
          [1001, 733],
          [500, 366],
        ],
      );
      assert.deepEqual(
        levels.map((l) => [l.tileWidth, l.tileHeight, l.tilesAcross, l.tilesDown]),
        [
          [512, 512, 2, 2],
          [512, 512, 1, 1],
        ],
      );
      const edge = await tiff.readTileBytes(0, 1, 1);
      assert.deepEqual([edge[0], edge[1]], [0xff, 0xd8]);
      await isFormatError(tiff.readTileBytes(0, 2, 0), /out of range/);
    } finally {
      await tiff.close();
    }
  });

  it('BigTIFF', async () => {
    const tiff = await TiffFile.open(file('big.tif'));
    assert.equal(tiff.info.bigTiff, true);
    assert.deepEqual(
      tiff.info.levels.map((l) => [l.width, l.height, l.tilesAcross, l.tilesDown]),
      [
        [1000, 700, 4, 3],
        [500, 350, 2, 2],
        [250, 175, 1, 1],
      ],
    );
    // same tile bytes as the classic file written with the same settings
    const classic = await TiffFile.open(file('jpeg.tif'));
    assert.deepEqual(await tiff.readTileBytes(0, 2, 1), await classic.readTileBytes(0, 2, 1));
    assert.deepEqual(tiff.info.levels[0]!.jpegTables, classic.info.levels[0]!.jpegTables);
    await Promise.all([tiff.close(), classic.close()]);
  });

  it('deflate and LZW', async () => {
    for (const [name, compression] of [
      ['deflate.tif', 8],
      ['lzw.tif', 5],
    ] as const) {
      const tiff = await TiffFile.open(file(name));
      assert.equal(tiff.info.levels.length, 3);
      for (const level of tiff.info.levels) {
        assert.equal(level.compression, compression);
        assert.equal(level.jpegTables, null);
      }
      assert.ok((await tiff.readTileBytes(2, 0, 0)).length > 0);
      await tiff.close();
    }
  });

  it('16-bit: bitsPerSample 16, uint, default max 65535', async () => {
    const tiff = await TiffFile.open(file('rgb16.tif'));
    const { info } = tiff;
    assert.equal(info.bitsPerSample, 16);
    assert.equal(info.sampleFormat, 'uint');
    assert.equal(info.channels, 3);
    assert.deepEqual(info.minValues, [0, 0, 0]);
    assert.deepEqual(info.maxValues, [65535, 65535, 65535]);
    assert.deepEqual(
      info.levels.map((l) => [l.width, l.height]),
      [
        [600, 400],
        [300, 200],
        [150, 100],
      ],
    );
    await tiff.close();
  });

  it('float: bitsPerSample 32, float, default max 1.0', async () => {
    const tiff = await TiffFile.open(file('float.tif'));
    const { info } = tiff;
    assert.equal(info.bitsPerSample, 32);
    assert.equal(info.sampleFormat, 'float');
    assert.equal(info.levels[0]!.sampleFormat, 3);
    assert.deepEqual(info.maxValues, [1, 1, 1]);
    assert.deepEqual(info.minValues, [0, 0, 0]);
    await tiff.close();
  });

  it('SMinSampleValue/SMaxSampleValue per sample (entries made by tiffset, values patched)', async (t) => {
    const path = file('minmax.tif');
    await copyFile(file('jpeg.tif'), path);
    try {
      await run('tiffset', ['-s', '340', '3', '1', '2', '3', path]);
      await run('tiffset', ['-s', '341', '3', '100', '200', '250', path]);
    } catch {
      t.skip('tiffset not available');
      return;
    }
    // tiffset writes the entries (BYTE, 3 values, inline) but not the values: patch them in place.
    const source = await PositionedFile.open(path);
    const header = await readHeader(source);
    const ifd0 = await readIfd(source, header, header.firstIfd, 'IFD 0');
    await source.close();
    const bytes = await readFile(path);
    for (const [tag, values] of [
      [340, [1, 2, 3]],
      [341, [100, 200, 250]],
    ] as const) {
      const entry = ifd0.entry(tag);
      if (!entry || entry.type !== FieldType.BYTE || entry.count !== 3) {
        t.skip(`tiffset wrote tag ${tag} as type ${entry?.type} count ${entry?.count}`);
        return;
      }
      values.forEach((v, i) => (bytes[entry.position + i] = v));
    }
    await writeFile(path, bytes);
    const tiff = await TiffFile.open(path);
    assert.deepEqual(tiff.info.minValues, [1, 2, 3]);
    assert.deepEqual(tiff.info.maxValues, [100, 200, 250]);
    await tiff.close();
  });

  it('text tags (tiffset), ICC profile and resolution', async (t) => {
    const path = file('text.tif');
    await rawPicture(300, 200).withIccProfile('srgb').withMetadata({ density: 300 }).tiff(pyramid(256, 'jpeg')).toFile(path);
    try {
      await run('tiffset', ['-s', '33432', '(c) Test', path]);
      await run('tiffset', ['-s', '315', 'Jane Artist', path]);
      await run('tiffset', ['-s', '270', 'A description', path]);
    } catch {
      t.skip('tiffset not available');
      return;
    }
    const tiff = await TiffFile.open(path);
    const { info } = tiff;
    assert.equal(info.text.copyright, '(c) Test');
    assert.equal(info.text.artist, 'Jane Artist');
    assert.equal(info.text.description, 'A description');
    assert.equal(info.text.pageName, undefined);
    assert.ok(info.icc && info.icc.length > 100, 'ICC profile');
    assert.equal(info.icc.toString('latin1', 36, 40), 'acsp');
    assert.ok(info.resolution);
    assert.ok(Math.abs(info.resolution.x - 300) < 0.01 && Math.abs(info.resolution.y - 300) < 0.01, JSON.stringify(info.resolution));
    assert.equal(info.resolution.unit, 2);
    await tiff.close();
  });
});

describe('TiffFile: JPEG passthrough', () => {
  it("JPEGTables + stored tile bytes decode bit-identically to sharp's own region read", async () => {
    const path = file('jpeg.tif');
    const tiff = await TiffFile.open(path);
    try {
      for (const [level, col, row] of [
        [0, 1, 1],
        [0, 2, 0],
        [1, 0, 0],
      ] as const) {
        const stored = tiff.info.levels[level]!;
        const tables = stored.jpegTables!;
        const tile = await tiff.readTileBytes(level, col, row);
        const jpeg = Buffer.concat([tables.subarray(0, -2), tile.subarray(2)]);
        const mine = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
        assert.deepEqual([mine.info.width, mine.info.height, mine.info.channels], [256, 256, 3]);
        const reference = await sharp(path, { page: stored.page })
          .extract({ left: col * 256, top: row * 256, width: 256, height: 256 })
          .raw()
          .toBuffer();
        assert.equal(await maxAbsDiff(mine.data, reference), 0, `level ${level} tile ${col},${row}`);
      }
    } finally {
      await tiff.close();
    }
  });
});

describe('TiffFile: SubIFD pyramid (vips CLI)', () => {
  it('IFD 0 + its SubIFDs, with page/subifd for sharp', async (t) => {
    try {
      await run('vips', ['--version']);
    } catch {
      t.skip('vips CLI not installed');
      return;
    }
    const path = file('subifd.tif');
    await run('vips', [
      'tiffsave',
      file('jpeg.tif'),
      path,
      '--tile',
      '--pyramid',
      '--subifd',
      '--compression',
      'jpeg',
      '--tile-width',
      '256',
      '--tile-height',
      '256',
    ]);
    const tiff = await TiffFile.open(path);
    try {
      const { levels } = tiff.info;
      assert.deepEqual(
        levels.map((l) => [l.width, l.height]),
        [
          [1000, 700],
          [500, 350],
          [250, 175],
        ],
      );
      assert.deepEqual(
        levels.map((l) => [l.page, l.subifd]),
        [
          [0, -1],
          [0, 0],
          [0, 1],
        ],
      );
      // the right SubIFD: our stored tile decodes like sharp's read of {page, subifd}
      const level = levels[1]!;
      const tile = await tiff.readTileBytes(1, 0, 0);
      const jpeg = Buffer.concat([level.jpegTables!.subarray(0, -2), tile.subarray(2)]);
      const mine = await sharp(jpeg).raw().toBuffer();
      const reference = await sharp(path, { page: level.page, tiff: { subifd: level.subifd } })
        .extract({ left: 0, top: 0, width: 256, height: 256 })
        .raw()
        .toBuffer();
      assert.equal(await maxAbsDiff(mine, reference), 0); // YCbCr 4:2:0 tiles too
    } finally {
      await tiff.close();
    }
  });
});

describe('TiffFile: hand-made files', () => {
  for (const [le, big] of [
    [true, false],
    [false, false],
    [true, true],
    [false, true],
  ] as const) {
    it(`${le ? 'little' : 'big'}-endian ${big ? 'BigTIFF' : 'classic TIFF'}: every field type, inline and at offsets`, async () => {
      const icc = Buffer.alloc(200, 7);
      const extra: RawEntry[] = [
        { tag: Tag.XResolution, type: FieldType.RATIONAL, value: [300, 1] },
        { tag: Tag.YResolution, type: FieldType.RATIONAL, value: [600, 2] },
        { tag: Tag.ResolutionUnit, type: FieldType.SHORT, value: [3] },
        { tag: Tag.SMinSampleValue, type: FieldType.DOUBLE, value: [1.5] },
        { tag: Tag.SMaxSampleValue, type: FieldType.FLOAT, value: [200.5] },
        { tag: Tag.Copyright, type: FieldType.ASCII, value: '(c) Test' },
        { tag: Tag.Artist, type: FieldType.ASCII, value: 'Jane\0\0' },
        { tag: Tag.Make, type: FieldType.ASCII, value: 'Abc' },
        { tag: Tag.PageName, type: FieldType.ASCII, value: '' },
        { tag: Tag.XMP, type: FieldType.BYTE, value: Buffer.from('<x:xmpmeta>é</x:xmpmeta>\0') },
        { tag: Tag.ICCProfile, type: FieldType.UNDEFINED, value: icc },
        { tag: 65000, type: FieldType.SBYTE, value: [-1, 2] },
        { tag: 65001, type: FieldType.SSHORT, value: [-300, 7, -8] },
        { tag: 65002, type: FieldType.SLONG, value: [-70000, 5] },
        { tag: 65003, type: FieldType.SRATIONAL, value: [-1, 4] },
        { tag: 65004, type: FieldType.FLOAT, value: [0.25, 2] },
        { tag: 65005, type: FieldType.DOUBLE, value: [1e300] },
        { tag: 65006, type: FieldType.SLONG8, value: [-5] },
        { tag: 65007, type: FieldType.LONG8, value: [2 ** 40 + 3] },
        { tag: 65008, type: FieldType.IFD, value: [12] },
        { tag: 65009, type: FieldType.IFD8, value: [34] },
        { tag: 65010, type: FieldType.UNDEFINED, value: Buffer.from([9, 8, 7]) },
        { tag: 65011, type: 99, value: [1, 2, 3] }, // unknown type: ignored
        { tag: 65012, type: FieldType.LONG, value: [1, 2, 3, 4, 5] },
        { tag: 65013, type: FieldType.SHORT, value: [65535, 0] },
        { tag: 65014, type: FieldType.BYTE, value: [255] },
      ];
      const path = file(`hand-${le}-${big}.tif`);
      await writeFile(path, handMade(le, big, extra));

      // field decoding
      const source = await PositionedFile.open(path);
      const header = await readHeader(source);
      assert.deepEqual([header.littleEndian, header.bigTiff], [le, big]);
      const ifd0 = await readIfd(source, header, header.firstIfd, 'IFD 0');
      const tags = [...extra.map((e) => e.tag), Tag.TileOffsets, Tag.TileByteCounts, Tag.ImageWidth, Tag.ImageLength];
      await ifd0.preload(source, tags);
      await source.close();
      assert.deepEqual(ifd0.numbers(65000), [-1, 2]);
      assert.deepEqual(ifd0.numbers(65001), [-300, 7, -8]);
      assert.deepEqual(ifd0.numbers(65002), [-70000, 5]);
      assert.deepEqual(ifd0.numbers(65003), [-0.25]);
      assert.deepEqual(ifd0.numbers(65004), [0.25, 2]);
      assert.deepEqual(ifd0.numbers(65005), [1e300]);
      assert.deepEqual(ifd0.numbers(65006), [-5]);
      assert.deepEqual(ifd0.numbers(65007), [2 ** 40 + 3]);
      assert.deepEqual(ifd0.numbers(65008), [12]);
      assert.deepEqual(ifd0.numbers(65009), [34]);
      assert.deepEqual(ifd0.numbers(65010), [9, 8, 7]);
      assert.equal(ifd0.has(65011), false);
      assert.deepEqual(ifd0.numbers(65012), [1, 2, 3, 4, 5]);
      assert.deepEqual(ifd0.numbers(65013), [65535, 0]);
      assert.deepEqual(ifd0.numbers(65014), [255]);
      assert.deepEqual(ifd0.numbers(Tag.XResolution), [300]);
      assert.deepEqual(ifd0.numbers(Tag.ImageWidth), [32]);
      assert.deepEqual(ifd0.numbers(Tag.ImageLength), [20]);

      const tiff = await TiffFile.open(path);
      const { info } = tiff;
      assert.deepEqual([info.littleEndian, info.bigTiff], [le, big]);
      assert.deepEqual(
        info.levels.map((l) => [l.width, l.height, l.page, l.tilesAcross, l.tilesDown]),
        [
          [32, 20, 0, 2, 2],
          [16, 10, 1, 1, 1],
          [8, 5, 4, 1, 1],
        ],
      );
      assert.equal(info.channels, 1);
      assert.equal(info.photometric, 1);
      assert.deepEqual(info.resolution, { x: 300, y: 300, unit: 3 });
      assert.deepEqual(info.minValues, [1.5]);
      assert.deepEqual(info.maxValues, [200.5]);
      assert.deepEqual(info.text, { copyright: '(c) Test', artist: 'Jane', make: 'Abc' });
      assert.equal(info.xmp, '<x:xmpmeta>é</x:xmpmeta>');
      assert.deepEqual(info.icc, icc);
      for (const [level, col, row, fill] of [
        [0, 0, 0, 1],
        [0, 1, 0, 2],
        [0, 0, 1, 3],
        [0, 1, 1, 4],
        [1, 0, 0, 5],
        [2, 0, 0, 6],
      ] as const) {
        assert.deepEqual(await tiff.readTileBytes(level, col, row), Buffer.alloc(256, fill), `level ${level} tile ${col},${row}`);
      }
      await isFormatError(tiff.readTileBytes(0, 2, 0), /out of range/);
      await isFormatError(tiff.readTileBytes(0, 0, -1), /out of range/);
      await isFormatError(tiff.readTileBytes(0, 0.5, 0), /out of range/);
      await isFormatError(tiff.readTileBytes(3, 0, 0), /no resolution level/);
      await tiff.close();
      await tiff.close(); // idempotent
    });
  }

  it('concurrent readTileBytes on a fresh level load the arrays once and all succeed', async () => {
    const tiff = await TiffFile.open(file('hand-true-false.tif'));
    const tiles = await Promise.all(Array.from({ length: 40 }, (_, i) => tiff.readTileBytes(0, i % 2, (i >> 1) % 2)));
    tiles.forEach((bytes, i) => assert.equal(bytes[0], 1 + (i % 2) + 2 * ((i >> 1) % 2)));
    await tiff.close();
  });
});

describe('TiffFile: cantaloupe fixtures', () => {
  it('tiled fixtures open with the right sizes (8/16-bit, RGB/RGBA, BigTIFF, 3 levels)', async () => {
    const names = [
      'tif-rgb-1res-64x56x8-tiled-jpeg.tif',
      'tif-rgb-1res-64x56x8-tiled-lzw.tif',
      'tif-rgb-1res-64x56x8-tiled-packbits.tif',
      'tif-rgb-1res-64x56x8-tiled-uncompressed.tif',
      'tif-rgb-1res-64x56x8-tiled-uncompressed-bigtiff.tif',
      'tif-rgb-1res-64x56x8-tiled-zip.tif',
      'tif-rgb-1res-64x56x16-tiled-lzw.tif',
      'tif-rgb-1res-64x56x16-tiled-zip.tif',
      'tif-rgba-1res-64x56x16-tiled-uncompressed.tif',
      'tif-rgba-1res-64x56x8-tiled-jpeg.tif',
      'tif-rgb-3res-64x56x16-tiled-uncompressed.tif',
    ];
    for (const name of names) {
      const tiff = await TiffFile.open(join(CANTALOUPE, name));
      try {
        const { info } = tiff;
        const level0 = info.levels[0]!;
        assert.deepEqual(
          [level0.width, level0.height, level0.tileWidth, level0.tileHeight, level0.tilesAcross, level0.tilesDown],
          [64, 56, 16, 16, 4, 4],
          name,
        );
        assert.equal(info.bitsPerSample, name.includes('x16-') ? 16 : 8, name);
        assert.equal(info.channels, name.startsWith('tif-rgba') ? 4 : 3, name);
        assert.deepEqual(info.maxValues, Array(info.channels).fill(name.includes('x16-') ? 65535 : 255), name);
        assert.equal(info.bigTiff, name.includes('bigtiff'), name);
        if (name.startsWith('tif-rgba')) assert.deepEqual(level0.extraSamples, [2], name);
        if (name.includes('3res'))
          assert.deepEqual(
            info.levels.map((l) => [l.width, l.height]),
            [
              [64, 56],
              [32, 28],
              [16, 14],
            ],
          );
        else assert.equal(info.levels.length, 1, name);
        if (name.includes('jpeg')) assert.ok(level0.jpegTables, name);
        if (level0.compression === 1) {
          const bytesPerPixel = (info.channels * info.bitsPerSample) / 8;
          assert.equal((await tiff.readTileBytes(0, 3, 3)).length, 16 * 16 * bytesPerPixel, name);
        }
        if (name !== 'tif-rgb-1res-64x56x8-tiled-uncompressed.tif') {
          assert.ok(info.xmp?.includes('x:xmpmeta'), name);
          assert.equal(info.icc?.length, 3144, name);
        }
      } finally {
        await tiff.close();
      }
    }
  });

  it('striped fixtures: "TIFF image is not tiled"', async () => {
    for (const name of ['tif-rgb-1res-64x56x8-striped-jpeg.tif', 'tif-rgb-1res-64x56x16-striped-lzw.tif', 'tif-xmp.tif', 'tif-bw-9image.tif']) {
      await isFormatError(TiffFile.open(join(CANTALOUPE, name)), /^TIFF image is not tiled$/);
    }
  });
});

describe('TiffFile: bad files reject with TiffFormatError', () => {
  it('a PNG file', async () => {
    const path = file('x.png');
    await rawPicture(64, 64).png().toFile(path);
    await isFormatError(TiffFile.open(path), /not a TIFF/);
  });

  it('an empty file', async () => {
    await writeFile(file('empty.tif'), Buffer.alloc(0));
    await isFormatError(TiffFile.open(file('empty.tif')), /empty/);
  });

  it('a header without IFD', async () => {
    await writeFile(file('noifd.tif'), Buffer.from([0x49, 0x49, 42, 0, 0, 0, 0, 0]));
    await isFormatError(TiffFile.open(file('noifd.tif')), /no IFD/);
    await writeFile(file('short.tif'), Buffer.from([0x4d, 0x4d, 0, 42, 0]));
    await isFormatError(TiffFile.open(file('short.tif')), /truncated/);
  });

  it('truncated: the first 1000 bytes of a valid file', async () => {
    const bytes = await readFile(file('jpeg.tif'));
    await writeFile(file('trunc1000.tif'), bytes.subarray(0, 1000));
    await isFormatError(TiffFile.open(file('trunc1000.tif')), /truncated/);
  });

  it('truncated in the middle of the tile offsets', async () => {
    const path = file('big-grid.tif');
    // enough tiles for the offsets array to be stored apart from the IFD
    await sharp({ create: { width: 4000, height: 3000, channels: 3, background: { r: 10, g: 20, b: 30 } } })
      .tiff(pyramid(256, 'jpeg'))
      .toFile(path);
    const source = await PositionedFile.open(path);
    const header = await readHeader(source);
    const ifd0 = await readIfd(source, header, header.firstIfd, 'IFD 0');
    await source.close();
    const offsets = ifd0.entry(Tag.TileOffsets)!;
    assert.equal(offsets.inline, false);
    const bytes = await readFile(path);
    await writeFile(file('trunc-offsets.tif'), bytes.subarray(0, offsets.position + Math.floor(offsets.byteLength / 2)));
    await isFormatError(TiffFile.open(file('trunc-offsets.tif')), /truncated/);
  });

  it('a tile beyond the end of the file: open works, readTileBytes rejects', async () => {
    const data = Buffer.alloc(256, 1);
    const path = file('tile-eof.tif');
    await writeFile(
      path,
      buildTiff({ le: true, big: false, data, ifds: [levelEntries({ width: 16, height: 16, tile: 16, offsets: [100000], counts: [256], big: false })] }),
    );
    const tiff = await TiffFile.open(path);
    await isFormatError(tiff.readTileBytes(0, 0, 0), /truncated/);
    await tiff.close();
  });

  it('a metadata tag whose value lies beyond the end of the file is ignored (as libtiff does)', async () => {
    const data = Buffer.alloc(256, 1);
    const entries = levelEntries({
      width: 16,
      height: 16,
      tile: 16,
      offsets: [8],
      counts: [256],
      big: false,
      extra: [
        { tag: Tag.Artist, type: FieldType.ASCII, value: 'Somebody long enough' },
        { tag: Tag.Copyright, type: FieldType.ASCII, value: '(c) Test' },
      ],
    });
    const bytes = buildTiff({ le: true, big: false, data, ifds: [entries] });
    const artist = bytes.indexOf(Buffer.from([315 & 255, 315 >> 8, FieldType.ASCII, 0]));
    assert.ok(artist > 0);
    bytes.writeUInt32LE(0x7fff0000, artist + 8);
    await writeFile(file('bad-artist.tif'), bytes);
    const tiff = await TiffFile.open(file('bad-artist.tif'));
    assert.deepEqual(tiff.info.text, { copyright: '(c) Test' });
    await tiff.close();
  });

  it('IFD loops', async () => {
    const data = Buffer.alloc(256 * 2, 1);
    const levels = [
      levelEntries({ width: 32, height: 16, tile: 16, offsets: [8, 8], counts: [256, 256], big: false }),
      levelEntries({ width: 16, height: 8, tile: 16, offsets: [8], counts: [256], big: false }),
    ];
    await writeFile(file('loop.tif'), buildTiff({ le: true, big: false, data, ifds: levels, next: (i, offsets) => (i === 1 ? offsets[0] : undefined) }));
    await isFormatError(TiffFile.open(file('loop.tif')), /IFD loop/);
    await writeFile(file('self-loop.tif'), buildTiff({ le: false, big: true, data, ifds: [levels[0]!], next: (_, offsets) => offsets[0] }));
    await isFormatError(TiffFile.open(file('self-loop.tif')), /IFD loop/);
    // SubIFDs pointing back at IFD 0
    const withSub = buildTiff({ le: true, big: false, data, ifds: [[...levels[0]!, { tag: Tag.SubIFDs, type: FieldType.IFD, value: [520] }]] });
    const ifd0 = withSub.readUInt32LE(4);
    await writeFile(
      file('sub-loop.tif'),
      buildTiff({ le: true, big: false, data, ifds: [[...levels[0]!, { tag: Tag.SubIFDs, type: FieldType.IFD, value: [ifd0] }]] }),
    );
    await isFormatError(TiffFile.open(file('sub-loop.tif')), /IFD loop/);
  });

  it('absurd values', async () => {
    const data = Buffer.alloc(256, 1);
    const cases: Array<[string, RawEntry[], RegExp]> = [
      ['tile size 0', levelEntries({ width: 16, height: 16, tile: 0, offsets: [8], counts: [256], big: false }), /tile size/],
      ['tile size 70000', levelEntries({ width: 16, height: 16, tile: 70000, offsets: [8], counts: [256], big: false }), /tile size/],
      ['width 0', levelEntries({ width: 0, height: 16, tile: 16, offsets: [8], counts: [256], big: false }), /image size/],
      ['too few tile offsets', levelEntries({ width: 64, height: 16, tile: 16, offsets: [8], counts: [256], big: false }), /TileOffsets/],
      [
        '2^32-1 square',
        levelEntries({ width: 0xffffffff, height: 0xffff, tile: 16, offsets: [8], counts: [256], big: false }).map((e) =>
          e.tag === Tag.ImageLength ? { ...e, type: FieldType.LONG, value: [0xffffffff] } : e,
        ),
        /overflow/,
      ],
      [
        'bits per sample 200',
        levelEntries({ width: 16, height: 16, tile: 16, offsets: [8], counts: [256], big: false }).map((e) =>
          e.tag === Tag.BitsPerSample ? { ...e, value: [200] } : e,
        ),
        /BitsPerSample/,
      ],
      [
        'no TileByteCounts',
        levelEntries({ width: 16, height: 16, tile: 16, offsets: [8], counts: [256], big: false }).filter((e) => e.tag !== Tag.TileByteCounts),
        /TileByteCounts/,
      ],
    ];
    for (const [name, entries, pattern] of cases) {
      const path = file(`absurd-${name.replace(/\W+/g, '-')}.tif`);
      await writeFile(path, buildTiff({ le: true, big: false, data, ifds: [entries] }));
      await isFormatError(TiffFile.open(path), pattern);
    }
    // an IFD claiming 20000 entries; and one with none
    const many = Buffer.alloc(64);
    many.write('II', 0, 'latin1');
    many.writeUInt16LE(42, 2);
    many.writeUInt32LE(8, 4);
    many.writeUInt16LE(20000, 8);
    await writeFile(file('many.tif'), many);
    await isFormatError(TiffFile.open(file('many.tif')), /20000 entries/);
    many.writeUInt16LE(0, 8);
    await writeFile(file('none.tif'), many);
    await isFormatError(TiffFile.open(file('none.tif')), /no entries/);
  });

  it('random garbage, with and without a TIFF header', async () => {
    const random = seededRandom(42);
    const prefixes = [Buffer.alloc(0), Buffer.from('II*\0'), Buffer.from('MM\0*'), Buffer.from('II+\0\x08\0\0\0'), Buffer.from('MM\0+\0\x08\0\0')];
    for (let i = 0; i < 100; i++) {
      const prefix = prefixes[i % prefixes.length]!;
      const body = Buffer.alloc(Math.floor(random() * 3000));
      for (let k = 0; k < body.length; k++) body[k] = Math.floor(random() * 256);
      // small offsets now and then, so that some IFDs land inside the file
      if (prefix.length > 0 && body.length > 8 && i % 2 === 0) body.writeUInt8(Math.floor(random() * 200), 0);
      const path = file('garbage.tif');
      await writeFile(path, Buffer.concat([prefix, body]));
      await isFormatError(TiffFile.open(path));
    }
  });

  it('fuzz: corrupted bytes and truncations of valid files never give another error type or hang', async () => {
    const random = seededRandom(7);
    const bases = [handMade(true, false), handMade(false, true), await readFile(join(CANTALOUPE, 'tif-rgb-1res-64x56x8-tiled-jpeg.tif'))];
    // structure of the cantaloupe file lives at its end
    const cantaloupeIfd = bases[2]!.readUInt32LE(4);
    let opened = 0;
    let rejected = 0;
    for (let i = 0; i < 600; i++) {
      const base = bases[i % bases.length]!;
      let bytes = Buffer.from(base);
      const from = i % bases.length === 2 ? cantaloupeIfd : 0;
      const flips = 1 + Math.floor(random() * 6);
      for (let k = 0; k < flips; k++) {
        const at = from + Math.floor(random() * (bytes.length - from));
        bytes[at] = random() < 0.3 ? 0xff : Math.floor(random() * 256);
      }
      if (random() < 0.2) bytes = bytes.subarray(0, Math.floor(random() * bytes.length));
      const path = file('fuzz.tif');
      await writeFile(path, bytes);
      let tiff: TiffFile;
      try {
        tiff = await TiffFile.open(path);
      } catch (error) {
        assert.ok(error instanceof TiffFormatError, `iteration ${i}: ${String(error)}`);
        rejected++;
        continue;
      }
      opened++;
      for (let level = 0; level < tiff.info.levels.length; level++) {
        const { tilesAcross, tilesDown } = tiff.info.levels[level]!;
        for (let row = 0; row < Math.min(tilesDown, 4); row++) {
          for (let col = 0; col < Math.min(tilesAcross, 4); col++) {
            await tiff.readTileBytes(level, col, row).catch((error: unknown) => {
              assert.ok(error instanceof TiffFormatError, `iteration ${i}: ${String(error)}`);
            });
          }
        }
      }
      await tiff.close();
    }
    assert.ok(opened > 0 && rejected > 0, `opened ${opened}, rejected ${rejected}`);
  });
});

describe('TiffFile: speed', () => {
  it('20000x15000 JPEG pyramid: open time and 1000 random readTileBytes (printed, not asserted)', async () => {
    const path = file('huge.tif');
    let t0 = performance.now();
    await sharp({ create: { width: 20000, height: 15000, channels: 3, background: { r: 120, g: 80, b: 200 } }, limitInputPixels: false })
      .tiff(pyramid(256, 'jpeg'))
      .toFile(path);
    const writeMs = performance.now() - t0;

    t0 = performance.now();
    const first = await TiffFile.open(path);
    const firstOpenMs = performance.now() - t0;
    await first.close();
    const opens: number[] = [];
    for (let i = 0; i < 50; i++) {
      t0 = performance.now();
      const tiff = await TiffFile.open(path);
      opens.push(performance.now() - t0);
      await tiff.close();
    }
    opens.sort((a, b) => a - b);

    const tiff = await TiffFile.open(path);
    const { levels } = tiff.info;
    assert.deepEqual([levels[0]!.width, levels[0]!.height, levels[0]!.tilesAcross, levels[0]!.tilesDown], [20000, 15000, 79, 59]);
    const random = seededRandom(1);
    t0 = performance.now();
    const firstTileMs = await tiff.readTileBytes(0, 40, 30).then(() => performance.now() - t0);
    t0 = performance.now();
    let bytes = 0;
    for (let i = 0; i < 1000; i++) {
      const level = Math.floor(random() * levels.length);
      const { tilesAcross, tilesDown } = levels[level]!;
      const tile = await tiff.readTileBytes(level, Math.floor(random() * tilesAcross), Math.floor(random() * tilesDown));
      bytes += tile.length;
    }
    const readMs = performance.now() - t0;
    await tiff.close();
    console.log(
      `20000x15000 JPEG pyramid (${levels.length} levels, ${levels[0]!.tilesAcross * levels[0]!.tilesDown} tiles on level 0): ` +
        `written by sharp in ${writeMs.toFixed(0)} ms; TiffFile.open first ${firstOpenMs.toFixed(2)} ms, ` +
        `median of 50 ${opens[25]!.toFixed(2)} ms (min ${opens[0]!.toFixed(2)}, max ${opens.at(-1)!.toFixed(2)}); ` +
        `first readTileBytes (loads level 0 arrays) ${firstTileMs.toFixed(2)} ms; ` +
        `1000 random readTileBytes ${readMs.toFixed(1)} ms (${((readMs * 1000) / 1000).toFixed(1)} µs each, ${bytes} bytes)`,
    );
  });
});
