/**
 * Multi-page TIFF stacks as master iipsrv reads them (issue 15): pages with their pyramids in
 * SubIFDs (as libvips writes a multi-page pyramid) or a single level each, OBJ=stack and
 * OBJ=metadata in master's JSON, a page chosen by SDS in IIP and by IIIF_DELIMITER in IIIF
 * identifiers (a sequence's view there), each page its own image; a pyramid in the main IFD chain
 * stays one image. Files made here (sharp for libvips' layouts, raw-tiff for tags libvips cannot
 * write); requests through the router.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import { getHeader, type PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { tempDir } from '../helpers/daemon.ts';
import { decodePixels } from '../helpers/images.ts';
import { levelDirectory, rawTiff, TYPE, type RawDirectory } from '../helpers/raw-tiff.ts';
import { plainRequest } from '../helpers/requests.ts';

const WIDTH = 300;
const HEIGHT = 200;
/** Page p of the libvips stacks is one colour. */
const pageColour = (p: number) => [50 * (p + 1), 10, 200 - 50 * p];

let dir: string;

async function libvipsStacks(): Promise<void> {
  const pages = await Promise.all(
    [0, 1, 2].map((p) => {
      const [r, g, b] = pageColour(p) as [number, number, number];
      return sharp({ create: { width: WIDTH, height: HEIGHT, channels: 3, background: { r, g, b } } })
        .png()
        .toBuffer();
    }),
  );
  // libvips writes a multi-page pyramid with each page's reductions in its SubIFDs.
  await sharp(pages, { join: { animated: true } })
    .tiff({ tile: true, pyramid: true, tileWidth: 128, tileHeight: 128 })
    .toFile(path.join(dir, 'multi.tif'));
  // And pages too small for a pyramid: a single level each, in the main chain.
  await sharp(pages, { join: { animated: true } })
    .tiff({ tile: true, tileWidth: 128, tileHeight: 128 })
    .toFile(path.join(dir, 'flat.tif'));
  // One page: an ordinary libvips pyramid, its levels in the main chain.
  await sharp(pages[1]!).tiff({ tile: true, pyramid: true, tileWidth: 128, tileHeight: 128 }).toFile(path.join(dir, 'pyramid.tif'));
}

/** A grey page of one value with its pyramid in SubIFDs, and master's stack tags. */
function rawPage(width: number, height: number, value: number, tags: { name?: string; scale?: number; artist?: string }): RawDirectory {
  const tile = 16;
  const level = (w: number, h: number, reduced: boolean) =>
    levelDirectory({
      width: w,
      height: h,
      tileWidth: tile,
      tileHeight: tile,
      reduced,
      tiles: Array.from({ length: Math.ceil(w / tile) * Math.ceil(h / tile) }, () => Buffer.alloc(tile * tile, value)),
    });
  const page = level(width, height, false);
  page.tags.push({ tag: 254, type: TYPE.LONG, values: [2] });
  if (tags.name !== undefined) page.tags.push({ tag: 269, type: TYPE.ASCII, values: Buffer.from(tags.name + '\0', 'latin1') });
  if (tags.artist !== undefined) page.tags.push({ tag: 315, type: TYPE.ASCII, values: Buffer.from(tags.artist + '\0', 'latin1') });
  if (tags.scale !== undefined) page.tags.push({ tag: 37439, type: TYPE.DOUBLE, values: [tags.scale] });
  page.subIfds = [level(Math.ceil(width / 2), Math.ceil(height / 2), true)];
  return page;
}

function serverFor(env: Record<string, string> = {}) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/', ...env });
  const engine = new Engine({ paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix }, filenamePattern: config.filenamePattern });
  const router = createRouter({ config, engine, log: silentLog });
  return (query: string): Promise<PlainResponse> => router(plainRequest(query));
}

const text = (response: PlainResponse) => response.body.toString('latin1');

async function assertColour(response: PlainResponse, colour: number[], what: string): Promise<void> {
  assert.equal(response.status, 200, `${what}: ${text(response).slice(0, 200)}`);
  const pixels = await decodePixels(response.body);
  for (let c = 0; c < 3; c++) {
    const got = pixels.data[pixels.channels === 1 ? 0 : c]!;
    assert.ok(Math.abs(got - colour[c]!) <= 3, `${what}: band ${c} is ${got}, expected ${colour[c]}`);
  }
}

before(async () => {
  dir = tempDir('iipsrv-stacks-');
  await libvipsStacks();
  writeFileSync(
    path.join(dir, 'named.tif'),
    rawTiff([
      rawPage(64, 48, 40, { name: 'Visible', scale: 0.1, artist: 'Jane Artist' }),
      rawPage(64, 48, 120, { name: 'Infrared "IR"', scale: 2.5 }),
      rawPage(40, 20, 200, {}),
    ]),
  );
  // Same-size directories that are not pages (no NewSubfileType 2): no stack, as in master.
  const untyped = (value: number) => {
    const d = rawPage(32, 32, value, {});
    d.tags = d.tags.filter((t) => t.tag !== 254);
    delete d.subIfds;
    return d;
  };
  writeFileSync(path.join(dir, 'untyped.tif'), rawTiff([untyped(30), untyped(90)]));
  // Past MAX_IFDS pages: refused as corrupt, quickly.
  writeFileSync(path.join(dir, 'huge.tif'), rawTiff(Array.from({ length: 1100 }, (_, i) => rawPage(16, 16, i % 256, {}))));
  // A sequence of two views, for IIIF_DELIMITER on sequences.
  for (const [view, colour] of [
    [0, [10, 20, 30]],
    [400, [200, 100, 50]],
  ] as const) {
    const [r, g, b] = colour;
    await sharp({ create: { width: 64, height: 64, channels: 3, background: { r, g, b } } })
      .tiff({ tile: true, tileWidth: 64, tileHeight: 64 })
      .toFile(path.join(dir, `seq_pyr_${String(view).padStart(3, '0')}_090.tif`));
  }
});

describe('Multi-page TIFF stacks (issue 15)', () => {
  it('OBJ=stack lists the pages of a libvips multi-page pyramid in master iipsrv JSON', async () => {
    const server = serverFor();
    const response = await server('FIF=multi.tif&OBJ=stack');
    assert.equal(response.status, 200);
    assert.equal(getHeader(response.headers, 'content-type'), 'application/json');
    const page = (id: number) => `\n\t{\n\t\t"id": ${id},\n\t\t"name": "",\n\t\t"scale": 1\n\t}`;
    assert.equal(text(response), `[ ${page(0)},${page(1)},${page(2)}\n]\r\n`);
    assert.deepEqual(
      JSON.parse(text(response)).map((p: { id: number }) => p.id),
      [0, 1, 2],
    );
    assert.match(text(await server('FIF=multi.tif&OBJ=horizontal-views')), /Horizontal-views:0 1 2\r\n/);
    // Each page is a pyramid: its SubIFD reductions are its levels.
    assert.match(text(await server('FIF=multi.tif&OBJ=resolution-number')), /Resolution-number:3\r\n/);
  });

  it('SDS chooses the page in IIP (JTL, CVT), each page cached apart', async () => {
    const server = serverFor();
    for (const p of [0, 2, 1, 0]) {
      await assertColour(await server(`FIF=multi.tif&SDS=${p},90&JTL=0,0`), pageColour(p), `JTL page ${p}`);
      await assertColour(await server(`FIF=multi.tif&SDS=${p},0&WID=100&CVT=jpeg`), pageColour(p), `CVT page ${p}`);
    }
    // A page that is not there: 404, as a sequence's missing view.
    const missing = await server('FIF=multi.tif&SDS=3,90&JTL=0,0');
    assert.equal(missing.status, 404);
    assert.match(text(missing), /no page 3: the stack has 3 pages/);
  });

  it('pages too small for a pyramid: one level each, chosen by SDS', async () => {
    const server = serverFor();
    assert.match(text(await server('FIF=flat.tif&OBJ=stack')), /"id": 2,/);
    assert.match(text(await server('FIF=flat.tif&OBJ=resolution-number')), /Resolution-number:1\r\n/);
    for (const p of [1, 2, 0]) await assertColour(await server(`FIF=flat.tif&SDS=${p},90&JTL=0,0`), pageColour(p), `page ${p}`);
  });

  it('a pyramid in the main IFD chain (libvips, vips) is one image, not a stack', async () => {
    const server = serverFor();
    const stack = await server('FIF=pyramid.tif&OBJ=stack');
    assert.notEqual(getHeader(stack.headers, 'content-type'), 'application/json');
    assert.doesNotMatch(text(stack), /"id"/);
    assert.match(text(await server('FIF=pyramid.tif&OBJ=resolution-number')), /Resolution-number:3\r\n/);
    assert.match(text(await server('FIF=pyramid.tif&OBJ=horizontal-views')), /Horizontal-views:0\r\n/);
    // Any page of a single image is the image, as in master.
    await assertColour(await server('FIF=pyramid.tif&SDS=2,90&JTL=0,0'), pageColour(1), 'SDS on a pyramid');
  });

  it('same-size directories without NewSubfileType 2 are no stack: IFD 0 is the image', async () => {
    const server = serverFor();
    assert.doesNotMatch(text(await server('FIF=untyped.tif&OBJ=stack')), /"id"/);
    assert.match(text(await server('FIF=untyped.tif&OBJ=resolution-number')), /Resolution-number:1\r\n/);
    await assertColour(await server('FIF=untyped.tif&SDS=1,90&JTL=0,0'), [30, 30, 30], 'untyped');
  });

  it("names and scales from DocumentName and StoNits; each page its own size and metadata; OBJ=metadata is master's JSON", async () => {
    const server = serverFor();
    const stack = text(await server('FIF=named.tif&OBJ=stack'));
    assert.equal(
      stack,
      '[ \n\t{\n\t\t"id": 0,\n\t\t"name": "Visible",\n\t\t"scale": 0.100000001\n\t},' +
        '\n\t{\n\t\t"id": 1,\n\t\t"name": "Infrared \\"IR\\"",\n\t\t"scale": 2.5\n\t},' +
        '\n\t{\n\t\t"id": 2,\n\t\t"name": "",\n\t\t"scale": 1\n\t}\n]\r\n',
    );
    assert.equal(JSON.parse(stack)[1].name, 'Infrared "IR"');
    assert.match(text(await server('FIF=named.tif&OBJ=max-size')), /Max-size:64 48\r\n/);
    assert.match(text(await server('FIF=named.tif&SDS=2,90&OBJ=max-size')), /Max-size:40 20\r\n/);
    assert.match(text(await server('FIF=named.tif&SDS=2,90&OBJ=resolution-number')), /Resolution-number:2\r\n/);

    const metadata = await server('FIF=named.tif&OBJ=metadata');
    assert.equal(getHeader(metadata.headers, 'content-type'), 'application/json');
    assert.equal(text(metadata), '{ \n\t"creator": "Jane Artist",\n\t"scale": "0.1",\n\t"title": "Visible"\n}\r\n');
    assert.deepEqual(JSON.parse(text(metadata)), { creator: 'Jane Artist', scale: '0.1', title: 'Visible' });
    // Page 1's own tags; page 2 has none.
    assert.deepEqual(JSON.parse(text(await server('FIF=named.tif&SDS=1,90&OBJ=metadata'))), { scale: '2.5', title: 'Infrared "IR"' });
    assert.equal(text(await server('FIF=named.tif&SDS=2,90&OBJ=metadata')), '{\n}\r\n');
    // COPYRIGHT stands in for an image without its own, as master's "rights".
    assert.deepEqual(JSON.parse(text(await serverFor({ COPYRIGHT: '(c) Museum' })('FIF=named.tif&SDS=2,90&OBJ=metadata'))), { rights: '(c) Museum' });
    // Pixels of each page.
    for (const [p, value] of [
      [0, 40],
      [1, 120],
      [2, 200],
    ] as const) {
      await assertColour(await server(`FIF=named.tif&SDS=${p},90&JTL=1,0`), [value, value, value], `named page ${p}`);
    }
  });

  it('IIIF_DELIMITER: image.tif;1 is the second page (from 0); its info.json and images are the page', async () => {
    const server = serverFor({ IIIF_DELIMITER: ';' });
    const info = await server('IIIF=named.tif;2/info.json');
    assert.equal(info.status, 200, text(info));
    const document = JSON.parse(text(info));
    assert.equal(document.width, 40);
    assert.equal(document.height, 20);
    assert.match(document.id ?? document['@id'], /named\.tif;2$/);
    assert.equal(JSON.parse(text(await server('IIIF=named.tif;0/info.json'))).width, 64);
    for (const p of [0, 1, 2]) await assertColour(await server(`IIIF=multi.tif;${p}/full/max/0/default.jpg`), pageColour(p), `IIIF page ${p}`);
    // Encoded as %3B it is the delimiter too (master decodes the identifier first).
    await assertColour(await server('IIIF=multi.tif%3B2/0,0,128,128/128,/0/default.jpg'), pageColour(2), 'IIIF %3B');
    // Not a number: atoi's 0. Beyond the stack: 404.
    await assertColour(await server('IIIF=multi.tif;x/full/64,/0/default.jpg'), pageColour(0), 'IIIF ;x');
    assert.equal((await server('IIIF=multi.tif;3/info.json')).status, 404);
    // A single image ignores the page, as in master.
    await assertColour(await server('IIIF=pyramid.tif;4/full/64,/0/default.jpg'), pageColour(1), 'IIIF single image');
    // Without IIIF_DELIMITER the name is the whole identifier.
    assert.equal((await serverFor()('IIIF=multi.tif;1/info.json')).status, 404);
  });

  it("IIIF_DELIMITER on an image sequence: the view at that horizontal angle (master's xangle)", async () => {
    const server = serverFor({ IIIF_DELIMITER: ';' });
    await assertColour(await server('IIIF=seq/full/max/0/default.jpg'), [10, 20, 30], 'sequence');
    await assertColour(await server('IIIF=seq;400/full/max/0/default.jpg'), [200, 100, 50], 'sequence;400');
    assert.equal((await server('IIIF=seq;5/info.json')).status, 404);
  });

  it('a stack of more pages than MAX_IFDS is refused with a 4xx, quickly', async () => {
    const server = serverFor({ IIIF_DELIMITER: ';' });
    const started = performance.now();
    const iip = await server('FIF=huge.tif&OBJ=stack');
    const iiif = await server('IIIF=huge.tif;1050/info.json');
    const elapsed = performance.now() - started;
    assert.ok(iip.status >= 400 && iip.status < 500, `IIP: ${iip.status}`);
    assert.ok(iiif.status >= 400 && iiif.status < 500, `IIIF: ${iiif.status}`);
    assert.match(text(iiif), /more than 1024 IFDs/);
    assert.ok(elapsed < 5000, `took ${elapsed.toFixed(0)} ms`);
  });
});
