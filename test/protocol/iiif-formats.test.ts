/**
 * The IIIF output formats beyond level 2's jpg and png that are not libvips' everyday ones: gif,
 * jp2 and pdf, in both versions, through the router on real pyramids. Each output is decoded by
 * another program than the one that wrote it (libvips for GIF, opj_decompress for JPEG2000, a PDF
 * parser here plus poppler's pdftoppm and qpdf when installed) and compared pixel for pixel with
 * the PNG or JPEG of the same request.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { writesFormat } from '../../src/engine/output/encoders.ts';
import { MAX_PAGE_SIDE, pdfWithJpeg } from '../../src/engine/output/pdf.ts';
import { silentLog } from '../../src/log.ts';
import { getHeader, type PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';
import { tempDir, which } from '../helpers/daemon.ts';
import { decodePixels, psnr, rampPixels, type Pixels } from '../helpers/images.ts';
import { parseJson } from '../helpers/json.ts';
import { plainRequest } from '../helpers/requests.ts';

type Get = (rest: string) => Promise<PlainResponse>;

function serverFor(prefix: string, env: Record<string, string> = {}): Get {
  const config = loadConfig({ MEMCACHED_SERVERS: '', MAX_IMAGE_CACHE_SIZE: '0', FILESYSTEM_PREFIX: prefix, URI_MAP: 'iiif=>IIIF', ...env });
  const router = createRouter({ config, engine: new Engine(engineOptionsFor(config)), log: silentLog });
  return (rest) => router(plainRequest('', { path: `/iiif/${rest}`, scriptName: '/iiif', headers: { host: 'localhost' } }));
}

const JP2_DECODER_SKIP = which('opj_decompress') ? null : 'opj_decompress not installed (apt-get install libopenjp2-tools)';
const JP2_SKIP = writesFormat('jp2') ? JP2_DECODER_SKIP : 'build/jp2-encoder was not built (npm run build with libopenjp2-7-dev)';
const PDFTOPPM_SKIP = which('pdftoppm') ? null : 'pdftoppm not installed (apt-get install poppler-utils)';
const QPDF_SKIP = which('qpdf') ? null : 'qpdf not installed (apt-get install qpdf)';

const XMP = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>';

let dir: string;
let get: Get;
let getV2: Get;
let icc: Buffer;

async function ok(response: Promise<PlainResponse>, what: string, type: string): Promise<Buffer> {
  const got = await response;
  assert.equal(got.status, 200, `${what}: ${got.status} ${got.body.toString().slice(0, 200)}`);
  assert.equal(getHeader(got.headers, 'content-type'), type, what);
  return got.body;
}

/** The pixels of a PNG (or anything sharp reads), alpha kept, grey one band. */
const pixelsOf = (bytes: Buffer) => decodePixels(bytes);

/** Pixels as RGB(A): GIF decoders always give colour, so grey references are widened to compare. */
function asColour(p: Pixels): Pixels {
  if (p.channels >= 3) return p;
  const data = Buffer.alloc(p.width * p.height * (p.channels + 2));
  for (let i = 0, o = 0; i < p.data.length; i += p.channels) {
    const v = p.data[i]!;
    data[o++] = v;
    data[o++] = v;
    data[o++] = v;
    if (p.channels === 2) data[o++] = p.data[i + 1]!;
  }
  return { ...p, channels: p.channels + 2, data };
}

/** Worst difference of the colour bands of two images over the pixels the reference shows (alpha > 0). */
function worstVisibleDifference(got: Pixels, reference: Pixels): number {
  assert.deepEqual([got.width, got.height], [reference.width, reference.height]);
  const alpha = reference.channels === 4 ? 3 : -1;
  let worst = 0;
  for (let p = 0; p < reference.width * reference.height; p++) {
    if (alpha >= 0 && reference.data[p * 4 + alpha] === 0) continue;
    for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(got.data[p * got.channels + c]! - reference.data[p * reference.channels + c]!));
  }
  return worst;
}

/** Three bands whatever the image has: a renderer's page and a grey JPEG compare. */
async function rgbOf(bytes: Buffer): Promise<Pixels> {
  const { data, info } = await sharp(bytes).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels, data };
}

/** A JP2 decoded by OpenJPEG's own tool, through a PNG. */
function decodeJp2(bytes: Buffer, name: string): Promise<Pixels> {
  const input = path.join(dir, `${name}.jp2`);
  const output = path.join(dir, `${name}.png`);
  writeFileSync(input, bytes);
  execFileSync('opj_decompress', ['-i', input, '-o', output, '-quiet'], { stdio: 'pipe' });
  return pixelsOf(readFileSync(output));
}

/** The top-level boxes of a JP2 file, and those inside its header box. */
function jp2Boxes(bytes: Buffer): Array<{ type: string; body: Buffer }> {
  const boxes: Array<{ type: string; body: Buffer }> = [];
  const walk = (from: number, to: number) => {
    for (let at = from; at < to;) {
      const length = bytes.readUInt32BE(at);
      const type = bytes.toString('latin1', at + 4, at + 8);
      const end = length === 0 ? to : at + length;
      assert.ok(length === 0 || length >= 8, `box ${type} at ${at} has length ${length}`);
      boxes.push({ type, body: bytes.subarray(at + 8, end) });
      if (type === 'jp2h') walk(at + 8, end);
      at = end;
    }
  };
  walk(0, bytes.length);
  return boxes;
}

interface PdfObject {
  dictionary: string;
  stream: Buffer | null;
}

/**
 * Reads a PDF the way a reader does: the trailer's startxref, the cross-reference table, and each
 * object at the offset it gives (which must start `N 0 obj`); streams by their /Length.
 */
function parsePdf(pdf: Buffer): { objects: Map<number, PdfObject>; root: number; version: string } {
  const text = pdf.toString('latin1');
  assert.match(text, /^%PDF-1\.\d\n%[\x80-\xff]{4}\n/, 'header and binary comment');
  const tail = /startxref\n(\d+)\n%%EOF\n$/.exec(text);
  assert.ok(tail, 'ends with startxref and %%EOF');
  const xrefAt = Number(tail[1]);
  const xref = /^xref\n0 (\d+)\n/.exec(text.slice(xrefAt));
  assert.ok(xref, `a cross-reference table at ${xrefAt}`);
  const count = Number(xref[1]);
  const entries = xrefAt + xref[0].length;
  assert.equal(text.slice(entries, entries + 20), '0000000000 65535 f \n', 'the free head of the list');
  const objects = new Map<number, PdfObject>();
  for (let n = 1; n < count; n++) {
    const entry = text.slice(entries + n * 20, entries + n * 20 + 20);
    const match = /^(\d{10}) 00000 n \n$/.exec(entry);
    assert.ok(match, `entry ${n} is 20 bytes: ${JSON.stringify(entry)}`);
    const at = Number(match[1]);
    const head = `${n} 0 obj\n`;
    assert.equal(text.slice(at, at + head.length), head, `object ${n} is where the table says (${at})`);
    const body = text.slice(at + head.length);
    const streamStart = body.indexOf('stream\n');
    const objectEnd = body.indexOf('endobj');
    if (streamStart >= 0 && streamStart < objectEnd) {
      const dictionary = body.slice(0, streamStart);
      const length = Number(/\/Length (\d+)/.exec(dictionary)?.[1]);
      const from = at + head.length + streamStart + 'stream\n'.length;
      assert.equal(text.slice(from + length, from + length + '\nendstream'.length), '\nendstream', `object ${n}: the stream is /Length long`);
      objects.set(n, { dictionary, stream: pdf.subarray(from, from + length) });
    } else objects.set(n, { dictionary: body.slice(0, objectEnd), stream: null });
  }
  const trailer = text.slice(entries + count * 20, xrefAt + text.slice(xrefAt).indexOf('startxref'));
  const root = Number(/\/Root (\d+) 0 R/.exec(trailer)?.[1]);
  assert.match(trailer, new RegExp(`/Size ${count}\\b`));
  return { objects, root, version: text.slice(5, 8) };
}

/** Follows `key N 0 R` in a dictionary. */
function ref(objects: Map<number, PdfObject>, dictionary: string, key: string): PdfObject & { number: number } {
  const number = Number(new RegExp(`/${key} (\\d+) 0 R`).exec(dictionary)?.[1]);
  const object = objects.get(number);
  assert.ok(object, `/${key} points at an object (${number})`);
  return { ...object, number };
}

/** The page's image: catalog -> pages -> page -> XObject Im0. */
function pageImage(pdf: Buffer): { page: string; image: PdfObject; objects: Map<number, PdfObject> } {
  const { objects, root } = parsePdf(pdf);
  const catalog = objects.get(root)!;
  assert.match(catalog.dictionary, /\/Type \/Catalog/);
  const pages = ref(objects, catalog.dictionary, 'Pages');
  assert.match(pages.dictionary, /\/Type \/Pages \/Kids \[\d+ 0 R\] \/Count 1/);
  const page = ref(objects, pages.dictionary.replace('/Kids [', '/Kids '), 'Kids');
  assert.match(page.dictionary, /\/Type \/Page\b/);
  const image = ref(objects, page.dictionary, 'Im0');
  assert.match(image.dictionary, /\/Subtype \/Image/);
  assert.match(image.dictionary, /\/Filter \/DCTDecode/);
  const contents = ref(objects, page.dictionary, 'Contents');
  assert.match(contents.stream!.toString('latin1'), /^q [\d.]+ 0 0 [\d.]+ 0 0 cm \/Im0 Do Q$/);
  return { page: page.dictionary, image, objects };
}

before(async () => {
  dir = tempDir('iipsrv-formats-');
  const prefix = dir + '/';
  const pyramid = { tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'deflate' } as const;
  // Deflate: the PNG of a request is the exact reference for every format.
  const ramp = rampPixels(900, 600, (x, y) => ((Math.floor(x / 30) + Math.floor(y / 30)) % 4) * 60);
  const raw = { raw: { width: 900, height: 600, channels: 3 as const } };
  await sharp(ramp, raw).tiff(pyramid).toFile(path.join(dir, 'ramp.tif'));
  await sharp(ramp, raw).toColourspace('b-w').tiff(pyramid).toFile(path.join(dir, 'grey.tif'));
  await sharp(ramp, raw).withIccProfile('p3').withXmp(XMP).tiff(pyramid).toFile(path.join(dir, 'icc.tif'));
  // Few colours: a GIF can hold every one of them exactly.
  const squares = Buffer.alloc(400 * 300 * 3);
  for (let i = 0; i < 400 * 300; i++) {
    const [x, y] = [i % 400, Math.floor(i / 400)];
    squares.set([(Math.floor(x / 50) * 37) % 256, (Math.floor(y / 50) * 53) % 256, ((Math.floor(x / 50) + Math.floor(y / 50)) * 29) % 256], i * 3);
  }
  await sharp(squares, { raw: { width: 400, height: 300, channels: 3 } })
    .tiff(pyramid)
    .toFile(path.join(dir, 'squares.tif'));
  get = serverFor(prefix, { MAX_ICC: '-1' });
  getV2 = serverFor(prefix, { MAX_ICC: '-1', IIIF_VERSION: '2' });
  const stored = await sharp(path.join(dir, 'icc.tif')).metadata();
  icc = stored.icc!;
  assert.ok(icc && icc.length > 100, 'the test image has a profile');
});

describe('info.json offers them', () => {
  it('2.1 formats and 3.0 extraFormats', async () => {
    const jp2 = writesFormat('jp2') ? ['jp2'] : [];
    const v3 = parseJson((await get('ramp.tif/info.json')).body);
    assert.deepEqual(v3.extraFormats, ['webp', 'tif', 'avif', 'gif', ...jp2, 'pdf']);
    const v2 = parseJson((await getV2('ramp.tif/info.json')).body);
    const profile = (v2.profile as unknown[])[1] as Record<string, unknown>;
    assert.deepEqual(profile.formats, ['jpg', 'png', 'webp', 'tif', 'avif', 'gif', ...jp2, 'pdf']);
  });
});

describe('gif', () => {
  it('every colour of a few-colour image exactly, in both versions', async () => {
    for (const [server, rest] of [
      [get, 'squares.tif/full/max/0/default'],
      [getV2, 'squares.tif/full/full/0/default'],
      [get, 'squares.tif/50,25,300,200/max/90/default'],
      [getV2, 'squares.tif/full/!200,200/!180/default'],
    ] as const) {
      const gif = await ok(server(`${rest}.gif`), rest, 'image/gif');
      assert.equal(gif.toString('latin1', 0, 6), 'GIF89a');
      const reference = await pixelsOf(await ok(server(`${rest}.png`), rest, 'image/png'));
      assert.equal(worstVisibleDifference(await pixelsOf(gif), reference), 0, rest);
    }
  });
  it('a smooth image in 256 colours: close to the PNG', async () => {
    const rest = 'ramp.tif/full/450,/0/default';
    const gif = await pixelsOf(await ok(get(`${rest}.gif`), rest, 'image/gif'));
    const png = await pixelsOf(await ok(get(`${rest}.png`), rest, 'image/png'));
    const colour = gif.channels === 4 ? await decodePixels(sharp(gif.data, { raw: { width: gif.width, height: gif.height, channels: 4 } }).removeAlpha()) : gif;
    // Dithering trades exactness for the look of the gradients: about 30 dB.
    assert.ok(psnr(colour, png) > 27, `${psnr(colour, png).toFixed(1)} dB`);
  });
  it('gray, bitonal, and the transparent corners of an arbitrary angle', async () => {
    for (const rest of ['ramp.tif/full/300,/0/gray', 'ramp.tif/full/300,/0/bitonal', 'grey.tif/full/300,/0/default']) {
      const gif = await pixelsOf(await ok(get(`${rest}.gif`), rest, 'image/gif'));
      const reference = asColour(await pixelsOf(await ok(get(`${rest}.png`), rest, 'image/png')));
      // A grey image has at most 256 levels: all of them fit the palette.
      assert.equal(worstVisibleDifference(gif, reference), 0, rest);
      if (gif.channels === 4)
        assert.ok(
          gif.data.every((v, i) => i % 4 !== 3 || v === 255),
          `${rest}: nothing is transparent`,
        );
    }
    const rest = 'squares.tif/full/200,/30/default';
    const gif = await pixelsOf(await ok(get(`${rest}.gif`), rest, 'image/gif'));
    const png = await pixelsOf(await ok(get(`${rest}.png`), rest, 'image/png'));
    assert.equal(gif.channels, 4);
    assert.deepEqual([gif.width, gif.height], [png.width, png.height]);
    // Fully transparent in the PNG: transparent in the GIF; opaque: opaque (one bit of alpha).
    let corners = 0;
    for (let p = 0; p < png.width * png.height; p++) {
      const a = png.data[p * 4 + 3]!;
      if (a === 0) corners++;
      if (a === 0 || a === 255) assert.equal(gif.data[p * 4 + 3], a, `pixel ${p}`);
    }
    assert.ok(corners > 1000, `${corners} transparent pixels`);
  });
});

describe('jp2', { skip: JP2_SKIP ?? false }, () => {
  it('lossless: the pixels of the PNG, in both versions, colour, gray, bitonal, mirrored and turned', async () => {
    for (const [server, rest] of [
      [get, 'ramp.tif/full/max/0/default'],
      [getV2, 'ramp.tif/full/full/0/default'],
      [get, 'ramp.tif/100,50,500,300/333,/0/gray'],
      [getV2, 'ramp.tif/full/200,/0/bitonal'],
      [get, 'ramp.tif/square/!300,300/!90/color'],
      [get, 'grey.tif/full/451,/0/default'],
      // RGBA: the uncovered corners are transparent, as in the PNG.
      [get, 'ramp.tif/full/300,/22.5/default'],
      // Upscaled past one 1024-px tile each way: the encoder's tiles meet without a seam.
      [get, 'ramp.tif/full/^2100,1300/0/default'],
      [get, 'ramp.tif/0,0,3,2/max/0/default'],
    ] as const) {
      const jp2 = await ok(server(`${rest}.jp2`), rest, 'image/jp2');
      assert.equal(jp2.toString('latin1', 4, 12), 'jP  \r\n\x87\n', `${rest}: JP2 signature box`);
      const reference = await pixelsOf(await ok(server(`${rest}.png`), rest, 'image/png'));
      const got = await decodeJp2(jp2, rest.replace(/\W/g, '_'));
      assert.deepEqual([got.width, got.height, got.channels], [reference.width, reference.height, reference.channels], rest);
      assert.ok(got.data.equals(reference.data), `${rest}: ${psnr(got, reference).toFixed(1)} dB`);
    }
  });
  it('the header states sRGB or greyscale, and the alpha band in a channel definition', async () => {
    const colour = jp2Boxes(await ok(get('ramp.tif/full/100,/0/default.jp2'), 'colour', 'image/jp2'));
    assert.deepEqual(
      colour.map((b) => b.type),
      ['jP  ', 'ftyp', 'jp2h', 'ihdr', 'colr', 'jp2c'],
    );
    const colr = colour.find((b) => b.type === 'colr')!.body;
    assert.deepEqual([colr[0], colr.readUInt32BE(3)], [1, 16], 'enumerated sRGB');
    const grey = jp2Boxes(await ok(get('ramp.tif/full/100,/0/gray.jp2'), 'gray', 'image/jp2'));
    assert.equal(grey.find((b) => b.type === 'colr')!.body.readUInt32BE(3), 17, 'greyscale');
    const turned = jp2Boxes(await ok(get('ramp.tif/full/100,/45/default.jp2'), 'turned', 'image/jp2'));
    const cdef = turned.find((b) => b.type === 'cdef')?.body;
    assert.ok(cdef, 'a channel definition box');
    // Four channels: colour 1-3 and, last, the opacity (type 1) of the whole image (association 0).
    assert.equal(cdef.readUInt16BE(0), 4);
    assert.deepEqual([cdef.readUInt16BE(2 + 3 * 6), cdef.readUInt16BE(4 + 3 * 6), cdef.readUInt16BE(6 + 3 * 6)], [3, 1, 0]);
  });
  it("the image's profile in the colour box, its XMP in a uuid box", async () => {
    const boxes = jp2Boxes(await ok(get('icc.tif/full/200,/0/default.jp2'), 'icc', 'image/jp2'));
    const colr = boxes.find((b) => b.type === 'colr')!.body;
    assert.equal(colr[0], 2, 'method 2: an ICC profile');
    assert.ok(colr.subarray(3).equals(icc), 'the profile as stored');
    const uuid = boxes.find((b) => b.type === 'uuid')!.body;
    assert.equal(uuid.subarray(0, 16).toString('hex'), 'be7acfcb97a942e89c71999491e3afac');
    assert.match(uuid.subarray(16).toString('utf8'), /x:xmpmeta/);
    // EMBED_ICC=0: none.
    const plain = jp2Boxes(await ok(serverFor(dir + '/', { EMBED_ICC: '0' })('icc.tif/full/200,/0/default.jp2'), 'no icc', 'image/jp2'));
    assert.equal(plain.find((b) => b.type === 'colr')!.body[0], 1);
  });
});

describe('pdf', () => {
  it('one page holding the JPEG of the same request, in both versions', async () => {
    for (const [server, rest, device] of [
      [get, 'ramp.tif/full/max/0/default', '/DeviceRGB'],
      [getV2, 'ramp.tif/full/full/0/default', '/DeviceRGB'],
      [get, 'ramp.tif/100,50,500,300/250,/0/gray', '/DeviceGray'],
      [getV2, 'ramp.tif/full/301,/!90/bitonal', '/DeviceGray'],
      [get, 'grey.tif/full/300,/0/default', '/DeviceGray'],
      // JPEG has no alpha: the corners are white, as in the JPEG.
      [get, 'ramp.tif/full/300,/30/default', '/DeviceRGB'],
    ] as const) {
      const pdf = await ok(server(`${rest}.pdf`), rest, 'application/pdf');
      const jpeg = await ok(server(`${rest}.jpg`), rest, 'image/jpeg');
      const { page, image } = pageImage(pdf);
      assert.ok(image.stream!.equals(jpeg), `${rest}: the image is the JPEG's bytes`);
      const { width, height } = await sharp(jpeg).metadata();
      assert.match(image.dictionary, new RegExp(`/Width ${width} /Height ${height} /ColorSpace ${device} /BitsPerComponent 8`), rest);
      // A pixel is a point.
      assert.match(page, new RegExp(`/MediaBox \\[0 0 ${width} ${height}\\]`), rest);
    }
  });
  it("the image's profile as an ICCBased colour space, its XMP as the image's metadata", async () => {
    const { image, objects } = pageImage(await ok(get('icc.tif/full/200,/0/default.pdf'), 'icc', 'application/pdf'));
    const space = /\/ColorSpace \[\/ICCBased (\d+) 0 R\]/.exec(image.dictionary);
    assert.ok(space, image.dictionary);
    const profile = objects.get(Number(space[1]))!;
    assert.match(profile.dictionary, /\/N 3 \/Alternate \/DeviceRGB/);
    assert.ok(profile.stream!.equals(icc));
    const metadata = ref(objects, image.dictionary, 'Metadata');
    assert.match(metadata.dictionary, /\/Type \/Metadata \/Subtype \/XML/);
    assert.match(metadata.stream!.toString('utf8'), /x:xmpmeta/);
  });
  it('a reader draws the JPEG over the whole page (pdftoppm)', { skip: PDFTOPPM_SKIP ?? false }, async () => {
    for (const rest of ['ramp.tif/full/400,/0/default', 'ramp.tif/full/300,/0/gray', 'icc.tif/full/200,/0/default']) {
      const file = path.join(dir, `${rest.replace(/\W/g, '_')}.pdf`);
      writeFileSync(file, await ok(get(`${rest}.pdf`), rest, 'application/pdf'));
      // 72 dpi: one page pixel per point, so per image pixel.
      execFileSync('pdftoppm', ['-r', '72', '-png', '-singlefile', file, file], { stdio: 'pipe' });
      const drawn = await rgbOf(readFileSync(`${file}.png`));
      const jpeg = await rgbOf(await ok(get(`${rest}.jpg`), rest, 'image/jpeg'));
      assert.deepEqual([drawn.width, drawn.height], [jpeg.width, jpeg.height], rest);
      // poppler resamples the image onto the page's pixel grid (about 31 dB against the JPEG
      // decoded as it is; a shifted, flipped or stretched image is below 20), and applies the
      // profile (Display P3 to sRGB), which sharp does not do here.
      const floor = rest.startsWith('icc') ? 18 : 28;
      assert.ok(psnr(drawn, jpeg) > floor, `${rest}: ${psnr(drawn, jpeg).toFixed(1)} dB`);
    }
  });
  it('qpdf finds no error in its structure', { skip: QPDF_SKIP ?? false }, async () => {
    for (const rest of ['ramp.tif/full/200,/0/default', 'icc.tif/full/200,/0/gray']) {
      const file = path.join(dir, 'check.pdf');
      writeFileSync(file, await ok(get(`${rest}.pdf`), rest, 'application/pdf'));
      const report = execFileSync('qpdf', ['--check', file], { encoding: 'utf8' });
      assert.match(report, /No syntax or stream encoding errors found/, rest);
    }
  });
  it('an image wider than a page may be is drawn on a page scaled down to 14400 points, every pixel kept', () => {
    const pdf = pdfWithJpeg({ jpeg: Buffer.from([0xff, 0xd8, 0xff, 0xd9]), width: 30_000, height: 1_000, channels: 3 });
    const { page, image } = pageImage(pdf);
    assert.match(page, new RegExp(`/MediaBox \\[0 0 ${MAX_PAGE_SIDE} 480\\]`));
    assert.match(image.dictionary, /\/Width 30000 \/Height 1000/);
  });
});

describe('output limits', () => {
  it("each format's largest side: GIF 65535, the JPEG in a PDF 65500; PNG goes on", async () => {
    const unlimited = serverFor(dir + '/', { MAX_CVT: '-1' });
    for (const [rest, status] of [
      ['squares.tif/full/^65536,4/0/default.gif', 400],
      ['squares.tif/full/^65535,4/0/default.gif', 200],
      ['squares.tif/full/^65501,4/0/default.pdf', 400],
      ['squares.tif/full/^65501,4/0/default.png', 200],
    ] as const) {
      const response = await unlimited(rest);
      assert.equal(response.status, status, `${rest}: ${response.body.toString().slice(0, 200)}`);
      if (status === 400) assert.match(response.body.toString(), /larger than the encoder writes/);
    }
  });
});
