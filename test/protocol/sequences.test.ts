/**
 * Image sequences (iipsrv's FILENAME_PATTERN convention: `<name>_pyr_<HHH>_<VVV>.tif`), SDS and
 * JTLS choosing a view, OBJ=Horizontal-views/Vertical-views, SPECTRA and PFL, on sequences made
 * here whose pixels encode their band or angles: a multispectral one (bands 0, 400, 500, 700 at
 * vertical 90, 8-bit and 16-bit grey) and a panorama (several horizontal and vertical angles, RGB).
 * Through the router as plain requests; differential tests against iipsrv 1.1 at the end.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import { getHeader, type PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { atoiChain, formatFixed } from '../../src/protocols/iip/numbers.ts';
import { tempDir, which } from '../helpers/daemon.ts';
import { decodePixels, meanAbsoluteDifference, type Pixels } from '../helpers/images.ts';
import { plainRequest } from '../helpers/requests.ts';
import { imagesDir, referenceSkipReason, startDifferentialPair, type DifferentialPair, type RawReply } from '../helpers/reference-iipsrv.ts';

const WIDTH = 600;
const HEIGHT = 400;
const TILE = 256;
const BANDS = [0, 400, 500, 700];
/** Panorama views [horizontal, vertical]: the 000 column and the 090 row, plus one more. */
const PANORAMA: Array<[number, number]> = [
  [0, 90],
  [10, 90],
  [20, 90],
  [1000, 90],
  [0, 0],
  [0, 45],
  [10, 45],
];
const FIRST_MTIME = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT
const OTHER_MTIME = 1_710_000_000;

/** The 8-bit multispectral bands at full resolution. */
const value8 = (band: number, x: number, y: number) => (Math.floor(band / 10) + x + 2 * y) % 256;
/** The 16-bit ones. */
const value16 = (band: number, x: number, y: number) => (band * 100 + 7 * x + 3 * y) % 65536;
/** A panorama view is one colour: red = horizontal angle (mod 256), green = vertical, blue 77. */
const viewColour = (h: number, v: number) => [h % 256, v, 77];

const angle = (n: number) => String(n).padStart(3, '0');

async function greyPyramid(file: string, band: number, bits: 8 | 16): Promise<void> {
  const data = bits === 16 ? new Uint16Array(WIDTH * HEIGHT) : new Uint8Array(WIDTH * HEIGHT);
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) data[y * WIDTH + x] = bits === 16 ? value16(band, x, y) : value8(band, x, y);
  }
  await sharp(data, { raw: { width: WIDTH, height: HEIGHT, channels: 1 } })
    .toColourspace(bits === 16 ? 'grey16' : 'b-w')
    .tiff({ tile: true, pyramid: true, tileWidth: TILE, tileHeight: TILE, compression: 'deflate' })
    .toFile(file);
}

/** 32-bit bands: floats `band + x/8 + y/3`, and unsigned integers beyond 2^31. */
const valueFloat = (band: number, x: number, y: number) => Math.fround(band + x * 0.125 + y / 3);
const valueUint32 = (x: number, y: number) => 3_000_000_000 + x * 70_000 + y;
const HAVE_VIPS = which('vips') !== null;

/** A tiled 32-bit TIFF (one level) made with the vips command line, which writes them as 1.1 reads them. */
function vips32(file: string, kind: 'float' | 'uint', value: (x: number, y: number) => number): void {
  const data = kind === 'float' ? new Float32Array(WIDTH * HEIGHT) : new Uint32Array(WIDTH * HEIGHT);
  for (let y = 0; y < HEIGHT; y++) for (let x = 0; x < WIDTH; x++) data[y * WIDTH + x] = value(x, y);
  const raw = file + '.raw';
  const loaded = file + '.v';
  writeFileSync(raw, Buffer.from(data.buffer));
  execFileSync('vips', ['rawload', raw, loaded, String(WIDTH), String(HEIGHT), '1', '--format', kind]);
  execFileSync('vips', ['tiffsave', loaded, file, '--tile', '--tile-width', String(TILE), '--tile-height', String(TILE), '--compression', 'deflate']);
  rmSync(raw);
  rmSync(loaded);
}

async function colourPyramid(file: string, colour: number[]): Promise<void> {
  const [r, g, b] = colour as [number, number, number];
  await sharp({ create: { width: WIDTH, height: HEIGHT, channels: 3, background: { r, g, b } } })
    .tiff({ tile: true, pyramid: true, tileWidth: TILE, tileHeight: TILE, compression: 'deflate' })
    .toFile(file);
}

async function makeSequences(dir: string): Promise<void> {
  const jobs: Array<Promise<void>> = [];
  for (const band of BANDS) {
    jobs.push(greyPyramid(path.join(dir, `ms_pyr_${angle(band)}_090.tif`), band, 8));
    jobs.push(greyPyramid(path.join(dir, `m16_pyr_${angle(band)}_090.tif`), band, 16));
  }
  for (const [h, v] of PANORAMA) jobs.push(colourPyramid(path.join(dir, `pano_pyr_${angle(h)}_${angle(v)}.tif`), viewColour(h, v)));
  jobs.push(greyPyramid(path.join(dir, 'single.tif'), 0, 8));
  jobs.push(colourPyramid(path.join(dir, 'rgb.tif'), [10, 45, 77]));
  jobs.push(greyPyramid(path.join(dir, 'two_pyr_000_090.tif'), 0, 8));
  jobs.push(greyPyramid(path.join(dir, 'two_pyr_000_090.tiff'), 0, 8));
  await Promise.all(jobs);
  if (HAVE_VIPS) {
    for (const band of [0, 400]) vips32(path.join(dir, `fl_pyr_${angle(band)}_090.tif`), 'float', (x, y) => valueFloat(band, x, y));
    vips32(path.join(dir, 'u32.tif'), 'uint', valueUint32);
  }
  for (const band of BANDS) {
    for (const name of ['ms', 'm16']) {
      const time = band === 0 ? FIRST_MTIME : OTHER_MTIME;
      utimesSync(path.join(dir, `${name}_pyr_${angle(band)}_090.tif`), time, time);
    }
  }
  for (const [h, v] of PANORAMA) {
    const time = h === 0 && v === 90 ? FIRST_MTIME : OTHER_MTIME;
    utimesSync(path.join(dir, `pano_pyr_${angle(h)}_${angle(v)}.tif`), time, time);
  }
  for (const file of ['single.tif', 'rgb.tif']) utimesSync(path.join(dir, file), FIRST_MTIME, FIRST_MTIME);
}

function serverFor(prefix: string, env: Record<string, string> = {}) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, ...env });
  const engine = new Engine({
    paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix },
    cacheBytes: config.maxImageCacheBytes,
    filenamePattern: config.filenamePattern,
  });
  const router = createRouter({ config, engine, log: silentLog });
  return (query: string): Promise<PlainResponse> => router(plainRequest(query));
}

const text = (response: PlainResponse) => response.body.toString('latin1');

/** Every pixel within JPEG's error of one colour. */
function assertColour(pixels: Pixels, colour: number[], what: string): void {
  const expected = Buffer.alloc(pixels.width * pixels.height * pixels.channels);
  for (let i = 0; i < expected.length; i++) expected[i] = colour[i % pixels.channels]!;
  const mad = meanAbsoluteDifference(pixels, { ...pixels, data: expected });
  assert.ok(mad < 1.5, `${what}: mean difference ${mad.toFixed(2)} from ${colour.join(',')} (first pixel ${[...pixels.data.subarray(0, 3)].join(',')})`);
}

/** iipsrv's SPECTRA XML for these (wavelength, reflectance text) points. */
function spectraXml(points: Array<[number, string]>): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<spectra>\n' +
    points.map(([w, r]) => `\t<point>\n\t\t<wavelength>${w}</wavelength>\n\t\t<reflectance>${r}</reflectance>\n\t</point>\n`).join('') +
    '</spectra>'
  );
}

/** As iipsrv prints a reflectance: the single-precision quotient with six decimals. */
const reflectance8 = (value: number) => Math.fround(value / 255).toFixed(6);

const httpDate = (seconds: number) => new Date(seconds * 1000).toUTCString();

describe('image sequences, SPECTRA and PFL', () => {
  let dir: string;
  let get: (query: string) => Promise<PlainResponse>;

  before(async () => {
    dir = path.join(tempDir('iipsrv-seq-'), 'images') + '/';
    mkdirSync(dir, { recursive: true });
    await makeSequences(dir);
    get = serverFor(dir);
  });

  describe('finding a sequence and its views', () => {
    it('OBJ=Horizontal-views / Vertical-views list every view, sorted (multispectral, panorama, single image)', async () => {
      assert.equal(
        text(await get('FIF=ms&OBJ=Horizontal-views&OBJ=Vertical-views&OBJ=Max-size')),
        '\r\nHorizontal-views:0 400 500 700\r\nVertical-views:90\r\nMax-size:600 400\r\n',
      );
      assert.equal(text(await get('FIF=pano&OBJ=Horizontal-views&OBJ=Vertical-views')), '\r\nHorizontal-views:0 10 20 1000\r\nVertical-views:0 45 90\r\n');
      // Whichever view is selected, the lists are the sequence's.
      assert.equal(
        text(await get('FIF=pano&SDS=10,45&OBJ=Horizontal-views&OBJ=Vertical-views')),
        '\r\nHorizontal-views:0 10 20 1000\r\nVertical-views:0 45 90\r\n',
      );
      assert.equal(text(await get('FIF=single.tif&SDS=10,45&OBJ=Horizontal-views&OBJ=Vertical-views')), '\r\nHorizontal-views:0\r\nVertical-views:90\r\n');
    });

    it('FIF of a sequence opens its 000_090 view; SDS and JTLS select the file of their angles (pixels prove it)', async () => {
      const tile = async (query: string) => {
        const response = await get(query);
        assert.equal(response.status, 200, `${query}: ${text(response).slice(0, 200)}`);
        return decodePixels(response.body);
      };
      assertColour(await tile('FIF=pano&JTL=0,0'), viewColour(0, 90), 'FIF alone');
      for (const [h, v] of PANORAMA) {
        assertColour(await tile(`FIF=pano&SDS=${h},${v}&JTL=0,0`), viewColour(h, v), `SDS=${h},${v}`);
        assertColour(await tile(`FIF=pano&JTLS=${h},1,1,${v}`), viewColour(h, v), `JTLS=${h},1,1,${v}`);
      }
      // Later SDS wins; CVT and TIL read the selected view too.
      assertColour(await tile('FIF=pano&SDS=10,45&SDS=20,90&JTL=2,1'), viewColour(20, 90), 'two SDS');
      assertColour(await tile('FIF=pano&SDS=0,45&WID=100&CVT=jpeg'), viewColour(0, 45), 'CVT');
      // FIF resets the angles (iipsrv 1.1): an SDS before it has no effect.
      assertColour(await tile('SDS=10,45&FIF=pano&JTL=0,0'), viewColour(0, 90), 'SDS before FIF');
      // One value: that horizontal view at vertical 0 (iipsrv 1.3).
      assertColour(await tile('FIF=pano&SDS=0&JTL=0,0'), viewColour(0, 0), 'SDS=0');
      // A single image is its only view, whatever the angles.
      assertColour(await tile('FIF=rgb.tif&SDS=10,45&JTL=0,0'), [10, 45, 77], 'single image');
    });

    it('a view the sequence lacks is a 404; so is a name with several 000_090 extensions or none', async () => {
      for (const query of ['FIF=pano&SDS=20,45&JTL=0,0', 'FIF=pano&JTLS=20,0,0,45', 'FIF=ms&SDS=400&JTL=0,0', 'FIF=pano&SDS=-10,90&JTL=0,0']) {
        const response = await get(query);
        assert.equal(response.status, 404, query);
        assert.match(text(response), /^pano|^ms/, query);
        assert.ok(!text(response).includes(dir), `${query}: the message names no filesystem path`);
      }
      assert.equal(text(await get('FIF=pano&SDS=20,45&JTL=0,0')), 'pano has no view 20,45: pano_pyr_020_045.tif is missing');
      const several = await get('FIF=two&OBJ=Max-size');
      assert.equal(several.status, 404);
      assert.equal(text(several), 'There are multiple file extensions matching two_pyr_000_090.*');
      const none = await get('FIF=nothing&OBJ=Max-size');
      assert.equal(none.status, 404);
      assert.equal(text(none), 'nothing is neither a file nor part of an image sequence');
      // The views themselves are ordinary files.
      assert.equal((await get('FIF=pano_pyr_010_045.tif&OBJ=Max-size')).status, 200);
    });

    it("Last-Modified is the 000_090 file's time, for every view", async () => {
      for (const query of ['FIF=pano&JTL=0,0', 'FIF=pano&SDS=10,45&JTL=0,0', 'FIF=ms&SPECTRA=2,0,0,0', 'FIF=ms&SDS=400,90&OBJ=Max-size']) {
        assert.equal(getHeader((await get(query)).headers, 'last-modified'), httpDate(FIRST_MTIME), query);
      }
      // If-Modified-Since is decided at FIF, against that time too.
      const since = { headers: { 'if-modified-since': httpDate(FIRST_MTIME) } };
      const router = createRouter({
        config: loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir }),
        engine: new Engine({ paths: { prefix: dir, suffix: '' } }),
        log: silentLog,
      });
      assert.equal((await router(plainRequest('FIF=pano&SDS=10,45&JTL=0,0', since))).status, 304);
      assert.equal((await router(plainRequest('FIF=pano&SDS=10,45&JTL=0,0', { headers: { 'if-modified-since': httpDate(FIRST_MTIME - 1) } }))).status, 200);
    });

    it('a replaced view is never served stale (the RAM cache follows each view file); new views and sequences are found', async () => {
      const own = path.join(tempDir('iipsrv-seq-replace-'), 'images') + '/';
      mkdirSync(own, { recursive: true });
      await colourPyramid(path.join(own, 's_pyr_000_090.tif'), [0, 90, 77]);
      await colourPyramid(path.join(own, 's_pyr_010_090.tif'), [10, 90, 77]);
      const mine = serverFor(own, { MAX_IMAGE_CACHE_SIZE: '10' });
      assertColour(await decodePixels((await mine('FIF=s&SDS=10,90&JTL=0,0')).body), [10, 90, 77], 'before');
      await colourPyramid(path.join(own, 's_pyr_010_090.tif'), [200, 90, 77]);
      utimesSync(path.join(own, 's_pyr_010_090.tif'), OTHER_MTIME, OTHER_MTIME);
      assertColour(await decodePixels((await mine('FIF=s&SDS=10,90&JTL=0,0')).body), [200, 90, 77], 'after replacing the view');
      assert.equal(text(await mine('FIF=s&OBJ=Horizontal-views')), '\r\nHorizontal-views:0 10\r\n');
      await colourPyramid(path.join(own, 's_pyr_030_090.tif'), [30, 90, 77]);
      assert.equal(text(await mine('FIF=s&OBJ=Horizontal-views')), '\r\nHorizontal-views:0 10 30\r\n');
      assertColour(await decodePixels((await mine('FIF=s&SDS=30,90&JTL=0,0')).body), [30, 90, 77], 'the new view');
      // A name that was no sequence becomes one when its 000_090 view appears.
      assert.equal((await mine('FIF=later&OBJ=Max-size')).status, 404);
      await colourPyramid(path.join(own, 'later_pyr_000_090.tif'), [0, 90, 77]);
      assert.equal(text(await mine('FIF=later&OBJ=Max-size')), '\r\nMax-size:600 400\r\n');
    });

    it('a directory is read once until its mtime changes, however many names are asked for', async () => {
      const own = path.join(tempDir('iipsrv-seq-listing-'), 'images') + '/';
      mkdirSync(own, { recursive: true });
      await colourPyramid(path.join(own, 'a_pyr_000_090.tif'), [0, 90, 77]);
      const past = 1_600_000_000;
      utimesSync(own, past, past);
      const mine = serverFor(own);
      assert.equal((await mine('FIF=missing&OBJ=Max-size')).status, 404);
      assert.equal((await mine('FIF=a&OBJ=Max-size')).status, 200);
      // A sequence added behind the listing's back (the directory's mtime put back) is not seen by
      // a name never asked for before: its directory was not read again...
      await colourPyramid(path.join(own, 'b_pyr_000_090.tif'), [0, 90, 77]);
      utimesSync(own, past, past);
      assert.equal((await mine('FIF=b&OBJ=Max-size')).status, 404);
      // ...until the directory changes.
      utimesSync(own, past + 1, past + 1);
      assert.equal(text(await mine('FIF=b&OBJ=Max-size')), '\r\nMax-size:600 400\r\n');
    });

    it('FILENAME_PATTERN names the infix', async () => {
      const own = path.join(tempDir('iipsrv-seq-pattern-'), 'images') + '/';
      mkdirSync(own, { recursive: true });
      await colourPyramid(path.join(own, 'p-view-000_090.tif'), [0, 90, 77]);
      await colourPyramid(path.join(own, 'p-view-005_090.tif'), [5, 90, 77]);
      const mine = serverFor(own, { FILENAME_PATTERN: '-view-' });
      assert.equal(text(await mine('FIF=p&OBJ=Horizontal-views')), '\r\nHorizontal-views:0 5\r\n');
      assertColour(await decodePixels((await mine('FIF=p&SDS=5,90&JTL=0,0')).body), [5, 90, 77], 'SDS=5,90');
      assert.equal((await serverFor(own)('FIF=p&OBJ=Max-size')).status, 404, 'the default _pyr_ finds nothing');
    });

    it('IIIF, DeepZoom and Zoomify on a sequence name serve its 000_090 view', async () => {
      const info = await get('IIIF=pano/info.json');
      assert.equal(info.status, 200);
      assert.equal(JSON.parse(text(info)).width, WIDTH);
      assertColour(await decodePixels((await get('IIIF=pano/full/max/0/default.jpg')).body), viewColour(0, 90), 'IIIF');
      assert.match(text(await get('DeepZoom=pano.dzi')), /<Size Width="600" Height="400"\/>/);
      assertColour(await decodePixels((await get('DeepZoom=pano_files/9/0_0.jpg')).body), viewColour(0, 90), 'DeepZoom');
      assertColour(await decodePixels((await get('Zoomify=pano/TileGroup0/0-0-0.jpg')).body), viewColour(0, 90), 'Zoomify');
    });
  });

  describe('SPECTRA', () => {
    it("the value of one point in every band, normalised by 255 (8-bit) or 65535 (16-bit), in iipsrv's XML", async () => {
      // Resolution 2 is full size; tile 1 starts at x 256, so the point is (266, 20).
      const eight = await get('FIF=ms&SPECTRA=2,1,10,20');
      assert.equal(eight.status, 200);
      assert.equal(getHeader(eight.headers, 'content-type'), 'application/xml');
      assert.equal(
        text(eight),
        spectraXml([
          [0, '0.196078'],
          [400, '0.352941'],
          [500, '0.392157'],
          [700, '0.470588'],
        ]),
      );
      assert.equal(value8(400, 266, 20), 90, 'the test image: 90 / 255 = 0.352941');
      const sixteen = await get('FIF=m16&SPECTRA=2,1,10,20');
      assert.equal(
        text(sixteen),
        spectraXml([
          [0, '0.029328'],
          [400, '0.639689'],
          [500, '0.792279'],
          [700, '0.097444'],
        ]),
      );
      assert.equal(value16(400, 266, 20), 41922, 'the test image: 41922 / 65535 = 0.639689');
      // Single precision, as iipsrv: 182 / 255 = 0.7137254... prints as 0.713726.
      assert.equal(reflectance8(182), '0.713726');
      // Tile 4 of full size is (256, 256): the point (300, 300).
      const bands = BANDS.map((b): [number, string] => [b, reflectance8(value8(b, 300, 300))]);
      assert.equal(text(await get('FIF=ms&SPECTRA=2,4,44,44')), spectraXml(bands));
    });

    it('a single image is a sequence of one band at wavelength 0; SDS does not change the bands read', async () => {
      assert.equal(text(await get('FIF=single.tif&SPECTRA=2,1,10,20')), spectraXml([[0, '0.196078']]));
      assert.equal(text(await get('FIF=ms&SDS=500,90&SPECTRA=2,1,10,20')), text(await get('FIF=ms&SPECTRA=2,1,10,20')));
    });

    it('edge tiles: the point inside the cropped tile, nothing past its end, a 400 past the nominal tile', async () => {
      // Tile 2 of full size is x 512..599 (88 wide).
      assert.equal(text(await get('FIF=ms&SPECTRA=2,2,10,20')), spectraXml(BANDS.map((b) => [b, reflectance8(value8(b, 522, 20))])));
      assert.equal(text(await get('FIF=ms&SPECTRA=2,2,87,20')), spectraXml(BANDS.map((b) => [b, reflectance8(value8(b, 599, 20))])));
      assert.equal(text(await get('FIF=ms&SPECTRA=2,2,88,20')), spectraXml([]));
      assert.equal(text(await get('FIF=ms&SPECTRA=2,5,10,150')), spectraXml([]), 'below the last row (144 high)');
      for (const query of ['FIF=ms&SPECTRA=2,2,256,20', 'FIF=ms&SPECTRA=2,0,0,256', 'FIF=ms&SPECTRA=0,0,-1,0']) {
        const response = await get(query);
        assert.equal(response.status, 400, query);
        assert.equal(text(response), 'SPECTRA :: Error: x,y coordinates outside of tile boundaries');
      }
      assert.equal((await get('FIF=ms&SPECTRA=3,0,0,0')).status, 404, 'no resolution 3');
      assert.equal((await get('FIF=ms&SPECTRA=2,6,0,0')).status, 404, 'no tile 6');
    });

    it('32-bit floats and integers as stored, with six decimals', { skip: HAVE_VIPS ? false : 'vips not installed' }, async () => {
      // One level: resolution 0 is full size; tile 1 starts at x 256, so the point is (266, 20).
      assert.equal(
        text(await get('FIF=fl&SPECTRA=0,1,10,20')),
        spectraXml([
          [0, '39.916668'],
          [400, '439.916656'],
        ]),
      );
      assert.equal(valueFloat(0, 266, 20).toFixed(6), '39.916668');
      // 3018620020 in single precision, as iipsrv prints it.
      assert.equal(text(await get('FIF=u32.tif&SPECTRA=0,1,10,20')), spectraXml([[0, '3018619904.000000']]));
    });

    it('without an image: an IIP error, not a crash', async () => {
      const response = await get('SPECTRA=2,1,10,20');
      assert.equal(response.status, 400);
      assert.equal(text(response), 'Error/13:1 3 2,1,10,20\r\n');
    });
  });

  describe('PFL', () => {
    const profile = async (query: string) => {
      const response = await get(query);
      assert.equal(response.status, 200, `${query}: ${text(response).slice(0, 200)}`);
      assert.equal(getHeader(response.headers, 'content-type'), 'application/json');
      return { raw: text(response), json: JSON.parse(text(response)) as { profile: unknown } };
    };
    const row = (band: number, x1: number, x2: number, y: number, f = value8) => Array.from({ length: x2 - x1 }, (_, i) => f(band, x1 + i, y));
    const column = (band: number, x: number, y1: number, y2: number, f = value8) => Array.from({ length: y2 - y1 }, (_, i) => f(band, x, y1 + i));
    const perBand = (make: (band: number) => number[]) => Object.fromEntries(BANDS.map((b) => [String(b), make(b)]));

    it('a horizontal line (x2 excluded), every band, valid JSON with quoted band keys', async () => {
      const { raw, json } = await profile('FIF=ms&PFL=2:10,20-15,20');
      assert.equal(
        raw,
        '{\n\t"profile": {\n\t\t"0": [50,51,52,53,54],\n\t\t"400": [90,91,92,93,94],\n\t\t"500": [100,101,102,103,104],\n\t\t"700": [120,121,122,123,124]\n\t}\n}',
      );
      assert.deepEqual(
        json.profile,
        perBand((b) => row(b, 10, 15, 20)),
      );
      // Across tile boundaries, up to the right edge (x2 = width is allowed).
      assert.deepEqual(
        (await profile('FIF=ms&PFL=2:200,300-600,300')).json.profile,
        perBand((b) => row(b, 200, 600, 300)),
      );
    });

    it('a vertical line, a single point, and 16-bit values', async () => {
      assert.deepEqual(
        (await profile('FIF=ms&PFL=2:10,20-10,24')).json.profile,
        perBand((b) => column(b, 10, 20, 24)),
      );
      // x2 < x1 with y2 > y1 is vertical, from (x1, y1).
      assert.deepEqual(
        (await profile('FIF=ms&PFL=2:30,250-3,399')).json.profile,
        perBand((b) => column(b, 30, 250, 399)),
      );
      assert.deepEqual(
        (await profile('FIF=ms&PFL=2:599,399')).json.profile,
        perBand((b) => [value8(b, 599, 399)]),
      );
      assert.deepEqual(
        (await profile('FIF=ms&PFL=2:7,9-3,3')).json.profile,
        perBand((b) => [value8(b, 7, 9)]),
        'neither: the start point',
      );
      assert.deepEqual(
        (await profile('FIF=m16&PFL=2:250,20-260,20')).json.profile,
        perBand((b) => row(b, 250, 260, 20, value16)),
      );
      assert.deepEqual(
        (await profile('FIF=m16&PFL=2:10,20-10,24')).json.profile,
        perBand((b) => column(b, 10, 20, 24, value16)),
      );
    });

    it('a single image: one list; RGB gives every channel of every pixel', async () => {
      const single = await profile('FIF=single.tif&PFL=2:10,20-13,20');
      assert.equal(single.raw, '{\n\t"profile": [50,51,52]\n}');
      assert.deepEqual((await profile('FIF=rgb.tif&PFL=1:10,20-12,20')).json.profile, [10, 45, 77, 10, 45, 77]);
      assert.deepEqual((await profile('FIF=pano&PFL=2:10,20-12,20')).json.profile, {
        0: [0, 90, 77, 0, 90, 77],
        10: [10, 90, 77, 10, 90, 77],
        20: [20, 90, 77, 20, 90, 77],
        1000: [232, 90, 77, 232, 90, 77],
      });
    });

    it('32-bit: floats with nine decimals, integers in full', { skip: HAVE_VIPS ? false : 'vips not installed' }, async () => {
      const floats = await profile('FIF=fl&PFL=0:10,20-13,20');
      assert.equal(
        floats.raw,
        '{\n\t"profile": {\n\t\t"0": [7.916666508,8.041666985,8.166666985],\n\t\t"400": [407.916656494,408.041656494,408.166656494]\n\t}\n}',
      );
      assert.deepEqual(
        (floats.json.profile as Record<string, number[]>)['0']!.map((v) => Math.fround(v)),
        [10, 11, 12].map((x) => valueFloat(0, x, 20)),
      );
      assert.deepEqual(
        (await profile('FIF=u32.tif&PFL=0:266,20-266,23')).json.profile,
        [20, 21, 22].map((y) => valueUint32(266, y)),
      );
    });

    it("lower resolutions read that level's samples", async () => {
      const level = await sharp(path.join(dir, 'ms_pyr_400_090.tif'), { page: 2 }).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
      assert.equal(level.info.width, 150);
      const expected = Array.from({ length: 150 }, (_, x) => level.data[7 * 150 + x]!);
      assert.deepEqual(((await profile('FIF=ms&PFL=0:0,7-150,7')).json.profile as Record<string, number[]>)['400'], expected);
    });

    it('bad resolutions and points outside the image are 400s; no image is an IIP error', async () => {
      for (const query of [
        'FIF=ms&PFL=3:0,0',
        'FIF=ms&PFL=-1:5,5',
        'FIF=ms&PFL=2:600,399',
        'FIF=ms&PFL=2:0,400',
        'FIF=ms&PFL=2:590,20-610,20',
        'FIF=ms&PFL=2:5,20-5,401',
        'FIF=ms&PFL=2:-5,5',
      ]) {
        const response = await get(query);
        assert.equal(response.status, 400, query);
        assert.match(text(response), /^PFL: /, query);
      }
      const none = await get('PFL=2:10,20');
      assert.equal(none.status, 400);
      assert.equal(text(none), 'Error/11:1 3 2:10,20\r\n');
    });

    it("iipsrv's lenient parsing: no colon is resolution 0 at 0,0; one coordinate is used for both", async () => {
      assert.deepEqual((await profile('FIF=ms&PFL=abc')).json.profile, (await profile('FIF=ms&PFL=0:0,0')).json.profile);
      assert.deepEqual((await profile('FIF=ms&PFL=0:5')).json.profile, (await profile('FIF=ms&PFL=0:5,5')).json.profile);
    });
  });
});

describe("iipsrv's number reading and printing", () => {
  it('atoiChain reads the last part again once the commas run out', () => {
    assert.deepEqual(atoiChain('1,2,3,4', 4), [1, 2, 3, 4]);
    assert.deepEqual(atoiChain('0,0,3', 4), [0, 0, 3, 3]);
    assert.deepEqual(atoiChain('7', 2), [7, 7]);
    assert.deepEqual(atoiChain('x,5', 2), [0, 5]);
  });

  it("formatFixed prints as printf's %f", () => {
    assert.equal(formatFixed(0.5, 6), '0.500000');
    assert.equal(formatFixed(1.25, 9), '1.250000000');
    assert.equal(formatFixed(Number.NaN, 6), 'nan');
    assert.equal(formatFixed(-Infinity, 6), '-inf');
    assert.equal(formatFixed(1e21, 2), '1000000000000000000000.00');
  });
});

// ---------------------------------------------------------------------------------------------

const SKIP = referenceSkipReason();

/** 1.1's PFL JSON with its bare band keys quoted: the numbers to compare. */
function referenceProfile(reply: RawReply): unknown {
  return JSON.parse(reply.body.toString('latin1').replace(/^(\t\t)(\d+):/gm, '$1"$2":'));
}

describe('differential: sequences, SPECTRA and PFL against iipsrv 1.1', { skip: SKIP ?? false }, () => {
  let pair: DifferentialPair | null = null;
  const need = () => {
    assert.ok(pair, 'the servers did not start');
    return pair;
  };

  before(async () => {
    const dir = tempDir('iipsrv-seq-diff-');
    const images = imagesDir(dir);
    await makeSequences(images);
    pair = await startDifferentialPair({ dir, images, env: { JPEG_QUALITY: '75' } });
  });
  after(async () => {
    await pair?.stop();
  });

  it('OBJ=Horizontal-views / Vertical-views: byte-identical', async () => {
    for (const name of ['ms', 'm16', 'pano', 'single.tif', 'pano_pyr_010_045.tif']) {
      const { ref, ours } = await need().get(`FIF=${name}&OBJ=Horizontal-views&OBJ=Vertical-views&OBJ=Max-size&OBJ=Resolution-number`);
      assert.equal(ours.status, ref.status, name);
      assert.equal(ours.body.toString('latin1'), ref.body.toString('latin1'), name);
      assert.equal(ours.headers.find(([n]) => n === 'last-modified')?.[1], ref.headers.find(([n]) => n === 'last-modified')?.[1], `${name}: Last-Modified`);
    }
  });

  it('SPECTRA: byte-identical XML and headers (8 and 16-bit, every resolution, a single image, past an edge tile)', async () => {
    const queries = [
      'FIF=ms&SPECTRA=2,1,10,20',
      'FIF=ms&SPECTRA=2,4,44,44',
      'FIF=ms&SPECTRA=1,0,3,100',
      'FIF=ms&SPECTRA=0,0,149,0',
      'FIF=ms&SPECTRA=2,0,3',
      'FIF=m16&SPECTRA=2,1,10,20',
      'FIF=m16&SPECTRA=1,0,255,199',
      'FIF=single.tif&SPECTRA=2,3,100,100',
      'FIF=ms&SPECTRA=2,2,100,20',
      'FIF=ms&SPECTRA=2,5,10,150',
      'FIF=ms&SDS=400,90&SPECTRA=2,1,10,20',
    ];
    for (const query of queries) {
      const { ref, ours } = await need().get(query);
      assert.equal(ours.status, ref.status, query);
      assert.equal(ours.body.toString('latin1'), ref.body.toString('latin1'), query);
      const headers = (reply: RawReply) => reply.headers.filter(([n]) => ['content-type', 'last-modified', 'cache-control'].includes(n));
      assert.deepEqual(headers(ours), headers(ref), `${query}: headers`);
    }
    // Inside an edge tile ours reads the point asked for; 1.1 indexes the cropped tile as if it
    // were a whole one (y × 256 + x), so below its first row it reads another pixel.
    const edge = await need().get('FIF=ms&SPECTRA=2,2,10,20');
    assert.equal(edge.ours.body.toString('latin1'), spectraXml(BANDS.map((b) => [b, reflectance8(value8(b, 512 + 10, 20))])));
    const index = 20 * TILE + 10;
    const [col, row] = [index % 88, Math.floor(index / 88)];
    assert.equal(edge.ref.body.toString('latin1'), spectraXml(BANDS.map((b) => [b, reflectance8(value8(b, 512 + col, row))])), "1.1's edge-tile indexing");
    if (HAVE_VIPS) {
      for (const query of ['FIF=fl&SPECTRA=0,1,10,20', 'FIF=fl&SPECTRA=0,4,1,2', 'FIF=u32.tif&SPECTRA=0,1,10,20']) {
        const { ref, ours } = await need().get(query);
        assert.equal(ours.body.toString('latin1'), ref.body.toString('latin1'), query);
      }
    }
    const bounds = await need().get('FIF=ms&SPECTRA=2,2,256,20');
    assert.equal(bounds.ours.status, bounds.ref.status);
    assert.equal(bounds.ours.body.toString('latin1'), bounds.ref.body.toString('latin1'));
  });

  it('SDS and JTLS: the same view file, the same tile pixels', async () => {
    const queries = [
      'FIF=pano&JTL=0,0',
      ...PANORAMA.map(([h, v]) => `FIF=pano&SDS=${h},${v}&JTL=2,3`),
      'FIF=pano&JTLS=10,1,1,45',
      'FIF=ms&SDS=500,90&JTL=2,1',
      'FIF=m16&SDS=700,90&JTL=2,4',
    ];
    for (const query of queries) {
      const { ref, ours } = await need().get(query);
      assert.equal(ours.status, 200, `${query}: ${ours.body.toString('latin1').slice(0, 200)}`);
      assert.equal(ref.status, 200, query);
      const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
      assert.deepEqual([b.width, b.height, b.channels], [a.width, a.height, a.channels], query);
      const mad = meanAbsoluteDifference(a, b);
      assert.ok(mad < 1.5, `${query}: mean difference ${mad.toFixed(2)}`);
    }
    for (const query of ['FIF=pano&SDS=20,45&JTL=0,0', 'FIF=two&JTL=0,0', 'FIF=nothing&JTL=0,0']) {
      const { ref, ours } = await need().get(query);
      assert.equal(ours.status, 404, query);
      assert.equal(ref.status, 404, query);
    }
  });

  it('PFL: the same numbers as 1.1 (whose band keys are bare, so not JSON: quoted before comparing)', async () => {
    const queries = [
      'FIF=ms&PFL=2:10,20-15,20',
      'FIF=ms&PFL=2:200,300-600,300',
      'FIF=ms&PFL=2:10,20-10,24',
      'FIF=ms&PFL=2:30,250-3,399',
      'FIF=ms&PFL=2:599,399',
      'FIF=ms&PFL=1:0,0-300,0',
      'FIF=ms&PFL=0:0,7-150,7',
      'FIF=ms&PFL=0:5',
      'FIF=ms&PFL=abc',
      'FIF=m16&PFL=2:250,20-260,20',
      'FIF=m16&PFL=1:3,0-3,200',
      'FIF=single.tif&PFL=2:10,20-13,20',
      'FIF=rgb.tif&PFL=1:10,20',
      ...(HAVE_VIPS ? ['FIF=fl&PFL=0:10,20-13,20', 'FIF=fl&PFL=0:599,0-599,400'] : []),
    ];
    for (const query of queries) {
      const { ref, ours } = await need().get(query);
      assert.equal(ref.status, 200, query);
      assert.equal(ours.status, 200, query);
      assert.deepEqual(JSON.parse(ours.body.toString('latin1')), referenceProfile(ref), query);
    }
    if (HAVE_VIPS) {
      // 1.1 prints 32-bit integers with six significant digits (3.01862e+09); ours in full.
      const { ref, ours } = await need().get('FIF=u32.tif&PFL=0:266,20-268,20');
      assert.equal(ref.body.toString('latin1'), '{\n\t"profile": [3.01862e+09,3.01869e+09]\n}');
      assert.equal(ours.body.toString('latin1'), '{\n\t"profile": [3018620020,3018690020]\n}');
    }
    for (const query of ['FIF=ms&PFL=3:0,0', 'FIF=ms&PFL=2:590,20-610,20']) {
      const { ref, ours } = await need().get(query);
      assert.equal(ours.status, 400, query);
      assert.equal(ref.status, 400, query);
    }
  });
});
