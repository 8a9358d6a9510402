/**
 * Robustness: thousands of seeded random IIP query strings, IIIF paths (v2 and v3) and DeepZoom /
 * Zoomify paths, valid, boundary and malformed, against small generated images of every kind the
 * server reads plus broken files. Every request must settle in time with an allowed status, an
 * error must say what is wrong, and an image or document answer must decode. Then the real daemon
 * gets the nastiest of them concurrently and must survive without losing a worker.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import { getHeader, type PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';
import { startDaemon, tempDir } from '../helpers/daemon.ts';
import { freePort, waitFor, type Started } from '../helpers/processes.ts';
import { makePyramidTiff } from '../helpers/images.ts';
import { JP2_SKIP, makeJp2, testImage } from '../helpers/jp2.ts';
import { seededRandom } from '../helpers/random.ts';
import { plainRequest } from '../helpers/requests.ts';
import { pyramid, writeTiff, type TiffSpec } from '../helpers/tiff-writer.ts';
import { expectNoIipsrvLeft, iipsrvProcesses } from '../helpers/webservers.ts';

const W = 300;
const H = 200;
const TIME_LIMIT_MS = 20_000;
/** Small so that the many upscaled or full-size answers stay fast; the limit itself is what is tested. */
const FUZZ_MAX_CVT = 800;
/** MAX_CVT bounds the scaled region; an arbitrary ROT then turns it, whose bounding box is up to √2 larger. */
const ROTATED_MAX = Math.ceil(FUZZ_MAX_CVT * Math.SQRT2) + 2;
const ALLOWED = new Set([200, 303, 304, 400, 403, 404, 501]);

let dir: string;

const GOOD_IMAGES = [
  'rgb.tif',
  'ms',
  'grey16.tif',
  'float.tif',
  'int16.tif',
  'band5.tif',
  'lab8.tif',
  'bilevel.tif',
  'rgba.tif',
  'ms_pyr_000_090.tif',
  ...(JP2_SKIP ? [] : ['image.jp2']),
];
/** Cut short (headers lost), not an image at all, or whole but with garbage pixel data. */
const BROKEN_IMAGES = ['truncated.tif', 'text.tif', 'badjpeg.tif', 'baddeflate.tif', ...(JP2_SKIP ? [] : ['truncated.jp2', 'badcode.jp2'])];
const NASTY_NAMES = [
  'missing.tif',
  '../etc/passwd',
  '..%2F..%2Fetc%2Fpasswd',
  '%00',
  'rgb.tif%00.png',
  '%E2%98%83.tif',
  'x'.repeat(3000) + '.tif',
  '/',
  '.',
  'rgb.tif/',
  'ms_pyr_999_090.tif',
  '%ZZ',
];

function samples(channels: number, f: (x: number, y: number, c: number) => number, width = W, height = H): Float64Array {
  const out = new Float64Array(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < channels; c++) out[(y * width + x) * channels + c] = f(x, y, c);
  return out;
}

function write(name: string, spec: Omit<TiffSpec, 'levels'>, data: ArrayLike<number>, width = W, height = H): void {
  writeTiff(path.join(dir, name), { tile: 128, ...spec, levels: pyramid({ width, height, samples: data }, spec.channels, 128) });
}

function scramble(from: string, to: string, start: number, end: number): void {
  const bytes = Buffer.from(readFileSync(path.join(dir, from)));
  const r = seededRandom(start);
  for (let i = start; i < end; i++) bytes[i] = Math.floor(r() * 256);
  writeFileSync(path.join(dir, to), bytes);
}

async function makeImages(): Promise<void> {
  await makePyramidTiff(path.join(dir, 'rgb.tif'), { width: 600, height: 400, tileSize: 256 });
  write(
    'grey16.tif',
    { channels: 1, bits: 16, compression: 'deflate', predictor: 2 },
    samples(1, (x, y) => x * 200 + y),
  );
  write(
    'float.tif',
    { channels: 1, bits: 32, kind: 'float', smin: [-10], smax: [20] },
    samples(1, (x, y) => (x === 0 && y === 0 ? NaN : x / 10 - y / 20)),
  );
  write(
    'int16.tif',
    { channels: 1, bits: 16, kind: 'int' },
    samples(1, (x, y) => (x - 150) * 200 + y),
  );
  write(
    'band5.tif',
    { channels: 5, bits: 8, photometric: 1 },
    samples(5, (x, y, c) => (x + y + 40 * c) % 256),
  );
  write(
    'lab8.tif',
    { channels: 3, bits: 8, photometric: 8 },
    samples(3, (x, y, c) => [Math.floor((x * 255) / (W - 1)), (y - 100) & 0xff, 40][c]!),
  );
  write(
    'bilevel.tif',
    { channels: 1, bits: 1, photometric: 1 },
    samples(1, (x, y) => ((x >> 3) + (y >> 3)) & 1),
  );
  const rgba = Buffer.alloc(W * H * 4);
  for (let i = 0; i < W * H; i++) rgba.set([i % 256, (i >> 8) % 256, 99, i % 3 === 0 ? 0 : 255], i * 4);
  await sharp(rgba, { raw: { width: W, height: H, channels: 4 } })
    .tiff({ tile: true, pyramid: true, tileWidth: 128, tileHeight: 128, compression: 'deflate' })
    .toFile(path.join(dir, 'rgba.tif'));
  for (const band of [0, 400, 700]) {
    write(
      `ms_pyr_${String(band).padStart(3, '0')}_090.tif`,
      { channels: 1, bits: 8 },
      samples(1, (x, y) => (band / 10 + x + y) % 256),
    );
  }
  const rgbBytes = readFileSync(path.join(dir, 'rgb.tif'));
  // The first tiles' data (JPEG in rgb.tif, deflate in grey16.tif, the codestream of the JP2)
  // overwritten with noise; the headers, at the end, stay readable.
  scramble('rgb.tif', 'badjpeg.tif', 200, 8000);
  scramble('grey16.tif', 'baddeflate.tif', 20, 3000);
  writeFileSync(path.join(dir, 'truncated.tif'), rgbBytes.subarray(0, Math.floor(rgbBytes.length / 3)));
  writeFileSync(path.join(dir, 'text.tif'), 'This is not a TIFF file, just some text.\n');
  if (!JP2_SKIP) {
    makeJp2(dir, 'image.jp2', testImage(W, H, 3, 8), ['-n', '3', '-t', '128,128']);
    const jp2 = readFileSync(path.join(dir, 'image.jp2'));
    writeFileSync(path.join(dir, 'truncated.jp2'), jp2.subarray(0, Math.floor(jp2.length / 2)));
    scramble('image.jp2', 'badcode.jp2', 400, jp2.length - 100);
  }
}

// ---------------------------------------------------------------------------------------------
// Random requests

type Rand = () => number;
const pick = <T>(r: Rand, items: readonly T[]): T => items[Math.floor(r() * items.length)]!;
const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

const BOUNDARY = [
  '0',
  '-1',
  '1e12',
  String(2 ** 53),
  String(2 ** 31),
  '-2147483649',
  'NaN',
  'Infinity',
  '-0',
  '0.5',
  '1.5e-300',
  '',
  ',',
  ',,,',
  '%2C',
  '%',
  '%ZZ',
  '%00',
  '%E2%98%83',
  '☃',
  'é',
  '0x10',
  ' 1',
  '+1',
  '1,',
  'abc',
  'x'.repeat(4000),
  '9'.repeat(400),
];

/** Set for a part of the requests: every value plausible, so that they reach the deeper code. */
let plausibleOnly = false;

function number(r: Rand, lo: number, hi: number): string {
  const roll = plausibleOnly ? r() * 0.85 : r();
  if (roll < 0.75) return String(int(r, lo, hi));
  if (roll < 0.85) return (lo + r() * (hi - lo)).toFixed(int(r, 0, 4));
  return pick(r, BOUNDARY);
}

function list(r: Rand, count: number, make: () => string): string {
  if (plausibleOnly) return Array.from({ length: count }, make).join(',');
  if (r() < 0.05) return pick(r, BOUNDARY);
  const parts = Array.from({ length: r() < 0.1 ? int(r, 0, count + 3) : count }, make);
  return parts.join(r() < 0.05 ? ',,' : ',');
}

const OBJECTS = [
  'IIP,1.0',
  'IIP-server',
  'Max-size',
  'Tile-size',
  'Resolution-number',
  'Horizontal-views',
  'Vertical-views',
  'bits-per-channel',
  'min-max-sample-values',
  'colorspace,0,0',
  'colorspace,1,0',
  'colorspace,99,99',
  'Xmp',
  'summary-info',
  'copyright',
  'title',
  'icc-profile',
  'nonsense',
  'IIP,9',
];
const IIP_FORMATS = ['jpeg', 'jpg', 'png', 'webp', 'avif', 'tiff', 'tif', 'JPEG', 'gif', 'bmp', ''];
const KERNELS = ['sobel', 'prewitt', 'scharr', 'laplace', 'gaussian', 'sharpen', 'emboss', 'unknown'];

/** `resolution,tile`: mostly ones that exist (the images have 2 to 4 resolutions). */
function tile(r: Rand): string {
  return r() < 0.1 ? list(r, 2, () => number(r, -1, 12)) : `${number(r, 0, 3)},${number(r, 0, 6)}`;
}

/** A value for each IIP command, mostly plausible, often boundary or malformed. */
const IIP_VALUES: Record<string, (r: Rand) => string> = {
  FIF: (r) => (r() < 0.8 ? pick(r, GOOD_IMAGES) : r() < 0.6 ? pick(r, BROKEN_IMAGES) : pick(r, NASTY_NAMES)),
  OBJ: (r) => pick(r, OBJECTS),
  QLT: (r) => number(r, -10, 110),
  WID: (r) => number(r, 0, 1200),
  HEI: (r) => number(r, 0, 1200),
  RGN: (r) => list(r, 4, () => number(r, -0.5, 1.5)),
  ROT: (r) => pick(r, ['0', '90', '180', '270', '!0', '!90', '!180', '!270', '45', '-90', '360', '1e12', '!', 'NaN', '']),
  SDS: (r) => list(r, 2, () => number(r, -100, 800)),
  MINMAX: (r) => `${number(r, 0, 6)}:${number(r, -100, 100)},${number(r, -100, 1000)}`,
  CNT: (r) => (r() < 0.3 ? pick(r, ['eq', 'st', 'equalization', 'stretch']) : number(r, -5, 5)),
  GAM: (r) => (r() < 0.2 ? 'log' : number(r, -3, 3)),
  INV: () => 'INV',
  CMP: (r) => pick(r, ['hot', 'cold', 'jet', 'red', 'green', 'blue', 'GREY', 'nope']),
  CTW: (r) => {
    const rows = int(r, 0, 5);
    const body = Array.from({ length: rows }, () => list(r, int(r, 1, 5), () => number(r, -2, 2))).join(';');
    return r() < 0.1 ? pick(r, BOUNDARY) : r() < 0.5 ? `[${body}]` : `%5B${body}%5D`;
  },
  COL: (r) => pick(r, ['grey', 'gray', 'binary', 'GREY', 'colour', 'x', '']),
  SHD: (r) => list(r, 2, () => number(r, -360, 360)),
  CNV: (r) => (r() < 0.6 ? pick(r, KERNELS) : list(r, pick(r, [1, 4, 9, 25, 49, 2]), () => number(r, -5, 5))),
  LYR: (r) => number(r, 0, 10),
  BITS: (r) => (r() < 0.7 ? pick(r, ['8', '16']) : pick(r, ['32', '1', '0', '-1', '12', 'abc', '1e12'])),
  JTL: (r) => tile(r),
  JTLS: (r) => `${number(r, 0, 700)},${tile(r)},${number(r, 0, 90)}`,
  PTL: (r) => tile(r),
  WTL: (r) => tile(r),
  ATL: (r) => tile(r),
  TTL: (r) => tile(r),
  TIL: (r) => `${number(r, 0, 3)},${number(r, 0, 8)}-${number(r, 0, 8)}`,
  CVT: (r) => pick(r, IIP_FORMATS),
  SPECTRA: (r) => list(r, 4, () => number(r, -1, 130)),
  PFL: (r) => `${number(r, -1, 4)}:${number(r, -10, 310)},${number(r, -10, 210)}-${number(r, -10, 310)},${number(r, -10, 210)}`,
  ICC: (r) => number(r, 0, 1),
  // The viewer protocols are commands of the same table: IIP modifiers before them apply.
  IIIF: (r) => iiifPath(r).slice('/iiif/'.length),
  DeepZoom: (r) => viewerArgument(r, 'DeepZoom'),
  Zoomify: (r) => viewerArgument(r, 'Zoomify'),
};

function viewerArgument(r: Rand, protocol: 'DeepZoom' | 'Zoomify'): string {
  for (;;) {
    const request = tileViewerRequest(r);
    if ('query' in request && request.query.startsWith(`${protocol}=`)) return request.query.slice(protocol.length + 1);
  }
}
const MODIFIERS = ['QLT', 'WID', 'HEI', 'RGN', 'ROT', 'SDS', 'MINMAX', 'CNT', 'GAM', 'INV', 'CMP', 'CTW', 'COL', 'SHD', 'CNV', 'LYR', 'BITS', 'ICC'];
const OUTPUTS = ['OBJ', 'JTL', 'JTLS', 'PTL', 'WTL', 'ATL', 'TTL', 'TIL', 'CVT', 'SPECTRA', 'PFL', 'IIIF', 'DeepZoom', 'Zoomify'];

function iipQuery(r: Rand): string {
  const parts: string[] = [];
  plausibleOnly = r() < 0.35;
  const command = (name: string) => {
    const shown = r() < 0.1 ? name.toLowerCase() : name;
    const value = IIP_VALUES[name]!(r);
    if (name === 'INV') parts.push(r() < 0.5 ? 'INV' : `INV=${value}`);
    else parts.push(`${shown}=${value}`);
  };
  if (r() < 0.92) command('FIF');
  for (let n = int(r, 0, 6); n > 0; n--) command(pick(r, MODIFIERS));
  for (let n = r() < 0.1 ? int(r, 0, 3) : 1; n > 0; n--) command(pick(r, OUTPUTS));
  // Random order now and then (FIF after the command, or between).
  if (!plausibleOnly && r() < 0.15) parts.sort(() => r() - 0.5);
  if (!plausibleOnly && r() < 0.03) parts.push(pick(r, ['NOPE=1', '=x', 'x=', '&&', '%FF=%FF', 'FIF']));
  return parts.join(r() < 0.02 ? '&&' : '&');
}

const REGIONS = [
  'full',
  'square',
  '0,0,100,100',
  '10,20,300,200',
  '599,399,1,1',
  '0,0,0,0',
  '-1,0,10,10',
  '0,0,1e12,1e12',
  'pct:0,0,50,50',
  'pct:10,10,0.1,0.1',
  'pct:-5,0,10,10',
  'pct:0,0,200,200',
  'pct:NaN,0,1,1',
  '1,2,3',
  '',
  ',,,',
  'x',
  '%2C',
  String(2 ** 53) + ',0,1,1',
];
const SIZES = [
  'max',
  'full',
  '^max',
  'pct:50',
  'pct:0',
  'pct:200',
  '^pct:200',
  'pct:1e12',
  '100,',
  ',100',
  '^5000,',
  '^1e12,',
  '100,100',
  '!100,100',
  '^!3000,3000',
  '0,',
  ',0',
  '-1,',
  'x',
  '',
  ',',
  '%5E100,',
  '1,1',
  String(2 ** 53) + ',',
];
const ROTATIONS = ['0', '90', '180', '270', '!0', '!90', '22.5', '-90', '360', '1e12', 'NaN', '!', '', 'x'];
const QUALITIES = ['default', 'color', 'gray', 'grey', 'bitonal', 'native', 'x', ''];
const IIIF_FORMATS = ['jpg', 'png', 'webp', 'tif', 'avif', 'gif', 'pdf', 'jp2', '', 'x'];

function iiifPath(r: Rand): string {
  const id = IIP_VALUES.FIF!(r);
  const roll = r();
  if (roll < 0.12) return `/iiif/${id}/info.json`;
  if (roll < 0.16) return `/iiif/${id}`;
  if (roll < 0.2) return `/iiif/${id}/${pick(r, ['', 'info.xml', 'full', 'full/max', 'full/max/0', '../../etc', '%2F%2F'])}`;
  const part = (values: readonly string[]) => (r() < 0.1 ? pick(r, BOUNDARY) : pick(r, values));
  const region = r() < 0.5 ? part(REGIONS) : r() < 0.6 ? list(r, 4, () => number(r, -10, 700)) : `pct:${list(r, 4, () => number(r, -5, 120))}`;
  const size = r() < 0.5 ? part(SIZES) : `${pick(r, ['', '', '^', '!', '^!'])}${r() < 0.2 ? '' : number(r, 0, 1000)},${r() < 0.2 ? '' : number(r, 0, 1000)}`;
  const rotation = r() < 0.7 ? part(ROTATIONS) : `${r() < 0.2 ? '!' : ''}${number(r, -400, 400)}`;
  let text = `/iiif/${id}/${region}/${size}/${rotation}/${part(QUALITIES)}.${part(IIIF_FORMATS)}`;
  if (r() < 0.05) text += '/extra';
  return text;
}

function tileViewerRequest(r: Rand): { query: string } | { path: string } {
  const id = IIP_VALUES.FIF!(r);
  const n = () => (r() < 0.8 ? String(int(r, 0, 4)) : number(r, -1, 12));
  const roll = r();
  let rest: string;
  if (roll < 0.15) rest = `DeepZoom=${id}.dzi`;
  else if (roll < 0.5) rest = `DeepZoom=${id}_files/${n()}/${n()}_${n()}.${pick(r, ['jpg', 'png', 'webp', 'x', ''])}`;
  else if (roll < 0.6) rest = `DeepZoom=${pick(r, [id, `${id}_files`, `${id}_files/1`, `${id}_files/1/0`, `${id}_files/1/0_0`, `${id}.xml`])}`;
  else if (roll < 0.7) rest = `Zoomify=${id}/ImageProperties.xml`;
  else if (roll < 0.95) rest = `Zoomify=${id}/TileGroup${n()}/${n()}-${n()}-${n()}.jpg`;
  else rest = `Zoomify=${pick(r, [id, `${id}/`, `${id}/TileGroup0`, `${id}/TileGroup0/0-0.jpg`, `${id}/x.xml`])}`;
  // Half of them as URI_MAP paths, as a web server would pass them.
  if (r() < 0.5) {
    const [command, argument] = rest.split(/=(.*)/s) as [string, string];
    return { path: `/${command.toLowerCase()}/${argument}` };
  }
  return { query: rest };
}

// ---------------------------------------------------------------------------------------------
// Checking answers

interface Case {
  what: string;
  query?: string;
  path?: string;
}

const describeCase = (c: Case): string => (c.path !== undefined ? `path ${c.path.slice(0, 300)}` : `query ${c.query!.slice(0, 300)}`);

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${TIME_LIMIT_MS} ms: ${what}`)), TIME_LIMIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Tags balanced, one root: enough to tell an XML document from a broken one. */
function checkXml(text: string): void {
  const body = text.replace(/^<\?xml[^>]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  for (const match of body.matchAll(/<(\/?)([A-Za-z_][\w.-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = match;
    if (closing) {
      assert.equal(stack.pop(), name, `unbalanced </${name}>`);
    } else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    } else if (stack.length === 0) roots++;
  }
  assert.equal(stack.length, 0, `unclosed <${stack.at(-1)}>`);
  assert.equal(roots, 1, 'one root element');
}

/**
 * The one 500 allowed: the external JPEG2000 decoder itself failing (a hang past its time limit,
 * a crash) on a broken JP2, reported as such. Data a decoder refuses is the file's fault and a
 * 404, like everything else about broken files; nothing else may be a 500.
 */
function isGenuineDecoderFailure(c: Case, message: string): boolean {
  const text = c.query ?? c.path ?? '';
  return BROKEN_IMAGES.some((name) => name.endsWith('.jp2') && text.includes(name)) && /: JPEG2000 decoding failed: \S/.test(message);
}

async function checkResponse(c: Case, response: PlainResponse, statuses: Map<number, number>): Promise<void> {
  const where = `${describeCase(c)} -> ${response.status} ${response.body.subarray(0, 200).toString()}`;
  statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
  if (response.status === 500) {
    assert.ok(isGenuineDecoderFailure(c, response.body.toString()), `500 without a decoder failure of a broken file: ${where}`);
    return;
  }
  assert.ok(ALLOWED.has(response.status), `status not allowed: ${where}`);
  if (response.status === 303) {
    assert.ok(getHeader(response.headers, 'location'), `303 without Location: ${where}`);
    return;
  }
  if (response.status === 304) return;
  if (response.status !== 200) {
    if (process.env.ROBUSTNESS_MESSAGES)
      console.log(
        `MSG ${response.status} ${response.body
          .subarray(0, 120)
          .toString()
          .replace(/[0-9]+/g, 'N')
          .replace(/\s+/g, ' ')}`,
      );
    assert.ok(response.body.toString().trim().length > 3, `error without a message: ${where}`);
    return;
  }
  const type = getHeader(response.headers, 'content-type') ?? '';
  try {
    if (type === 'image/jp2') {
      // sharp reads no JPEG2000: the size from the JP2 header's ihdr box (height, then width).
      const at = response.body.indexOf('ihdr', 0, 'latin1');
      assert.ok(response.body.toString('latin1', 4, 8) === 'jP  ' && at > 0, 'a JP2 with a header');
      const [height, width] = [response.body.readUInt32BE(at + 4), response.body.readUInt32BE(at + 8)];
      assert.ok(width > 0 && height > 0 && width <= ROTATED_MAX && height <= ROTATED_MAX, `output ${width}x${height} beyond MAX_CVT`);
    } else if (type.startsWith('image/')) {
      const { info } = await sharp(response.body, { limitInputPixels: false }).raw().toBuffer({ resolveWithObject: true });
      assert.ok(info.width > 0 && info.height > 0);
      assert.ok(info.width <= ROTATED_MAX && info.height <= ROTATED_MAX, `output ${info.width}x${info.height} beyond MAX_CVT`);
    } else if (type === 'application/pdf') {
      // The page's image is the JPEG of the same request: it must decode as any image here.
      const start = response.body.indexOf(Buffer.from([0xff, 0xd8, 0xff]));
      const end = response.body.lastIndexOf(Buffer.from([0xff, 0xd9]));
      assert.ok(response.body.toString('latin1', 0, 5) === '%PDF-' && start > 0 && end > start, 'a PDF holding a JPEG');
      const { info } = await sharp(response.body.subarray(start, end + 2))
        .raw()
        .toBuffer({ resolveWithObject: true });
      assert.ok(info.width <= ROTATED_MAX && info.height <= ROTATED_MAX, `output ${info.width}x${info.height} beyond MAX_CVT`);
    } else if (type.includes('json')) {
      JSON.parse(response.body.toString());
    } else if (type.includes('xml')) {
      checkXml(response.body.toString());
    } else {
      assert.ok(response.body.length > 0, 'an empty 200');
    }
  } catch (error) {
    assert.fail(`200 (${type}) does not decode: ${where}: ${(error as Error).message}`);
  }
}

function summary(statuses: Map<number, number>): string {
  return [...statuses.entries()]
    .sort(([a], [b]) => a - b)
    .map(([s, n]) => `${s}: ${n}`)
    .join(', ');
}

// ---------------------------------------------------------------------------------------------

type Router = ReturnType<typeof createRouter>;

function routerFor(env: Record<string, string> = {}): Router {
  const config = loadConfig({
    MEMCACHED_SERVERS: '',
    FILESYSTEM_PREFIX: dir + '/',
    MAX_CVT: String(FUZZ_MAX_CVT),
    URI_MAP: 'iiif=>IIIF deepzoom=>DeepZoom zoomify=>Zoomify',
    // ROBUSTNESS_ENV='{"CODEC_PASSTHROUGH":"0"}' explores other configurations.
    ...(JSON.parse(process.env.ROBUSTNESS_ENV ?? '{}') as Record<string, string>),
    ...env,
  });
  return createRouter({ config, engine: new Engine(engineOptionsFor(config)), log: silentLog });
}

async function run(router: Router, c: Case, statuses: Map<number, number>): Promise<void> {
  const request = c.path !== undefined ? plainRequest('', { path: c.path, scriptName: '' }) : plainRequest(c.query!);
  const response = await withTimeout(router(request), describeCase(c));
  await checkResponse(c, response, statuses);
}

/** One pair for the whole file: an engine dropped unclosed would leave its files to the GC. */
let v3: Router;
let v2: Router;
let unlimitedRouter: Router;
let defaultRouter: Router;

before(async () => {
  dir = tempDir('iipsrv-robust-');
  await makeImages();
  v3 = routerFor();
  v2 = routerFor({ IIIF_VERSION: '2' });
  unlimitedRouter = routerFor({ MAX_CVT: '-1' });
  defaultRouter = routerFor({ MAX_CVT: '5000' });
});

/** ROBUSTNESS_SEED=n explores other requests (the failures print the query, for a test of their own). */
const SEED = Number(process.env.ROBUSTNESS_SEED ?? 20261201);
const IIP_CASES = 2500;
const CONCURRENCY = 4;
const IIIF_CASES = 500;
const VIEWER_CASES = 400;

function generatedCases(): Case[] {
  const r = seededRandom(SEED);
  const cases: Case[] = [];
  for (let i = 0; i < IIP_CASES; i++) cases.push({ what: 'iip', query: iipQuery(r) });
  for (let i = 0; i < IIIF_CASES; i++) cases.push({ what: 'iiif', path: iiifPath(r) });
  for (let i = 0; i < VIEWER_CASES; i++) cases.push({ what: 'viewer', ...tileViewerRequest(r) });
  return cases;
}

describe('protocol level: random requests', () => {
  it(`${IIP_CASES} IIP query strings, ${IIIF_CASES} IIIF paths (v3 and v2), ${VIEWER_CASES} DeepZoom/Zoomify requests`, async () => {
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    const cases = generatedCases();
    let n = 0;
    // A few at a time, as a server sees them: the shared caches (open files, histograms, tiles)
    // get concurrent users of the same broken and good images.
    let next = 0;
    const lane = async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        const router = c.what === 'iiif' && n++ % 2 === 1 ? v2 : v3;
        try {
          await run(router, c, statuses);
        } catch (error) {
          failures.push((error as Error).message.split('\n')[0]!);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, lane));
    console.log(`robustness: ${cases.length} requests; statuses ${summary(statuses)}`);
    assert.deepEqual(failures.slice(0, 20), [], `${failures.length} failing requests`);
  });
});

describe('protocol level: damaged pixel data', () => {
  // The headers read, the tiles do not decode: a 404 naming the image and the decoder's reason,
  // for every path to the pixels (stored JPEG passthrough included).
  const cases: Array<[string, RegExp]> = [
    ['FIF=badjpeg.tif&JTL=2,1', /badjpeg\.tif: the image data cannot be decoded \(VipsJpeg/],
    ['FIF=badjpeg.tif&PTL=2,1', /badjpeg\.tif: the image data cannot be decoded/],
    ['FIF=badjpeg.tif&CVT=jpeg', /badjpeg\.tif: the image data cannot be decoded/],
    ['FIF=badjpeg.tif&CNT=2&CVT=png', /badjpeg\.tif: the image data cannot be decoded/],
    ['FIF=badjpeg.tif&SPECTRA=2,1,0,0', /badjpeg\.tif: the image data cannot be decoded/],
    ['IIIF=badjpeg.tif/full/max/0/default.jpg', /badjpeg\.tif: the image data cannot be decoded/],
    ['DeepZoom=badjpeg.tif_files/10/1_0.jpg', /badjpeg\.tif: the image data cannot be decoded/],
    ['FIF=baddeflate.tif&CVT=png', /corrupt TIFF tile/],
    ...(JP2_SKIP ? [] : ([['FIF=badcode.jp2&CVT=jpeg', /badcode\.jp2: the JPEG2000 data cannot be decoded/]] as Array<[string, RegExp]>)),
  ];
  for (const [query, message] of cases) {
    it(query, async () => {
      const response = await withTimeout(v3(plainRequest(query)), query);
      assert.equal(response.status, 404, `${query}: ${response.body.toString()}`);
      assert.match(response.body.toString(), message);
    });
  }
});

describe('protocol level: documents stay parseable', () => {
  it('PFL over a NaN float sample is JSON (null where iipsrv prints nan)', async () => {
    const response = await v3(plainRequest('FIF=float.tif&PFL=2:0,0-3,0'));
    assert.equal(response.status, 200, response.body.toString());
    assert.deepEqual(JSON.parse(response.body.toString()), { profile: [null, 0.100000001, 0.200000003] });
  });
});

describe('protocol level: huge outputs are refused or bounded', () => {
  const cases = [
    'FIF=rgb.tif&WID=100000&CVT=jpeg',
    'FIF=rgb.tif&HEI=1e12&CVT=png',
    'FIF=rgb.tif&WID=9007199254740992&HEI=9007199254740992&CVT=jpeg',
    'FIF=rgb.tif&RGN=0,0,0.001,0.001&WID=5000&CVT=jpeg',
    'FIF=rgb.tif&RGN=0.5,0.5,0.0000001,0.0000001&WID=800&HEI=800&CVT=png',
    'FIF=rgb.tif&WID=800&CNV=sharpen&CVT=jpeg',
    'FIF=rgb.tif&WID=800&CNV=1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1&CVT=png',
    'FIF=grey16.tif&WID=800&BITS=16&CNV=1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1&CVT=tiff',
    'FIF=rgb.tif&WID=800&CTW=%5B1,0,0,0,0;0,1,0,0,0;0,0,1,0,0;1,1,1,1,1;1,1,1,1,1%5D&CVT=png',
  ];
  for (const query of cases) {
    it(query, async () => {
      const router = v3;
      const started = Date.now();
      const statuses = new Map<number, number>();
      await run(router, { what: 'huge', query }, statuses);
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    });
  }
  it('the default MAX_CVT (5000): a 5x5 convolution over the largest output is bounded in size and time', async () => {
    const ones = Array(25).fill(1).join(',');
    for (const query of [`FIF=rgb.tif&WID=9000&CNV=${ones}&CVT=png`, 'FIF=rgb.tif&RGN=0,0,0.001,0.001&HEI=1000000&SHD=30,40&CVT=jpeg']) {
      const started = Date.now();
      const response = await withTimeout(defaultRouter(plainRequest(query)), query);
      assert.equal(response.status, 200, `${query}: ${response.body.subarray(0, 200).toString()}`);
      const { width, height } = await sharp(response.body).metadata();
      assert.ok(Math.max(width!, height!) === 5000, `${query}: ${width}x${height}`);
      assert.ok(Date.now() - started < 15_000, `${query} took ${Date.now() - started} ms`);
    }
  });

  // With MAX_CVT=-1 (unlimited) only the encoders' and the server's own limits stand between a
  // request and a process that runs out of memory.
  const unlimited: Array<[string, RegExp]> = [
    ['FIF=rgb.tif&WID=9007199254740992&CVT=jpeg', /JPEG is larger than the encoder writes \(65500 pixels a side\)/],
    ['FIF=rgb.tif&WID=70000&CVT=jpeg', /a 70000x46667 JPEG is larger than the encoder writes/],
    ['FIF=rgb.tif&WID=16000&ROT=45&CVT=webp', /WEBP is larger than the encoder writes \(16383 pixels a side\)/],
    ['FIF=rgb.tif&WID=100000&CVT=png', /a 100000x66667 output is larger than the server makes \(268402689 pixels\)/],
    ['IIIF=rgb.tif/full/^100000,/0/default.png', /larger than the server makes/],
    ['IIIF=rgb.tif/full/^9007199254740992,/0/default.tif', /TIFF is larger than the encoder writes/],
  ];
  for (const [query, message] of unlimited) {
    it(`MAX_CVT=-1: ${query}`, async () => {
      const response = await withTimeout(unlimitedRouter(plainRequest(query)), query);
      assert.equal(response.status, 400, `${query}: ${response.status} ${response.body.subarray(0, 200).toString()}`);
      assert.match(response.body.toString(), message);
    });
  }
  it('IIIF: ^1e12, sizes beyond MAX_CVT, tiny regions upscaled', async () => {
    const router = v3;
    const statuses = new Map<number, number>();
    for (const p of [
      '/iiif/rgb.tif/full/^1e12,/0/default.jpg',
      '/iiif/rgb.tif/0,0,1,1/^5000,5000/0/default.png',
      '/iiif/rgb.tif/full/^pct:100000/0/default.jpg',
      '/iiif/rgb.tif/pct:0,0,0.01,0.01/^!5000,5000/0/default.jpg',
    ]) {
      await run(router, { what: 'huge', path: p }, statuses);
    }
    assert.ok(!statuses.has(200) || statuses.get(200)! <= 4);
  });
});

// ---------------------------------------------------------------------------------------------
// Daemon level

/** The requests of the random set that do the most work or are the most malformed. */
function nastiest(count: number): Case[] {
  const cases = generatedCases();
  const score = (c: Case): number => {
    const text = c.query ?? c.path ?? '';
    let s = 0;
    if (/truncated|text\.tif/.test(text)) s += 3;
    if (/CNV|CTW|CVT|WID=[0-9]{3}|\^/.test(text)) s += 2;
    if (/1e12|9007199254740992|NaN|%00|%ZZ|☃/.test(text)) s += 2;
    if (text.length > 1000) s += 1;
    return s;
  };
  return cases
    .map((c, i) => ({ c, s: score(c), i }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .slice(0, count)
    .map(({ c }) => c);
}

function fetch(port: number, target: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: target, timeout: TIME_LIMIT_MS, headers: { connection: 'close' } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (d: Buffer) => chunks.push(d));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer within ${TIME_LIMIT_MS} ms: ${target}`)));
    request.on('error', reject);
  });
}

/** Bytes in, everything the server sends until it closes out. */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.setTimeout(TIME_LIMIT_MS, () => socket.destroy(new Error('no answer to raw bytes')));
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.on('error', reject);
  });
}

/** A path that Node's HTTP client accepts: anything outside printable ASCII percent-encoded. */
function wire(text: string): string {
  return text.replace(/[^\x21-\x7e]/gu, (ch) => encodeURIComponent(ch));
}

describe('daemon level: concurrent nasty requests', () => {
  let daemon: Started | undefined;
  let port: number;
  let logfile: string;

  before(async () => {
    port = await freePort();
    logfile = path.join(dir, 'daemon.log');
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '2'], {
      env: {
        FILESYSTEM_PREFIX: dir + '/',
        MAX_CVT: String(FUZZ_MAX_CVT),
        URI_MAP: 'iiif=>IIIF deepzoom=>DeepZoom zoomify=>Zoomify',
        LOGFILE: logfile,
        VERBOSITY: '1',
      },
      waitPort: port,
    });
  });

  after(async () => {
    await daemon?.stop();
  });

  it('answers ~200 of the nastiest requests, 8 at a time, and stays whole', async () => {
    const cases = nastiest(200);
    const pid = daemon!.child.pid!;
    const workers = () =>
      iipsrvProcesses(dir)
        .filter((p) => p.pid !== pid && p.state !== 'Z')
        .map((p) => p.pid)
        .sort();
    await waitFor(async () => workers().length === 2, 10_000, 'two workers');
    const before = workers();
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    let next = 0;
    const lane = async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        const target = wire(c.path ?? `/fcgi-bin/iipsrv.fcgi?${c.query}`);
        try {
          const { status, body } = await fetch(port, target);
          await checkResponse(c, { status, headers: [], body }, statuses).catch((error: Error) => {
            // Headers were not kept: only the status and message checks apply here.
            if (!/does not decode/.test(error.message)) throw error;
          });
        } catch (error) {
          failures.push((error as Error).message.split('\n')[0]!);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    console.log(`robustness daemon: ${cases.length} requests; statuses ${summary(statuses)}`);
    assert.deepEqual(failures.slice(0, 20), []);

    const alive = await fetch(port, '/fcgi-bin/iipsrv.fcgi?OBJ=IIP,1.0');
    assert.equal(alive.status, 200);
    assert.match(alive.body.toString(), /IIP:1\.0/);
    // Give the primary's asynchronous log a moment, then look for a replaced worker.
    await new Promise((r) => setTimeout(r, 300));
    const log = readFileSync(logfile, 'utf8');
    assert.doesNotMatch(log, /worker died/);
    assert.deepEqual(workers(), before, 'the same workers as at the start');

    // What Node's HTTP parser refuses before the router: the status and a message all the same.
    const long = await fetch(port, `/fcgi-bin/iipsrv.fcgi?FIF=${'x'.repeat(20_000)}`);
    assert.equal(long.status, 431);
    assert.match(long.body.toString(), /longer than the server accepts/);
    const garbage = await rawExchange(port, 'GARBAGE\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\nMalformed HTTP request \(HPE_INVALID_METHOD\)/);

    await daemon!.stop();
    daemon = undefined;
    await expectNoIipsrvLeft(dir, [pid, ...before]);
  });
});
