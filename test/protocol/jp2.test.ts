/**
 * JPEG2000 images end to end through the router (no sockets): the header (sizes, levels, layers,
 * bit depth, colour) as OBJ reports it, pixels against the known source (exact for lossless),
 * every protocol, LYR and MAX_LAYERS, raw J2K codestreams, virtual levels, the real-world
 * fixtures, and broken files answered with an error while the server goes on.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { decoderOutputDir } from '../../src/engine/jp2/decoder.ts';
import { effectiveLayers } from '../../src/engine/jp2/jp2-source.ts';
import { fileHeaderBytes, readJp2Header } from '../../src/engine/jp2/header.ts';
import { open } from 'node:fs/promises';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { getHeader } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { fixtureDir, tempDir } from '../helpers/daemon.ts';
import { decodePixels, psnr } from '../helpers/images.ts';
import { expectedRect, JP2_SKIP, makeJp2, testImage, type TestImage } from '../helpers/jp2.ts';
import { plainRequest } from '../helpers/requests.ts';

const engines: Engine[] = [];

function serverFor(prefix: string, env: Record<string, string> = {}, jp2Decoder?: ConstructorParameters<typeof Engine>[0]['jp2Decoder']) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, ...env });
  const engine = new Engine({
    paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix },
    cacheBytes: config.maxImageCacheBytes,
    maxLayers: config.maxLayers,
    jp2Decoder,
  });
  engines.push(engine);
  const router = createRouter({ config, engine, log: silentLog });
  return { engine, get: (query: string): Promise<PlainResponse> => router(plainRequest(query)) };
}

const text = (r: PlainResponse) => r.body.toString('latin1');

async function obj(get: (q: string) => Promise<PlainResponse>, name: string, what: string): Promise<string> {
  const r = await get(`FIF=${name}&OBJ=${what}`);
  assert.equal(r.status, 200, text(r));
  return text(r).trim();
}

/** Decoder children of this process still there, running or zombie (tsx's esbuild and ps are children too). */
function liveChildren(): string[] {
  const out = execFileSync('ps', ['-o', 'pid=,stat=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /opj_|jp2|<defunct>| Z/.test(line));
}

describe('JPEG2000 images', { skip: JP2_SKIP ?? false }, () => {
  const dir = tempDir('iipsrv-jp2-');
  let rgb: TestImage;
  let grey16: TestImage;
  let server: ReturnType<typeof serverFor>;

  before(() => {
    rgb = testImage(1024, 768, 3, 8);
    grey16 = testImage(600, 401, 1, 16);
    // Lossless (5-3 wavelet, the default), untiled, 5 DWT levels.
    makeJp2(dir, 'rgb-lossless.jp2', rgb, ['-n', '6']);
    // Lossy, 256x256 codestream tiles, three quality layers.
    makeJp2(dir, 'rgb-layers.jp2', rgb, ['-n', '5', '-t', '256,256', '-r', '200,40,8']);
    makeJp2(dir, 'grey16.jp2', grey16, ['-n', '4']);
    makeJp2(dir, 'grey16-lossy.jp2', grey16, ['-n', '4', '-r', '30', '-t', '128,128']);
    makeJp2(dir, 'raw.j2k', rgb, ['-n', '3']);
    // One resolution only: 1024x768 is larger than a tile, so levels are added below it.
    makeJp2(dir, 'flat.jp2', rgb, ['-n', '1']);
    server = serverFor(dir + '/');
  });

  before(async () => {
    // The same pixels as a lossless pyramid TIFF, served beside them.
    await sharp(Buffer.from(rgb.data), { raw: { width: 1024, height: 768, channels: 3 } })
      .tiff({ tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'deflate' })
      .toFile(path.join(dir, 'rgb.tif'));
  });

  after(async () => {
    for (const engine of engines) engine.close();
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(liveChildren(), [], 'a decoder child is still running');
    const out = decoderOutputDir();
    if (out) assert.deepEqual(readdirSync(out), [], 'decoder output files were left behind');
  });

  it('reports size, levels (ceil division), tile size, bits and colour from the header', async () => {
    const { get } = server;
    assert.equal(await obj(get, 'rgb-lossless.jp2', 'Max-size'), 'Max-size:1024 768');
    // Five DWT levels, but as in iipsrv the levels stop at the first that fits in a tile.
    assert.equal(await obj(get, 'rgb-lossless.jp2', 'Resolution-number'), 'Resolution-number:3');
    assert.equal(await obj(get, 'rgb-lossless.jp2', 'Tile-size'), 'Tile-size:256 256');
    assert.equal(await obj(get, 'rgb-lossless.jp2', 'Bits-per-channel'), 'Bits-per-channel:8');
    // 600x401 halved by the codec: 300x201, 150x101 (rounded up; iipsrv 1.1 says 300x200, 150x100).
    assert.equal(await obj(get, 'grey16.jp2', 'Resolutions'), 'Resolutions:150 101,300 201,600 401');
    assert.equal(await obj(get, 'grey16.jp2', 'Bits-per-channel'), 'Bits-per-channel:16');
    assert.match(await obj(get, 'grey16.jp2', 'Colorspace,0,0'), /Colorspace,0-2,0:0 0 1 1 0/);
    assert.match(await obj(get, 'rgb-lossless.jp2', 'Colorspace,0,0'), /Colorspace,0-2,0:0 0 3 3 0 1 2/);
  });

  it('serves lossless tiles exactly as coded, at full and reduced resolution', async () => {
    const { get } = server;
    // PNG tiles: no JPEG loss. Full resolution is IIP resolution 2; tile 5 = column 1, row 1.
    const tile = await get('FIF=rgb-lossless.jp2&PTL=2,5');
    assert.equal(tile.status, 200, text(tile));
    const got = await decodePixels(tile.body);
    assert.equal(psnr(got, expectedRect(rgb, 256, 256, 256, 256)), Infinity);
    // An edge tile of the 512x384 level is cropped (384 = 256 + 128).
    const edge = await decodePixels((await get('FIF=rgb-lossless.jp2&PTL=1,3')).body);
    assert.deepEqual([edge.width, edge.height], [256, 128]);
    // Reduced levels are the wavelet's low band: close to the averaged image.
    const reduced = await sharp(Buffer.from(rgb.data), { raw: { width: 1024, height: 768, channels: 3 } })
      .resize(512, 384)
      .raw()
      .toBuffer();
    const level = await decodePixels((await get('FIF=rgb-lossless.jp2&PTL=1,0')).body);
    const expected = { width: 512, height: 384, channels: 3, data: reduced };
    const crop = await sharp(expected.data, { raw: { width: 512, height: 384, channels: 3 } })
      .extract({ left: 0, top: 0, width: 256, height: 256 })
      .raw()
      .toBuffer();
    assert.ok(psnr(level, { width: 256, height: 256, channels: 3, data: crop }) > 28);
  });

  it('matches the same image served as a TIFF: identical lossless tiles, close lossy ones and regions', async () => {
    const { get } = server;
    assert.equal(await obj(get, 'rgb.tif', 'Resolutions'), await obj(get, 'rgb-lossless.jp2', 'Resolutions'));
    for (const tile of [0, 5, 11]) {
      const tiff = await decodePixels((await get(`FIF=rgb.tif&PTL=2,${tile}`)).body);
      const lossless = await decodePixels((await get(`FIF=rgb-lossless.jp2&PTL=2,${tile}`)).body);
      assert.equal(psnr(lossless, tiff), Infinity, `tile ${tile}`);
      const lossy = await decodePixels((await get(`FIF=rgb-layers.jp2&LYR=3&JTL=2,${tile}`)).body);
      assert.ok(psnr(lossy, tiff) > 30, `lossy tile ${tile}: ${psnr(lossy, tiff)}`);
    }
    const a = await decodePixels((await get('FIF=rgb.tif&WID=300&CVT=png')).body);
    const b = await decodePixels((await get('FIF=rgb-lossless.jp2&WID=300&CVT=png')).body);
    assert.deepEqual([b.width, b.height], [a.width, a.height]);
    assert.ok(psnr(a, b) > 30, `regions: ${psnr(a, b)}`);
  });

  it('keeps 16-bit samples as stored and runs them through the 8-bit pipeline', async () => {
    const image = await server.engine.openImage('grey16.jp2');
    const samples = await image.source.samples(0, { left: 100, top: 50, width: 40, height: 30 });
    assert.ok(samples.data instanceof Uint16Array);
    assert.equal(samples.channels, 1);
    for (let y = 0; y < 30; y++) {
      for (let x = 0; x < 40; x++) assert.equal(samples.data[y * 40 + x], grey16.data[(50 + y) * 600 + 100 + x], `sample ${x},${y}`);
    }
    // The sharp pipeline over the same samples keeps 16 bits.
    const pipeline = await image.source.decode(0, { left: 100, top: 50, width: 40, height: 30 });
    const { data, info } = await pipeline.raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [40, 30, 1]);
    assert.equal(new Uint16Array(data.buffer, data.byteOffset, data.length / 2)[0], grey16.data[50 * 600 + 100]);
    const tile = await decodePixels((await server.get('FIF=grey16.jp2&PTL=2,0')).body);
    assert.equal(tile.channels, 1);
    assert.ok(psnr(tile, expectedRect(grey16, 0, 0, 256, 256)) > 45);
    const lossy = await decodePixels((await server.get('FIF=grey16-lossy.jp2&JTL=2,0')).body);
    assert.ok(psnr(lossy, expectedRect(grey16, 0, 0, 256, 256)) > 30);
  });

  it('answers every protocol: IIP CVT, IIIF, DeepZoom, Zoomify', async () => {
    const { get } = server;
    const cvt = await get('FIF=rgb-layers.jp2&LYR=3&RGN=0.25,0.25,0.5,0.5&WID=256&CVT=jpeg');
    assert.equal(cvt.status, 200, text(cvt));
    const region = await decodePixels(cvt.body);
    assert.deepEqual([region.width, region.height], [256, 192]);
    const source = await sharp(Buffer.from(rgb.data), { raw: { width: 1024, height: 768, channels: 3 } })
      .extract({ left: 256, top: 192, width: 512, height: 384 })
      .resize(256, 192)
      .raw()
      .toBuffer();
    assert.ok(psnr(region, { width: 256, height: 192, channels: 3, data: source }) > 25);

    const info = JSON.parse(text(await get('IIIF=rgb-layers.jp2/info.json')));
    assert.equal(info.width, 1024);
    assert.equal(info.height, 768);
    const iiif = await get('IIIF=rgb-layers.jp2/0,0,512,512/256,/0/default.jpg');
    assert.equal(iiif.status, 200, text(iiif));
    assert.deepEqual([(await decodePixels(iiif.body)).width, (await decodePixels(iiif.body)).height], [256, 256]);

    assert.match(text(await get('DeepZoom=rgb-layers.jp2.dzi')), /Width="1024" Height="768"/);
    const dz = await get('DeepZoom=rgb-layers.jp2_files/10/1_1.jpg');
    assert.equal(dz.status, 200, text(dz));
    assert.equal(getHeader(dz.headers, 'content-type'), 'image/jpeg');
    assert.ok(psnr(await decodePixels(dz.body), expectedRect(rgb, 256, 256, 256, 256)) > 25);
    // A level the file lacks (DeepZoom goes down to 1x1).
    const tiny = await decodePixels((await get('DeepZoom=rgb-layers.jp2_files/2/0_0.jpg')).body);
    assert.deepEqual([tiny.width, tiny.height], [4, 3]);

    assert.match(text(await get('Zoomify=rgb-layers.jp2/ImageProperties.xml')), /WIDTH="1024" HEIGHT="768"/);
    const zoomify = await get('Zoomify=rgb-layers.jp2/TileGroup0/0-0-0.jpg');
    assert.equal(zoomify.status, 200, text(zoomify));
  });

  it('decodes fewer quality layers with LYR and MAX_LAYERS: fewer layers, lower PSNR', async () => {
    const expected = expectedRect(rgb, 256, 256, 256, 256);
    const quality = async (get: (q: string) => Promise<PlainResponse>, query: string) => psnr(await decodePixels((await get(query)).body), expected);
    const withCache = serverFor(dir + '/', { MAX_IMAGE_CACHE_SIZE: '10' });
    const one = await quality(withCache.get, 'FIF=rgb-layers.jp2&LYR=1&PTL=2,5');
    const two = await quality(withCache.get, 'FIF=rgb-layers.jp2&LYR=2&PTL=2,5');
    const all = await quality(withCache.get, 'FIF=rgb-layers.jp2&LYR=3&PTL=2,5');
    assert.ok(one + 2 < two && two + 2 < all, `PSNR by layers: ${one}, ${two}, ${all}`);
    // JPEG tiles too (they take the libjpeg-turbo path), and the cache keeps them apart.
    const jpegOne = await quality(withCache.get, 'FIF=rgb-layers.jp2&LYR=1&JTL=2,5');
    const jpegAll = await quality(withCache.get, 'FIF=rgb-layers.jp2&LYR=3&JTL=2,5');
    assert.ok(jpegOne + 2 < jpegAll, `JPEG PSNR by layers: ${jpegOne}, ${jpegAll}`);
    assert.equal(await quality(withCache.get, 'FIF=rgb-layers.jp2&LYR=1&JTL=2,5'), jpegOne);
    // The default (MAX_LAYERS=0) is half the layers, rounded up: 2 of 3.
    assert.equal(await quality(withCache.get, 'FIF=rgb-layers.jp2&PTL=2,5'), two);
    const allByDefault = serverFor(dir + '/', { MAX_LAYERS: '-1' });
    assert.equal(await quality(allByDefault.get, 'FIF=rgb-layers.jp2&PTL=2,5'), all);
    const capped = serverFor(dir + '/', { MAX_LAYERS: '1' });
    assert.equal(await quality(capped.get, 'FIF=rgb-layers.jp2&LYR=3&PTL=2,5'), one);
    // The rule itself.
    assert.equal(effectiveLayers(5, 0), 3);
    assert.equal(effectiveLayers(5, -1), 5);
    assert.equal(effectiveLayers(5, 2, 4), 2);
    assert.equal(effectiveLayers(5, 0, 9), 5);
  });

  it('handles an image offset on the reference grid and offset codestream tiles', async () => {
    const image = testImage(600, 401, 3, 8);
    // Image origin at 3,5 and tile origin at 1,2: level sizes are ceil(x1/2^r) - ceil(x0/2^r).
    makeJp2(dir, 'offset.jp2', image, ['-n', '4', '-d', '3,5', '-t', '256,256', '-T', '1,2']);
    assert.equal(await obj(server.get, 'offset.jp2', 'Resolutions'), 'Resolutions:150 100,300 200,600 401');
    for (const [tile, left, top, width, height] of [
      [1, 256, 0, 256, 256],
      [5, 512, 256, 88, 145],
    ] as const) {
      const got = await decodePixels((await server.get(`FIF=offset.jp2&PTL=2,${tile}`)).body);
      assert.equal(psnr(got, expectedRect(image, left, top, width, height)), Infinity, `tile ${tile}`);
    }
  });

  it('reads raw J2K codestreams, which iipsrv 1.1 rejects', async () => {
    assert.equal(await obj(server.get, 'raw.j2k', 'Max-size'), 'Max-size:1024 768');
    assert.equal(await obj(server.get, 'raw.j2k', 'Resolution-number'), 'Resolution-number:3');
    const tile = await decodePixels((await server.get('FIF=raw.j2k&PTL=2,0')).body);
    assert.equal(psnr(tile, expectedRect(rgb, 0, 0, 256, 256)), Infinity);
  });

  it('adds virtual levels below a smallest level larger than a tile', async () => {
    // 1024x768 -> 512x384 -> 256x192.
    assert.equal(await obj(server.get, 'flat.jp2', 'Resolutions'), 'Resolutions:256 192,512 384,1024 768');
    const smallest = await decodePixels((await server.get('FIF=flat.jp2&PTL=0,0')).body);
    assert.deepEqual([smallest.width, smallest.height], [256, 192]);
    const expected = await sharp(Buffer.from(rgb.data), { raw: { width: 1024, height: 768, channels: 3 } })
      .resize(256, 192)
      .raw()
      .toBuffer();
    assert.ok(psnr(smallest, { width: 256, height: 192, channels: 3, data: expected }) > 25);
    const middle = await decodePixels((await server.get('FIF=flat.jp2&JTL=1,1')).body);
    assert.deepEqual([middle.width, middle.height], [256, 256]);
  });

  it('serves the real-world fixtures: 8 and 16-bit, RGB and RGBA, mono- and multi-tiled, JPX', async () => {
    const fixtures = fixtureDir('cantaloupe');
    const names = readdirSync(fixtures).filter((f) => /^(jp2|jpx)-6res/.test(f));
    assert.ok(names.length >= 10);
    const local = serverFor(fixtures + '/');
    for (const name of names) {
      assert.equal(await obj(local.get, name, 'Max-size'), 'Max-size:64 56', name);
      assert.equal(await obj(local.get, name, 'Bits-per-channel'), `Bits-per-channel:${name.includes('x16') ? 16 : 8}`, name);
      const full = await local.get(`FIF=${name}&CVT=png`);
      assert.equal(full.status, 200, `${name}: ${text(full)}`);
      const pixels = await decodePixels(full.body);
      assert.deepEqual([pixels.width, pixels.height], [64, 56], name);
      // Alpha is kept for 8 bits; 16-bit data goes through iipsrv's pipeline, which keeps three bands.
      assert.equal(pixels.channels, name.includes('rgba') && name.includes('x8') ? 4 : 3, name);
      const tile = await local.get(`FIF=${name}&JTL=0,0`);
      assert.equal(tile.status, 200, `${name}: ${text(tile)}`);
    }
  });

  it('serves a replaced file afresh, also from the decoded-level cache', async () => {
    const other = testImage(1024, 768, 3, 8);
    other.data.forEach((v, i) => (other.data[i] = 255 - v));
    makeJp2(dir, 'inverse.jp2', other, ['-n', '6']);
    copyFileSync(path.join(dir, 'rgb-lossless.jp2'), path.join(dir, 'swap.jp2'));
    // The 512x384 level is decoded whole and kept for its tiles.
    const before = await decodePixels((await server.get('FIF=swap.jp2&PTL=1,0')).body);
    copyFileSync(path.join(dir, 'inverse.jp2'), path.join(dir, 'swap.jp2'));
    const later = new Date(Date.now() + 5000);
    utimesSync(path.join(dir, 'swap.jp2'), later, later);
    const after = await decodePixels((await server.get('FIF=swap.jp2&PTL=1,0')).body);
    const expected = await decodePixels((await server.get('FIF=inverse.jp2&PTL=1,0')).body);
    assert.equal(psnr(after, expected), Infinity);
    assert.ok(psnr(before, after) < 20);
  });

  it('reads the boxes and markers of a real-world JP2: components, layers, tiles, wavelet, ICC, XMP, resolution', async () => {
    const handle = await open(path.join(fixtureDir('cantaloupe'), 'jp2-6res-rgb-64x56x16-multitiled-lossy.jp2'));
    try {
      const h = await readJp2Header(fileHeaderBytes(handle), (await handle.stat()).size);
      assert.deepEqual([h.container, h.x1 - h.x0, h.y1 - h.y0, h.components.length], ['jp2', 64, 56, 3]);
      assert.deepEqual(h.components[0], { precision: 16, signed: false, dx: 1, dy: 1 });
      assert.deepEqual([h.dwtLevels, h.qualityLayers, h.progression, h.tileWidth, h.tileHeight, h.reversible], [5, 4, 'LRCP', 28, 32, false]);
      assert.equal(h.icc?.length, 3144);
      assert.equal(h.icc?.toString('latin1', 36, 40), 'acsp');
      assert.match(h.xmp ?? '', /<x:xmpmeta/);
      assert.ok(Math.abs(h.resolution!.x - 2834.6) < 0.1, 'resolution: 72 dpi in pixels per metre');
    } finally {
      await handle.close();
    }
  });

  it('serves the IIIF validator JP2 with the pixels of its PNG', async () => {
    const fixtures = fixtureDir('iiif-validator');
    const local = serverFor(fixtures + '/');
    const name = '67352ccc-d1b0-11e1-89ae-279075081939';
    const jp2 = await local.get(`FIF=${name}.jp2&CVT=png`);
    assert.equal(jp2.status, 200, text(jp2));
    const png = await decodePixels(readFileSync(path.join(fixtures, `${name}.png`)));
    assert.ok(psnr(await decodePixels(jp2.body), png) > 35);
    const iiifTile = await decodePixels((await local.get(`IIIF=${name}.jp2/500,500,250,250/max/0/default.png`)).body);
    const expected = await decodePixels(sharp(readFileSync(path.join(fixtures, `${name}.png`))).extract({ left: 500, top: 500, width: 250, height: 250 }));
    assert.ok(psnr(iiifTile, expected) > 35);
  });

  it('gives the same answers through opj_decompress alone (no helper): grey, RGB, RGBA, 16-bit', async () => {
    const fixtures = fixtureDir('cantaloupe');
    const withHelper = serverFor(fixtures + '/');
    const programOnly = serverFor(fixtures + '/', {}, { helper: null });
    for (const name of [
      'jp2-6res-rgba-64x56x8-multitiled-lossy.jp2',
      'jp2-6res-rgba-64x56x16-monotiled-reversible.jp2',
      'jp2-6res-rgb-64x56x16-multitiled-lossy.jp2',
    ]) {
      for (const query of [`FIF=${name}&CVT=png`, `FIF=${name}&JTL=0,0`]) {
        const a = await withHelper.get(query);
        const b = await programOnly.get(query);
        assert.equal(b.status, 200, `${query}: ${text(b)}`);
        // opj_decompress applies the files' ICC profile (an sRGB-like one here), the helper does not.
        assert.ok(psnr(await decodePixels(a.body), await decodePixels(b.body)) > 30, query);
      }
    }
    const grey = serverFor(dir + '/', {}, { helper: null });
    const tile = await decodePixels((await grey.get('FIF=grey16.jp2&PTL=2,0')).body);
    assert.ok(psnr(tile, expectedRect(grey16, 0, 0, 256, 256)) > 45);
  });

  it('rejects truncated and corrupt files with an error and goes on serving', async () => {
    const good = readFileSync(path.join(dir, 'rgb-layers.jp2'));
    writeFileSync(path.join(dir, 'short.jp2'), good.subarray(0, 60));
    const cut = Buffer.from(good.subarray(0, Math.floor(good.length / 2)));
    writeFileSync(path.join(dir, 'cut.jp2'), cut);
    // The same, with the codestream box's length made 0 ("to the end of the file"): the header
    // reads, the codec meets the end of the data.
    cut.writeUInt32BE(0, cut.indexOf('jp2c', 0, 'latin1') - 4);
    writeFileSync(path.join(dir, 'truncated.jp2'), cut);
    const corrupt = Buffer.from(good);
    // The SIZ marker's Xsiz set to zero.
    const siz = corrupt.indexOf(Buffer.from([0xff, 0x51]));
    corrupt.writeUInt32BE(0, siz + 6);
    writeFileSync(path.join(dir, 'corrupt.jp2'), corrupt);
    const garbage = Buffer.from(good);
    const sot = garbage.indexOf(Buffer.from([0xff, 0x90, 0x00, 0x0a])) + 12;
    for (let i = sot; i < garbage.length; i++) garbage[i] = (i * 7919) & 0xff;
    writeFileSync(path.join(dir, 'garbage.jp2'), garbage);
    copyFileSync(path.join(dir, 'rgb-layers.jp2'), path.join(dir, 'copy.jp2'));

    const short = await server.get('FIF=short.jp2&OBJ=Max-size');
    assert.equal(short.status, 404);
    assert.match(text(short), /short\.jp2: not a readable JPEG2000 file/);
    const overrun = await server.get('FIF=cut.jp2&OBJ=Max-size');
    assert.equal(overrun.status, 404);
    assert.match(text(overrun), /runs past the end of the file/);
    const bad = await server.get('FIF=corrupt.jp2&OBJ=Max-size');
    assert.equal(bad.status, 404);
    assert.match(text(bad), /empty image area/);
    for (const name of ['truncated.jp2', 'garbage.jp2']) {
      // The header is fine; the codec fails on the data: an error, never a hang or a crash.
      const r = await server.get(`FIF=${name}&LYR=3&JTL=2,0`);
      assert.equal(r.status, 404, `${name}: ${r.status} ${text(r)}`);
      assert.match(text(r), /cannot be decoded/);
    }
    const after = await server.get('FIF=copy.jp2&JTL=2,0');
    assert.equal(after.status, 200);
  });
});
