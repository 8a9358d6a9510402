/**
 * Output formats and what goes into them: every tile command and CVT format decoded back (sizes,
 * pixels, Content-Type, file names), QLT per codec, BITS=16 with exact 16-bit values, ICC and XMP
 * embedding and its suppression. Generated pyramid TIFFs, requests through the router.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { embedInJpeg, embedInTiff, embedInWebp, ICC_CHUNK, iccSegments } from '../../src/engine/codecs/embed.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { getHeader } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { tempDir, which } from '../helpers/daemon.ts';
import { decodePixels, psnr, type Pixels } from '../helpers/images.ts';
import { plainRequest } from '../helpers/requests.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';

interface Server {
  engine: Engine;
  get(query: string): Promise<PlainResponse>;
}

function serverFor(prefix: string, env: Record<string, string> = {}): Server {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix, ...env });
  const engine = new Engine(engineOptionsFor(config));
  const router = createRouter({ config, engine, log: silentLog });
  return { engine, get: (query) => router(plainRequest(query)) };
}

const WIDTH = 600;
const HEIGHT = 400;

/** Ramps and squares, 8-bit RGB, so that a misplaced or resampled pixel shows. */
function pattern(width: number, height: number): Buffer {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = Math.floor((x * 255) / (width - 1));
      raw[i + 1] = Math.floor((y * 255) / (height - 1));
      raw[i + 2] = ((Math.floor(x / 40) + Math.floor(y / 40)) % 3) * 100;
    }
  }
  return raw;
}

/** A 16-bit ramp whose every sample differs in its low byte, so that 8-bit output cannot pass. */
function ramp16(width: number, height: number, channels: 1 | 3): Uint16Array {
  const raw = new Uint16Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) raw[(y * width + x) * channels + c] = (x * 211 + y * 97 + c * 4099) % 65536;
    }
  }
  return raw;
}

function crop<T extends { length: number; [i: number]: number }>(
  data: T,
  make: (n: number) => T,
  width: number,
  channels: number,
  r: { left: number; top: number; width: number; height: number },
): T {
  const out = make(r.width * r.height * channels);
  for (let y = 0; y < r.height; y++) {
    for (let i = 0; i < r.width * channels; i++) out[y * r.width * channels + i] = data[((r.top + y) * width + r.left) * channels + i]!;
  }
  return out;
}

const pyramid = { tile: true, pyramid: true, tileWidth: 256, tileHeight: 256 } as const;

async function decode16(image: Buffer, channels: 1 | 3): Promise<{ data: Uint16Array; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(image)
    .toColourspace(channels === 3 ? 'rgb16' : 'grey16')
    .raw({ depth: 'ushort' })
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint16Array(data.buffer, data.byteOffset, data.length / 2), width: info.width, height: info.height, channels: info.channels };
}

/** The Compression tag (259) of a TIFF's first IFD (our reader wants tiled files; these are strips). */
function tiffCompression(image: Buffer): number {
  const le = image.toString('latin1', 0, 2) === 'II';
  const u16 = (at: number) => (le ? image.readUInt16LE(at) : image.readUInt16BE(at));
  const ifd = le ? image.readUInt32LE(4) : image.readUInt32BE(4);
  for (let i = 0; i < u16(ifd); i++) {
    const entry = ifd + 2 + i * 12;
    if (u16(entry) === 259) return u16(entry + 8);
  }
  return 1;
}

const XMP =
  '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description dc:title="ramp" xmlns:dc="http://purl.org/dc/elements/1.1/"/></rdf:RDF></x:xmpmeta>';

describe('output formats', () => {
  const dir = tempDir('iipsrv-output-');
  const prefix = dir + '/';
  const source = pattern(WIDTH, HEIGHT);
  const sourcePixels: Pixels = { width: WIDTH, height: HEIGHT, channels: 3, data: source };
  let server: Server;
  let icc: Buffer;
  /** Resolution number of the full-size level. */
  let top: number;

  before(async () => {
    const raw = { raw: { width: WIDTH, height: HEIGHT, channels: 3 as const } };
    await sharp(source, raw)
      .tiff({ ...pyramid, compression: 'deflate' })
      .toFile(path.join(dir, 'ramp.tif'));
    // A profile (Display P3 from libvips) and XMP in the TIFF, JPEG tiles that can be sent as stored.
    await sharp(source, raw)
      .withIccProfile('p3')
      .withXmp(XMP)
      .tiff({ ...pyramid, compression: 'jpeg', quality: 90 })
      .toFile(path.join(dir, 'icc.tif'));
    await sharp(source, raw)
      .withIccProfile('p3')
      .tiff({ ...pyramid, compression: 'deflate' })
      .toFile(path.join(dir, 'icc-deflate.tif'));
    await sharp(ramp16(300, 200, 3), { raw: { width: 300, height: 200, channels: 3 } })
      .toColourspace('rgb16')
      .tiff({ ...pyramid, compression: 'deflate' })
      .toFile(path.join(dir, 'wide.tif'));
    await sharp(ramp16(300, 200, 1), { raw: { width: 300, height: 200, channels: 1 } })
      .toColourspace('grey16')
      .tiff({ ...pyramid, compression: 'deflate' })
      .toFile(path.join(dir, 'wide-grey.tif'));
    server = serverFor(prefix);
    const image = await server.engine.openImage('ramp.tif');
    top = image.source.description.levels.length - 1;
    icc = (await server.engine.openImage('icc.tif')).source.description.icc!;
    assert.ok(icc && icc.length > 100, 'the test image has a profile');
  });

  after(() => rm(dir, { recursive: true, force: true }));

  it('every tile command decodes to the stored tile with its Content-Type', async () => {
    const tile = crop(source, (n) => Buffer.alloc(n), WIDTH, 3, { left: 256, top: 0, width: 256, height: 256 });
    const expected: Pixels = { width: 256, height: 256, channels: 3, data: tile };
    const cases: Array<[string, string, number]> = [
      ['JTL', 'image/jpeg', 30],
      ['PTL', 'image/png', Infinity],
      ['WTL', 'image/webp', 30],
      ['ATL', 'image/avif', 28],
      ['TTL', 'image/tiff', Infinity],
    ];
    for (const [command, type, quality] of cases) {
      const response = await server.get(`FIF=ramp.tif&${command}=${top},1`);
      assert.equal(response.status, 200, command);
      assert.equal(getHeader(response.headers, 'content-type'), type, command);
      const got = await decodePixels(response.body);
      assert.equal(got.width, 256);
      assert.equal(got.height, 256);
      const value = psnr(got, expected);
      assert.ok(value >= quality, `${command}: PSNR ${value.toFixed(1)} dB`);
    }
  });

  it('every CVT format decodes to the region, with the right Content-Type and file extension', async () => {
    const cases: Array<[string, string, string, number]> = [
      ['jpeg', 'image/jpeg', 'jpg', 30],
      ['jpg', 'image/jpeg', 'jpg', 30],
      ['png', 'image/png', 'png', Infinity],
      ['webp', 'image/webp', 'webp', 30],
      ['avif', 'image/avif', 'avif', 28],
      ['tiff', 'image/tiff', 'tif', Infinity],
      ['tif', 'image/tiff', 'tif', Infinity],
    ];
    for (const [format, type, extension, quality] of cases) {
      const response = await server.get(`FIF=ramp.tif&CVT=${format}`);
      assert.equal(response.status, 200, format);
      assert.equal(getHeader(response.headers, 'content-type'), type, format);
      assert.equal(getHeader(response.headers, 'content-disposition'), `inline;filename="ramp.${extension}"`, format);
      const got = await decodePixels(response.body);
      const value = psnr(got, sourcePixels);
      assert.ok(value >= quality, `CVT=${format}: PSNR ${value.toFixed(1)} dB`);
    }
  });

  describe('QLT per codec', () => {
    it('JPEG: the quality', async () => {
      const [low, high] = await Promise.all([server.get(`FIF=ramp.tif&QLT=10&JTL=${top},0`), server.get(`FIF=ramp.tif&QLT=95&JTL=${top},0`)]);
      assert.ok(low.body.length * 2 < high.body.length, `${low.body.length} vs ${high.body.length} bytes`);
    });

    it('PNG: the zlib level changes the size, never the pixels', async () => {
      const [fast, small] = await Promise.all([server.get(`FIF=ramp.tif&QLT=0&PTL=${top},0`), server.get(`FIF=ramp.tif&QLT=9&PTL=${top},0`)]);
      assert.ok(small.body.length < fast.body.length * 0.8, `level 9 ${small.body.length} bytes, level 0 ${fast.body.length}`);
      assert.equal(psnr(await decodePixels(fast.body), await decodePixels(small.body)), Infinity);
      // Out of range is clamped to 9.
      const clamped = await server.get(`FIF=ramp.tif&QLT=50&PTL=${top},0`);
      assert.ok(clamped.body.equals(small.body));
    });

    it('WebP: QLT=0 is lossless, other values lossy by size', async () => {
      const tile: Pixels = {
        width: 256,
        height: 256,
        channels: 3,
        data: crop(source, (n) => Buffer.alloc(n), WIDTH, 3, { left: 0, top: 0, width: 256, height: 256 }),
      };
      const lossless = await server.get(`FIF=ramp.tif&QLT=0&WTL=${top},0`);
      assert.equal(psnr(await decodePixels(lossless.body), tile), Infinity);
      const [low, high] = await Promise.all([server.get(`FIF=ramp.tif&QLT=5&WTL=${top},0`), server.get(`FIF=ramp.tif&QLT=95&WTL=${top},0`)]);
      assert.ok(low.body.length < high.body.length);
      assert.ok(psnr(await decodePixels(low.body), tile) < psnr(await decodePixels(high.body), tile));
      const region = await server.get('FIF=ramp.tif&QLT=0&CVT=webp');
      assert.equal(psnr(await decodePixels(region.body), sourcePixels), Infinity);
    });

    it('AVIF: the quality', async () => {
      const [low, high] = await Promise.all([server.get(`FIF=ramp.tif&QLT=5&ATL=${top},0`), server.get(`FIF=ramp.tif&QLT=90&ATL=${top},0`)]);
      assert.ok(low.body.length < high.body.length, `${low.body.length} vs ${high.body.length} bytes`);
    });

    it('TIFF: QLT=codec:n chooses the compression (unknown names: none), the Compression tag says so', async () => {
      const cases: Array<[string, number]> = [
        ['', 8],
        ['QLT=lzw:1&', 5],
        ['QLT=deflate:1&', 8],
        ['QLT=jpeg:80&', 7],
        ['QLT=webp:80&', 50001],
        ['QLT=LZW:1&', 5],
        ['QLT=nonsense:1&', 1],
        // sharp's libtiff has no zstd: deflate instead.
        ['QLT=zstd:1&', 8],
      ];
      for (const [qlt, tag] of cases) {
        const response = await server.get(`FIF=ramp.tif&${qlt}TTL=${top},0`);
        assert.equal(response.status, 200, qlt);
        assert.equal(tiffCompression(response.body), tag, qlt);
        const region = await server.get(`FIF=ramp.tif&${qlt}WID=100&CVT=tiff`);
        assert.equal(tiffCompression(region.body), tag, `${qlt} CVT`);
      }
      // A JPEG-compressed TIFF at quality 5 is smaller than at 95.
      const [low, high] = await Promise.all([server.get(`FIF=ramp.tif&QLT=jpeg:5&TTL=${top},0`), server.get(`FIF=ramp.tif&QLT=jpeg:95&TTL=${top},0`)]);
      assert.ok(low.body.length < high.body.length);
    });

    it('TIFF_COMPRESSION and PNG_QUALITY apply without QLT', async () => {
      const site = serverFor(prefix, { TIFF_COMPRESSION: '1', PNG_QUALITY: '9' });
      assert.equal(tiffCompression((await site.get(`FIF=ramp.tif&TTL=${top},0`)).body), 5);
      const [nine, mine] = await Promise.all([site.get(`FIF=ramp.tif&PTL=${top},0`), server.get(`FIF=ramp.tif&QLT=9&PTL=${top},0`)]);
      assert.ok(nine.body.equals(mine.body));
    });
  });

  describe('BITS=16', () => {
    for (const channels of [3, 1] as const) {
      const file = channels === 3 ? 'wide.tif' : 'wide-grey.tif';
      it(`${channels === 3 ? 'RGB' : 'grey'}: PTL, TTL and CVT=png|tiff give the exact 16-bit samples`, async () => {
        const full = ramp16(300, 200, channels);
        const levels = (await server.engine.openImage(file)).source.description.levels.length;
        const tile = crop(full, (n) => new Uint16Array(n), 300, channels, { left: 256, top: 0, width: 44, height: 200 });
        for (const query of [`BITS=16&PTL=${levels - 1},1`, `BITS=16&TTL=${levels - 1},1`, 'BITS=16&CVT=png', 'BITS=16&CVT=tiff']) {
          const response = await server.get(`FIF=${file}&${query}`);
          assert.equal(response.status, 200, query);
          assert.equal((await sharp(response.body).metadata()).depth, 'ushort', query);
          const got = await decode16(response.body, channels);
          const expected = query.includes('CVT') ? full : tile;
          assert.equal(got.channels, channels, query);
          assert.deepEqual(got.data, expected, query);
        }
        // Mirrored: the same values, columns reversed.
        const mirrored = await decode16((await server.get(`FIF=${file}&BITS=16&ROT=!0&CVT=png`)).body, channels);
        for (const x of [0, 17, 299]) assert.equal(mirrored.data[(5 * 300 + x) * channels], full[(5 * 300 + (299 - x)) * channels]);
      });
    }

    it('without BITS=16 (or with BITS=8) a 16-bit image comes out 8-bit', async () => {
      for (const query of ['PTL=1,0', 'BITS=8&PTL=1,0', 'CVT=png', 'CVT=tiff']) {
        const response = await server.get(`FIF=wide.tif&${query}`);
        assert.equal((await sharp(response.body).metadata()).depth, 'uchar', query);
      }
    });

    it('an 8-bit image stays 8-bit', async () => {
      const response = await server.get(`FIF=ramp.tif&BITS=16&PTL=${top},0`);
      assert.equal(response.status, 200);
      assert.equal((await sharp(response.body).metadata()).depth, 'uchar');
    });

    it('is a 400 with processing, with 8-bit formats (JPEG or WebP in TIFF too), and for values other than 8 and 16', async () => {
      for (const query of [
        'BITS=16&CNT=2&PTL=1,0',
        'BITS=16&INV&CVT=png',
        'BITS=16&COL=grey&CVT=tiff',
        'BITS=16&JTL=1,0',
        'BITS=16&CVT=jpeg',
        'BITS=16&WTL=1,0',
        'BITS=12&PTL=1,0',
        'BITS=16&QLT=jpeg:90&TTL=1,0',
        'BITS=16&QLT=webp:90&CVT=tiff',
      ]) {
        const response = await server.get(`FIF=wide.tif&${query}`);
        assert.equal(response.status, 400, query);
        assert.match(response.body.toString(), /BITS/, query);
      }
    });

    it('is part of the cache key', async () => {
      const cached = serverFor(prefix, { MAX_IMAGE_CACHE_SIZE: '10' });
      const eight = await cached.get('FIF=wide.tif&PTL=1,0');
      const sixteen = await cached.get('FIF=wide.tif&BITS=16&PTL=1,0');
      assert.equal((await sharp(eight.body).metadata()).depth, 'uchar');
      assert.equal((await sharp(sixteen.body).metadata()).depth, 'ushort');
    });
  });

  describe('ICC and XMP', () => {
    const embedding = () => serverFor(prefix, { MAX_ICC: '-1' });

    it('the profile goes into tiles (stored JPEG ones too) and regions of every format', async () => {
      const site = embedding();
      for (const file of ['icc.tif', 'icc-deflate.tif']) {
        for (const query of [
          `JTL=${top},0`,
          `QLT=80&JTL=${top},0`,
          `PTL=${top},0`,
          `WTL=${top},0`,
          `QLT=0&WTL=${top},0`,
          `TTL=${top},0`,
          `QLT=jpeg:80&TTL=${top},0`,
          `ATL=${top},0`,
          'CVT=jpeg',
          'WID=100&CVT=avif',
          'WID=200&CVT=png',
          'WID=200&CVT=webp',
          'WID=200&CVT=tiff',
          'ROT=90&CVT=jpeg',
        ]) {
          const response = await site.get(`FIF=${file}&${query}`);
          assert.equal(response.status, 200, query);
          const metadata = await sharp(response.body).metadata();
          assert.ok(metadata.icc?.equals(icc), `${file} ${query}: profile ${metadata.icc?.length ?? 'absent'}`);
          // Still a well-formed file: it decodes to the size asked for.
          const { info } = await sharp(response.body).raw().toBuffer({ resolveWithObject: true });
          assert.equal(info.width, metadata.width, query);
        }
      }
      // The stored JPEG tile is sent with the profile spliced in after SOI and nothing else changed.
      const passthrough = (await site.get(`FIF=icc.tif&JTL=${top},0`)).body;
      const plain = (await serverFor(prefix, { EMBED_ICC: '0' }).get(`FIF=icc.tif&JTL=${top},0`)).body;
      const segments = iccSegments(icc);
      assert.ok(Buffer.concat([plain.subarray(0, 2), ...segments, plain.subarray(2)]).equals(passthrough));
      // (it is the stored tile: a re-encoding at QLT=75 differs)
      assert.ok(!plain.equals((await serverFor(prefix, { EMBED_ICC: '0' }).get(`FIF=icc.tif&QLT=75&JTL=${top},0`)).body));
    });

    it('pixels are the stored values, not converted from the profile to sRGB', async () => {
      const site = embedding();
      // The TIFF's samples as stored (sharp would otherwise convert them from Display P3).
      const stored = await sharp(path.join(dir, 'icc-deflate.tif'), { ignoreIcc: true }).raw().toBuffer();
      const storedPixels: Pixels = { width: WIDTH, height: HEIGHT, channels: 3, data: stored };
      const tile: Pixels = {
        width: 256,
        height: 256,
        channels: 3,
        data: crop(stored, (n) => Buffer.alloc(n), WIDTH, 3, { left: 0, top: 0, width: 256, height: 256 }),
      };
      // Read back as written: keepIccProfile stops sharp converting on the way out.
      const asWritten = async (image: Buffer) => {
        const { data, info } = await sharp(image).keepIccProfile().raw().toBuffer({ resolveWithObject: true });
        return { width: info.width, height: info.height, channels: info.channels, data };
      };
      for (const server of [site, serverFor(prefix, { EMBED_ICC: '0' })]) {
        for (const [query, expected, quality] of [
          [`PTL=${top},0`, tile, Infinity],
          [`QLT=0&WTL=${top},0`, tile, Infinity],
          [`CNT=1.0001&PTL=${top},0`, tile, 40],
          ['CVT=png', storedPixels, Infinity],
          ['CVT=tiff', storedPixels, Infinity],
          ['QLT=0&CVT=avif', storedPixels, 40],
          [`QLT=95&JTL=${top},0`, tile, 30],
        ] as const) {
          const got = await asWritten((await server.get(`FIF=icc-deflate.tif&${query}`)).body);
          const value = psnr(got, expected);
          assert.ok(value >= quality, `${query}: PSNR ${value.toFixed(1)} dB against the stored samples`);
        }
      }
    });

    it('the JPEG layout is iipsrv 1.1s: JFIF, then ICC_PROFILE chunks numbered from 1, then XMP in regions', async () => {
      const site = embedding();
      const region = (await site.get('FIF=icc.tif&WID=200&CVT=jpeg')).body;
      const markers = jpegMarkers(region);
      assert.deepEqual(
        markers.slice(0, 3).map((m) => m.marker),
        [0xe0, 0xe2, 0xe1],
      );
      assert.equal(markers[1]!.payload.subarray(0, 14).toString('latin1'), 'ICC_PROFILE\0\x01\x01');
      assert.equal(markers[2]!.payload.subarray(0, 29).toString('latin1'), 'http://ns.adobe.com/xap/1.0/\0');
      assert.equal((await sharp(region).metadata()).xmpAsString, XMP);
      // Tiles carry no XMP.
      const tile = (await site.get(`FIF=icc.tif&QLT=75&JTL=${top},0`)).body;
      assert.deepEqual(
        jpegMarkers(tile)
          .slice(0, 2)
          .map((m) => m.marker),
        [0xe0, 0xe2],
      );
      assert.equal((await sharp(tile).metadata()).xmp, undefined);
      // Other region formats get the XMP from sharp.
      assert.equal((await sharp((await site.get('FIF=icc.tif&WID=200&CVT=png')).body).metadata()).xmpAsString, XMP);
    });

    it('not after CMP, CTW or COL=grey, nor in IIIF grey', async () => {
      const site = embedding();
      for (const query of [
        `CMP=hot&JTL=${top},0`,
        `CTW=[0,1,0;1,0,0;0,0,1]&JTL=${top},0`,
        `COL=grey&JTL=${top},0`,
        'CMP=jet&CVT=jpeg',
        'COL=grey&WID=100&CVT=png',
      ]) {
        const response = await site.get(`FIF=icc.tif&${query}`);
        assert.equal(response.status, 200, query);
        assert.equal((await sharp(response.body).metadata()).icc, undefined, query);
      }
      // Other processing keeps the colours' meaning.
      assert.ok((await sharp((await site.get(`FIF=icc.tif&CNT=1.2&JTL=${top},0`)).body).metadata()).icc?.equals(icc));
      const grey = await site.get('IIIF=icc.tif/full/100,/0/gray.jpg');
      assert.equal(grey.status, 200);
      assert.equal((await sharp(grey.body).metadata()).icc, undefined);
      const colour = await site.get('IIIF=icc.tif/full/100,/0/default.jpg');
      assert.ok((await sharp(colour.body).metadata()).icc?.equals(icc));
    });

    it('not with EMBED_ICC=0, MAX_ICC=0 or a MAX_ICC below the profile size; by default (65536) it is', async () => {
      for (const env of <Array<Record<string, string>>>[
        { EMBED_ICC: '0' },
        { MAX_ICC: '0' },
        { MAX_ICC: String(icc.length - 1) },
        { EMBED_ICC: '0', MAX_ICC: '-1' },
      ]) {
        const site = serverFor(prefix, env);
        for (const query of [`JTL=${top},0`, 'WID=100&CVT=jpeg', `PTL=${top},0`]) {
          assert.equal((await sharp((await site.get(`FIF=icc.tif&${query}`)).body).metadata()).icc, undefined, `${JSON.stringify(env)} ${query}`);
        }
      }
      for (const env of <Array<Record<string, string>>>[{}, { MAX_ICC: String(icc.length) }]) {
        const site = serverFor(prefix, env);
        assert.ok((await sharp((await site.get(`FIF=icc.tif&JTL=${top},0`)).body).metadata()).icc?.equals(icc), JSON.stringify(env));
      }
    });

    it('splicing keeps the rest of the file: WebP with alpha, big-endian TIFF, oversized XMP', async () => {
      const rgba = Buffer.alloc(40 * 30 * 4);
      for (let i = 0; i < rgba.length; i++) rgba[i] = (i * 13) % 256;
      const input = () => sharp(rgba, { raw: { width: 40, height: 30, channels: 4 } });
      for (const webp of [await input().webp({ quality: 80 }).toBuffer(), await input().webp({ lossless: true }).toBuffer()]) {
        const embedded = embedInWebp(webp, icc);
        const metadata = await sharp(embedded).metadata();
        assert.ok(metadata.icc?.equals(icc));
        assert.equal(metadata.hasAlpha, true);
        const [a, b] = await Promise.all([sharp(webp).raw().toBuffer(), sharp(embedded).keepIccProfile().raw().toBuffer()]);
        assert.ok(a.equals(b), 'the same pixels');
      }
      if (which('tiffcp')) {
        const little = path.join(dir, 'little.tif');
        const big = path.join(dir, 'big.tif');
        await input().tiff({ compression: 'lzw' }).toFile(little);
        execFileSync('tiffcp', ['-B', little, big]);
        const bytes = readFileSync(big);
        assert.equal(bytes.toString('latin1', 0, 2), 'MM');
        const embedded = embedInTiff(bytes, icc);
        assert.ok((await sharp(embedded).metadata()).icc?.equals(icc));
        const [a, b] = await Promise.all([sharp(bytes).raw().toBuffer(), sharp(embedded).keepIccProfile().raw().toBuffer()]);
        assert.ok(a.equals(b), 'the same pixels');
      }
      // An XMP packet beyond one marker is left out (no Extended XMP); the JPEG stays valid.
      const jpeg = await input().jpeg().toBuffer();
      const withBig = embedInJpeg(jpeg, icc, `<x:xmpmeta>${'x'.repeat(70_000)}</x:xmpmeta>`);
      const metadata = await sharp(withBig).metadata();
      assert.equal(metadata.xmp, undefined);
      assert.ok(metadata.icc?.equals(icc));
    });

    it('a profile larger than one marker is split into numbered chunks that decoders join', async () => {
      const jpeg = await sharp(source, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } })
        .jpeg()
        .toBuffer();
      // A real profile with its declared size grown to 150 000 bytes (the tail is padding).
      const big = Buffer.alloc(150_000);
      icc.copy(big);
      big.writeUInt32BE(big.length, 0);
      const segments = iccSegments(big);
      assert.equal(segments.length, Math.ceil(big.length / ICC_CHUNK));
      assert.deepEqual(
        segments.map((s) => [s[16], s[17]]),
        [
          [1, 3],
          [2, 3],
          [3, 3],
        ],
      );
      assert.equal(segments[0]!.readUInt16BE(2), 65535);
      const embedded = embedInJpeg(jpeg, big, null);
      assert.ok((await sharp(embedded).metadata()).icc?.equals(big));
    });
  });
});

function jpegMarkers(jpeg: Buffer): Array<{ marker: number; payload: Buffer }> {
  const markers: Array<{ marker: number; payload: Buffer }> = [];
  let at = 2;
  while (at + 4 <= jpeg.length && jpeg[at] === 0xff && jpeg[at + 1] !== 0xda) {
    const length = jpeg.readUInt16BE(at + 2);
    markers.push({ marker: jpeg[at + 1]!, payload: jpeg.subarray(at + 4, at + 2 + length) });
    at += 2 + length;
  }
  return markers;
}
