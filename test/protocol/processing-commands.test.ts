/**
 * The histogram commands (CNT=st, CNT=eq, COL=binary), hill shading (SHD) and convolution (CNV)
 * on generated images with known values, read back from lossless PNG tiles (PTL) and regions, and
 * requests combining several commands whose result shows the order they ran in.
 */
import assert from 'node:assert/strict';
import { utimesSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp, { type Sharp } from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { equalisationTable, otsuThreshold, stretchRange } from '../../src/engine/pixels/histogram.ts';
import { NO_PROCESSING } from '../../src/engine/pixels/processing.ts';
import { silentLog } from '../../src/log.ts';
import { createRouter } from '../../src/router.ts';
import { tempDir } from '../helpers/daemon.ts';
import { decodePixels, type Pixels } from '../helpers/images.ts';
import { plainRequest } from '../helpers/requests.ts';

let get: (query: string) => ReturnType<ReturnType<typeof createRouter>>;
/** The same images with IIIF_EXTENSIONS=1. */
let getExtended: typeof get;
let imagesDirectory: string;

async function pixels(query: string): Promise<Pixels> {
  const response = await get(query);
  assert.equal(response.status, 200, `${query}: ${response.body.toString().slice(0, 200)}`);
  return decodePixels(response.body);
}

/** Row y of one band. */
function row(image: Pixels, y: number, band = 0): number[] {
  const out: number[] = [];
  for (let x = 0; x < image.width; x++) out.push(image.data[(y * image.width + x) * image.channels + band]!);
  return out;
}

/** iipsrv's normalisation (single precision) and conversion to 8 bits (truncated, clipped). */
const normalised = (v: number, min: number, max: number): number => Math.fround((v - min) * Math.fround(1 / (max - min)));
const eightBit = (x: number): number => (x <= 0 ? 0 : x >= 1 ? 255 : Math.trunc(x * 255));

const W = 200;
const H = 100;
const tiled = { tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'deflate' } as const;

function greyImage(width: number, height: number, value: (x: number, y: number) => number): Sharp {
  const data = Buffer.alloc(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = value(x, y);
  return sharp(data, { raw: { width, height, channels: 1 } }).toColourspace('b-w');
}

function rgbImage(width: number, height: number, value: (x: number, y: number) => [number, number, number]): Sharp {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(value(x, y), (y * width + x) * 3);
  return sharp(data, { raw: { width, height, channels: 3 } });
}

const ramp8 = (x: number): number => 50 + Math.floor((100 * x) / (W - 1));
const ramp16 = (x: number): number => 10000 + Math.round((20000 * x) / (W - 1));
const QUADRANTS = [10, 20, 30, 200];
const bimodal = (x: number, y: number): number => (x < W / 2 ? 30 : 190) + ((x + y) % 21);
/** Normal maps: facing the viewer, tilted, another tilt, and no data. */
const NORMALS: Array<[number, number, number]> = [
  [128, 128, 255],
  [255, 128, 128],
  [64, 192, 160],
  [0, 0, 0],
];
const NORMALS_WIDTH = 301;
const NORMALS_HEIGHT = 203;
const normalAt = (x: number, y: number): [number, number, number] =>
  x === 0 && y === 0 ? NORMALS[3]! : NORMALS[Math.min(2, Math.floor((3 * x) / NORMALS_WIDTH))]!;

before(async () => {
  const dir = tempDir();
  imagesDirectory = dir;
  const file = (name: string) => path.join(dir, name);
  await greyImage(W, H, ramp8).tiff(tiled).toFile(file('ramp8.tif'));
  const wide = new Uint16Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) wide[y * W + x] = ramp16(x);
  await sharp(wide, { raw: { width: W, height: H, channels: 1 } })
    .toColourspace('grey16')
    .tiff(tiled)
    .toFile(file('ramp16.tif'));
  await sharp(new Uint16Array(W * H).fill(1000), { raw: { width: W, height: H, channels: 1 } })
    .toColourspace('grey16')
    .tiff(tiled)
    .toFile(file('const16.tif'));
  // 512 x 512 in four quadrants: the smallest level (256 x 256, one tile) holds a quarter of each.
  await greyImage(512, 512, (x, y) => QUADRANTS[(y < 256 ? 0 : 2) + (x < 256 ? 0 : 1)]!)
    .tiff(tiled)
    .toFile(file('quads.tif'));
  await rgbImage(W, H, (x, y) => {
    const v = bimodal(x, y);
    return [v, v, v];
  })
    .tiff(tiled)
    .toFile(file('bimodal.tif'));
  await rgbImage(NORMALS_WIDTH, NORMALS_HEIGHT, normalAt)
    .tiff({ ...tiled, tileWidth: 128, tileHeight: 128 })
    .toFile(file('normals.tif'));
  await greyImage(W, 50, (x) => (x < 100 ? 0 : 40))
    .tiff(tiled)
    .toFile(file('step.tif'));
  await greyImage(W, 50, (x) => (x < 100 ? 40 : 0))
    .tiff(tiled)
    .toFile(file('stepdown.tif'));
  await greyImage(W, 50, (x) => (x < 100 ? 0 : 200))
    .tiff(tiled)
    .toFile(file('step200.tif'));
  await rgbImage(W, H, () => [10, 20, 30])
    .tiff(tiled)
    .toFile(file('rgb.tif'));
  let seed = 7;
  await rgbImage(W, H, () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return [seed % 256, (seed >> 8) % 256, (seed >> 16) % 256];
  })
    .tiff(tiled)
    .toFile(file('noise.tif'));
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/', MAX_IMAGE_CACHE_SIZE: '10' });
  const engine = new Engine({ paths: { prefix: config.filesystemPrefix, suffix: '' }, cacheBytes: config.maxImageCacheBytes });
  const router = createRouter({ config, engine, log: silentLog });
  get = (query) => router(plainRequest(query));
  const extendedConfig = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/', IIIF_EXTENSIONS: '1' });
  const extended = createRouter({ config: extendedConfig, engine, log: silentLog });
  getExtended = (query) => extended(plainRequest(query));
});

describe('the histogram algorithms', () => {
  it('stretch: first and last non-empty bins, shifted to the native depth', () => {
    const histogram = new Uint32Array(256);
    histogram[38] = 5;
    histogram[116] = 1;
    assert.deepEqual(stretchRange(histogram, 8), { min: 38, max: 116 });
    assert.deepEqual(stretchRange(histogram, 16), { min: 38 << 8, max: 116 << 8 });
  });
  it('Otsu: between two modes, at the top of the lower one (the first maximum)', () => {
    const histogram = new Uint32Array(256);
    for (let v = 30; v <= 50; v++) histogram[v] = 10;
    for (let v = 190; v <= 210; v++) histogram[v] = 10;
    assert.equal(otsuThreshold(histogram), 50);
    const skewed = new Uint32Array(256);
    skewed[20] = 100;
    skewed[100] = 100;
    skewed[101] = 300;
    assert.equal(otsuThreshold(skewed), 20);
  });
  it('equalisation: round(255 / total x (cdf - cdf[first] / pixels)) at chosen points', () => {
    const histogram = new Uint32Array(256);
    for (const v of QUADRANTS) histogram[v] = 2500;
    const table = equalisationTable(histogram, 10000);
    assert.deepEqual(
      [table[0], table[9], table[10], table[15], table[20], table[30], table[199], table[200], table[255]],
      [0, 0, 64, 64, 127, 191, 191, 255, 255],
    );
    // A 1-pixel output: the subtracted minimum is the whole first bin.
    assert.deepEqual([equalisationTable(histogram, 1)[10], equalisationTable(histogram, 1)[20]], [0, 64]);
  });
});

describe('CNT=st: the histogram range stretched to the full 8 bits', () => {
  it('8-bit ramp 50..150 -> 0..255, every pixel by the formula', async () => {
    const out = row(await pixels('FIF=ramp8.tif&CNT=st&PTL=0,0'), 3);
    assert.equal(out[0], 0);
    assert.equal(out[W - 1], 255);
    out.forEach((v, x) => assert.equal(v, eightBit(normalised(ramp8(x), 50, 150)), `x=${x}`));
  });
  it('CNT=stretch and CNT=-1 are the same; a stretch replaces MINMAX', async () => {
    const st = (await pixels('FIF=ramp8.tif&CNT=st&PTL=0,0')).data;
    assert.deepEqual((await pixels('FIF=ramp8.tif&CNT=stretch&PTL=0,0')).data, st);
    assert.deepEqual((await pixels('FIF=ramp8.tif&CNT=-1&PTL=0,0')).data, st);
    assert.deepEqual((await pixels('FIF=ramp8.tif&MINMAX=1:0,100&CNT=st&PTL=0,0')).data, st);
    // A later factor replaces the stretch, as in iipsrv (one contrast value).
    assert.deepEqual(row(await pixels('FIF=ramp8.tif&CNT=st&CNT=1&PTL=0,0'), 0).slice(0, 2), [50, 50]);
  });
  it('16-bit ramp 10000..30000: the 8-bit bins 38..116 scaled back to 9728..29696', async () => {
    const out = row(await pixels('FIF=ramp16.tif&CNT=st&PTL=0,0'), 0);
    out.forEach((v, x) => assert.equal(v, eightBit(normalised(ramp16(x), 38 << 8, 116 << 8)), `x=${x}`));
    assert.equal(out[0], 3);
    assert.equal(out[W - 1], 255);
  });
  it('a region too', async () => {
    const out = row(await pixels('FIF=ramp8.tif&CNT=st&WID=200&CVT=png'), 0);
    assert.deepEqual([out[0], out[W - 1]], [0, 255]);
  });
});

describe('CNT=eq: histogram equalisation', () => {
  it('each quadrant of the full resolution through the table of the whole image', async () => {
    // Full-resolution tiles are one quadrant each: 65536 pixels, cdf 16384 per quadrant.
    for (const [tile, expected] of [
      [0, 64],
      [1, 127],
      [2, 191],
      [3, 255],
    ] as const) {
      const image = await pixels(`FIF=quads.tif&CNT=eq&PTL=1,${tile}`);
      assert.ok(
        image.data.every((v) => v === expected),
        `tile ${tile}: expected all ${expected}`,
      );
    }
  });
  it('the smallest level comes out flat: a quarter each of 64, 127, 191, 255', async () => {
    const image = await pixels('FIF=quads.tif&CNT=eq&PTL=0,0');
    const counts = new Map<number, number>();
    for (const v of image.data) counts.set(v, (counts.get(v) ?? 0) + 1);
    assert.deepEqual(
      [...counts.entries()].sort((a, b) => a[0] - b[0]),
      [64, 127, 191, 255].map((v) => [v, 65536 / 4]),
    );
  });
  it("on a region, after the resize: every value is one of the table's", async () => {
    const image = await pixels('FIF=quads.tif&CNT=eq&WID=100&CVT=png');
    assert.equal(image.width, 100);
    const values = new Set(image.data);
    // Resizing blends the quadrants' edges; equalising afterwards maps the blends onto the table.
    assert.ok(
      [...values].every((v) => [0, 64, 127, 191, 255].includes(v)),
      `values ${[...values].sort((a, b) => a - b).join(',')}`,
    );
    assert.ok(values.size >= 4, `values ${[...values].join(',')}`);
  });
  it('the histogram is read once per open file, and afresh when the file is replaced', async () => {
    const engine = new Engine({ paths: { prefix: imagesDirectory + '/', suffix: '' }, cacheBytes: 0 });
    const name = 'quads-replaced.tif';
    await greyImage(512, 512, (x, y) => QUADRANTS[(y < 256 ? 0 : 2) + (x < 256 ? 0 : 1)]!)
      .tiff(tiled)
      .toFile(path.join(imagesDirectory, name));
    const request = (tile: number) => ({
      level: 0,
      col: tile % 2,
      row: Math.floor(tile / 2),
      format: 'png' as const,
      quality: 75,
      passthrough: false,
      rotation: 0,
      mirror: false,
      processing: { ...NO_PROCESSING, equalise: true },
    });
    const image = await engine.openImage(name);
    let smallestReads = 0;
    const samples = image.source.samples.bind(image.source);
    image.source.samples = (level, rect) => {
      if (level === 1) smallestReads++;
      return samples(level, rect);
    };
    for (let tile = 0; tile < 4; tile++) await engine.tile(await engine.openImage(name), request(tile));
    assert.equal(smallestReads, 1);
    assert.equal((await decodePixels((await engine.tile(image, request(0))).bytes)).data[0], 64);
    // The same name, other values (three quarters 10) and a later time: a new histogram.
    await greyImage(512, 512, (x, y) => (x >= 256 && y >= 256 ? 200 : 10))
      .tiff(tiled)
      .toFile(path.join(imagesDirectory, name));
    utimesSync(path.join(imagesDirectory, name), new Date(), new Date(Date.now() + 5000));
    const replaced = await decodePixels((await engine.tile(await engine.openImage(name), request(0))).bytes);
    assert.equal(replaced.data[0], 191);
  });
  it('is cached apart from the plain and the stretched tile', async () => {
    assert.equal((await pixels('FIF=quads.tif&PTL=1,0')).data[0], 10);
    assert.equal((await pixels('FIF=quads.tif&CNT=eq&PTL=1,0')).data[0], 64);
    assert.equal((await pixels('FIF=quads.tif&CNT=st&PTL=1,0')).data[0], 0);
    assert.equal((await pixels('FIF=quads.tif&PTL=1,0')).data[0], 10);
  });
});

describe('COL=binary: grey, then the Otsu threshold of the image', () => {
  it('a bimodal RGB image: one band of 0 and 255, split at 50 (values below 50 black)', async () => {
    const image = await pixels('FIF=bimodal.tif&COL=binary&PTL=0,0');
    assert.equal(image.channels, 1);
    for (let y = 0; y < H; y += 7) row(image, y).forEach((v, x) => assert.equal(v, bimodal(x, y) < 50 ? 0 : 255, `${x},${y}`));
  });
  it('a region and a JPEG tile too; COL=grey after COL=binary wins (one colour space)', async () => {
    const region = await pixels('FIF=bimodal.tif&COL=binary&WID=100&CVT=png');
    assert.equal(region.channels, 1);
    assert.ok(region.data.every((v) => v === 0 || v === 255));
    const jpeg = await pixels('FIF=bimodal.tif&COL=binary&JTL=0,0');
    assert.equal(jpeg.channels, 1);
    assert.ok(jpeg.data[0]! < 20 && jpeg.data[W - 1]! > 235);
    const grey = await pixels('FIF=bimodal.tif&COL=binary&COL=grey&PTL=0,0');
    assert.equal(grey.data[0], bimodal(0, 0));
  });
});

/** The formula of the reference (§6.9), computed here independently of the server's code. */
function expectedShade(rgb: [number, number, number], azimuth: number, elevation: number): number {
  if (rgb.every((v) => v === 0)) return 0;
  const a = (azimuth * Math.PI) / 180;
  const sy = Math.cos(a);
  const sx = Math.sqrt(1 - sy * sy) * (azimuth > 180 ? -1 : 1);
  const sz = -Math.sin((elevation * Math.PI) / 180);
  const n = Math.hypot(sx, sy, sz);
  const o = rgb.map((v) => -(normalised(v, 0, 255) - 0.5) * 2);
  const dot = 0.5 * ((sx * o[0]! + sy * o[1]! + sz * o[2]!) / n);
  return eightBit(Math.min(1, Math.max(0, dot)));
}

describe('SHD: hill shading of a normal map', () => {
  it("a plane facing the viewer, lit from 12 o'clock straight above: 89", () => {
    assert.equal(expectedShade([128, 128, 255], 0, 90), 89);
  });
  for (const [azimuth, elevation] of [
    [0, 90],
    [90, 45],
    [270, 30],
    [135, 0],
    [200, 60],
  ]) {
    it(`SHD=${azimuth},${elevation}: one band, every pixel by the formula, on every tile (odd edge tiles too)`, async () => {
      // Full resolution is level 2 here (301 x 203 in 128-pixel tiles: 3 x 2, the last 45 x 75).
      for (let tile = 0; tile < 6; tile++) {
        const image = await pixels(`FIF=normals.tif&SHD=${azimuth},${elevation}&PTL=2,${tile}`);
        const [col, rowIndex] = [tile % 3, Math.floor(tile / 3)];
        assert.deepEqual([image.width, image.height, image.channels], [col === 2 ? 45 : 128, rowIndex === 1 ? 75 : 128, 1]);
        for (let y = 0; y < image.height; y += 5) {
          for (let x = 0; x < image.width; x += 3) {
            const [gx, gy] = [col * 128 + x, rowIndex * 128 + y];
            const got = image.data[y * image.width + x]!;
            const want = expectedShade(normalAt(gx, gy), azimuth, elevation);
            assert.ok(Math.abs(got - want) <= 1, `(${gx},${gy}) got ${got}, want ${want}`);
          }
        }
      }
    });
  }
  it('the no-data pixel (0, 0, 0) is black; regions work; then GAM and CMP apply to the shade', async () => {
    assert.equal((await pixels('FIF=normals.tif&SHD=0,90&PTL=2,0')).data[0], 0);
    const region = await pixels('FIF=normals.tif&SHD=0,90&WID=301&CVT=png');
    assert.deepEqual([region.width, region.channels], [301, 1]);
    assert.equal(region.data[10 * 301 + 10], 89);
    const mapped = await pixels('FIF=normals.tif&SHD=0,90&CMP=red&PTL=2,0');
    assert.deepEqual([...mapped.data.subarray(3 * (10 * 128 + 10), 3 * (10 * 128 + 10) + 3)], [89, 0, 0]);
  });
  it('a one-band image is a 400 with a clear message; a malformed argument too', async () => {
    const response = await get('FIF=ramp8.tif&SHD=0,90&PTL=0,0');
    assert.equal(response.status, 400);
    assert.match(response.body.toString(), /SHD needs a surface-normal image of 3 bands/);
    assert.equal((await get('FIF=normals.tif&SHD=45&PTL=2,0')).status, 400);
  });
});

/** A row of the step image (0 | 40 at x = 100, or 40 | 0) through a kernel, at x = 98..101 and the right edge. */
async function stepAfter(kernel: string, image = 'step.tif'): Promise<number[]> {
  const out = row(await pixels(`FIF=${image}&CNV=${kernel}&PTL=0,0`), 25);
  return [out[98]!, out[99]!, out[100]!, out[101]!, out[W - 1]!];
}

function near(got: number[], want: number[], what: string): void {
  assert.equal(got.length, want.length);
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= 1, `${what}: got ${got.join(',')}, want ${want.join(',')}`));
}

describe('CNV: convolution', () => {
  it('the identity kernel (3 x 3 and 1 x 1) changes nothing', async () => {
    const plain = (await pixels('FIF=noise.tif&PTL=0,0')).data;
    assert.deepEqual((await pixels('FIF=noise.tif&CNV=[0,0,0,0,1,0,0,0,0]&PTL=0,0')).data, plain);
    assert.deepEqual((await pixels('FIF=noise.tif&CNV=%5B1%5D&PTL=0,0')).data, plain);
  });
  it('a box kernel on an edge: averages, divided by the kernel sum', async () => {
    near(await stepAfter('[1,1,1,1,1,1,1,1,1]'), [0, 13, 26, 40, 40], 'box');
    near(await stepAfter(`[${new Array(25).fill(1).join(',')}]`), [8, 16, 24, 32, 40], '5 x 5 box');
  });
  // iipsrv 1.3's kernels by hand, on the rising and the falling edge (negative results clip to 0).
  const presets: Record<string, [number[], number[]]> = {
    sobel: [
      [0, 160, 160, 0, 0],
      [0, 0, 0, 0, 0],
    ],
    prewitt: [
      [0, 0, 0, 0, 0],
      [0, 120, 120, 0, 0],
    ],
    scharr: [
      [0, 255, 255, 0, 0],
      [0, 0, 0, 0, 0],
    ],
    laplace: [
      [0, 0, 120, 0, 0],
      [0, 120, 0, 0, 0],
    ],
    // Edge extension: the last column sees itself beyond the edge (wrapping would give 30).
    gaussian: [
      [0, 10, 30, 40, 40],
      [40, 30, 10, 0, 0],
    ],
    sharpen: [
      [0, 0, 80, 40, 40],
      [40, 80, 0, 0, 0],
    ],
    emboss: [
      [0, 120, 160, 40, 40],
      [40, 0, 0, 0, 0],
    ],
  };
  for (const [name, [rising, falling]] of Object.entries(presets)) {
    it(`${name} on a rising and a falling step edge`, async () => {
      near(await stepAfter(name), rising, `${name} rising`);
      near(await stepAfter(name, 'stepdown.tif'), falling, `${name} falling`);
    });
  }
  it('presets in brackets, encoded or not, in any case', async () => {
    const plain = await stepAfter('sobel');
    assert.deepEqual(await stepAfter('[sobel]'), plain);
    assert.deepEqual(await stepAfter('%5BSobel%5D'), plain);
    assert.deepEqual(await stepAfter('[sobel'), plain);
    near(await stepAfter('%5B1, 1, 1, 1, 1, 1, 1, 1, 1%5D'), [0, 13, 26, 40, 40], 'spaces');
  });
  it('bad kernels are a 400: wrong count, even side, more than 5 x 5, unknown name', async () => {
    for (const kernel of ['[1,2]', '[1,1,1,1]', `[${new Array(49).fill(1).join(',')}]`, 'blur', '[1,x,3]']) {
      const response = await get(`FIF=step.tif&CNV=${kernel}&PTL=0,0`);
      assert.equal(response.status, 400, kernel);
    }
  });
  it('the tabulated path (8/16-bit, no CTW) equals the per-pixel one (an identity CTW forces it)', async () => {
    for (const [query, identity] of [
      ['FIF=noise.tif&CNV=gaussian&GAM=0.7&CMP=jet&PTL=0,0', 'CTW=[1,0,0;0,1,0;0,0,1]'],
      ['FIF=noise.tif&CNV=sharpen&INV&PTL=0,0', 'CTW=[1,0,0;0,1,0;0,0,1]'],
      ['FIF=ramp16.tif&MINMAX=1:10000,20000&CNV=emboss&PTL=0,0', 'CTW=[1]'],
    ] as const) {
      const tabulated = await pixels(query);
      const perPixel = await pixels(query.replace('&PTL', `&${identity}&PTL`));
      assert.deepEqual(tabulated.data, perPixel.data, query);
    }
  });
  it('on 16-bit data and on a region', async () => {
    const wide = row(await pixels('FIF=ramp16.tif&CNV=[1,1,1,1,1,1,1,1,1]&PTL=0,0'), 0);
    assert.ok(Math.abs(wide[100]! - eightBit(normalised(ramp16(100), 0, 65535))) <= 1);
    const region = row(await pixels('FIF=step.tif&CNV=sobel&WID=200&CVT=png'), 25);
    near([region[98]!, region[99]!, region[100]!, region[101]!], [0, 160, 160, 0], 'region');
  });
});

describe("commands combined, in iipsrv's order", () => {
  it('MINMAX, GAM, INV, CMP, then contrast: 1000 of 0..2000 -> 0.5 -> 0.25 -> 0.75 -> hot (1, 1, 0.25) x 2', async () => {
    const image = await pixels('FIF=const16.tif&CNT=2&CMP=hot&INV&GAM=2&MINMAX=1:0,2000&PTL=0,0');
    assert.deepEqual([...image.data.subarray(0, 3)], [255, 255, 127]);
  });
  it('CTW before COL=grey: (10, 20, 30) swapped to (30, 20, 10), then grey 21 (not 18)', async () => {
    assert.deepEqual([...(await pixels('FIF=rgb.tif&COL=grey&CTW=[0,0,1;0,1,0;1,0,0]&PTL=0,0')).data.subarray(0, 1)], [21]);
  });
  it('CMP before CNV: hot of 200/255 blurred (191, 191, 67), not hot of the blur (255, 195, 0)', async () => {
    const image = await pixels('FIF=step200.tif&CNV=gaussian&CMP=hot&PTL=0,0');
    const at = (25 * W + 100) * 3;
    near([...image.data.subarray(at, at + 3)], [191, 191, 67], 'hot then gaussian');
  });
  it('CNV before CNT: the contrast factor multiplies the convolved value', async () => {
    near((await stepAfter('gaussian&CNT=2')).slice(0, 4), [0, 20, 60, 80], 'gaussian x 2');
  });
  it('CNT=eq before ROT: the rotated tile is the equalised tile rotated', async () => {
    const equalised = await pixels('FIF=quads.tif&CNT=eq&PTL=0,0');
    const rotated = await pixels('FIF=quads.tif&CNT=eq&ROT=90&PTL=0,0');
    const expected = await decodePixels(sharp(equalised.data, { raw: { width: equalised.width, height: equalised.height, channels: 1 } }).rotate(90));
    assert.deepEqual(rotated.data, expected.data);
    assert.equal(rotated.data[0], 191);
  });
  it('IIIF takes the modifiers too', async () => {
    const image = await pixels('CNT=eq&IIIF=quads.tif/full/256,/0/default.png');
    assert.equal(image.data[0], 64);
  });
});

describe('IIIF: bitonal and the IIIF_EXTENSIONS qualities are these commands, as in iipsrv', () => {
  const same = async (iiif: string, iip: string, router = getExtended): Promise<void> => {
    const response = await router(iiif);
    assert.equal(response.status, 200, `${iiif}: ${response.body.toString().slice(0, 200)}`);
    assert.deepEqual((await decodePixels(response.body)).data, (await pixels(iip)).data, iiif);
  };
  it('bitonal is COL=binary: the Otsu threshold (50 here), not the middle grey', async () => {
    await same('IIIF=bimodal.tif/full/max/0/bitonal.png', 'FIF=bimodal.tif&COL=binary&PTL=0,0', get);
  });
  it('negative, stretch, equalization and log are INV, CNT=st, CNT=eq and GAM=log', async () => {
    await same('IIIF=ramp8.tif/full/max/0/negative.png', 'FIF=ramp8.tif&INV&PTL=0,0');
    await same('IIIF=ramp8.tif/full/max/0/stretch.png', 'FIF=ramp8.tif&CNT=st&PTL=0,0');
    await same('IIIF=quads.tif/full/256,/0/equalization.png', 'FIF=quads.tif&CNT=eq&PTL=0,0');
    await same('IIIF=ramp8.tif/full/max/0/log.png', 'FIF=ramp8.tif&GAM=log&PTL=0,0');
    // A tile on the grid goes the tile path, with the processing.
    const tile = await decodePixels((await getExtended('IIIF=quads.tif/0,0,256,256/256,/0/equalization.jpg')).body);
    assert.ok(Math.abs(tile.data[0]! - 64) <= 2);
  });
  it('offered in info.json only with IIIF_EXTENSIONS; otherwise a 400', async () => {
    const info = JSON.parse((await getExtended('IIIF=ramp8.tif/info.json')).body.toString());
    assert.deepEqual(info.extraQualities, ['gray', 'bitonal', 'negative', 'stretch', 'equalization', 'log']);
    const plain = JSON.parse((await get('IIIF=ramp8.tif/info.json')).body.toString());
    assert.deepEqual(plain.extraQualities, ['gray', 'bitonal']);
    assert.equal((await get('IIIF=ramp8.tif/full/max/0/negative.png')).status, 400);
  });
});
