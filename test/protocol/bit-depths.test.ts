/**
 * The bit depths iipsrv master added (issue 15): TIFF samples of 2, 4, 6, 10, 12 and 14 bits,
 * packed most significant bit first, grey and RGB, widened by repeating their bits (to 8 bits
 * below 8, to 16 above); MinIsWhite grey inverted at every depth; JPEG2000 of 10, 12 and 16 bits,
 * signed samples (offset by half their range) and more than 4 components (the first three as RGB).
 * Images of known values are written here (TIFFs by test/helpers/tiff-writer.ts, JPEG2000 by
 * opj_compress from PGM/PPM/raw input of the precision and signedness wanted) and read back
 * through the router from lossless PNG tiles and regions; every pixel is checked against the
 * widening and normalisation computed here.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { tempDir, which } from '../helpers/daemon.ts';
import { assertPixels, decodePixels, type Pixels } from '../helpers/images.ts';
import { JP2_SKIP } from '../helpers/jp2.ts';
import { plainRequest } from '../helpers/requests.ts';
import { pyramid, writeTiff, type TiffSpec } from '../helpers/tiff-writer.ts';

const W = 300;
const H = 200;
let dir: string;
let engine: Engine;
let get: (query: string) => Promise<PlainResponse>;

/** Samples of a W x H image from f(x, y, band). */
function image(channels: number, f: (x: number, y: number, c: number) => number): Float64Array {
  const out = new Float64Array(W * H * channels);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < channels; c++) out[(y * W + x) * channels + c] = f(x, y, c);
  return out;
}

function write(name: string, spec: Omit<TiffSpec, 'levels'>, samples: ArrayLike<number>): void {
  writeTiff(path.join(dir, name), { tile: 256, ...spec, levels: pyramid({ width: W, height: H, samples }, spec.channels) });
}

/** Every value of an n-bit sample over the image, different per band. */
const values = (bits: number) => (x: number, y: number, c: number) => (x * 7 + y * 3 + c * 11) % 2 ** bits;

/**
 * An n-bit value widened by repeating its bits from the most significant end until `to` bits are
 * filled (written bit by bit here, not by the decoder's shifts): 4 bits 1011 -> 1011 1011.
 */
function widen(v: number, bits: number, to: number): number {
  let out = 0;
  for (let i = 0; i < to; i++) out = out * 2 + ((v >> (bits - 1 - (i % bits))) & 1);
  return out;
}

const f = Math.fround;

/** iipsrv's normalisation to 8 bits, in its single precision: truncated, clipped. */
function norm(v: number, min: number, max: number): number {
  const out = f(f(f(f(v) - f(min)) * f(1 / f(f(max) - f(min)))) * 255);
  return out <= 0 ? 0 : out >= 255 ? 255 : Math.trunc(out);
}

async function pixels(query: string): Promise<Pixels> {
  const response = await get(query);
  assert.equal(response.status, 200, `${query}: ${response.status} ${response.body.toString().slice(0, 200)}`);
  return decodePixels(response.body);
}

async function obj(name: string, what: string): Promise<string> {
  const r = await get(`FIF=${name}&OBJ=${what}`);
  assert.equal(r.status, 200, r.body.toString());
  return r.body.toString('latin1').trim();
}

/** The 8-bit output of a pixel of a TIFF of `bits`: widened, inverted for MinIsWhite, then normalised if widened to 16. */
function tiffOutput(bits: number, channels: number, minIsWhite = false) {
  return (x: number, y: number) =>
    Array.from({ length: channels }, (_, c) => {
      const v = values(bits)(x, y, c);
      if (bits === 1) return (v === 1) !== minIsWhite ? 255 : 0;
      const to = bits <= 8 ? 8 : 16;
      let w = bits === 8 || bits === 16 ? v : widen(v, bits, to);
      if (minIsWhite) w = 2 ** to - 1 - w;
      return to === 8 ? w : norm(w, 0, 65535);
    });
}

before(() => {
  dir = tempDir();
  for (const bits of [2, 4, 6, 10, 12, 14] as const) {
    write(`grey${bits}.tif`, { channels: 1, bits, photometric: 1 }, image(1, values(bits)));
    write(`rgb${bits}.tif`, { channels: 3, bits, compression: 'deflate' }, image(3, values(bits)));
  }
  for (const bits of [1, 2, 4, 6, 8, 10, 12, 14, 16] as const) {
    write(`white${bits}.tif`, { channels: 1, bits, photometric: 0, compression: bits === 8 ? 'deflate' : 'none' }, image(1, values(bits)));
  }
  write('rgb12-planes.tif', { channels: 3, bits: 12, planar: 2 }, image(3, values(12)));
  write('rgb6-planes.tif', { channels: 3, bits: 6, planar: 2, compression: 'deflate' }, image(3, values(6)));
  // The same samples through libtiff's own LZW and PackBits.
  if (which('tiffcp')) {
    for (const bits of [4, 12]) {
      for (const compression of ['lzw', 'packbits']) {
        execFileSync('tiffcp', ['-c', compression, path.join(dir, `rgb${bits}.tif`), path.join(dir, `rgb${bits}-${compression}.tif`)]);
      }
    }
  }
  // A depth no version of iipsrv reads (the writer packs any depth).
  write('grey3.tif', { channels: 1, bits: 3 as TiffSpec['bits'] }, image(1, values(3)));
  write('grey12-range.tif', { channels: 1, bits: 12, smin: [100], smax: [2000] }, image(1, values(12)));
  // The predictor tag on packed samples (the writer stores them without it): libtiff refuses this.
  write('grey4-predictor.tif', { channels: 1, bits: 4, photometric: 1, predictor: 2 }, image(1, values(4)));
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/', MAX_IMAGE_CACHE_SIZE: '0' });
  engine = new Engine({ paths: { prefix: config.filesystemPrefix, suffix: '' }, cacheBytes: 0 });
  const router = createRouter({ config, engine, log: silentLog });
  get = (query) => router(plainRequest(query));
});

after(() => engine.close());

describe('TIFF packed depths', () => {
  for (const bits of [2, 4, 6, 10, 12, 14]) {
    it(`${bits}-bit grey and RGB: widened by repeating the bits${bits > 8 ? ', normalised from 16 bits' : ''}, tiles and regions`, async () => {
      assertPixels(await pixels(`FIF=grey${bits}.tif&PTL=1,1`), 256, 0, tiffOutput(bits, 1), 'grey tile');
      // The smaller level holds every other pixel.
      assertPixels(await pixels(`FIF=grey${bits}.tif&PTL=0,0`), 0, 0, (x, y) => tiffOutput(bits, 1)(2 * x, 2 * y), 'grey small level');
      assertPixels(await pixels(`FIF=rgb${bits}.tif&PTL=1,0`), 0, 0, tiffOutput(bits, 3), 'RGB tile');
      assertPixels(await pixels(`IIIF=rgb${bits}.tif/240,10,40,30/max/0/default.png`), 240, 10, tiffOutput(bits, 3), 'RGB IIIF region across tiles');
      assert.equal((await get(`FIF=rgb${bits}.tif&JTL=1,0`)).status, 200);
    });
  }

  it('separate planes (12 and 6-bit RGB): each plane unpacked, then interleaved', async () => {
    for (const bits of [12, 6]) {
      assertPixels(await pixels(`FIF=rgb${bits}-planes.tif&PTL=1,1`), 256, 0, tiffOutput(bits, 3), `${bits}-bit tile`);
      assertPixels(await pixels(`IIIF=rgb${bits}-planes.tif/240,10,40,30/max/0/default.png`), 240, 10, tiffOutput(bits, 3), `${bits}-bit region`);
    }
  });

  it('LZW and PackBits written by libtiff (4 and 12-bit RGB)', { skip: which('tiffcp') ? false : 'tiffcp not installed' }, async () => {
    for (const bits of [4, 12]) {
      for (const compression of ['lzw', 'packbits']) {
        const file = `rgb${bits}-${compression}.tif`;
        assertPixels(await pixels(`FIF=${file}&PTL=1,0`), 0, 0, tiffOutput(bits, 3), file);
        assertPixels(await pixels(`IIIF=${file}/240,10,40,30/max/0/default.png`), 240, 10, tiffOutput(bits, 3), `${file} region`);
      }
    }
  });

  it('OBJ: the stored depth and range, as iipsrv master reports them', async () => {
    assert.equal(await obj('grey12.tif', 'Bits-per-channel'), 'Bits-per-channel:12');
    assert.equal(await obj('grey12.tif', 'Min-Max-sample-values'), 'Min-Max-sample-values: 0  4095');
    assert.equal(await obj('rgb4.tif', 'Bits-per-channel'), 'Bits-per-channel:4');
    // iipsrv: 255 for every depth up to 8.
    assert.equal(await obj('rgb4.tif', 'Min-Max-sample-values'), 'Min-Max-sample-values: 0  255  0  255  0  255');
    assert.equal(await obj('grey10.tif', 'Min-Max-sample-values'), 'Min-Max-sample-values: 0  1023');
    assert.equal(await obj('grey14.tif', 'Bits-per-channel'), 'Bits-per-channel:14');
  });

  it('SMin/SMaxSampleValue of 12-bit data are stored values: the range is widened with the samples', async () => {
    const min = (100 * 65535) / 4095;
    const max = (2000 * 65535) / 4095;
    assertPixels(await pixels('FIF=grey12-range.tif&PTL=1,0'), 0, 0, (x, y) => [norm(widen(values(12)(x, y, 0), 12, 16), min, max)], 'tile');
    assert.equal(await obj('grey12-range.tif', 'Min-Max-sample-values'), 'Min-Max-sample-values: 100  2000');
  });

  it('processing (CNT, INV) runs on the widened 16-bit samples', async () => {
    const w = (x: number, y: number) => widen(values(10)(x, y, 0), 10, 16);
    const contrast = (x: number, y: number) => {
      const v = f(f(f(w(x, y)) * f(1 / 65535)) * f(f(255) * f(1.5)));
      return [v >= 255 ? 255 : Math.trunc(v)];
    };
    const p = await pixels('FIF=grey10.tif&CNT=1.5&PTL=1,0');
    // The float pipeline's rounding may differ from this plain product by one step at the edges.
    for (let i = 0; i < p.data.length; i++) {
      const x = i % p.width;
      const y = Math.floor(i / p.width);
      assert.ok(Math.abs(p.data[i]! - contrast(x, y)[0]!) <= 1, `CNT pixel ${x},${y}: ${p.data[i]} vs ${contrast(x, y)[0]}`);
    }
  });

  it('other depths (3 bits): a 501 listing the depths read', async () => {
    const r = await get('FIF=grey3.tif&PTL=1,0');
    assert.equal(r.status, 501);
    assert.match(r.body.toString(), /3-bit uint grey TIFF samples are not supported \(iipsrv reads 1, 2, 4, 6, 8, 10, 12, 14, 16 and 32-bit/);
  });

  it('a predictor on packed samples: a 501 saying so, as libtiff refuses it', async () => {
    const r = await get('FIF=grey4-predictor.tif&PTL=1,0');
    assert.equal(r.status, 501);
    assert.match(r.body.toString(), /4-bit uint grey TIFF with a predictor is not supported/);
  });

  it('BITS=16 PNG: the widened 16-bit samples', async () => {
    const r = await get('FIF=grey12.tif&BITS=16&PTL=1,0');
    assert.equal(r.status, 200, r.body.toString());
    const { data, info } = await sharp(r.body).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const samples = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    assert.equal(info.channels, 1);
    for (let y = 0; y < info.height; y += 7) {
      for (let x = 0; x < info.width; x += 5) assert.equal(samples[y * info.width + x], widen(values(12)(x, y, 0), 12, 16), `${x},${y}`);
    }
  });
});

describe('TIFF MinIsWhite grey', () => {
  for (const bits of [1, 2, 4, 6, 8, 10, 12, 14, 16]) {
    it(`${bits}-bit: inverted (0 is white)`, async () => {
      assertPixels(await pixels(`FIF=white${bits}.tif&PTL=1,1`), 256, 0, tiffOutput(bits, 1, true), 'tile');
      assertPixels(await pixels(`IIIF=white${bits}.tif/250,0,20,20/max/0/default.png`), 250, 0, tiffOutput(bits, 1, true), 'IIIF region');
    });
  }
});

describe('JPEG2000 depths, signed samples and many components', { skip: JP2_SKIP ?? false }, () => {
  const JW = 120;
  const JH = 90;
  const jvalues = (bits: number, signed: boolean) => (x: number, y: number, c: number) => {
    const v = (x * 37 + y * 11 + c * 101) % 2 ** bits;
    return signed ? v - 2 ** (bits - 1) : v;
  };

  /** Raw input for opj_compress: each component's samples in turn, big-endian above 8 bits. */
  function makeRaw(name: string, channels: number, bits: number, signed: boolean): void {
    const bytes = bits > 8 ? 2 : 1;
    const raw = Buffer.alloc(JW * JH * channels * bytes);
    let o = 0;
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < JH; y++) {
        for (let x = 0; x < JW; x++, o += bytes) {
          const v = jvalues(bits, signed)(x, y, c) & (2 ** (bytes * 8) - 1);
          if (bytes === 2) raw.writeUInt16BE(v, o);
          else raw[o] = v;
        }
      }
    }
    const source = path.join(dir, `${name}.raw`);
    writeFileSync(source, raw);
    execFileSync('opj_compress', ['-i', source, '-o', path.join(dir, name), '-F', `${JW},${JH},${channels},${bits},${signed ? 's' : 'u'}`, '-n', '2'], {
      stdio: 'pipe',
    });
  }

  /** PGM/PPM of the precision (maxval 2^n - 1) for opj_compress. */
  function makePnm(name: string, channels: 1 | 3, bits: number): void {
    const header = Buffer.from(`${channels === 1 ? 'P5' : 'P6'}\n${JW} ${JH}\n${2 ** bits - 1}\n`, 'latin1');
    const bytes = bits > 8 ? 2 : 1;
    const body = Buffer.alloc(JW * JH * channels * bytes);
    for (let y = 0, o = 0; y < JH; y++) {
      for (let x = 0; x < JW; x++) {
        for (let c = 0; c < channels; c++, o += bytes) {
          const v = jvalues(bits, false)(x, y, c);
          if (bytes === 2) body.writeUInt16BE(v, o);
          else body[o] = v;
        }
      }
    }
    const source = path.join(dir, `${name}.${channels === 1 ? 'pgm' : 'ppm'}`);
    writeFileSync(source, Buffer.concat([header, body]));
    execFileSync('opj_compress', ['-i', source, '-o', path.join(dir, name), '-n', '2'], { stdio: 'pipe' });
  }

  /** The 8-bit output: offset if signed, widened to 16 bits by repeating the bits, normalised. */
  const jp2Output =
    (bits: number, channels: number, signed = false) =>
    (x: number, y: number) =>
      Array.from({ length: Math.min(channels, 3) }, (_, c) => {
        const v = jvalues(bits, signed)(x, y, c) + (signed ? 2 ** (bits - 1) : 0);
        return bits <= 8 ? v : norm(bits === 16 ? v : widen(v, bits, 16), 0, 65535);
      });

  before(() => {
    makePnm('g10.jp2', 1, 10);
    makePnm('rgb12.jp2', 3, 12);
    makePnm('g16.jp2', 1, 16);
    makeRaw('s12.jp2', 1, 12, true);
    makeRaw('s16.jp2', 1, 16, true);
    makeRaw('s8rgb.jp2', 3, 8, true);
    makeRaw('band5.jp2', 5, 8, false);
    makeRaw('band6-12.jp2', 6, 12, false);
  });

  for (const [file, bits, channels, signed] of [
    ['g10.jp2', 10, 1, false],
    ['rgb12.jp2', 12, 3, false],
    ['g16.jp2', 16, 1, false],
    ['s12.jp2', 12, 1, true],
    ['s16.jp2', 16, 1, true],
    ['s8rgb.jp2', 8, 3, true],
    ['band5.jp2', 8, 5, false],
    ['band6-12.jp2', 12, 6, false],
  ] as const) {
    it(`${file}: ${channels} ${signed ? 'signed' : 'unsigned'} ${bits}-bit components, every pixel of the full level and a region`, async () => {
      assertPixels(await pixels(`IIIF=${file}/full/max/0/default.png`), 0, 0, jp2Output(bits, channels, signed), 'full image');
      assertPixels(await pixels(`IIIF=${file}/30,20,50,40/max/0/default.png`), 30, 20, jp2Output(bits, channels, signed), 'IIIF region');
      // The image is one tile: one resolution.
      assert.equal((await get(`FIF=${file}&JTL=0,0`)).status, 200);
    });
  }

  it('5 components with subsampled chroma (left to opj_decompress): its RGB of the first three', async () => {
    const sizes = [
      [JW, JH],
      [JW / 2, JH / 2],
      [JW / 2, JH / 2],
      [JW, JH],
      [JW, JH],
    ] as const;
    const raw = Buffer.concat(sizes.map(([w, h], c) => Buffer.from(Array.from({ length: w * h }, (_, i) => jvalues(8, false)(i % w, Math.floor(i / w), c)))));
    writeFileSync(path.join(dir, 'sub5.raw'), raw);
    const jp2 = path.join(dir, 'sub5.jp2');
    execFileSync('opj_compress', ['-i', path.join(dir, 'sub5.raw'), '-o', jp2, '-F', `${JW},${JH},5,8,u@1x1:2x2:2x2:1x1:1x1`, '-n', '2'], { stdio: 'pipe' });
    // Subsampled chroma is taken as sYCC and converted to RGB: opj_decompress's own PPM is the reference.
    execFileSync('opj_decompress', ['-i', jp2, '-o', path.join(dir, 'sub5.ppm')], { stdio: 'pipe' });
    const ppm = readFileSync(path.join(dir, 'sub5.ppm'));
    const reference = ppm.subarray(ppm.length - JW * JH * 3);
    assert.ok(ppm.subarray(0, 2).equals(Buffer.from('P6')));
    const p = await pixels('IIIF=sub5.jp2/full/max/0/default.png');
    assert.equal(p.channels, 3);
    assert.ok(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.length).equals(reference));
  });

  it('OBJ: the codestream precision and its range; more than 4 components shown as the RGB served', async () => {
    assert.equal(await obj('g10.jp2', 'Bits-per-channel'), 'Bits-per-channel:10');
    assert.equal(await obj('g10.jp2', 'Min-Max-sample-values'), 'Min-Max-sample-values: 0  1023');
    assert.equal(await obj('rgb12.jp2', 'Bits-per-channel'), 'Bits-per-channel:12');
    assert.equal(await obj('g16.jp2', 'Bits-per-channel'), 'Bits-per-channel:16');
    assert.equal(await obj('g16.jp2', 'Min-Max-sample-values'), 'Min-Max-sample-values: 0  65535');
    assert.equal(await obj('band5.jp2', 'Min-Max-sample-values'), 'Min-Max-sample-values: 0  255  0  255  0  255');
  });

  it('BITS=16 PNG of a 10-bit JPEG2000: the widened samples', async () => {
    const r = await get('FIF=g10.jp2&BITS=16&WID=120&CVT=png');
    assert.equal(r.status, 200, r.body.toString());
    const { data, info } = await sharp(r.body).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
    const samples = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    for (let y = 0; y < info.height; y += 3) {
      for (let x = 0; x < info.width; x += 3) assert.equal(samples[y * info.width + x], widen(jvalues(10, false)(x, y, 0), 10, 16), `${x},${y}`);
    }
  });
});
