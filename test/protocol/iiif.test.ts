/**
 * IIIF Image API 2.1 and 3.0 through the router, on real pyramids: info.json field by field for
 * both versions and every setting that changes it, the id as the client reached the server (query
 * style, URI_MAP path style, BASE_URL, Host, HTTPS, proxies, encoded identifiers), content
 * negotiation and Link headers, the base-URI redirect, pixels (regions, rotations, mirroring, gray,
 * bitonal) on a picture of coloured squares and on the IIIF validator's own test image, the size
 * and region edge cases viewers hit, grid tiles through the tile path (stored bytes identical to
 * IIP JTL), a viewer-style walk of the tile grid, and the error statuses.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainRequest, PlainResponse } from '../../src/request.ts';
import { getHeader } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { plainRequest } from '../helpers/requests.ts';
import { fixtureDir, tempDir } from '../helpers/daemon.ts';
import { VALIDATOR_ID, validatorImage } from '../helpers/iiif-fixtures.ts';
import { decodePixels, rampPixels, type Pixels } from '../helpers/images.ts';
import { tileGrid, tileRect } from '../../src/engine/geometry.ts';
import { JP2_SKIP, makeJp2, testImage } from '../helpers/jp2.ts';
import { writeTiff, type TiffLevelData, type TiffSpec } from '../helpers/tiff-writer.ts';
import { parseJson, type JsonObject } from '../helpers/json.ts';

const HOST = 'images.example.org:8080';
const SCRIPT = '/fcgi-bin/iipsrv.fcgi';
const CONTEXT2 = 'http://iiif.io/api/image/2/context.json';
const CONTEXT3 = 'http://iiif.io/api/image/3/context.json';
const LD3 = `application/ld+json;profile="${CONTEXT3}"`;
const LD2 = `application/ld+json;profile="${CONTEXT2}"`;
/** iipsrv master's service (2.1); 3.0 adds the @id and @type every 3.0 service needs (§5.7). */
const physdim = (physicalScale: number, physicalUnits: string, id?: string) => ({
  '@context': 'http://iiif.io/api/annex/services/physdim/1/context.json',
  ...(id === undefined ? {} : { '@id': `${id}/info.json#physdim`, '@type': 'PhysicalDimensions' }),
  profile: 'http://iiif.io/api/annex/services/physdim',
  physicalScale,
  physicalUnits,
});

interface Server {
  engine: Engine;
  /** `?IIIF=<argument>` on the classic script URL. */
  query(argument: string, extra?: Partial<PlainRequest>): Promise<PlainResponse>;
  /** Any query string (IIP, for comparisons). */
  raw(query: string, extra?: Partial<PlainRequest>): Promise<PlainResponse>;
  /** `/iiif/<path>` with URI_MAP="iiif=>IIIF", as nginx passes it (SCRIPT_NAME /iiif). */
  path(rest: string, extra?: Partial<PlainRequest>): Promise<PlainResponse>;
}

function serverFor(prefix: string, env: Record<string, string> = {}): Server {
  // No RAM cache unless a test asks: the tests count what the engine reads.
  const config = loadConfig({ MEMCACHED_SERVERS: '', MAX_IMAGE_CACHE_SIZE: '0', FILESYSTEM_PREFIX: prefix, URI_MAP: 'iiif=>IIIF', ...env });
  const engine = new Engine({
    paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix },
    cacheBytes: config.maxImageCacheBytes,
    interpolation: config.interpolation,
  });
  const router = createRouter({ config, engine, log: silentLog });
  const withHost = (extra: Partial<PlainRequest>) => ({ ...extra, headers: { host: HOST, ...extra.headers } });
  return {
    engine,
    query: (argument, extra = {}) => router(plainRequest(`IIIF=${argument}`, withHost(extra))),
    raw: (query, extra = {}) => router(plainRequest(query, withHost(extra))),
    path: (rest, extra = {}) => router(plainRequest('', { path: `/iiif/${rest}`, scriptName: '/iiif', ...withHost(extra) })),
  };
}

const header = (response: PlainResponse, name: string) => getHeader(response.headers, name);
const headers = (response: PlainResponse, name: string) =>
  response.headers.filter(([key]) => key.toLowerCase() === name.toLowerCase()).map(([, value]) => value);
const json = (response: PlainResponse) => parseJson(response.body);

async function ok(response: Promise<PlainResponse>, what = ''): Promise<PlainResponse> {
  const got = await response;
  assert.equal(got.status, 200, `${what}: ${got.status} ${got.body.toString().slice(0, 200)}`);
  return got;
}

async function image(response: Promise<PlainResponse>, what = ''): Promise<Pixels> {
  return decodePixels((await ok(response, what)).body);
}

function pixel(p: Pixels, x: number, y: number): number[] {
  const i = (y * p.width + x) * p.channels;
  return [...p.data.subarray(i, i + p.channels)];
}

/** Per-band median of a box: robust against JPEG ringing and resampled edges. */
function median(p: Pixels, box = { left: 0, top: 0, width: p.width, height: p.height }): number[] {
  const bands: number[][] = Array.from({ length: p.channels }, () => []);
  for (let y = box.top; y < box.top + box.height; y++) {
    for (let x = box.left; x < box.left + box.width; x++) {
      const values = pixel(p, x, y);
      values.forEach((v, band) => bands[band]!.push(v));
    }
  }
  return bands.map((values) => values.sort((a, b) => a - b)[values.length >> 1]!);
}

function assertNear(got: number[], expected: number[], tolerance: number, what: string): void {
  assert.equal(got.length, expected.length, `${what}: ${got.length} bands, expected ${expected.length}`);
  const off = got.some((v, i) => Math.abs(v - expected[i]!) > tolerance);
  assert.ok(!off, `${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)} ±${tolerance}`);
}

// ---------------------------------------------------------------------------------------------
// Test pictures.

/** 100-px squares, 10 across and 7 down; known colours in the corners. */
function squareColour(col: number, row: number): [number, number, number] {
  if (col === 0 && row === 0) return [255, 0, 0];
  if (col === 9 && row === 0) return [0, 255, 0];
  if (col === 0 && row === 6) return [0, 0, 255];
  if (col === 9 && row === 6) return [255, 255, 255];
  if (col === 1 && row === 0) return [0, 0, 0];
  return [30 + col * 20, 40 + row * 25, 220 - col * 10 - row * 15];
}

function squares(width: number, height: number, side = 100): Buffer {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(squareColour(Math.floor(x / side), Math.floor(y / side)), (y * width + x) * 3);
  }
  return raw;
}

/** Smooth ramps plus squares: structure at every scale, for the big image. */
function pattern(width: number, height: number): Buffer {
  return rampPixels(width, height, (x, y) => ((Math.floor(x / 25) + Math.floor(y / 25)) % 3) * 100);
}

async function pyramid(
  file: string,
  raw: Buffer,
  width: number,
  height: number,
  options: { compression?: 'jpeg' | 'deflate'; channels?: 1 | 3; tile?: number } = {},
): Promise<void> {
  let picture = sharp(raw, { raw: { width, height, channels: options.channels ?? 3 } });
  if (options.channels === 1) picture = picture.toColourspace('b-w');
  await picture
    .tiff({
      tile: true,
      pyramid: true,
      tileWidth: options.tile ?? 256,
      tileHeight: options.tile ?? 256,
      compression: options.compression ?? 'deflate',
      quality: 90,
    })
    .toFile(file);
}

/**
 * The grey of a colour, by the two formulas a server may use: CIE Y of the linear-light colour,
 * sRGB-encoded (libvips' b-w), and Rec.601 luma on the encoded values (iipsrv's COL=grey, what the
 * engine does). The specification prescribes neither.
 */
function greys([r, g, b]: number[]): [number, number] {
  const linear = (v: number) => (v / 255 <= 0.04045 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4);
  const y = 0.2126 * linear(r!) + 0.7152 * linear(g!) + 0.0722 * linear(b!);
  return [255 * (y <= 0.0031308 ? 12.92 * y : 1.055 * y ** (1 / 2.4) - 0.055), 0.299 * r! + 0.587 * g! + 0.114 * b!];
}

/** A seeded generator, so that the validator-style random picks are the same every run. */
function random(seed: number): (n: number) => number {
  let state = seed;
  return (n) => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return Math.floor((state / 2147483648) * n);
  };
}

/** 3001x700 as libvips makes it (JPEG tiles) and, where OpenJPEG is installed, as a JP2. */
const ODD3001 = ['odd3001.tif', ...(JP2_SKIP ? [] : ['odd3001.jp2'])];

/** A pyramid whose levels are ceil(size / 2^k) (as OpenJPEG's), nearest samples, down to one tile. */
function halvedUp(width: number, height: number, tile: number, raw: Buffer): TiffLevelData[] {
  const levels: TiffLevelData[] = [];
  for (let factor = 1; ; factor *= 2) {
    const [w, h] = [Math.ceil(width / factor), Math.ceil(height / factor)];
    const samples = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) samples.set(raw.subarray((y * factor * width + x * factor) * 3, (y * factor * width + x * factor) * 3 + 3), (y * w + x) * 3);
    }
    levels.push({ width: w, height: h, samples });
    if (w <= tile && h <= tile) return levels;
  }
}

let dir: string;
let prefix: string;
let server: Server;
/** The validator's lossless original, and the colour at the centre of its square (x, y). */
let truth: Pixels;
const truthColour = (x: number, y: number) => pixel(truth, x * 100 + 50, y * 100 + 50);

before(async () => {
  dir = tempDir('iipsrv-iiif-');
  prefix = dir + '/';
  mkdirSync(path.join(dir, 'sub', 'dir'), { recursive: true });
  truth = await validatorImage([path.join(dir, `${VALIDATOR_ID}.tif`), path.join(dir, 'sub', 'dir', 'validator.tif')]);
  await Promise.all([
    pyramid(path.join(dir, 'squares.tif'), squares(1000, 700), 1000, 700),
    pyramid(path.join(dir, 'squares-jpeg.tif'), squares(1000, 700), 1000, 700, { compression: 'jpeg' }),
    pyramid(path.join(dir, 'with space.tif'), squares(300, 200), 300, 200),
    pyramid(path.join(dir, 'portrait.tif'), squares(700, 1000), 700, 1000),
    pyramid(path.join(dir, 'odd.tif'), squares(1001, 701), 1001, 701, { compression: 'jpeg' }),
    pyramid(path.join(dir, 'grey.tif'), Buffer.from(squares(600, 400).filter((_, i) => i % 3 === 1)), 600, 400, { channels: 1 }),
    pyramid(path.join(dir, 'tiny.tif'), squares(100, 60, 20), 100, 60, { compression: 'jpeg' }),
    pyramid(path.join(dir, 'one.tif'), Buffer.from([200, 30, 60]), 1, 1),
    pyramid(path.join(dir, 'wide.tif'), pattern(4000, 8), 4000, 8),
    // 3001 px wide: libvips halves it to 1500 (rounding down), OpenJPEG to 1501 (up).
    pyramid(path.join(dir, 'odd3001.tif'), pattern(3001, 700), 3001, 700, { compression: 'jpeg' }),
    // Generated small and scaled up: a real 10000x7000 JPEG pyramid in about a second.
    sharp(pattern(500, 350), { raw: { width: 500, height: 350, channels: 3 } })
      .resize(10000, 7000, { kernel: 'nearest' })
      .tiff({ tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 80 })
      .toFile(path.join(dir, 'huge.tif')),
  ]);
  // Levels halved upwards, down to 5x188: 300/10 and 300/5 are 30 and 60, their factors 32 and 64.
  writeTiff(path.join(dir, 'narrow.tif'), { levels: halvedUp(300, 12000, 256, pattern(300, 12000)), channels: 3, bits: 8, compression: 'deflate' });
  if (!JP2_SKIP) makeJp2(dir, 'odd3001.jp2', testImage(3001, 700, 3, 8), ['-t', '256,256', '-n', '5']);
  server = serverFor(prefix);
});

// ---------------------------------------------------------------------------------------------

describe('info.json, Image API 3.0 (the default)', () => {
  it('every field of a 1000x700 pyramid with 256-px tiles', async () => {
    const response = await ok(server.query('squares.tif/info.json'));
    const info = json(response);
    assert.deepEqual(info, {
      '@context': CONTEXT3,
      id: `http://${HOST}${SCRIPT}?IIIF=squares.tif`,
      type: 'ImageService3',
      protocol: 'http://iiif.io/api/image',
      profile: 'level2',
      width: 1000,
      height: 700,
      maxWidth: 5000,
      maxHeight: 5000,
      sizes: [
        { width: 250, height: 175 },
        { width: 500, height: 350 },
        { width: 1000, height: 700 },
      ],
      tiles: [{ width: 256, height: 256, scaleFactors: [1, 2, 4] }],
      extraFormats: ['webp', 'tif', 'avif', 'gif', 'jp2', 'pdf'],
      extraQualities: ['color', 'gray', 'bitonal'],
      extraFeatures: ['canonicalLinkHeader', 'mirroring', 'profileLinkHeader', 'rotationArbitrary', 'sizeUpscaling'],
      // libvips writes 25.4 px/inch (1 px/mm) when it knows no resolution; iipsrv master states it too.
      service: [physdim(0.0393701, 'in', `http://${HOST}${SCRIPT}?IIIF=squares.tif`)],
    });
    assert.equal(Object.keys(info)[0], '@context', '@context comes first');
    assert.equal(header(response, 'content-type'), LD3);
    assert.deepEqual(headers(response, 'link'), ['<http://iiif.io/api/image/3/level2.json>;rel="profile"']);
    assert.equal(header(response, 'vary'), 'Accept');
    assert.equal(header(response, 'cache-control'), 'max-age=86400');
    assert.ok(header(response, 'last-modified'));
  });
  it("the scale factors are the pyramid's: a 10000x7000 image has 7 levels", async () => {
    const info = json(await ok(server.query('huge.tif/info.json')));
    assert.deepEqual(info.tiles, [{ width: 256, height: 256, scaleFactors: [1, 2, 4, 8, 16, 32, 64] }]);
    // Every level that fits MAX_CVT (5000): the full 10000x7000 does not.
    assert.deepEqual(info.sizes, [
      { width: 156, height: 109 },
      { width: 312, height: 218 },
      { width: 625, height: 437 },
      { width: 1250, height: 875 },
      { width: 2500, height: 1750 },
      { width: 5000, height: 3500 },
    ]);
  });
  it('the validator image: 128-px tiles, four levels', async () => {
    const info = json(await ok(server.query(`${VALIDATOR_ID}.tif/info.json`)));
    assert.deepEqual([info.width, info.height], [1000, 1000]);
    assert.deepEqual(info.tiles, [{ width: 128, height: 128, scaleFactors: [1, 2, 4, 8] }]);
    assert.deepEqual(
      info.sizes,
      [125, 250, 500, 1000].map((s) => ({ width: s, height: s })),
    );
  });
  it('a greyscale image offers no color quality', async () => {
    const info = json(await ok(server.query('grey.tif/info.json')));
    assert.deepEqual(info.extraQualities, ['gray', 'bitonal']);
  });
  it('an image smaller than one tile, and a 1x1 image', async () => {
    const tiny = json(await ok(server.query('tiny.tif/info.json')));
    assert.deepEqual(
      [tiny.width, tiny.height, tiny.sizes, tiny.tiles],
      [100, 60, [{ width: 100, height: 60 }], [{ width: 256, height: 256, scaleFactors: [1] }]],
    );
    const one = json(await ok(server.query('one.tif/info.json')));
    assert.deepEqual([one.width, one.height, one.sizes, one.tiles], [1, 1, [{ width: 1, height: 1 }], [{ width: 256, height: 256, scaleFactors: [1] }]]);
  });
});

describe('info.json, Image API 2.1', () => {
  it('every field, with the profile array (formats, qualities, supports, limits)', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    const response = await ok(v2.query('squares.tif/info.json'));
    const info = json(response);
    assert.deepEqual(info, {
      '@context': CONTEXT2,
      '@id': `http://${HOST}${SCRIPT}?IIIF=squares.tif`,
      protocol: 'http://iiif.io/api/image',
      width: 1000,
      height: 700,
      sizes: [
        { width: 250, height: 175 },
        { width: 500, height: 350 },
        { width: 1000, height: 700 },
      ],
      tiles: [{ width: 256, height: 256, scaleFactors: [1, 2, 4] }],
      profile: [
        'http://iiif.io/api/image/2/level2.json',
        {
          formats: ['jpg', 'png', 'webp', 'tif', 'avif', 'gif', 'jp2', 'pdf'],
          qualities: ['default', 'color', 'gray', 'bitonal'],
          supports: [
            'baseUriRedirect',
            'canonicalLinkHeader',
            'jsonldMediaType',
            'mirroring',
            'profileLinkHeader',
            'regionByPct',
            'regionByPx',
            'regionSquare',
            'rotationArbitrary',
            'rotationBy90s',
            'sizeAboveFull',
            'sizeByConfinedWh',
            'sizeByDistortedWh',
            'sizeByForcedWh',
            'sizeByH',
            'sizeByPct',
            'sizeByW',
            'sizeByWh',
          ],
          maxWidth: 5000,
          maxHeight: 5000,
        },
      ],
      service: [physdim(0.0393701, 'in')],
    });
    assert.equal(Object.keys(info)[0], '@context');
    // 2.1 §5.1: plain JSON unless the client asks for JSON-LD.
    assert.equal(header(response, 'content-type'), 'application/json');
    assert.deepEqual(headers(response, 'link'), ['<http://iiif.io/api/image/2/level2.json>;rel="profile"']);
    const ld = await ok(v2.query('squares.tif/info.json', { headers: { accept: 'application/ld+json' } }));
    assert.equal(header(ld, 'content-type'), LD2);
    assert.deepEqual(json(ld), info);
  });
  it('cors is listed when CORS is set; greyscale has no color quality', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2', CORS: '*' });
    const info = json(await ok(v2.query('grey.tif/info.json')));
    assert.ok(info.profile[1].supports.includes('cors'));
    assert.deepEqual(info.profile[1].qualities, ['default', 'gray', 'bitonal']);
  });
});

describe('info.json and the site settings', () => {
  it('MAX_CVT: the stated limits, and sizes beyond them are not listed', async () => {
    for (const version of ['2', '3']) {
      const info = json(await ok(serverFor(prefix, { MAX_CVT: '600', IIIF_VERSION: version }).query('squares.tif/info.json')));
      const limits = version === '3' ? info : info.profile[1];
      assert.deepEqual([limits.maxWidth, limits.maxHeight], [600, 600], `v${version}`);
      assert.deepEqual(info.sizes, [
        { width: 250, height: 175 },
        { width: 500, height: 350 },
      ]);
    }
  });
  it('MAX_CVT=-1: no limits stated; v3 then cannot offer upscaling (it needs a maxWidth), v2 can', async () => {
    const v3 = json(await ok(serverFor(prefix, { MAX_CVT: '-1' }).query('huge.tif/info.json')));
    assert.equal(v3.maxWidth, undefined);
    assert.equal(v3.maxHeight, undefined);
    assert.ok(!v3.extraFeatures.includes('sizeUpscaling'));
    assert.equal(v3.sizes.length, 7, 'every level, full resolution included');
    const v2 = json(await ok(serverFor(prefix, { MAX_CVT: '-1', IIIF_VERSION: '2' }).query('huge.tif/info.json')));
    assert.equal(v2.profile[1].maxWidth, undefined);
    assert.ok(v2.profile[1].supports.includes('sizeAboveFull'));
  });
  it('ALLOW_UPSCALING=0: the image size is the limit, and no upscaling is offered', async () => {
    const v3 = json(await ok(serverFor(prefix, { ALLOW_UPSCALING: '0' }).query('squares.tif/info.json')));
    assert.deepEqual([v3.maxWidth, v3.maxHeight], [1000, 700]);
    assert.ok(!v3.extraFeatures.includes('sizeUpscaling'));
    const v2 = json(await ok(serverFor(prefix, { ALLOW_UPSCALING: '0', IIIF_VERSION: '2' }).query('squares.tif/info.json')));
    assert.deepEqual([v2.profile[1].maxWidth, v2.profile[1].maxHeight], [1000, 700]);
    assert.ok(!v2.profile[1].supports.includes('sizeAboveFull'));
  });
  it('a MAX_CVT below the tile size still lets the advertised tiles through', async () => {
    const small = serverFor(prefix, { MAX_CVT: '100' });
    const info = json(await ok(small.query('squares.tif/info.json')));
    assert.deepEqual([info.maxWidth, info.maxHeight], [256, 256]);
    assert.deepEqual(info.sizes, [{ width: 250, height: 175 }]);
    const tile = await image(small.query('squares.tif/0,0,256,256/256,256/0/default.jpg'));
    assert.deepEqual([tile.width, tile.height], [256, 256]);
    assert.equal((await small.query('squares.tif/full/257,/0/default.jpg')).status, 400);
  });
  it('IIIF_EXTRA_INFO members are added (and a member of ours they name is replaced)', async () => {
    const extra = '"rights": "https://creativecommons.org/licenses/by/4.0/", "partOf": [{"id": "https://example.org/manifest", "type": "Manifest"}]';
    const info = json(
      await ok(serverFor(prefix, { IIIF_EXTRA_INFO: extra, COPYRIGHT: 'http://rightsstatements.org/vocab/InC/1.0/' }).query('squares.tif/info.json')),
    );
    assert.equal(info.rights, 'https://creativecommons.org/licenses/by/4.0/');
    assert.deepEqual(info.partOf, [{ id: 'https://example.org/manifest', type: 'Manifest' }]);
    assert.equal(info.type, 'ImageService3');
    const v2 = json(
      await ok(serverFor(prefix, { IIIF_EXTRA_INFO: '"logo": "https://example.org/logo.png"', IIIF_VERSION: '2' }).query('squares.tif/info.json')),
    );
    assert.equal(v2.logo, 'https://example.org/logo.png');
  });
  it('COPYRIGHT: a rights URI is v3 rights and v2 license; free text is v2 attribution only', async () => {
    const uri = 'http://rightsstatements.org/vocab/InC/1.0/';
    assert.equal(json(await ok(serverFor(prefix, { COPYRIGHT: uri }).query('squares.tif/info.json'))).rights, uri);
    assert.equal(json(await ok(serverFor(prefix, { COPYRIGHT: uri, IIIF_VERSION: '2' }).query('squares.tif/info.json'))).license, uri);
    const text = '(c) Example Museum';
    const v3 = json(await ok(serverFor(prefix, { COPYRIGHT: text }).query('squares.tif/info.json')));
    assert.equal(v3.rights, undefined, 'v3 rights must be a URI');
    assert.equal(json(await ok(serverFor(prefix, { COPYRIGHT: text, IIIF_VERSION: '2' }).query('squares.tif/info.json'))).attribution, text);
  });
});

describe('the physical dimensions service, from the resolution the file states', () => {
  const sample = { width: 300, height: 200, samples: squares(300, 200) };
  before(async () => {
    const picture = () => sharp(squares(300, 200), { raw: { width: 300, height: 200, channels: 3 } });
    const tiled = { tile: true, tileWidth: 256, tileHeight: 256, pyramid: true } as const;
    await Promise.all([
      // sharp takes pixels per millimetre: 300 px/inch, and 50 px/cm.
      picture()
        .tiff({ ...tiled, xres: 300 / 25.4, yres: 300 / 25.4, resolutionUnit: 'inch' })
        .toFile(path.join(dir, 'dpi300.tif')),
      picture()
        .tiff({ ...tiled, xres: 5, yres: 5, resolutionUnit: 'cm' })
        .toFile(path.join(dir, 'cm50.tif')),
    ]);
    const spec: TiffSpec = { levels: [sample], channels: 3, bits: 8 };
    writeTiff(path.join(dir, 'no-resolution.tif'), spec);
    writeTiff(path.join(dir, 'unit-none.tif'), { ...spec, resolution: { x: 300, y: 300, unit: 1 } });
    writeTiff(path.join(dir, 'unit-absent.tif'), { ...spec, resolution: { x: 150, y: 150 } });
    writeTiff(path.join(dir, 'anisotropic.tif'), { ...spec, resolution: { x: 40, y: 80, unit: 3 } });
    // Its res box states 72 px/inch, in pixels per metre.
    copyFileSync(path.join(fixtureDir('cantaloupe'), 'jp2-exif.jp2'), path.join(dir, 'res-box.jp2'));
  });
  it('a pixel in inches or centimetres, in both versions', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    for (const [name, scale, units] of [
      // Six significant digits, as iipsrv prints the scale.
      ['dpi300.tif', 0.00333333, 'in'],
      ['cm50.tif', 0.02, 'cm'],
      // No ResolutionUnit: inches, the TIFF default.
      ['unit-absent.tif', 0.00666667, 'in'],
      // One scale for both directions: the horizontal one, as iipsrv.
      ['anisotropic.tif', 0.025, 'cm'],
      ['res-box.jp2', 0.0352778, 'cm'],
    ] as const) {
      for (const [s, service] of [
        [server, physdim(scale, units, `http://${HOST}/iiif/${name}`)],
        [v2, physdim(scale, units)],
      ] as const) {
        const info = json(await ok(s.path(`${name}/info.json`)));
        assert.deepEqual(info.service, [service], name);
        assert.equal(Object.keys(info).at(-1), 'service', `${name}: the service comes last, as in iipsrv`);
      }
    }
  });
  it('no service without a resolution, or with ResolutionUnit "none"', async () => {
    for (const name of ['no-resolution.tif', 'unit-none.tif']) {
      const info = json(await ok(server.path(`${name}/info.json`)));
      assert.equal(info.service, undefined, name);
      assert.equal(Object.keys(info).at(-1), 'extraFeatures', name);
    }
  });
  it('IIIF_EXTRA_INFO naming service replaces ours', async () => {
    const s = serverFor(prefix, { IIIF_EXTRA_INFO: '"service": [{"id": "https://example.org/auth", "type": "AuthProbeService2"}]' });
    assert.deepEqual(json(await ok(s.path('dpi300.tif/info.json'))).service, [{ id: 'https://example.org/auth', type: 'AuthProbeService2' }]);
  });
});

describe('the id is the URL the client used', () => {
  const idOf = async (response: Promise<PlainResponse>) => {
    const info = json(await ok(response));
    return (info.id ?? info['@id']) as string;
  };
  it('query style: scheme, Host with its port, script path, ?IIIF=', async () => {
    assert.equal(await idOf(server.query('squares.tif/info.json')), `http://${HOST}${SCRIPT}?IIIF=squares.tif`);
    assert.equal(await idOf(server.query('squares.tif/info.json', { headers: { host: '127.0.0.1:9999' } })), `http://127.0.0.1:9999${SCRIPT}?IIIF=squares.tif`);
  });
  it('URI_MAP path style', async () => {
    assert.equal(await idOf(server.path('squares.tif/info.json')), `http://${HOST}/iiif/squares.tif`);
    // Behind a ScriptAlias: the prefix follows SCRIPT_NAME.
    const aliased = serverFor(prefix);
    const router = createRouter({
      config: loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, URI_MAP: 'iiif=>IIIF' }),
      engine: aliased.engine,
      log: silentLog,
    });
    const response = await router(plainRequest('', { path: `${SCRIPT}/iiif/squares.tif/info.json`, scriptName: SCRIPT, headers: { host: HOST } }));
    assert.equal(await idOf(Promise.resolve(response)), `http://${HOST}${SCRIPT}/iiif/squares.tif`);
  });
  it("HTTPS from the front end (HTTPS=on); a proxy's X-Forwarded-Proto and -Host when TRUSTED_HEADERS lists them", async () => {
    assert.equal(await idOf(server.path('squares.tif/info.json', { https: true })), `https://${HOST}/iiif/squares.tif`);
    const proxied = serverFor(prefix, { TRUSTED_HEADERS: 'X-Forwarded-Proto, X-Forwarded-Host' });
    assert.equal(
      await idOf(proxied.query('squares.tif/info.json', { headers: { 'x-forwarded-proto': 'https' } })),
      `https://${HOST}${SCRIPT}?IIIF=squares.tif`,
    );
    assert.equal(
      await idOf(proxied.path('squares.tif/info.json', { https: true, headers: { 'x-forwarded-proto': 'http' } })),
      `http://${HOST}/iiif/squares.tif`,
    );
    assert.equal(
      await idOf(proxied.path('squares.tif/info.json', { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example.org' } })),
      'https://public.example.org/iiif/squares.tif',
    );
    // Appended to by each proxy: the last value is the one our own proxy wrote.
    assert.equal(
      await idOf(
        proxied.path('squares.tif/info.json', { headers: { 'x-forwarded-proto': 'http, https', 'x-forwarded-host': 'evil.example, public.example.org' } }),
      ),
      'https://public.example.org/iiif/squares.tif',
    );
  });
  it("a Host without its port (Debian nginx's HTTP_HOST $host) gets the front end's SERVER_PORT, unless it is the scheme's default", async () => {
    const host = { host: 'images.example.org' };
    assert.equal(await idOf(server.path('squares.tif/info.json', { headers: host, serverPort: '8081' })), 'http://images.example.org:8081/iiif/squares.tif');
    assert.equal(
      header(await server.query('squares.tif', { headers: host, serverPort: '8081' }), 'location'),
      `http://images.example.org:8081${SCRIPT}?IIIF=squares.tif/info.json`,
    );
    assert.equal(await idOf(server.path('squares.tif/info.json', { headers: host, serverPort: '80' })), 'http://images.example.org/iiif/squares.tif');
    assert.equal(
      await idOf(server.path('squares.tif/info.json', { headers: host, https: true, serverPort: '443' })),
      'https://images.example.org/iiif/squares.tif',
    );
    assert.equal(
      await idOf(server.path('squares.tif/info.json', { headers: host, https: true, serverPort: '80' })),
      'https://images.example.org:80/iiif/squares.tif',
    );
    // A Host with a port, an IPv6 literal without one.
    assert.equal(
      await idOf(server.path('squares.tif/info.json', { headers: { host: 'a.example:9' }, serverPort: '8081' })),
      'http://a.example:9/iiif/squares.tif',
    );
    assert.equal(await idOf(server.path('squares.tif/info.json', { headers: { host: '[::1]' }, serverPort: '8081' })), 'http://[::1]:8081/iiif/squares.tif');
    // A trusted proxy's scheme: SERVER_PORT is then the inner hop's, not in the client's URL.
    const proxied = serverFor(prefix, { TRUSTED_HEADERS: 'X-Forwarded-Proto' });
    assert.equal(
      await idOf(proxied.path('squares.tif/info.json', { headers: { ...host, 'x-forwarded-proto': 'https' }, serverPort: '8080' })),
      'https://images.example.org/iiif/squares.tif',
    );
  });
  it('BASE_URL wins, in both styles (a missing trailing slash is supplied)', async () => {
    const based = serverFor(prefix, { BASE_URL: 'https://iiif.example.org/images/' });
    assert.equal(await idOf(based.query('squares.tif/info.json')), 'https://iiif.example.org/images/squares.tif');
    assert.equal(await idOf(based.path('squares.tif/info.json')), 'https://iiif.example.org/images/squares.tif');
    assert.equal(
      await idOf(serverFor(prefix, { BASE_URL: 'https://iiif.example.org/images' }).path('squares.tif/info.json')),
      'https://iiif.example.org/images/squares.tif',
    );
  });
  it('identifiers with slashes, encoded (%2F) or not, and other encoded characters stay as sent', async () => {
    assert.equal(await idOf(server.path('sub%2Fdir%2Fvalidator.tif/info.json')), `http://${HOST}/iiif/sub%2Fdir%2Fvalidator.tif`);
    assert.equal(await idOf(server.path('sub/dir/validator.tif/info.json')), `http://${HOST}/iiif/sub/dir/validator.tif`);
    assert.equal(await idOf(server.query('sub%2Fdir%2Fvalidator.tif/info.json')), `http://${HOST}${SCRIPT}?IIIF=sub%2Fdir%2Fvalidator.tif`);
    assert.equal(await idOf(server.path('with%20space.tif/info.json')), `http://${HOST}/iiif/with%20space.tif`);
    assert.equal(
      await idOf(server.path(`${VALIDATOR_ID.replaceAll('-', '%2D')}.tif/info.json`)),
      `http://${HOST}/iiif/${VALIDATOR_ID.replaceAll('-', '%2D')}.tif`,
    );
    // And the image itself is found under the decoded name.
    await image(server.path('sub%2Fdir%2Fvalidator.tif/full/max/0/default.jpg'));
  });
  it('X-IIIF-ID is taken verbatim when TRUSTED_HEADERS lists it', async () => {
    const trusting = serverFor(prefix, { TRUSTED_HEADERS: 'x-iiif-id' });
    assert.equal(
      await idOf(trusting.query('squares.tif/info.json', { headers: { 'x-iiif-id': 'https://cdn.example.org/iiif/squares' } })),
      'https://cdn.example.org/iiif/squares',
    );
    // Without the header, the URL the client used.
    assert.equal(await idOf(trusting.query('squares.tif/info.json')), `http://${HOST}${SCRIPT}?IIIF=squares.tif`);
  });
});

describe('no header a client sends decides a URL the server gives out, unless TRUSTED_HEADERS says so', () => {
  const EVIL = 'https://evil.example/phish';
  const hostile = { 'x-iiif-id': EVIL, 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' };
  const idOf = (response: PlainResponse) => {
    const info = json(response);
    return (info.id ?? info['@id']) as string;
  };
  it('by default X-IIIF-ID, X-Forwarded-Host and -Proto change no id, redirect or canonical link, and nothing varies on them', async () => {
    const info = await ok(server.query('squares.tif/info.json', { headers: hostile }));
    assert.equal(idOf(info), `http://${HOST}${SCRIPT}?IIIF=squares.tif`);
    assert.equal(header(info, 'vary'), 'Accept');
    const redirect = await server.query('squares.tif', { headers: hostile });
    assert.equal(redirect.status, 303);
    assert.equal(header(redirect, 'location'), `http://${HOST}${SCRIPT}?IIIF=squares.tif/info.json`);
    assert.equal(header(redirect, 'vary'), undefined);
    const byPath = await server.path('squares.tif', { headers: hostile });
    assert.equal(header(byPath, 'location'), `http://${HOST}/iiif/squares.tif/info.json`);
    const tile = await ok(server.path('squares.tif/full/max/0/default.jpg', { headers: hostile }));
    assert.ok(headers(tile, 'link')[0]!.startsWith(`<http://${HOST}/iiif/squares.tif/full/max/0/default.jpg>;rel="canonical", `));
    assert.equal(header(tile, 'vary'), undefined);
  });
  it('BASE_URL wins over every header, trusted or not', async () => {
    const based = serverFor(prefix, { BASE_URL: 'https://iiif.example.org/', TRUSTED_HEADERS: 'X-IIIF-ID X-Forwarded-Host X-Forwarded-Proto' });
    assert.equal(idOf(await ok(based.query('squares.tif/info.json', { headers: hostile }))), 'https://iiif.example.org/squares.tif');
    assert.equal(header(await based.query('squares.tif', { headers: hostile }), 'location'), 'https://iiif.example.org/squares.tif/info.json');
    assert.equal(idOf(await ok(based.query('squares.tif/info.json', { iiifId: EVIL }))), 'https://iiif.example.org/squares.tif');
    // Nothing but Accept chooses the document then.
    assert.equal(header(await ok(based.query('squares.tif/info.json')), 'vary'), 'Accept');
  });
  it('trusted headers are named in Vary on info.json, the redirect, images and 304s', async () => {
    const trusting = serverFor(prefix, { TRUSTED_HEADERS: 'X-Forwarded-Host,X-IIIF-ID' });
    const info = await ok(trusting.query('squares.tif/info.json', { headers: { 'x-forwarded-host': 'public.example.org' } }));
    assert.equal(idOf(info), `http://public.example.org${SCRIPT}?IIIF=squares.tif`);
    assert.equal(header(info, 'vary'), 'Accept, X-IIIF-ID, X-Forwarded-Host');
    const redirect = await trusting.query('squares.tif', { headers: { 'x-iiif-id': 'https://cdn.example.org/squares' } });
    assert.equal(header(redirect, 'location'), 'https://cdn.example.org/squares/info.json');
    assert.equal(header(redirect, 'vary'), 'X-IIIF-ID, X-Forwarded-Host');
    const tile = await ok(trusting.path('squares.tif/full/max/0/default.jpg'));
    assert.equal(header(tile, 'vary'), 'X-IIIF-ID, X-Forwarded-Host');
    const later = 'Sat, 01 Jan 2050 00:00:00 GMT';
    const notModified = await trusting.query('squares.tif/info.json', { headers: { 'if-modified-since': later } });
    assert.equal(notModified.status, 304);
    assert.equal(header(notModified, 'vary'), 'Accept, X-IIIF-ID, X-Forwarded-Host');
  });
  it("the front end's own IIIF_ID (a FastCGI parameter no request header can produce) is used without opting in", async () => {
    const response = await ok(server.query('squares.tif/info.json', { iiifId: 'https://cdn.example.org/iiif/squares', headers: hostile }));
    assert.equal(idOf(response), 'https://cdn.example.org/iiif/squares');
    assert.equal(header(response, 'vary'), 'Accept');
    assert.equal(
      header(await server.query('squares.tif', { iiifId: 'https://cdn.example.org/iiif/squares' }), 'location'),
      'https://cdn.example.org/iiif/squares/info.json',
    );
  });
  it('a Host (or trusted X-Forwarded-Host) that is no host[:port] is a 400, not part of a URL', async () => {
    for (const host of ['evil.example/phish?', 'a@evil.example', 'a b', 'x:y:z']) {
      const response = await server.query('squares.tif/info.json', { headers: { host } });
      assert.equal(response.status, 400, host);
    }
    const trusting = serverFor(prefix, { TRUSTED_HEADERS: 'X-Forwarded-Host' });
    assert.equal((await trusting.query('squares.tif', { headers: { 'x-forwarded-host': 'evil.example/phish#' } })).status, 400);
    // IPv6 literals and ports are hosts.
    assert.equal(idOf(await ok(server.query('squares.tif/info.json', { headers: { host: '[::1]:8080' } }))), `http://[::1]:8080${SCRIPT}?IIIF=squares.tif`);
  });
});

describe('content negotiation', () => {
  it('v3: application/json when asked for alone, JSON-LD otherwise', async () => {
    assert.equal(header(await ok(server.query('squares.tif/info.json', { headers: { accept: 'application/json' } })), 'content-type'), 'application/json');
    assert.equal(header(await ok(server.query('squares.tif/info.json', { headers: { accept: 'application/ld+json' } })), 'content-type'), LD3);
    assert.equal(header(await ok(server.query('squares.tif/info.json', { headers: { accept: '*/*' } })), 'content-type'), LD3);
  });
  it("an Accept header naming a version's context selects that version", async () => {
    const v2 = await ok(server.query('squares.tif/info.json', { headers: { accept: `application/ld+json;profile="${CONTEXT2}"` } }));
    assert.equal(json(v2)['@context'], CONTEXT2);
    assert.equal(json(v2)['@id'], `http://${HOST}${SCRIPT}?IIIF=squares.tif`);
    assert.equal(header(v2, 'content-type'), LD2);
    assert.deepEqual(headers(v2, 'link'), ['<http://iiif.io/api/image/2/level2.json>;rel="profile"']);
    assert.equal(header(v2, 'vary'), 'Accept');
    const v3 = await ok(
      serverFor(prefix, { IIIF_VERSION: '2' }).query('squares.tif/info.json', { headers: { accept: `application/ld+json;profile="${CONTEXT3}"` } }),
    );
    assert.equal(json(v3)['@context'], CONTEXT3);
    assert.equal(json(v3).type, 'ImageService3');
    assert.equal(header(v3, 'content-type'), LD3);
  });
  it('If-Modified-Since: 304 on info.json and images', async () => {
    const later = new Date(Date.now() + 3600_000).toUTCString();
    assert.equal((await server.query('squares.tif/info.json', { headers: { 'if-modified-since': later } })).status, 304);
    assert.equal((await server.query('squares.tif/full/max/0/default.jpg', { headers: { 'if-modified-since': later } })).status, 304);
  });
});

describe('the base URI redirects to info.json', () => {
  it('303 with an absolute Location, query and path style', async () => {
    const query = await server.query('squares.tif');
    assert.equal(query.status, 303);
    assert.equal(header(query, 'location'), `http://${HOST}${SCRIPT}?IIIF=squares.tif/info.json`);
    assert.equal(query.body.length, 0);
    for (const rest of ['squares.tif', 'squares.tif/']) {
      const response = await server.path(rest);
      assert.equal(response.status, 303, rest);
      assert.equal(header(response, 'location'), `http://${HOST}/iiif/squares.tif/info.json`, rest);
    }
    const https = await server.path('sub%2Fdir%2Fvalidator.tif', { https: true });
    assert.equal(header(https, 'location'), `https://${HOST}/iiif/sub%2Fdir%2Fvalidator.tif/info.json`);
    const based = await serverFor(prefix, { BASE_URL: 'https://iiif.example.org/' }).path('squares.tif');
    assert.equal(header(based, 'location'), 'https://iiif.example.org/squares.tif/info.json');
  });
  it('an unknown identifier is a 404, a path short of parameters a 400', async () => {
    assert.equal((await server.path('nope.tif')).status, 404);
    const short = await server.path('squares.tif/full/max/default.jpg');
    assert.equal(short.status, 400);
    assert.match(short.body.toString(), /not enough parameters/);
  });
});

describe('image responses: headers and canonical links', () => {
  const canonical = async (s: Server, rest: string) => {
    const response = await ok(s.path(rest), rest);
    // One header with both links: a client reading one header (the IIIF validator) sees both.
    const links = headers(response, 'link');
    assert.equal(links.length, 1, `${rest}: ${links.join(' | ')}`);
    const match = /^<([^>]*)>;rel="canonical", <http:\/\/iiif\.io\/api\/image\/[23]\/level2\.json>;rel="profile"$/.exec(links[0]!);
    assert.ok(match, links[0]);
    return match[1]!.slice(`http://${HOST}/iiif/`.length);
  };
  it('v3', async () => {
    assert.equal(await canonical(server, 'squares.tif/full/max/0/default.jpg'), 'squares.tif/full/max/0/default.jpg');
    assert.equal(await canonical(server, 'squares.tif/0,0,1000,700/1000,700/360/default.jpg'), 'squares.tif/full/max/0/default.jpg');
    assert.equal(await canonical(server, 'squares.tif/pct:10,10,50,50/250,/90/color.png'), 'squares.tif/100,70,500,350/250,175/90/color.png');
    assert.equal(await canonical(server, 'squares.tif/square/!100,100/!22.50/gray.webp'), 'squares.tif/150,0,700,700/100,100/!22.5/gray.webp');
    assert.equal(await canonical(server, 'squares.tif/full/^2000,/0/default.jpg'), 'squares.tif/full/^2000,1400/0/default.jpg');
    assert.equal(await canonical(server, 'squares.tif/full/^max/0/default.jpg'), 'squares.tif/full/^max/0/default.jpg');
    assert.equal(await canonical(server, 'squares.tif/900,600,500,500/max/0/default'), 'squares.tif/900,600,100,100/max/0/default.jpg');
    // 2.1's `full`, as every 2.1 manifest asks for it: the image at max, and the canonical says so.
    assert.equal(await canonical(server, 'squares.tif/full/full/0/default.jpg'), 'squares.tif/full/max/0/default.jpg');
    assert.equal(await canonical(server, 'squares.tif/0,0,500,350/full/0/default.jpg'), 'squares.tif/0,0,500,350/max/0/default.jpg');
  });
  it('v2', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    assert.equal(await canonical(v2, 'squares.tif/full/full/0/native.jpg'), 'squares.tif/full/full/0/default.jpg');
    assert.equal(await canonical(v2, 'squares.tif/full/max/0/default.jpg'), 'squares.tif/full/full/0/default.jpg');
    assert.equal(await canonical(v2, 'squares.tif/full/,350/0/default.jpg'), 'squares.tif/full/500,/0/default.jpg');
    assert.equal(await canonical(v2, 'squares.tif/full/500,350/0/default.jpg'), 'squares.tif/full/500,/0/default.jpg');
    assert.equal(await canonical(v2, 'squares.tif/full/300,300/180/bitonal.png'), 'squares.tif/full/300,300/180/bitonal.png');
    assert.equal(await canonical(v2, 'squares.tif/full/!300,300/0/gray.jpg'), 'squares.tif/full/300,/0/gray.jpg');
  });
  it("Content-Disposition names the image with the format's extension, as CVT's, on regions and grid tiles alike", async () => {
    for (const [rest, name] of [
      ['squares.tif/full/max/0/default.jpg', 'squares.jpg'],
      ['squares.tif/0,0,200,100/100,/90/gray.png', 'squares.png'],
      ['squares.tif/full/100,/0/default.webp', 'squares.webp'],
      ['squares.tif/full/100,/0/default.tif', 'squares.tif'],
      ['squares-jpeg.tif/0,0,256,256/256,256/0/default.jpg', 'squares-jpeg.jpg'],
      ['sub/dir/validator.tif/full/100,/0/default.jpg', 'validator.jpg'],
      ['with%20space.tif/full/max/0/default.jpg', 'with space.jpg'],
    ] as const) {
      const response = await ok(server.path(rest), rest);
      assert.deepEqual(headers(response, 'content-disposition'), [`inline;filename="${name}"`], rest);
    }
    const v2 = await ok(serverFor(prefix, { IIIF_VERSION: '2' }).path('squares.tif/full/full/0/native.png'));
    assert.equal(header(v2, 'content-disposition'), 'inline;filename="squares.png"');
    const cvt = await ok(server.raw('FIF=squares.tif&WID=100&CVT=png'));
    assert.equal(header(cvt, 'content-disposition'), 'inline;filename="squares.png"');
    // info.json is no image to save.
    assert.equal(header(await ok(server.path('squares.tif/info.json')), 'content-disposition'), undefined);
  });
  it('content types of every format, with the right magic bytes', async () => {
    const formats: Array<[string, string, (b: Buffer) => boolean]> = [
      ['jpg', 'image/jpeg', (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff],
      ['png', 'image/png', (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))],
      ['webp', 'image/webp', (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP'],
      ['tif', 'image/tiff', (b) => ['II*\0', 'MM\0*'].includes(b.subarray(0, 4).toString('latin1'))],
      ['avif', 'image/avif', (b) => b.subarray(4, 8).toString('latin1') === 'ftyp' && /avif|avis|mif1/.test(b.subarray(8, 12).toString('latin1'))],
      ['gif', 'image/gif', (b) => b.subarray(0, 6).toString('latin1') === 'GIF89a'],
    ];
    for (const [extension, type, magic] of formats) {
      const response = await ok(server.path(`squares.tif/0,0,200,100/100,/0/default.${extension}`), extension);
      assert.equal(header(response, 'content-type'), type, extension);
      assert.ok(magic(response.body), `${extension} magic: ${response.body.subarray(0, 12).toString('hex')}`);
      const decoded = await decodePixels(response.body);
      assert.deepEqual([decoded.width, decoded.height], [100, 50], extension);
    }
  });
});

describe('pixels: coloured squares', () => {
  // Deflate (lossless) tiles: every pixel of a square is its colour.
  it('a region is the colours of its squares', async () => {
    const one = await image(server.path('squares.tif/300,200,100,100/max/0/default.png'));
    assert.deepEqual([one.width, one.height], [100, 100]);
    for (const [x, y] of [
      [0, 0],
      [99, 0],
      [50, 50],
      [0, 99],
      [99, 99],
    ] as const)
      assert.deepEqual(pixel(one, x, y), squareColour(3, 2), `${x},${y}`);
    // Four squares, as a JPEG: each quarter has its square's colour.
    const four = await image(server.path('squares.tif/850,550,100,100/max/0/default.jpg'));
    assertNear(median(four, { left: 10, top: 10, width: 30, height: 30 }), squareColour(8, 5), 8, 'top left');
    assertNear(median(four, { left: 60, top: 10, width: 30, height: 30 }), squareColour(9, 5), 8, 'top right');
    assertNear(median(four, { left: 10, top: 60, width: 30, height: 30 }), squareColour(8, 6), 8, 'bottom left');
    assertNear(median(four, { left: 60, top: 60, width: 30, height: 30 }), squareColour(9, 6), 8, 'bottom right');
    // pct: with floats: 41.5% of 1000 = 415 (square 4), 57.5% of 700 = 402.5 (row 4).
    const pct = await image(server.path('squares.tif/pct:41.5,57.5,3,4/max/0/default.png'));
    assert.deepEqual([pct.width, pct.height], [30, 28]);
    assert.deepEqual(median(pct), squareColour(4, 4));
  });
  it('a region past the edge is clipped: the bottom-right square alone', async () => {
    const got = await image(server.path('squares.tif/900,600,500,500/max/0/default.png'));
    assert.deepEqual([got.width, got.height], [100, 100]);
    assert.deepEqual(median(got), [255, 255, 255]);
  });
  it('square: the centred 700x700 of a landscape image, the top-left square of it is column 1 plus 50 px', async () => {
    const got = await image(server.path('squares.tif/square/max/0/default.png'));
    assert.deepEqual([got.width, got.height], [700, 700]);
    assert.deepEqual(pixel(got, 0, 0), squareColour(1, 0));
    assert.deepEqual(pixel(got, 49, 0), squareColour(1, 0));
    assert.deepEqual(pixel(got, 50, 0), squareColour(2, 0));
    const portrait = await image(server.path('portrait.tif/square/max/0/default.png'));
    assert.deepEqual([portrait.width, portrait.height], [700, 700]);
    assert.deepEqual(pixel(portrait, 0, 0), squareColour(0, 1));
    assert.deepEqual(pixel(portrait, 0, 50), squareColour(0, 2));
  });
  // Which original square ends up in each corner: [top-left, top-right, bottom-left, bottom-right].
  const corners: Array<[string, [number, number], Array<[number, number]>]> = [
    [
      '0',
      [1000, 700],
      [
        [0, 0],
        [9, 0],
        [0, 6],
        [9, 6],
      ],
    ],
    [
      '90',
      [700, 1000],
      [
        [0, 6],
        [0, 0],
        [9, 6],
        [9, 0],
      ],
    ],
    [
      '180',
      [1000, 700],
      [
        [9, 6],
        [0, 6],
        [9, 0],
        [0, 0],
      ],
    ],
    [
      '270',
      [700, 1000],
      [
        [9, 0],
        [9, 6],
        [0, 0],
        [0, 6],
      ],
    ],
    [
      '!0',
      [1000, 700],
      [
        [9, 0],
        [0, 0],
        [9, 6],
        [0, 6],
      ],
    ],
    [
      '!90',
      [700, 1000],
      [
        [9, 6],
        [9, 0],
        [0, 6],
        [0, 0],
      ],
    ],
    [
      '!180',
      [1000, 700],
      [
        [0, 6],
        [9, 6],
        [0, 0],
        [9, 0],
      ],
    ],
    [
      '!270',
      [700, 1000],
      [
        [0, 0],
        [0, 6],
        [9, 0],
        [9, 6],
      ],
    ],
  ];
  for (const [rotation, size, expected] of corners) {
    it(`rotation ${rotation}: size and which square lands in each corner`, async () => {
      const got = await image(server.path(`squares.tif/full/max/${rotation}/default.png`));
      assert.deepEqual([got.width, got.height], size);
      const [w, h] = size;
      const at = [
        [10, 10],
        [w - 11, 10],
        [10, h - 11],
        [w - 11, h - 11],
      ];
      at.forEach(([x, y], i) => assert.deepEqual(pixel(got, x!, y!), squareColour(...expected[i]!), `corner ${i} of ${rotation}`));
    });
  }
  it('an arbitrary angle keeps all the content: the bounding box grows, the centre stays', async () => {
    const got = await image(server.path('squares.tif/full/500,/45/default.png'));
    // 500x350 turned by 45 degrees: (500 + 350) / sqrt(2) on each side.
    const side = (500 + 350) / Math.SQRT2;
    assert.ok(Math.abs(got.width - side) <= 2 && Math.abs(got.height - side) <= 2, `${got.width}x${got.height}`);
    // The centre of the picture is the border of squares (4..5, 3): take a point inside square (4,3).
    const centre = pixel(got, Math.floor(got.width / 2), Math.floor(got.height / 2));
    assertNear(centre.slice(0, 3), squareColour(5, 3), 40, 'centre');
    // The corners are outside the picture: background (white, or transparent where the format can).
    const corner = pixel(got, 0, 0);
    assert.ok(corner.length === 4 ? corner[3] === 0 : corner.every((v) => v === 255), JSON.stringify(corner));
  });
  it('gray: one band, the Rec.601 luma of each square (as iipsrv computes grey)', async () => {
    const got = await image(server.path('squares.tif/full/500,/0/gray.png'));
    assert.equal(got.channels, 1);
    const [linearLight, rec601] = [0, 1].map((formula) =>
      [
        [0, 0],
        [9, 0],
        [0, 6],
        [9, 6],
        [1, 0],
        [4, 3],
        [7, 2],
      ].every(([col, row]) => {
        const value = pixel(got, col! * 50 + 25, row! * 50 + 25)[0]!;
        return Math.abs(value - greys(squareColour(col!, row!))[formula]!) <= 3;
      }),
    );
    assert.ok(rec601, `every square is the Rec.601 grey of its colour (linear-light would be ${linearLight})`);
    // Green is lighter than red, red lighter than blue; white is 255, black 0.
    const [red, green, blue] = [pixel(got, 25, 25)[0]!, pixel(got, 475, 25)[0]!, pixel(got, 25, 325)[0]!];
    assert.ok(green > red && red > blue, `${red} ${green} ${blue}`);
    assert.equal(pixel(got, 475, 325)[0], 255);
    assert.equal(pixel(got, 75, 25)[0], 0);
    const jpeg = await image(server.path('squares.tif/full/500,/0/gray.jpg'));
    assert.equal(jpeg.channels, 1);
  });
  it('bitonal: one band, only 0 and 255', async () => {
    const got = await image(server.path('squares.tif/full/max/0/bitonal.png'));
    assert.equal(got.channels, 1);
    const values = new Set(got.data);
    assert.deepEqual(
      [...values].sort((a, b) => a - b),
      [0, 255],
    );
    assert.equal(pixel(got, 950, 650)[0], 255, 'white square');
    assert.equal(pixel(got, 150, 50)[0], 0, 'black square');
    // Every square is one value throughout (a threshold, not a dither).
    for (const [col, row] of [
      [0, 0],
      [9, 0],
      [0, 6],
      [4, 3],
      [7, 2],
    ]) {
      const box = new Set<number>();
      for (let y = row! * 100 + 5; y < row! * 100 + 95; y += 9) for (let x = col! * 100 + 5; x < col! * 100 + 95; x += 9) box.add(pixel(got, x, y)[0]!);
      assert.equal(box.size, 1, `square ${col},${row}`);
    }
    // A JPEG cannot keep exactly two values, but nearly every pixel is near one of them.
    const jpeg = await image(server.path('squares.tif/full/max/0/bitonal.jpg'));
    assert.equal(jpeg.channels, 1);
    const near = jpeg.data.filter((v) => v < 20 || v > 235).length;
    assert.ok(near / jpeg.data.length > 0.97, `${near} of ${jpeg.data.length}`);
  });
});

describe("the IIIF validator's test image (10x10 squares, 128-px JPEG tiles)", () => {
  const id = `${VALIDATOR_ID}.tif`;
  const pick = random(20240601);
  // Its do_test_square: the image's colour within 6 of the square's (JPEG-compressed here).
  const assertSquare = (got: Pixels, x: number, y: number, what: string) => assertNear(median(got), truthColour(x, y), 6, what);
  it('regions by pixels: squares picked at random, 74x74 inside them', async () => {
    for (let i = 0; i < 8; i++) {
      const [x, y] = [pick(10), pick(10)];
      for (const [s, size] of [
        [server, 'max'],
        [serverFor(prefix, { IIIF_VERSION: '2' }), 'full'],
      ] as const) {
        const got = await image(s.path(`${id}/${x * 100 + 13},${y * 100 + 13},74,74/${size}/0/default.jpg`));
        assert.deepEqual([got.width, got.height], [74, 74]);
        assertSquare(got, x, y, `square ${x},${y}`);
      }
    }
  });
  it('regions by percent', async () => {
    for (let i = 0; i < 5; i++) {
      const [x, y] = [pick(10), pick(10)];
      const got = await image(server.path(`${id}/pct:${x * 10 + 1.3},${y * 10 + 1.3},7.4,7.4/max/0/default.jpg`));
      assert.deepEqual([got.width, got.height], [74, 74]);
      assertSquare(got, x, y, `pct square ${x},${y}`);
    }
  });
  it('a region at a size: x*100,y*100,100,100 at s,s', async () => {
    for (let i = 0; i < 5; i++) {
      const [x, y, s] = [pick(10), pick(10), 35 + pick(56)];
      const got = await image(server.path(`${id}/${x * 100},${y * 100},100,100/${s},${s}/0/default.jpg`));
      assert.deepEqual([got.width, got.height], [s, s]);
      assertSquare(got, x, y, `square ${x},${y} at ${s}`);
    }
  });
  it('sizes: w, ,h pct:n !w,h w,h and above full (^ in v3)', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    for (const [s, size, expected] of [
      [server, '523,', [523, 523]],
      [server, ',277', [277, 277]],
      [server, 'pct:37', [370, 370]],
      [server, '!300,200', [200, 200]],
      [server, '600,250', [600, 250]],
      [server, '^,1444', [1444, 1444]],
      [v2, ',1444', [1444, 1444]],
      [v2, 'pct:150', [1500, 1500]],
    ] as const) {
      const got = await image(s.path(`${id}/full/${size}/0/default.jpg`), size);
      assert.deepEqual([got.width, got.height], expected, size);
    }
    // Upscaled squares keep their colours (the validator's size_up).
    const up = await image(server.path(`${id}/full/^,1444/0/default.jpg`));
    for (let i = 0; i < 5; i++) {
      const [x, y] = [pick(10), pick(10)];
      const side = 144.4;
      const box = { left: Math.round(x * side + 20), top: Math.round(y * side + 20), width: 100, height: 100 };
      assertNear(median(up, box), truthColour(x, y), 6, `upscaled square ${x},${y}`);
    }
    assert.equal((await server.path(`${id}/full/,1444/0/default.jpg`)).status, 400, 'v3 upscaling without ^');
  });
  it("size_noup's !2000,3000: 3.0 gives the region, never more (§4.2: as large as possible but not larger than the region); ^!w,h and 2.1 fill the box", async () => {
    // The validator expects a failure here; the specification asks for the image at most at the
    // region's size, which is what a client confining a thumbnail wants.
    const noLimits = serverFor(prefix, { MAX_CVT: '-1' });
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    for (const [s, name, rest, expected] of [
      [server, id, 'full/!2000,3000', [1000, 1000]],
      [noLimits, id, 'full/!2000,3000', [1000, 1000]],
      [server, id, '900,900,500,500/!2000,3000', [100, 100]],
      [server, 'squares.tif', 'pct:10,10,33.3,33.3/!2000,3000', [333, 233]],
      [server, id, 'full/^!2000,3000', [2000, 2000]],
      [v2, id, 'full/!2000,3000', [2000, 2000]],
      [serverFor(prefix, { IIIF_VERSION: '2', ALLOW_UPSCALING: '0' }), id, 'full/!2000,3000', [1000, 1000]],
    ] as const) {
      const got = await image(s.path(`${name}/${rest}/0/default.jpg`), rest);
      assert.deepEqual([got.width, got.height], expected, rest);
    }
  });
  it('rotations: the square that lands in the top-left and bottom-right corners', async () => {
    for (const [rotation, topLeft, bottomRight] of [
      ['180', [9, 9], [0, 0]],
      ['90', [0, 9], [9, 0]],
      ['270', [9, 0], [0, 9]],
      ['!0', [9, 0], [0, 9]],
      ['!180', [0, 9], [9, 0]],
    ] as const) {
      const got = await image(server.path(`${id}/full/max/${rotation}/default.jpg`));
      assert.deepEqual([got.width, got.height], [1000, 1000]);
      assertNear(median(got, { left: 12, top: 12, width: 64, height: 64 }), truthColour(topLeft[0], topLeft[1]), 6, `${rotation} top left`);
      assertNear(median(got, { left: 912, top: 912, width: 64, height: 64 }), truthColour(bottomRight[0], bottomRight[1]), 6, `${rotation} bottom right`);
    }
  });
  it('non-90 rotation of a region: a larger image, the square in the middle', async () => {
    const got = await image(server.path(`${id}/100,100,100,100/max/30/default.png`));
    assert.ok(got.width > 130 && got.height > 130, `${got.width}x${got.height}`);
    assertNear(
      median(got, { left: Math.floor(got.width / 2) - 20, top: Math.floor(got.height / 2) - 20, width: 40, height: 40 }).slice(0, 3),
      truthColour(1, 1),
      6,
      'middle',
    );
  });
  it('quality gray (one band) and bitonal (only black and white)', async () => {
    const gray = await image(server.path(`${id}/full/max/0/gray.png`));
    assert.equal(gray.channels, 1);
    const bitonal = await image(server.path(`${id}/full/max/0/bitonal.png`));
    assert.equal(bitonal.channels, 1);
    assert.ok(bitonal.data.every((v) => v === 0 || v === 255));
    const color = await image(server.path(`${id}/full/max/0/color.jpg`));
    assert.equal(color.channels, 3);
  });
  it('formats decode, with the right size', async () => {
    for (const format of ['jpg', 'png', 'webp', 'tif', 'avif', 'gif']) {
      const got = await image(server.path(`${id}/0,0,500,500/250,/0/default.${format}`), format);
      assert.deepEqual([got.width, got.height], [250, 250], format);
      assertNear(median(got, { left: 10, top: 10, width: 30, height: 30 }).slice(0, 3), truthColour(0, 0), 10, format);
    }
  });
  it('escaped characters in the identifier are processed; a slash in it is a 404', async () => {
    await image(server.path(`${VALIDATOR_ID.replaceAll('-', '%2D')}.tif/full/max/0/default.jpg`));
    assert.equal((await server.path('a/b/full/max/0/default.jpg')).status, 404);
    assert.equal((await server.path('a%2Fb/full/max/0/default.jpg')).status, 404);
  });
  it('escaped characters in the parameters are decoded (%5E for ^, as some clients send it); an escaped slash splits nothing', async () => {
    for (const [rest, size] of [
      ['full/%5E1100,/0/default.jpg', [1100, 1100]],
      ['full/%5e1100,/0/default.jpg', [1100, 1100]],
      ['full/%5Emax/0/default.jpg', [5000, 5000]],
      ['full/%21300%2C200/0/default.jpg', [200, 200]],
      ['0%2C0%2C500%2C250/max/%2190/default%2Epng', [250, 500]],
      ['pct%3A0,0,50,50/pct%3A50/0/gray.jpg', [250, 250]],
    ] as const) {
      const got = await image(server.path(`${id}/${rest}`), rest);
      assert.deepEqual([got.width, got.height], size, rest);
    }
    // Each parameter is decoded once (%25 is a literal %, so %255E is no ^).
    for (const rest of ['full/%255E1100,/0/default.jpg', 'full/max%2F0/default.jpg/x']) {
      assert.equal((await server.path(`${id}/${rest}`)).status, 400, rest);
    }
    // Four segments once the escaped slash is taken as part of one: not an image request.
    assert.equal((await server.path(`${id}/full%2Fmax/0/default.jpg`)).status, 400);
  });
  it('random junk in each parameter is a 400 (or 501 for a format we know of but do not write)', async () => {
    for (const [rest, status] of [
      [`${id}/0,0,50/max/0/default.jpg`, 400],
      [`${id}/x1y2/max/0/default.jpg`, 400],
      [`${id}/full/w5/0/default.jpg`, 400],
      [`${id}/full/max/a5/default.jpg`, 400],
      [`${id}/full/max/0/sepia.jpg`, 400],
      [`${id}/full/max/0/default.xyz`, 400],
      [`${id}/full/max/0/default.heic`, 501],
      ['a4Kz9uq.tif/full/max/0/default.jpg', 404],
    ] as const) {
      const response = await server.path(rest);
      assert.equal(response.status, status, `${rest}: ${response.body.toString()}`);
      assert.equal(header(response, 'content-type'), 'text/plain; charset=utf-8', rest);
      assert.ok(response.body.length > 0, rest);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Tiles through the tile path.

interface Counts {
  stored: number;
  decodeTile: number;
  decode: number[];
}

/** Counts what the engine reads for an image (stored JPEG tiles, tile decodes, region decodes). */
async function countReads(s: Server, name: string): Promise<Counts> {
  const counts: Counts = { stored: 0, decodeTile: 0, decode: [] };
  const { source } = await s.engine.openImage(name);
  const stored = source.storedJpegTile.bind(source);
  const decodeTile = source.decodeTile.bind(source);
  const decode = source.decode.bind(source);
  source.storedJpegTile = (...args) => {
    counts.stored++;
    return stored(...args);
  };
  source.decodeTile = (...args) => {
    counts.decodeTile++;
    return decodeTile(...args);
  };
  source.decode = (level, rect) => {
    counts.decode.push(level);
    return decode(level, rect);
  };
  return counts;
}

const reset = (counts: Counts) => {
  counts.stored = 0;
  counts.decodeTile = 0;
  counts.decode.length = 0;
};

/**
 * The tile requests OpenSeadragon's IIIFTileSource makes for a level (`getTileUrl`): levels from
 * the largest scale factor, level sizes and tile spans rounded up, edge tiles cropped, `w,` (v2) or
 * `w,h` (v3) sizes, `full`/`max` where the tile is the whole image.
 */
function viewerTiles(
  info: JsonObject,
  version: 2 | 3,
  factor: number,
): Array<{ region: string; size: string; width: number; height: number; col: number; row: number }> {
  const W = info.width as number;
  const H = info.height as number;
  const tiles = info.tiles[0] as { width: number; height?: number; scaleFactors: number[] };
  const tw = tiles.width;
  const th = tiles.height ?? tw;
  const scale = 1 / factor;
  const levelWidth = Math.ceil(W * scale);
  const levelHeight = Math.ceil(H * scale);
  const out = [];
  if (levelWidth < tw && levelHeight < th) {
    let size: string;
    if (version === 2) size = levelWidth === W ? 'full' : `${levelWidth},`;
    else size = levelWidth === W && levelHeight === H ? 'max' : `${levelWidth},${levelHeight}`;
    out.push({ region: 'full', size, width: levelWidth, height: levelHeight, col: 0, row: 0 });
    return out;
  }
  const spanX = Math.ceil(tw / scale);
  const spanY = Math.ceil(th / scale);
  for (let row = 0; row * spanY < H; row++) {
    for (let col = 0; col * spanX < W; col++) {
      const x = col * spanX;
      const y = row * spanY;
      const w = Math.min(spanX, W - x);
      const h = Math.min(spanY, H - y);
      const region = x === 0 && y === 0 && w === W && h === H ? 'full' : `${x},${y},${w},${h}`;
      const sw = Math.ceil(w * scale);
      const sh = Math.ceil(h * scale);
      let size: string;
      if (version === 2) size = sw === W ? 'full' : `${sw},`;
      else size = sw === W && sh === H ? 'max' : `${sw},${sh}`;
      out.push({ region, size, width: sw, height: sh, col, row });
    }
  }
  return out;
}

describe('grid tiles go through the tile path', () => {
  it('v2 and v3 tile requests on the grid, edge tiles included, are the stored JPEG bytes of IIP JTL', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    const counts3 = await countReads(server, 'squares-jpeg.tif');
    const counts2 = await countReads(v2, 'squares-jpeg.tif');
    // [IIIF v2 path, IIIF v3 path, JTL resolution, tile index]; 1000x700: 4x3, 2x2 and 1 tile.
    for (const [v2path, v3path, resolution, index] of [
      ['0,0,256,256/256,', '0,0,256,256/256,256', 2, 0],
      ['768,0,232,256/232,', '768,0,232,256/232,256', 2, 3],
      ['768,512,232,188/232,', '768,512,232,188/232,188', 2, 11],
      ['256,512,256,188/256,', '256,512,256,188/256,188', 2, 9],
      ['512,0,488,512/244,', '512,0,488,512/244,256', 1, 1],
      ['512,512,488,188/244,', '512,512,488,188/244,94', 1, 3],
      ['full/250,', 'full/250,175', 0, 0],
    ] as const) {
      const jtl = await ok(server.raw(`FIF=squares-jpeg.tif&JTL=${resolution},${index}`));
      for (const [s, counts, request] of [
        [v2, counts2, v2path],
        [server, counts3, v3path],
      ] as const) {
        reset(counts);
        const response = await ok(s.query(`squares-jpeg.tif/${request}/0/default.jpg`), request);
        assert.ok(response.body.equals(jtl.body), `${request} is JTL=${resolution},${index}`);
        assert.deepEqual([counts.stored, counts.decode.length], [1, 0], `${request}: stored tile, no decode`);
      }
    }
  });
  it('requests off the grid go through region()', async () => {
    const counts = await countReads(server, 'squares-jpeg.tif');
    for (const request of ['1,0,256,256/256,256', '0,0,256,256/128,128', '0,0,512,512/128,128', '0,0,256,256/256,256/90', 'full/max']) {
      reset(counts);
      const rest = request.includes('/90') ? `${request}/default.jpg` : `${request}/0/default.jpg`;
      await ok(server.query(`squares-jpeg.tif/${rest}`), request);
      assert.equal(counts.stored, 0, request);
      assert.equal(counts.decode.length, 1, request);
    }
    // A grid tile in another quality or format is a region too.
    for (const rest of ['0,0,256,256/256,256/0/gray.jpg', '0,0,256,256/256,256/0/default.png']) {
      reset(counts);
      await ok(server.query(`squares-jpeg.tif/${rest}`), rest);
      assert.deepEqual([counts.stored, counts.decode.length], [0, 1], rest);
    }
  });
  it('a grid tile and its IIP JTL share one cache entry', async () => {
    const s = serverFor(prefix, { MAX_IMAGE_CACHE_SIZE: '10' });
    const counts = await countReads(s, 'squares-jpeg.tif');
    const jtl = await ok(s.raw('FIF=squares-jpeg.tif&JTL=1,2'));
    assert.equal(counts.stored, 1);
    const tile = await ok(s.query('squares-jpeg.tif/0,512,512,188/256,94/0/default.jpg'));
    assert.ok(tile.body.equals(jtl.body));
    assert.deepEqual([counts.stored, counts.decode.length], [1, 0], 'the second is a cache hit');
  });
  it('CODEC_PASSTHROUGH=0 and QLT: the tile is re-encoded from its decoded pixels, still on the tile path', async () => {
    for (const [env, query] of [
      [{ CODEC_PASSTHROUGH: '0' }, 'IIIF=squares-jpeg.tif/256,0,256,256/256,256/0/default.jpg'],
      [{}, 'QLT=60&IIIF=squares-jpeg.tif/256,0,256,256/256,256/0/default.jpg'],
    ] as const) {
      const s = serverFor(prefix, env);
      const counts = await countReads(s, 'squares-jpeg.tif');
      const got = await decodePixels((await ok(s.raw(query), query)).body);
      assert.deepEqual([got.width, got.height], [256, 256]);
      assert.deepEqual([counts.stored, counts.decodeTile, counts.decode.length], [0, 1, 0], query);
    }
  });
});

/**
 * Every tile a viewer asks for at every scale factor of info.json: each answer has the size the
 * request names (v2's `w,` the height rounded from the region), and comes from the stored tile
 * exactly when that tile has this size (then byte for byte its IIP JTL).
 */
async function viewerWalk(s: Server, name: string, version: 2 | 3): Promise<{ requests: number; stored: number; factors: number[] }> {
  const info = json(await ok(s.path(`${name}/info.json`)));
  const { levels } = (await s.engine.openImage(name)).source.description;
  const factors = info.tiles[0].scaleFactors as number[];
  assert.equal(factors.length, levels.length, `${name}: one factor per level`);
  const counts = await countReads(s, name);
  let [requests, stored] = [0, 0];
  for (const [index, factor] of factors.entries()) {
    const level = levels[index]!;
    const { across, down } = tileGrid(level);
    for (const tile of viewerTiles(info, version, factor)) {
      const rest = `${name}/${tile.region}/${tile.size}/0/default.jpg`;
      const [rw, rh] = tile.region === 'full' ? [info.width as number, info.height as number] : tile.region.split(',').slice(2).map(Number);
      const expected = version === 3 || tile.size === 'full' ? [tile.width, tile.height] : [tile.width, Math.max(1, Math.round((tile.width * rh!) / rw!))];
      reset(counts);
      const response = await ok(s.path(rest), rest);
      const got = await decodePixels(response.body);
      assert.deepEqual([got.width, got.height], expected, rest);
      const rect = tile.col < across && tile.row < down ? tileRect(level, tile.col, tile.row) : null;
      const isTile = rect !== null && rect.width === expected[0] && rect.height === expected[1];
      assert.equal(counts.stored, isTile ? 1 : 0, `${rest}: ${isTile ? 'the stored tile' : 'made from the region'}`);
      if (isTile) {
        const jtl = await ok(s.raw(`FIF=${name}&JTL=${levels.length - 1 - index},${tile.row * across + tile.col}`));
        assert.ok(response.body.equals(jtl.body), `${rest} is its JTL tile`);
        stored++;
      }
      requests++;
    }
  }
  return { requests, stored, factors };
}

describe('a viewer loading the image the way OpenSeadragon does', () => {
  it("a long narrow image (300x12000) whose levels are halved upwards: v3's w,h of every tile of every factor is the stored tile", async () => {
    for (const version of [3, 2] as const) {
      const walk = await viewerWalk(serverFor(prefix, { IIIF_VERSION: String(version) }), 'narrow.tif', version);
      // The 10x375 and 5x188 levels are factors 32 and 64 (not 300/10 and 300/5).
      assert.deepEqual(walk.factors, [1, 2, 4, 8, 16, 32, 64]);
      assert.equal(walk.requests, 47 * 2 + 24 + 12 + 6 + 3 + 2 + 1);
      // v2's `w,` of a narrow region rounds its height off the tile's (`38,` of 300x4096 is 38x519).
      assert.equal(walk.stored, version === 3 ? walk.requests : walk.requests - 12);
    }
  });
  it('3001x700 halved down (libvips) and up (OpenJPEG): every size as asked, every tile of that size the stored one', async () => {
    for (const name of ODD3001) {
      for (const version of [3, 2] as const) {
        const walk = await viewerWalk(serverFor(prefix, { IIIF_VERSION: String(version) }), name, version);
        assert.deepEqual(walk.factors, [1, 2, 4, 8, 16]);
        assert.equal(walk.requests, 36 + 12 + 3 + 2 + 1);
        // OpenJPEG's levels are the viewer's (v2 `w,` misses 2 by the height's rounding); libvips'
        // miss the right column from factor 2 on (1500 px hold 3001 as 2560..3000 in 220 px, the
        // viewer asks for 221) and the bottom row from factor 8 on (700 / 8 is 87, not 88).
        assert.equal(walk.stored, name.endsWith('.jp2') ? (version === 3 ? 54 : 52) : 36 + 10 + 2, `${name} v${version}`);
      }
    }
  });
  for (const version of [3, 2] as const) {
    it(`IIIF ${version}: info.json, then every tile of every level, exact sizes, all from stored tiles`, async () => {
      const s = serverFor(prefix, { IIIF_VERSION: String(version) });
      const counts = await countReads(s, `${VALIDATOR_ID}.tif`);
      const info = json(await ok(s.path(`${VALIDATOR_ID}.tif/info.json`)));
      const id = (info.id ?? info['@id']) as string;
      assert.equal(id, `http://${HOST}/iiif/${VALIDATOR_ID}.tif`);
      const { scaleFactors } = info.tiles[0] as { scaleFactors: number[] };
      let fetched = 0;
      for (const factor of scaleFactors) {
        const resolution = scaleFactors.length - 1 - scaleFactors.indexOf(factor);
        const across = Math.ceil(Math.ceil(1000 / factor) / 128);
        for (const tile of viewerTiles(info, version, factor)) {
          // The URL the viewer builds from the id, as this server receives it.
          const url: string = `${id}/${tile.region}/${tile.size}/0/default.jpg`;
          const base = `http://${HOST}/iiif/`;
          assert.ok(url.startsWith(base), url);
          reset(counts);
          const response = await ok(s.path(url.slice(base.length)), url);
          const got = await decodePixels(response.body);
          assert.deepEqual([got.width, got.height], [tile.width, tile.height], url);
          assert.deepEqual([counts.stored, counts.decode.length], [1, 0], `${url} from the stored tile`);
          const jtl = await s.raw(`FIF=${VALIDATOR_ID}.tif&JTL=${resolution},${tile.row * across + tile.col}`);
          assert.ok(response.body.equals(jtl.body), `${url} is its JTL tile`);
          fetched++;
        }
      }
      assert.equal(fetched, 64 + 16 + 4 + 1);
    });
  }
  it('odd sizes (1001x701, 10000x7000): every tile of two levels has the size the viewer computed', async () => {
    for (const version of [3, 2] as const) {
      const s = serverFor(prefix, { IIIF_VERSION: String(version) });
      for (const [name, factors] of [
        ['odd.tif', [1, 2]],
        ['huge.tif', [16, 64]],
      ] as const) {
        const info = json(await ok(s.path(`${name}/info.json`)));
        for (const factor of factors) {
          assert.ok(info.tiles[0].scaleFactors.includes(factor));
          for (const tile of viewerTiles(info, version, factor)) {
            const rest = `${name}/${tile.region}/${tile.size}/0/default.jpg`;
            const got = await image(s.path(rest), rest);
            // v3 names both sides; v2 gives the width and the height is rounded from the region.
            const [rw, rh] = tile.region === 'full' ? [info.width as number, info.height as number] : tile.region.split(',').slice(2).map(Number);
            const height = version === 3 || tile.size === 'full' ? tile.height : Math.max(1, Math.round((tile.width * rh!) / rw!));
            assert.deepEqual([got.width, got.height], [tile.width, height], rest);
          }
        }
      }
    }
  });
  it("the spec's own tile algorithm (2.1 implementation notes) gives the same requests on two levels of 1000x700", async () => {
    const info = json(await ok(server.path('squares-jpeg.tif/info.json')));
    const counts = await countReads(server, 'squares-jpeg.tif');
    for (const s of [1, 2]) {
      const tw = 256;
      for (let m = 0; m * tw * s < 700; m++) {
        for (let n = 0; n * tw * s < 1000; n++) {
          const xr = n * tw * s;
          const yr = m * tw * s;
          const wr = Math.min(tw * s, 1000 - xr);
          const hr = Math.min(tw * s, 700 - yr);
          const ws = xr + tw * s > 1000 ? Math.floor((1000 - xr + s - 1) / s) : tw;
          const hs = yr + tw * s > 700 ? Math.floor((700 - yr + s - 1) / s) : tw;
          reset(counts);
          const got = await image(server.path(`squares-jpeg.tif/${xr},${yr},${wr},${hr}/${ws},${hs}/0/default.jpg`));
          assert.deepEqual([got.width, got.height], [ws, hs]);
          assert.equal(counts.decode.length, 0, `${xr},${yr} at 1/${s}`);
        }
      }
    }
    assert.deepEqual(info.tiles[0].scaleFactors, [1, 2, 4]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('w, and ,h: the other side is rounded from the region, on the tile path and off it', () => {
  const files = ODD3001;
  it('2560,0,441,512/220, is 220x255 (512 x 220/441 = 255.4) from the TIFF as from the JP2, in both versions', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    for (const name of files) {
      for (const [s, rest, canonical] of [
        [server, '2560,0,441,512/220,', '2560,0,441,512/220,255'],
        [server, '2560,0,441,512/,255', '2560,0,441,512/220,255'],
        [v2, '2560,0,441,512/220,', '2560,0,441,512/220,'],
        [v2, '2560,0,441,512/,255', '2560,0,441,512/220,'],
      ] as const) {
        const response = await ok(s.path(`${name}/${rest}/0/default.jpg`), `${name} ${rest}`);
        const got = await decodePixels(response.body);
        assert.deepEqual([got.width, got.height], [220, 255], `${name} ${rest}`);
        assert.ok(header(response, 'link')!.includes(`/${name}/${canonical}/0/default.jpg>`), `${name} ${rest}: ${header(response, 'link')}`);
      }
    }
    // The TIFF's stored 220x256 tile is what `220,256` asks for.
    const counts = await countReads(server, 'odd3001.tif');
    const tile = await image(server.path('odd3001.tif/2560,0,441,512/220,256/0/default.jpg'));
    assert.deepEqual([tile.width, tile.height], [220, 256]);
    assert.deepEqual([counts.stored, counts.decode.length], [1, 0]);
  });
  it('edge regions of every scale factor, at the sizes viewers ask and one less: the derived side is round(side x aspect)', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    for (const name of files) {
      for (const factor of [1, 2, 4, 8]) {
        const span = 256 * factor;
        const lastX = Math.floor(3000 / span) * span;
        const lastY = Math.floor(699 / span) * span;
        for (const [x, y] of [
          [lastX, 0],
          [0, lastY],
          [lastX, lastY],
        ] as const) {
          const [rw, rh] = [Math.min(span, 3001 - x), Math.min(span, 700 - y)];
          for (const w of [Math.ceil(rw / factor), Math.floor(rw / factor)]) {
            const h = Math.max(1, Math.round((w * rh) / rw));
            for (const [s, size, expected] of [
              [server, `${w},`, [w, h]],
              [v2, `${w},`, [w, h]],
              [server, `,${h}`, [Math.max(1, Math.round((h * rw) / rh)), h]],
            ] as const) {
              const rest = `${name}/${x},${y},${rw},${rh}/${size}/0/default.jpg`;
              const got = await image(s.path(rest), rest);
              assert.deepEqual([got.width, got.height], expected, rest);
            }
          }
        }
      }
    }
  });
});

describe('sizes and regions that break viewers', () => {
  it('1-pixel sizes', async () => {
    for (const [rest, size] of [
      ['squares.tif/full/1,/0/default.jpg', [1, 1]],
      ['squares.tif/full/,1/0/default.jpg', [1, 1]],
      ['squares.tif/full/1,1/0/default.png', [1, 1]],
      ['squares.tif/999,699,1,1/max/0/default.png', [1, 1]],
      ['wide.tif/full/1,/0/default.jpg', [1, 1]],
      ['wide.tif/full/100,/0/default.jpg', [100, 1]],
      ['wide.tif/full/max/0/default.png', [4000, 8]],
      ['huge.tif/full/1,/0/default.jpg', [1, 1]],
      ['huge.tif/pct:99.99,99.99,5,5/max/0/default.jpg', [1, 1]],
      ['one.tif/full/max/0/default.png', [1, 1]],
      ['one.tif/square/max/0/default.png', [1, 1]],
    ] as const) {
      const got = await image(server.path(rest), rest);
      assert.deepEqual([got.width, got.height], size, rest);
    }
    assert.deepEqual(pixel(await image(server.path('one.tif/full/max/0/default.png')), 0, 0), [200, 30, 60]);
    assert.equal((await server.path('one.tif/1,0,1,1/max/0/default.png')).status, 400);
    assert.equal((await server.path('one.tif/full/2,/0/default.png')).status, 400);
    assert.deepEqual(pixel(await image(server.path('one.tif/full/^3,/0/default.png')), 2, 2), [200, 30, 60]);
  });
  it('full and max are the same image in v2 and v3; max and ^max in v3', async () => {
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    const full = await ok(v2.path('squares.tif/full/full/0/default.jpg'));
    const max = await ok(v2.path('squares.tif/full/max/0/default.jpg'));
    assert.ok(full.body.equals(max.body));
    const full3 = await ok(server.path('squares.tif/full/full/0/default.jpg'));
    assert.ok(full3.body.equals((await ok(server.path('squares.tif/full/max/0/default.jpg'))).body));
    const max3 = await ok(serverFor(prefix, { MAX_CVT: '-1' }).path('squares.tif/full/max/0/default.jpg'));
    const upMax3 = await ok(serverFor(prefix, { MAX_CVT: '-1' }).path('squares.tif/full/^max/0/default.jpg'));
    assert.ok(max3.body.equals(upMax3.body), 'no limits: ^max is max');
  });
  it('tiny images (smaller than one tile): the whole image is the one tile', async () => {
    const counts = await countReads(server, 'tiny.tif');
    const jtl = await ok(server.raw('FIF=tiny.tif&JTL=0,0'));
    for (const rest of ['full/max', 'full/100,60', '0,0,100,60/100,']) {
      reset(counts);
      const got = await ok(server.path(`tiny.tif/${rest}/0/default.jpg`), rest);
      assert.ok(got.body.equals(jtl.body), rest);
      assert.deepEqual([counts.stored, counts.decode.length], [1, 0], rest);
    }
    for (const [rest, size] of [
      ['full/^200,', [200, 120]],
      ['full/50,', [50, 30]],
      ['square/max', [60, 60]],
      ['50,30,500,500/max', [50, 30]],
    ] as const) {
      const got = await image(server.path(`tiny.tif/${rest}/0/default.jpg`), rest);
      assert.deepEqual([got.width, got.height], size, rest);
    }
    assert.equal((await server.path('tiny.tif/full/101,/0/default.jpg')).status, 400);
  });
  it('a 10000x7000 image: max is MAX_CVT read from the right level, tiles are stored bytes, edges clip', async () => {
    const counts = await countReads(server, 'huge.tif');
    const v2 = serverFor(prefix, { IIIF_VERSION: '2' });
    const v2counts = await countReads(v2, 'huge.tif');
    for (const [s, c, rest] of [
      [server, counts, 'full/max'],
      [server, counts, 'full/full'],
      [server, counts, 'full/^max'],
      [v2, v2counts, 'full/full'],
      [v2, v2counts, 'full/max'],
    ] as const) {
      reset(c);
      const got = await image(s.path(`huge.tif/${rest}/0/default.jpg`), rest);
      assert.deepEqual([got.width, got.height], [5000, 3500], rest);
      assert.deepEqual(c.decode, [1], `${rest} reads the 5000-px level`);
    }
    reset(counts);
    const thumb = await image(server.path('huge.tif/full/!100,100/0/default.jpg'));
    assert.deepEqual([thumb.width, thumb.height], [100, 70]);
    assert.deepEqual(counts.decode, [6], 'a thumbnail reads the 156-px level');
    // Full-resolution tiles: the first and the last (16x88, bottom-right corner).
    for (const [rest, index, size] of [
      ['0,0,256,256/256,256', 0, [256, 256]],
      ['9984,6912,16,88/16,88', 27 * 40 + 39, [16, 88]],
      ['full/156,109', null, [156, 109]],
    ] as const) {
      reset(counts);
      const response = await ok(server.path(`huge.tif/${rest}/0/default.jpg`), rest);
      const got = await decodePixels(response.body);
      assert.deepEqual([got.width, got.height], size, rest);
      assert.deepEqual([counts.stored, counts.decode.length], [1, 0], rest);
      if (index !== null) assert.ok(response.body.equals((await ok(server.raw(`FIF=huge.tif&JTL=6,${index}`))).body), rest);
    }
    // A v2 viewer's `w,` for a level whose height rounds differently (312x218 holds 8192x7000 as
    // 256x218.75): the size asked for, 256x219, made from that level, not the 256x218 tile.
    reset(v2counts);
    const rounded = await image(v2.path('huge.tif/0,0,8192,7000/256,/0/default.jpg'));
    assert.deepEqual([rounded.width, rounded.height], [256, 219]);
    assert.deepEqual([v2counts.stored, v2counts.decode], [0, [5]], 'a region of the 312-px level');
    for (const [s, rest] of [
      [server, '0,0,8192,7000/256,219'],
      [server, '0,0,8192,7000/,219'],
      [v2, '0,0,8192,7000/,219'],
    ] as const) {
      const explicit = await image(s.path(`huge.tif/${rest}/0/default.jpg`), rest);
      assert.deepEqual([explicit.width, explicit.height], [256, 219], rest);
    }
    // What the tile is, asked for as it is: the stored tile.
    reset(counts);
    const tile = await image(server.path('huge.tif/0,0,8192,7000/256,218/0/default.jpg'));
    assert.deepEqual([tile.width, tile.height], [256, 218]);
    assert.deepEqual([counts.stored, counts.decode.length], [1, 0], 'the stored tile');
    for (const [rest, size] of [
      ['5000,3500,10000,10000/max', [5000, 3500]],
      ['9990,6990,100,100/max', [10, 10]],
      ['pct:50,50,100,100/pct:10', [500, 350]],
    ] as const) {
      const got = await image(server.path(`huge.tif/${rest}/0/default.jpg`), rest);
      assert.deepEqual([got.width, got.height], size, rest);
    }
    for (const rest of ['full/5001,', 'full/^5001,', 'full/,5001', '0,0,5000,5000/^pct:101']) {
      const response = await server.path(`huge.tif/${rest}/0/default.jpg`);
      assert.equal(response.status, 400, rest);
      assert.match(response.body.toString(), /exceeds the largest allowed/, rest);
    }
  });
});

describe('errors', () => {
  it('400 for bad syntax, with a plain-text message naming the part', async () => {
    for (const [rest, message] of [
      ['squares.tif/0,0,0,10/max/0/default.jpg', /region "0,0,0,10" has no width or height/],
      ['squares.tif/2000,2000,10,10/max/0/default.jpg', /lies outside the image \(1000x700\)/],
      ['squares.tif/nonsense/max/0/default.jpg', /incorrect region format/],
      ['squares.tif/full/1001,/0/default.jpg', /prefixed with \^/],
      ['squares.tif/full/0,/0/default.jpg', /zero pixels/],
      ['squares.tif/full/max/361/default.jpg', /invalid rotation "361"/],
      ['squares.tif/full/max/-90/default.jpg', /invalid rotation/],
      ['squares.tif/full/max/0/grey.jpg', /unsupported quality "grey"/],
      ['squares.tif/full/max/0/native.jpg', /unsupported quality "native"/],
      ['squares.tif/full/max/0/default.bmp', /unknown format "bmp"/],
    ] as const) {
      const response = await server.path(rest);
      assert.equal(response.status, 400, rest);
      assert.equal(header(response, 'content-type'), 'text/plain; charset=utf-8');
      assert.match(response.body.toString(), message, rest);
    }
  });
  it('404 for identifiers that name no image (and never a path outside FILESYSTEM_PREFIX)', async () => {
    for (const rest of ['nope.tif/info.json', 'nope.tif/full/max/0/default.jpg', '..%2F..%2Fetc%2Fpasswd/info.json', 'sub/dir/nope.tif/info.json']) {
      const response = await server.path(rest);
      assert.equal(response.status, 404, rest);
      assert.equal(header(response, 'content-type'), 'text/plain; charset=utf-8');
      assert.ok(!response.body.toString().includes(dir), 'no filesystem path in the message');
    }
  });
  it('501 for what is well formed but not implemented here', async () => {
    for (const [s, rest] of [
      [server, 'squares.tif/full/max/0/default.heic'],
      [server, 'squares.tif/full/max/0/gray.jxl'],
      [serverFor(prefix, { ALLOW_UPSCALING: '0' }), 'squares.tif/full/^2000,/0/default.jpg'],
      [serverFor(prefix, { ALLOW_UPSCALING: '0', IIIF_VERSION: '2' }), 'squares.tif/full/2000,/0/default.jpg'],
    ] as const) {
      const response = await s.path(rest);
      assert.equal(response.status, 501, rest);
      assert.equal(header(response, 'content-type'), 'text/plain; charset=utf-8');
      assert.ok(response.body.length > 0);
    }
    // ALLOW_UPSCALING=0 still serves what needs no upscaling.
    const got = await image(serverFor(prefix, { ALLOW_UPSCALING: '0' }).path('squares.tif/full/^max/0/default.jpg'));
    assert.deepEqual([got.width, got.height], [1000, 700]);
  });
  it('info.json without an identifier, and junk after it', async () => {
    assert.equal((await server.query('info.json')).status, 400);
    assert.equal((await server.path('squares.tif/info.xml')).status, 400);
  });
});
