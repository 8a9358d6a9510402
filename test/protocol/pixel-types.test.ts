/**
 * Every TIFF pixel type rendered as iipsrv renders it (signed data as signed numbers, where iipsrv
 * reads the bits as unsigned): generated images of known values (signed,
 * 32-bit, float with and without SMin/SMaxSampleValue, multiband, grey + alpha, 1-bit MinIsBlack
 * and MinIsWhite, CIELAB 8 and 16-bit) read back from lossless PNG tiles and regions (PTL, CVT,
 * IIIF) so that every value can be checked; the tile decoder against every compression, predictor
 * and byte order it reads.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { TiffSource } from '../../src/engine/tiff/tiff-source.ts';
import { silentLog } from '../../src/log.ts';
import { createRouter } from '../../src/router.ts';
import { tempDir, which } from '../helpers/daemon.ts';
import { assertPixels, decodePixels, type Pixels } from '../helpers/images.ts';
import { plainRequest } from '../helpers/requests.ts';
import { pyramid, writeTiff, type TiffSpec } from '../helpers/tiff-writer.ts';

const W = 300;
const H = 200;
let dir: string;
let get: (query: string) => ReturnType<ReturnType<typeof createRouter>>;

/** Samples of a W x H image, band by band from f(x, y, band). */
function image(channels: number, f: (x: number, y: number, c: number) => number): Float64Array {
  const out = new Float64Array(W * H * channels);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < channels; c++) out[(y * W + x) * channels + c] = f(x, y, c);
  return out;
}

function write(name: string, spec: Omit<TiffSpec, 'levels'>, samples: ArrayLike<number>): string {
  const file = path.join(dir, name);
  writeTiff(file, { ...spec, levels: pyramid({ width: W, height: H, samples }, spec.channels) });
  return file;
}

async function pixels(query: string): Promise<Pixels> {
  const response = await get(query);
  assert.equal(response.status, 200, `${query}: ${response.status} ${response.body.toString().slice(0, 200)}`);
  return decodePixels(response.body);
}

const f = Math.fround;

/** iipsrv's normalisation to 8 bits, in its single precision: truncated, clipped, non-finite -> 0. */
function norm(v: number, min: number, max: number): number {
  const scaled = f(f(f(v) - f(min)) * f(1 / f(f(max) - f(min))));
  const out = f((Number.isFinite(scaled) ? scaled : 0) * 255);
  return out <= 0 ? 0 : out >= 255 ? 255 : Math.trunc(out);
}

/** Float values placed mid-way between two output levels, so that the expected byte is unambiguous. */
const mid = (k: number, min: number, max: number) => min + ((k + 0.5) / 255) * (max - min);
const ramp = (x: number, y: number) => (x + y) % 255;
/** Signed 16-bit heights -1000..1000; row 0 starts with -1000, -500, 0, 500, 1000. */
const DEM_POINTS = [-1000, -500, 0, 500, 1000];
const dem = (x: number, y: number) => (y === 0 && x < 5 ? DEM_POINTS[x]! : ((x * 7 + y * 13) % 2001) - 1000);
/** Float heights 150..3850 over the image (hills across x and y), NaN in the bottom-right corner. */
const floatDem = (x: number, y: number) => (x >= W - 4 && y >= H - 4 ? NaN : 2000 + 1200 * Math.sin(x / 40) + 650 * Math.cos(y / 25));

/** The least and greatest finite values of each band at the pyramid's smallest level (every other pixel here). */
function smallestLevelRange(channels: number, f: (x: number, y: number, c: number) => number): { min: number[]; max: number[] } {
  const min = new Array<number>(channels).fill(Infinity);
  const max = new Array<number>(channels).fill(-Infinity);
  for (let y = 0; y < H; y += 2) {
    for (let x = 0; x < W; x += 2) {
      for (let c = 0; c < channels; c++) {
        const v = Math.fround(f(x, y, c));
        if (!Number.isFinite(v)) continue;
        min[c] = Math.min(min[c]!, v);
        max[c] = Math.max(max[c]!, v);
      }
    }
  }
  return { min, max };
}

// Lab -> sRGB in plain doubles, written from the CIE definitions (for the ±1 comparison).
function labReference(L: number, a: number, b: number): number[] {
  const fy = (L + 16) / 116;
  const inverse = (t: number) => (t > 6 / 29 ? t ** 3 : (t - 16 / 116) / 7.787);
  const Y = L < 8 ? L / 903.3 : fy ** 3;
  const X = 0.95047 * inverse(fy + a / 500);
  const Z = 1.088827 * inverse(fy - b / 200);
  const m = [3.240479, -1.53715, -0.498535, -0.969256, 1.875992, 0.041556, 0.055648, -0.204043, 1.057311];
  return [0, 1, 2].map((c) => {
    const v = Math.max(0, m[c * 3]! * X + m[c * 3 + 1]! * Y + m[c * 3 + 2]! * Z);
    const g = v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055;
    return Math.min(255, Math.trunc(g * 255));
  });
}

before(async () => {
  dir = tempDir();
  const tiled = { tile: 256, compression: 'deflate' } as const;
  // Float with SMin/SMax -10..20 (deflate, floating-point predictor); row 0 starts with NaN,
  // +Inf, -Inf, far above and far below.
  const specials = [NaN, Infinity, -Infinity, 1e6, -1e6];
  write(
    'float-minmax.tif',
    { ...tiled, predictor: 3, channels: 1, bits: 32, kind: 'float', smin: [-10], smax: [20] },
    image(1, (x, y) => (y === 0 && x < 5 ? specials[x]! : mid(ramp(x, y), -10, 20))),
  );
  write(
    'float-minmax-be.tif',
    { channels: 1, bits: 32, kind: 'float', smin: [-10], smax: [20], bigEndian: true },
    image(1, (x, y) => mid(ramp(x, y), -10, 20)),
  );
  write(
    'float.tif',
    { channels: 1, bits: 32, kind: 'float' },
    image(1, (x, y) => mid(ramp(x, y), 0, 1)),
  );
  write(
    'float-flat.tif',
    { channels: 1, bits: 32, kind: 'float', smin: [5], smax: [5] },
    image(1, (x) => [4, 5, 5.001, 6][x % 4]!),
  );
  write(
    'float-rgb.tif',
    { ...tiled, channels: 3, bits: 32, kind: 'float', smin: [0, -1, 100], smax: [1, 1, 200] },
    image(3, (x, y, c) => mid((x + 50 * c) % 255, [0, -1, 100][c]!, [1, 1, 200][c]!)),
  );
  write(
    'float-rgb-planes.tif',
    { ...tiled, planar: 2, channels: 3, bits: 32, kind: 'float', smin: [0, -1, 100], smax: [1, 1, 200] },
    image(3, (x, y, c) => mid((x + 50 * c) % 255, [0, -1, 100][c]!, [1, 1, 200][c]!)),
  );
  write(
    'rgb8-planes.tif',
    { ...tiled, planar: 2, channels: 3, bits: 8 },
    image(3, (x, y, c) => (x + y * c) % 256),
  );
  write(
    'int16.tif',
    { ...tiled, predictor: 2, channels: 1, bits: 16, kind: 'int' },
    image(1, (x, y) => (x - 150) * 200 + y),
  );
  write(
    'int16-be.tif',
    { channels: 1, bits: 16, kind: 'int', bigEndian: true },
    image(1, (x, y) => (x - 150) * 200 + y),
  );
  write(
    'int8.tif',
    { channels: 1, bits: 8, kind: 'int' },
    image(1, (x) => Math.round((x - 150) * 0.8)),
  );
  write(
    'uint32.tif',
    { ...tiled, predictor: 2, channels: 1, bits: 32 },
    image(1, (x, y) => x * 14_000_000 + y),
  );
  write(
    'int32.tif',
    { channels: 1, bits: 32, kind: 'int' },
    image(1, (x, y) => (x - 150) * 14_000_000 + y),
  );
  // A float elevation model of heights 150..3850 m (NaN for no data in a corner), without a
  // range, and with SMin/SMax 0..9000 (a range far wider than the data, as GIS tools write).
  const floatDemSamples = image(1, floatDem);
  write('float-dem.tif', { ...tiled, predictor: 3, channels: 1, bits: 32, kind: 'float' }, floatDemSamples);
  write('float-dem-range.tif', { ...tiled, channels: 1, bits: 32, kind: 'float', smin: [0], smax: [9000] }, floatDemSamples);
  // An elevation model of -1000..1000 without a range, with SMin/SMax -1000/1000 as doubles, as
  // SSHORT (libtiff's way) and as SHORT (the bits of -1000).
  const demSamples = image(1, dem);
  write('dem.tif', { ...tiled, predictor: 2, channels: 1, bits: 16, kind: 'int' }, demSamples);
  write('dem-range.tif', { ...tiled, channels: 1, bits: 16, kind: 'int', smin: [-1000], smax: [1000] }, demSamples);
  write('dem-sshort.tif', { ...tiled, channels: 1, bits: 16, kind: 'int', smin: [-1000], smax: [1000], rangeType: 8, bigEndian: true }, demSamples);
  write('dem-short.tif', { ...tiled, channels: 1, bits: 16, kind: 'int', smin: [-1000], smax: [1000], rangeType: 3 }, demSamples);
  write('dem-depth.tif', { ...tiled, channels: 1, bits: 16, kind: 'int', smin: [-1000], smax: [0], rangeType: 8 }, demSamples);
  write(
    'band5.tif',
    { ...tiled, channels: 5, bits: 8, photometric: 1 },
    image(5, (x, y, c) => (x + y + 40 * c) % 256),
  );
  write(
    'band5-16.tif',
    { ...tiled, channels: 5, bits: 16, photometric: 1 },
    image(5, (x, y, c) => x * 100 + y + 1000 * c),
  );
  write(
    'grey-alpha.tif',
    { channels: 2, bits: 8, photometric: 1, extraSamples: [2] },
    image(2, (x, y, c) => (c === 0 ? ramp(x, y) : 77)),
  );
  const checker = (x: number, y: number) => ((x >> 3) + (y >> 3)) & 1;
  write('bilevel.tif', { channels: 1, bits: 1, photometric: 1 }, image(1, checker));
  write('bilevel-white.tif', { channels: 1, bits: 1, photometric: 0 }, image(1, checker));
  // CIELAB: L over x, a over y, b fixed, in the TIFF encodings (8-bit L/2.55 + signed bytes; 16-bit L/655.35 + signed 1/256).
  const labL = (x: number) => Math.floor((x * 255) / (W - 1));
  const labA = (y: number) => Math.round(y * 1.2) - 120;
  write(
    'lab8.tif',
    { channels: 3, bits: 8, photometric: 8 },
    image(3, (x, y, c) => [labL(x), labA(y) & 0xff, 40][c]!),
  );
  write(
    'lab16.tif',
    { ...tiled, channels: 3, bits: 16, photometric: 8 },
    image(3, (x, y, c) => [labL(x) * 257, (labA(y) * 256) & 0xffff, 40 * 256][c]!),
  );
  // The same colours through libtiff's own LZW and PackBits.
  if (which('tiffcp')) {
    for (const [name, compression] of [
      ['lzw', 'lzw'],
      ['lzw2', 'lzw:2'],
      ['packbits', 'packbits'],
    ]) {
      execFileSync('tiffcp', ['-c', compression, path.join(dir, 'int16-be.tif'), path.join(dir, `int16-${name}.tif`)]);
      execFileSync('tiffcp', ['-c', compression, path.join(dir, 'band5-16.tif'), path.join(dir, `band5-16-${name}.tif`)]);
    }
  }
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/', MAX_IMAGE_CACHE_SIZE: '0' });
  const engine = new Engine({ paths: { prefix: config.filesystemPrefix, suffix: '' }, cacheBytes: 0 });
  const router = createRouter({ config, engine, log: silentLog });
  get = (query) => router(plainRequest(query));
});

describe('samples as stored', () => {
  const cases: Array<[string, string, (x: number, y: number) => number]> = [
    ['int16.tif', 'Int16Array', (x, y) => (x - 150) * 200 + y],
    ['int16-be.tif', 'Int16Array', (x, y) => (x - 150) * 200 + y],
    ['int8.tif', 'Int8Array', (x) => Math.round((x - 150) * 0.8)],
    ['uint32.tif', 'Uint32Array', (x, y) => x * 14_000_000 + y],
    ['int32.tif', 'Int32Array', (x, y) => (x - 150) * 14_000_000 + y],
    ['float-minmax-be.tif', 'Float32Array', (x, y) => Math.fround(mid(ramp(x, y), -10, 20))],
  ];
  for (const [file, type, f] of cases) {
    it(`${file}: ${type}, a rectangle across two tiles`, async () => {
      const source = await TiffSource.open(path.join(dir, file), file);
      try {
        const rect = { left: 250, top: 3, width: 20, height: 7 };
        const samples = await source.samples(0, rect);
        assert.equal(samples.data.constructor.name, type);
        assert.equal(samples.channels, 1);
        for (let y = 0; y < rect.height; y++) {
          for (let x = 0; x < rect.width; x++) assert.equal(samples.data[y * rect.width + x], f(rect.left + x, rect.top + y), `${x},${y}`);
        }
      } finally {
        await source.close();
      }
    });
  }

  it(
    "libvips' float TIFFs: deflate with the horizontal (its default) and floating-point predictors",
    { skip: which('vips') ? false : 'vips not installed' },
    async () => {
      for (const predictor of ['horizontal', 'float']) {
        const file = path.join(dir, `vips-float-${predictor}.tif`);
        execFileSync('vips', [
          'tiffsave',
          path.join(dir, 'float-minmax-be.tif'),
          file,
          '--tile',
          '--pyramid',
          '--compression',
          'deflate',
          '--predictor',
          predictor,
        ]);
        const source = await TiffSource.open(file, 'x');
        try {
          // vips writes SampleFormat in IFD 0 only: the smaller levels are float all the same.
          assert.ok(source.description.levels.length > 1);
          assert.equal((await source.samples(1, { left: 0, top: 0, width: 10, height: 10 })).data.constructor.name, 'Float32Array');
          const samples = await source.samples(0, { left: 0, top: 0, width: W, height: H });
          assert.equal(samples.data.constructor.name, 'Float32Array');
          for (let i = 0; i < W * H; i += 13) assert.equal(samples.data[i], Math.fround(mid(ramp(i % W, Math.floor(i / W)), -10, 20)), `${predictor} ${i}`);
        } finally {
          await source.close();
        }
      }
    },
  );

  for (const name of ['lzw', 'lzw2', 'packbits']) {
    it(`libtiff's ${name}: 16-bit signed and 5-band 16-bit read back exactly`, { skip: which('tiffcp') ? false : 'tiffcp not installed' }, async () => {
      const signed = await TiffSource.open(path.join(dir, `int16-${name}.tif`), 'x');
      const bands = await TiffSource.open(path.join(dir, `band5-16-${name}.tif`), 'x');
      try {
        const a = await signed.samples(0, { left: 0, top: 0, width: W, height: H });
        for (let i = 0; i < W * H; i += 97) assert.equal(a.data[i], ((i % W) - 150) * 200 + Math.floor(i / W));
        const b = await bands.samples(1, { left: 0, top: 0, width: 150, height: 100 });
        assert.equal(b.data.constructor.name, 'Uint16Array');
        for (let i = 0; i < 150 * 100 * 5; i += 31) {
          const p = Math.floor(i / 5);
          assert.equal(b.data[i], 2 * (p % 150) * 100 + 2 * Math.floor(p / 150) + 1000 * (i % 5));
        }
      } finally {
        await signed.close();
        await bands.close();
      }
    });
  }
});

describe('float data', () => {
  it('SMin/SMax -10..20: trunc((v-min)/(max-min) x 255) in tiles, CVT and IIIF regions; NaN and infinities 0', async () => {
    const expected = (x: number, y: number) => (y === 0 && x < 5 ? [[0, 0, 0, 255, 0][x]!] : [ramp(x, y)]);
    assertPixels(await pixels('FIF=float-minmax.tif&PTL=1,0'), 0, 0, expected, 'tile 0');
    assertPixels(await pixels('FIF=float-minmax.tif&PTL=1,1'), 256, 0, expected, 'tile 1');
    assertPixels(await pixels('FIF=float-minmax.tif&WID=300&CVT=png'), 0, 0, expected, 'CVT');
    assertPixels(await pixels('IIIF=float-minmax.tif/200,10,80,50/max/0/default.png'), 200, 10, expected, 'IIIF region across tiles');
    assertPixels(await pixels('FIF=float-minmax-be.tif&PTL=1,1'), 256, 0, (x, y) => [ramp(x, y)], 'big-endian');
  });

  it('no SMaxSampleValue: max 1.0 (iipsrv master; 1.1 leaves it 0)', async () => {
    assertPixels(await pixels('FIF=float.tif&PTL=1,0'), 0, 0, (x, y) => [ramp(x, y)], 'tile');
    assert.match((await get('FIF=float.tif&OBJ=Min-Max-sample-values')).body.toString(), /Min-Max-sample-values: 0 {2}1\r\n/);
  });

  it("CNT=st on float data stretches each band's own range, with or without SMin/SMax (no data stays black)", async () => {
    const { min, max } = smallestLevelRange(1, floatDem);
    assert.ok(min[0]! < 900 && max[0]! > 3000, `${min} ${max}`);
    const expected = (x: number, y: number) => [norm(floatDem(x, y), min[0]!, max[0]!)];
    for (const file of ['float-dem.tif', 'float-dem-range.tif']) {
      for (const [query, left] of [
        [`FIF=${file}&CNT=st&PTL=1,0`, 0],
        [`FIF=${file}&CNT=st&PTL=1,1`, 256],
        [`FIF=${file}&CNT=st&WID=300&CVT=png`, 0],
      ] as const) {
        const p = await pixels(query);
        assertPixels(p, left, 0, expected, query);
        if (left > 0) continue;
        // Over most of the image, a stretch spans the whole output range (not black, not white).
        const values = [...p.data].filter((_, i) => i < p.width * (p.height - 4));
        assert.ok(Math.min(...values) <= 5 && Math.max(...values) >= 250, `${query}: ${Math.min(...values)}..${Math.max(...values)}`);
      }
    }
    // Three bands of different ranges: each band stretched over its own.
    const rgb = (x: number, y: number, c: number) => mid((x + 50 * c) % 255, [0, -1, 100][c]!, [1, 1, 200][c]!);
    const range = smallestLevelRange(3, rgb);
    assertPixels(
      await pixels('FIF=float-rgb.tif&CNT=st&PTL=1,0'),
      0,
      0,
      (x, y) => [0, 1, 2].map((c) => norm(rgb(x, y, c), range.min[c]!, range.max[c]!)),
      'float RGB',
    );
  });

  it('DeepZoom and Zoomify tiles are the JTL tile: the same bytes', async () => {
    const jtl = await get('FIF=float-minmax.tif&JTL=1,1');
    assert.equal(jtl.status, 200);
    // 300 px: DeepZoom level 9 and Zoomify tier 1 are the full resolution.
    for (const query of ['DeepZoom=float-minmax.tif_files/9/1_0.jpg', 'Zoomify=float-minmax.tif/TileGroup0/1-1-0.jpg']) {
      const response = await get(query);
      assert.equal(response.status, 200, `${query}: ${response.body.toString().slice(0, 200)}`);
      assert.ok(response.body.equals(jtl.body), query);
    }
  });

  it('SMin = SMax: 1/(max-min) taken as 1e30, so at or below the value 0, above it 255', async () => {
    assertPixels(await pixels('FIF=float-flat.tif&PTL=1,0'), 0, 0, (x) => [[0, 0, 255, 255][x % 4]!], 'tile');
  });

  it('three bands, each through its own SMin/SMax; stored as separate planes the same', async () => {
    assertPixels(await pixels('FIF=float-rgb.tif&PTL=1,1'), 256, 0, (x) => [0, 1, 2].map((c) => (x + 50 * c) % 255), 'tile');
    const planes = await pixels('FIF=float-rgb-planes.tif&PTL=1,1');
    assertPixels(planes, 256, 0, (x) => [0, 1, 2].map((c) => (x + 50 * c) % 255), 'separate planes');
  });

  it('MINMAX overrides the file, CMP=jet maps the normalised value', async () => {
    // MINMAX=1:-10,50: v -> (v + 10) / 60.
    const p = await pixels('FIF=float-minmax.tif&MINMAX=1:-10,50&PTL=1,1');
    assertPixels(p, 256, 0, (x, y) => [norm(Math.fround(mid(ramp(x, y), -10, 20)), -10, 50)], 'MINMAX');
    const jet = await pixels('FIF=float.tif&CMP=jet&PTL=1,0');
    // v = 0.5/255 < 1/8: blue = 4v + 0.5.
    assert.deepEqual([...jet.data.subarray(0, 3)], [0, 0, Math.trunc(f((4 * f(0.5 / 255) + 0.5) * 255))]);
  });
});

describe('integer data wider than 8 bits, and signed data', () => {
  it('signed 16-bit: by -32768..32767 without SMin/SMax (iipsrv 1.1 reads the bits as unsigned: -30000 -> 35536 -> 138)', async () => {
    const expected = (x: number, y: number) => [norm((x - 150) * 200 + y, -32768, 32767)];
    assertPixels(await pixels('FIF=int16.tif&PTL=1,0'), 0, 0, expected, 'tile');
    assertPixels(await pixels('FIF=int16-be.tif&WID=300&CVT=png'), 0, 0, expected, 'CVT, big-endian');
    // -30000: 2768 / 65535 x 255 = 10.77.
    assert.deepEqual([...(await pixels('FIF=int16.tif&PTL=1,0')).data.subarray(0, 1)], [10]);
  });

  it('signed 8-bit: by -128..127, JTL without processing too', async () => {
    assertPixels(await pixels('FIF=int8.tif&PTL=1,1'), 256, 0, (x) => [norm(Math.round((x - 150) * 0.8), -128, 127)], 'tile');
    assertPixels(await pixels('FIF=int8.tif&WID=300&CVT=png'), 0, 0, (x) => [norm(Math.round((x - 150) * 0.8), -128, 127)], 'CVT');
    const jtl = await pixels('FIF=int8.tif&QLT=100&JTL=1,0');
    // x = 0: -120 -> 8/255 x 255 = 8, where 1.1 sends the byte 136.
    assert.ok(Math.abs(jtl.data[0]! - 8) <= 2, `JTL pixel 0 is ${jtl.data[0]}`);
  });

  it('32-bit unsigned by 0..4294967295, signed by -2^31..2^31-1', async () => {
    assertPixels(await pixels('FIF=uint32.tif&PTL=1,1'), 256, 0, (x, y) => [norm(x * 14_000_000 + y, 0, 4294967295)], 'uint32');
    assertPixels(await pixels('FIF=int32.tif&PTL=1,0'), 0, 0, (x, y) => [norm((x - 150) * 14_000_000 + y, -(2 ** 31), 2 ** 31 - 1)], 'int32');
    const obj = (await get('FIF=uint32.tif&OBJ=Bits-per-channel&OBJ=Min-Max-sample-values')).body.toString();
    assert.match(obj, /Bits-per-channel:32\r\nMin-Max-sample-values: 0 {2}4\.2949673e\+09\r\n/);
  });

  it('OBJ=Min-Max-sample-values of signed data: the type range, or SMin/SMax read as signed in any field type', async () => {
    const minMax = async (file: string) => (await get(`FIF=${file}&OBJ=Min-Max-sample-values`)).body.toString().replace(/^\r\n/, '');
    assert.equal(await minMax('int8.tif'), 'Min-Max-sample-values: -128  127\r\n');
    assert.equal(await minMax('dem.tif'), 'Min-Max-sample-values: -32768  32767\r\n');
    assert.equal(await minMax('int32.tif'), 'Min-Max-sample-values: -2.14748365e+09  2.14748365e+09\r\n');
    for (const file of ['dem-range.tif', 'dem-sshort.tif', 'dem-short.tif']) assert.equal(await minMax(file), 'Min-Max-sample-values: -1000  1000\r\n', file);
    // A range ending at 0 is a range (the unsigned rule "max 0 means absent" does not apply).
    assert.equal(await minMax('dem-depth.tif'), 'Min-Max-sample-values: -1000  0\r\n');
  });

  it('signed 16-bit -1000..1000: exact values in a JTL tile (PTL) and a CVT region, without and with SMin/SMax', async () => {
    // trunc((v - min) / (max - min) x 255) in single precision, for -1000, -500, 0, 500, 1000.
    const cases: Array<[string, number, number, number[]]> = [
      ['dem.tif', -32768, 32767, [123, 125, 127, 129, 131]],
      ['dem-range.tif', -1000, 1000, [0, 63, 127, 191, 255]],
      ['dem-sshort.tif', -1000, 1000, [0, 63, 127, 191, 255]],
      ['dem-short.tif', -1000, 1000, [0, 63, 127, 191, 255]],
      ['dem-depth.tif', -1000, 0, [0, 127, 255, 255, 255]],
    ];
    for (const [file, min, max, points] of cases) {
      assert.deepEqual(
        DEM_POINTS.map((v) => norm(v, min, max)),
        points,
        `${file}: the formula`,
      );
      const tile = await pixels(`FIF=${file}&PTL=1,0`);
      assert.deepEqual([...tile.data.subarray(0, 5)], points, `${file}: PTL`);
      assertPixels(tile, 0, 0, (x, y) => [norm(dem(x, y), min, max)], `${file}: PTL`);
      const region = await pixels(`FIF=${file}&RGN=0,0,0.5,0.5&WID=150&CVT=png`);
      assert.deepEqual([region.width, region.height], [150, 100]);
      assert.deepEqual([...region.data.subarray(0, 5)], points, `${file}: CVT`);
      assertPixels(region, 0, 0, (x, y) => [norm(dem(x, y), min, max)], `${file}: CVT`);
    }
  });

  it('signed data through the table path (CNT, GAM, CMP, CNV) gives the per-pixel arithmetic (CTW)', async () => {
    const p = await pixels('FIF=int16.tif&CNT=1.3&GAM=0.6&PTL=1,0');
    assertPixels(
      p,
      0,
      0,
      (x, y) => {
        const v = f(f(f((x - 150) * 200 + y) - -32768) * f(1 / 65535));
        const out = f(f(f(v ** f(0.6)) * 255) * f(1.3));
        return [out >= 255 ? 255 : Math.trunc(out)];
      },
      'CNT+GAM',
    );
    // A one-band twist of weight 1 is the identity but takes the per-pixel path.
    for (const file of ['dem-range.tif', 'int8.tif']) {
      for (const query of ['INV&PTL=1,0', 'CMP=jet&PTL=1,0', 'CNV=sharpen&PTL=1,0']) {
        const byTable = await pixels(`FIF=${file}&${query}`);
        const perPixel = await pixels(`FIF=${file}&CTW=[1]&${query}`);
        assert.ok(byTable.data.equals(perPixel.data), `${file} ${query}`);
      }
    }
  });

  it('CNT=st on signed data: the histogram by the signed range, stretched from -32768 on', async () => {
    // -1000..1000 fall in bins 123..131 of -32768..32767, so the stretch is -32768 + (n << 8).
    const [low, high] = [norm(-1000, -32768, 32767), norm(1000, -32768, 32767)];
    assert.deepEqual([low, high], [123, 131]);
    const [min, max] = [-32768 + low * 256, -32768 + high * 256];
    const p = await pixels('FIF=dem.tif&CNT=st&PTL=1,0');
    assert.deepEqual([...p.data.subarray(0, 5)], [34, 97, 159, 221, 255]);
    assertPixels(p, 0, 0, (x, y) => [norm(dem(x, y), min, max)], 'CNT=st');
  });

  it('SPECTRA and PFL print signed values as signed', async () => {
    const profile = JSON.parse((await get('FIF=dem.tif&PFL=1:0,0-5,0')).body.toString()) as { profile: number[] };
    assert.deepEqual(profile.profile.slice(0, 5), DEM_POINTS);
    const spectra = (await get('FIF=dem.tif&SPECTRA=1,0,0,0')).body.toString();
    assert.match(spectra, /<reflectance>-0\.015259<\/reflectance>/);
  });
});

describe('bands', () => {
  it('5 bands of 8 bits: the first three as RGB, in tiles and regions', async () => {
    const expected = (x: number, y: number) => [0, 1, 2].map((c) => (x + y + 40 * c) % 256);
    assertPixels(await pixels('FIF=band5.tif&PTL=1,1'), 256, 0, expected, 'tile');
    assertPixels(await pixels('IIIF=band5.tif/240,0,40,30/max/0/default.png'), 240, 0, expected, 'IIIF');
  });

  it('5 bands of 16 bits: the first three, normalised', async () => {
    assertPixels(await pixels('FIF=band5-16.tif&PTL=1,0'), 0, 0, (x, y) => [0, 1, 2].map((c) => norm(x * 100 + y + 1000 * c, 0, 65535)), 'tile');
  });

  it('grey + alpha: the grey band alone, alpha dropped', async () => {
    const p = await pixels('FIF=grey-alpha.tif&QLT=100&JTL=1,0');
    assert.equal(p.channels, 1);
    for (let i = 0; i < p.width * p.height; i += 7) {
      const want = ramp(i % p.width, Math.floor(i / p.width));
      assert.ok(Math.abs(p.data[i]! - want) <= 2, `pixel ${i}: ${p.data[i]} for ${want}`);
    }
  });

  it('OBJ as iipsrv 1.1: a fixed Colorspace line per colour space, Min-Max per band', async () => {
    const obj = async (file: string) => (await get(`FIF=${file}&OBJ=Colorspace,0-1,0&OBJ=Min-Max-sample-values`)).body.toString().replace(/^\r\n/, '');
    assert.equal(await obj('band5.tif'), 'Colorspace,0-1,0:0 0 1 1 0\r\nMin-Max-sample-values: 0  255  0  255  0  255  0  255  0  255\r\n');
    assert.equal(await obj('grey-alpha.tif'), 'Colorspace,0-1,0:0 0 1 1 0\r\nMin-Max-sample-values: 0  255  0  255\r\n');
    assert.equal(await obj('float-rgb.tif'), 'Colorspace,0-1,0:0 0 3 3 0 1 2\r\nMin-Max-sample-values: 0  1  -1  1  100  200\r\n');
    assert.equal(await obj('lab8.tif'), 'Colorspace,0-1,0:1 0 4 3 0 1 2\r\nMin-Max-sample-values: 0  255  0  255  0  255\r\n');
  });
});

describe('separate planes (libvips does not read them tiled)', () => {
  it('8-bit RGB: tiles and regions', async () => {
    const expected = (x: number, y: number) => [0, 1, 2].map((c) => (x + y * c) % 256);
    assertPixels(await pixels('FIF=rgb8-planes.tif&PTL=1,1'), 256, 0, expected, 'tile');
    assertPixels(await pixels('IIIF=rgb8-planes.tif/200,10,80,50/max/0/default.png'), 200, 10, expected, 'IIIF');
    assert.equal((await get('FIF=rgb8-planes.tif&JTL=1,0')).status, 200);
  });
});

describe('1-bit data', () => {
  const checker = (x: number, y: number) => ((x >> 3) + (y >> 3)) & 1;
  it('MinIsBlack: 1 is white (255)', async () => {
    assertPixels(await pixels('FIF=bilevel.tif&PTL=1,1'), 256, 0, (x, y) => [checker(x, y) ? 255 : 0], 'tile');
  });
  it('MinIsWhite: inverted, 1 is black', async () => {
    assertPixels(await pixels('FIF=bilevel-white.tif&PTL=1,0'), 0, 0, (x, y) => [checker(x, y) ? 0 : 255], 'tile');
    assertPixels(await pixels('FIF=bilevel-white.tif&INV&PTL=1,0'), 0, 0, (x, y) => [checker(x, y) ? 255 : 0], 'INV');
  });
  it('CCITT G4 (decoded by libvips): the same', { skip: which('tiffcp') ? false : 'tiffcp not installed' }, async () => {
    for (const [file, one] of [
      ['bilevel', 255],
      ['bilevel-white', 0],
    ] as const) {
      execFileSync('tiffcp', ['-c', 'g4', path.join(dir, `${file}.tif`), path.join(dir, `${file}-g4.tif`)]);
      assertPixels(await pixels(`FIF=${file}-g4.tif&PTL=1,0`), 0, 0, (x, y) => [checker(x, y) ? one : 255 - one], file);
      assertPixels(await pixels(`FIF=${file}-g4.tif&CNT=1.5&PTL=1,1`), 256, 0, (x, y) => [checker(x, y) ? one : 255 - one], `${file} CNT`);
    }
  });
});

describe('CIELAB', () => {
  const labL = (x: number) => Math.floor((x * 255) / (W - 1));
  const labA = (y: number) => Math.round(y * 1.2) - 120;
  const close = (p: Pixels, left: number, top: number, expected: (x: number, y: number) => number[], what: string) => {
    for (let y = 0; y < p.height; y += 3) {
      for (let x = 0; x < p.width; x += 3) {
        const want = expected(left + x, top + y);
        for (let c = 0; c < 3; c++) {
          const got = p.data[(y * p.width + x) * 3 + c]!;
          if (Math.abs(got - want[c]!) > 1)
            assert.fail(`${what}: pixel ${left + x},${top + y} is ${[...p.data.subarray((y * p.width + x) * 3, (y * p.width + x) * 3 + 3)]}, expected ${want}`);
        }
      }
    }
  };

  it('8-bit: iipsrv 1.1 formula (L/2.55, signed a b, D65) within 1, tiles and regions', async () => {
    const expected = (x: number, y: number) => labReference(labL(x) / 2.55, labA(y), 40);
    close(await pixels('FIF=lab8.tif&PTL=1,0'), 0, 0, expected, 'tile');
    close(await pixels('IIIF=lab8.tif/250,20,40,40/max/0/default.png'), 250, 20, expected, 'IIIF');
    // Chosen points: L* 100 at a* 0 (y 100) is near white; L* 0 black.
    const tile = await pixels('FIF=lab8.tif&PTL=1,1');
    const at = (x: number, y: number) => [...tile.data.subarray((y * tile.width + x - 256) * 3, (y * tile.width + x - 256) * 3 + 3)];
    assert.deepEqual(at(299, 100), labReference(100, 0, 40));
    assert.ok(at(299, 100)[0]! >= 254 && at(299, 100)[1]! >= 250);
  });

  it('16-bit: L/655.35, a b in 1/256 (iipsrv master; 1.1 reads it as 8-bit)', async () => {
    close(await pixels('FIF=lab16.tif&PTL=1,1'), 256, 0, (x, y) => labReference((labL(x) * 257) / 655.35, labA(y), 40), 'tile');
  });

  it('an RGB image through 8 and 16-bit CIELAB TIFFs renders close to the original', async () => {
    const rgb = Buffer.alloc(W * H * 3);
    for (let i = 0; i < W * H; i++) rgb.set([(i % W) % 256, Math.floor(i / W), (i * 7) % 256], i * 3);
    const { data } = await sharp(rgb, { raw: { width: W, height: H, channels: 3 } })
      .toColourspace('lab')
      .raw({ depth: 'float' })
      .toBuffer({ resolveWithObject: true });
    const lab = new Float32Array(data.buffer, data.byteOffset, data.length / 4);
    const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.round(v)));
    const lab8 = Array.from(lab, (v, i) => (i % 3 === 0 ? clamp(v * 2.55, 0, 255) : clamp(v, -128, 127) & 0xff));
    const lab16 = Array.from(lab, (v, i) => (i % 3 === 0 ? clamp(v * 655.35, 0, 65535) : clamp(v * 256, -32768, 32767) & 0xffff));
    write('photo-lab8.tif', { channels: 3, bits: 8, photometric: 8 }, lab8);
    write('photo-lab16.tif', { compression: 'deflate', channels: 3, bits: 16, photometric: 8 }, lab16);
    for (const [file, tolerance] of [
      ['photo-lab8.tif', 2],
      ['photo-lab16.tif', 1],
    ] as const) {
      const p = await pixels(`FIF=${file}&WID=300&CVT=png`);
      let sum = 0;
      for (let i = 0; i < p.data.length; i++) sum += Math.abs(p.data[i]! - rgb[i]!);
      assert.ok(sum / p.data.length < tolerance, `${file}: mean difference ${(sum / p.data.length).toFixed(2)}`);
    }
  });
});

describe('TIL', () => {
  it('float and 16-bit tiles as stored samples (little-endian, edge tile cropped), no processing', async () => {
    const stream = async (query: string) => {
      const response = await get(query);
      assert.equal(response.status, 200, response.body.toString().slice(0, 200));
      const body = response.body;
      const colon = body.indexOf(':');
      return { head: body.subarray(0, colon).toString('latin1'), codec: body.readUInt32LE(colon + 1), data: body.subarray(colon + 9, body.length - 2) };
    };
    const float = await stream('FIF=float-minmax-be.tif&CNT=3&TIL=1,1');
    assert.equal(float.head, `Tile,1,1,0/${44 * 200 * 4 + 8}`);
    assert.equal(float.codec, 0);
    for (let i = 0; i < 44 * 200; i += 11) assert.equal(float.data.readFloatLE(i * 4), Math.fround(mid(ramp(256 + (i % 44), Math.floor(i / 44)), -10, 20)));
    const signed = await stream('FIF=int16.tif&TIL=0,0');
    assert.equal(signed.codec, 3);
    assert.equal(signed.data.length, 150 * 100 * 2);
    // Level 0 (150 x 100) is every other pixel of the full image.
    assert.equal(signed.data.readInt16LE((3 * 150 + 7) * 2), (14 - 150) * 200 + 6);
  });
});

describe('what cannot be decoded', () => {
  it('a damaged deflate tile: a 404 naming the tile, the server goes on', async () => {
    const file = write(
      'damaged.tif',
      { compression: 'deflate', channels: 1, bits: 16, kind: 'int' },
      image(1, (x) => x),
    );
    const bytes = readFileSync(file);
    // The first tile's data starts right after the 8-byte header: break its zlib header.
    bytes.fill(0xff, 8, 40);
    writeFileSync(file, bytes);
    const response = await get('FIF=damaged.tif&JTL=1,0');
    assert.equal(response.status, 404, response.body.toString());
    assert.match(response.body.toString(), /tile 0,0 of level 0/);
    assert.equal((await get('FIF=int16.tif&JTL=1,0')).status, 200);
  });

  it('float in a compression only libvips reads: a 501 naming it', async () => {
    // tiffcp's JPEG cannot hold float: take zstd, which sharp's libtiff lacks and we do not decode either.
    if (!which('tiffcp')) return;
    try {
      execFileSync('tiffcp', ['-c', 'zstd', path.join(dir, 'float.tif'), path.join(dir, 'float-zstd.tif')], { stdio: 'ignore' });
    } catch {
      return;
    }
    const response = await get('FIF=float-zstd.tif&JTL=1,0');
    assert.equal(response.status, 501);
    assert.match(response.body.toString(), /zstd/);
  });
});
