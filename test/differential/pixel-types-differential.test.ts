/**
 * The pixel types beside the real iipsrv 1.1 behind one nginx: 16-bit, signed 16 and 32-bit with
 * a non-negative SMin/SMaxSampleValue range (where reading the bits as unsigned changes nothing),
 * 32-bit integer, float with SMin/SMaxSampleValue, multiband, grey + alpha, 8-bit CIELAB and 1-bit
 * (MinIsBlack and MinIsWhite). Decoded tiles must be the same pixels (all but 1 in 1000 samples:
 * a pixel one level off changes its JPEG block), regions close (the resize kernels differ), OBJ answers and raw TIL tiles exactly. Where 1.1 differs on purpose (float without SMaxSampleValue, 16-bit CIELAB,
 * Min-Max of a fifth band and beyond, negative signed values and the signed default range) the
 * difference itself is asserted.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../helpers/daemon.ts';
import { decodePixels, psnr } from '../helpers/images.ts';
import { imagesDir, referenceSkipReason, startDifferentialPair, type DifferentialPair } from '../helpers/reference-iipsrv.ts';
import { pyramid, writeTiff, type TiffSpec } from '../helpers/tiff-writer.ts';

const skip = referenceSkipReason();
const W = 600;
const H = 400;

function image(channels: number, f: (x: number, y: number, c: number) => number): Float64Array {
  const out = new Float64Array(W * H * channels);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < channels; c++) out[(y * W + x) * channels + c] = f(x, y, c);
  return out;
}

describe('pixel types beside iipsrv 1.1', { skip: skip ?? false }, () => {
  let pair: DifferentialPair;
  before(async () => {
    const dir = tempDir();
    const images = imagesDir(dir);
    const write = (name: string, spec: Omit<TiffSpec, 'levels'>, samples: Float64Array) =>
      writeTiff(path.join(images, name), { compression: 'deflate', ...spec, levels: pyramid({ width: W, height: H, samples }, spec.channels) });
    const wave = (x: number, y: number) => 0.5 + 0.5 * Math.sin(x / 37) * Math.cos(y / 23);
    write(
      'u16.tif',
      { channels: 3, bits: 16 },
      image(3, (x, y, c) => Math.floor(65535 * wave(x + 40 * c, y))),
    );
    write(
      's16.tif',
      { channels: 1, bits: 16, kind: 'int', predictor: 2 },
      image(1, (x, y) => Math.floor(60000 * wave(x, y)) - 30000),
    );
    write(
      'u32.tif',
      { channels: 1, bits: 32 },
      image(1, (x, y) => Math.floor(4e9 * wave(x, y))),
    );
    write(
      's16-range.tif',
      { channels: 1, bits: 16, kind: 'int', predictor: 2, smin: [0], smax: [30000] },
      image(1, (x, y) => Math.floor(30000 * wave(x, y))),
    );
    write(
      's32-range.tif',
      { channels: 1, bits: 32, kind: 'int', smin: [0], smax: [2e9] },
      image(1, (x, y) => Math.floor(2e9 * wave(x, y))),
    );
    // Heights of -2000 on the left half, +2000 on the right, without and with SMin/SMax -2000/2000.
    const split = image(1, (x) => (x < W / 2 ? -2000 : 2000));
    write('s16-split.tif', { channels: 1, bits: 16, kind: 'int' }, split);
    write('s16-split-range.tif', { channels: 1, bits: 16, kind: 'int', smin: [-2000], smax: [2000] }, split);
    write(
      'float-minmax.tif',
      { channels: 1, bits: 32, kind: 'float', predictor: 3, smin: [-5], smax: [15] },
      image(1, (x, y) => 20 * wave(x, y) - 5),
    );
    write(
      'float-rgb.tif',
      { channels: 3, bits: 32, kind: 'float', smin: [0, 0, 0], smax: [1, 2, 4] },
      image(3, (x, y, c) => 2 ** c * wave(x + 40 * c, y)),
    );
    write(
      'float.tif',
      { channels: 1, bits: 32, kind: 'float' },
      image(1, (x, y) => wave(x, y)),
    );
    write(
      'band5.tif',
      { channels: 5, bits: 8, photometric: 1 },
      image(5, (x, y, c) => Math.floor(255 * wave(x + 30 * c, y))),
    );
    write(
      'band4-16.tif',
      { channels: 4, bits: 16, photometric: 1 },
      image(4, (x, y, c) => Math.floor(65535 * wave(x + 30 * c, y))),
    );
    write(
      'grey-alpha.tif',
      { channels: 2, bits: 8, photometric: 1, extraSamples: [2] },
      image(2, (x, y, c) => (c === 0 ? Math.floor(255 * wave(x, y)) : 90)),
    );
    write(
      'lab8.tif',
      { channels: 3, bits: 8, photometric: 8 },
      image(3, (x, y, c) => [Math.floor(255 * wave(x, y)), Math.round(100 * wave(y, x)) - 50, Math.round(80 * wave(x + y, 0)) - 40][c]! & 0xff),
    );
    write(
      'lab16.tif',
      { channels: 3, bits: 16, photometric: 8 },
      image(3, (x, y, c) => [Math.floor(65535 * wave(x, y)), 0, 0][c]!),
    );
    const checker = (x: number, y: number) => (((x >> 4) + (y >> 4)) & 1) ^ (wave(x, y) > 0.8 ? 1 : 0);
    write('bw.tif', { channels: 1, bits: 1, photometric: 1, compression: 'none' }, image(1, checker));
    write('bw-white.tif', { channels: 1, bits: 1, photometric: 0 }, image(1, checker));
    pair = await startDifferentialPair({ dir: path.join(dir, 'web'), images, env: { JPEG_QUALITY: '90' } });
  });
  after(async () => pair?.stop());

  const files = ['u16', 's16-range', 'u32', 's32-range', 'float-minmax', 'float-rgb', 'band5', 'band4-16', 'grey-alpha', 'lab8', 'bw', 'bw-white'];

  for (const file of files) {
    it(`${file}.tif: tiles, with and without processing`, async () => {
      for (const query of ['JTL=2,1', 'JTL=1,0', 'JTL=0,0', 'CNT=1.4&GAM=0.7&JTL=2,4', 'CMP=jet&JTL=2,2', 'INV&JTL=2,3']) {
        const { ref, ours } = await pair.get(`FIF=${file}.tif&${query}`);
        assert.equal(ref.status, 200, `reference ${query}`);
        assert.equal(ours.status, 200, `ours ${query}: ${ours.body.toString().slice(0, 200)}`);
        // The JPEG headers differ, the encoding does not: decoded, the pixels are the same but
        // for the odd sample where a float lands on a truncation boundary.
        const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
        assert.deepEqual([b.width, b.height, b.channels], [a.width, a.height, a.channels], query);
        let different = 0;
        for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) different++;
        assert.ok(different <= a.data.length / 1000, `${query}: ${different} of ${a.data.length} samples differ (PSNR ${psnr(a, b).toFixed(1)} dB)`);
      }
    });

    it(`${file}.tif: regions close (CVT, IIIF), OBJ answers exact`, async () => {
      for (const query of [
        `FIF=${file}.tif&RGN=0.1,0.2,0.6,0.5&WID=300&CVT=jpeg`,
        `IIIF=${file}.tif/60,80,360,200/180,/0/default.jpg`,
        `FIF=${file}.tif&CMP=hot&WID=600&CVT=jpeg`,
      ]) {
        const { ref, ours } = await pair.get(query);
        assert.equal(ref.status, 200, `reference ${query}`);
        assert.equal(ours.status, 200, `${query}: ${ours.body.toString().slice(0, 200)}`);
        const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
        assert.deepEqual([b.width, b.height, b.channels], [a.width, a.height, a.channels], query);
        // Resized, the kernels differ (most on hard edges: 1-bit checkers); at full size (WID=600)
        // the pixels are the pipeline's alone.
        const quality = psnr(a, b);
        const floor = query.includes('WID=600') ? 40 : file.startsWith('bw') ? 15 : 30;
        assert.ok(quality > floor, `${query}: PSNR ${quality.toFixed(1)} dB`);
      }
      const query = `FIF=${file}.tif&OBJ=IIP,1.0&OBJ=Basic-info&OBJ=Bits-per-channel&OBJ=Min-Max-sample-values`;
      const objects = await pair.get(query);
      if (file === 'band5') {
        // 1.1 reads a fifth band's min/max past the end of its 4-element arrays: ours says 0 and 255.
        assert.match(objects.ref.body.toString(), /Min-Max-sample-values:( 0 {2}255 ){4} 255 {2}0\r\n/);
        assert.match(objects.ours.body.toString(), /Min-Max-sample-values:( 0 {2}255 ){4} 0 {2}255\r\n/);
        assert.equal(objects.ours.body.toString().replace(/Min-Max.*\r\n/, ''), objects.ref.body.toString().replace(/Min-Max.*\r\n/, ''));
      } else assert.equal(objects.ours.body.toString(), objects.ref.body.toString());
    });
  }

  it('TIL: wider than 8 bits as stored samples, byte for byte; 8-bit CIELAB as a JPEG of its Lab bytes; 5 bands raw', async () => {
    for (const file of ['u16', 's16', 'u32', 'float-minmax', 'float-rgb', 'band4-16']) {
      const { ref, ours } = await pair.get(`FIF=${file}.tif&CNT=2&TIL=1,0-1`);
      assert.equal(ours.status, 200);
      assert.ok(ours.body.equals(ref.body), `${file}: ${ours.body.length} bytes against ${ref.body.length}`);
    }
    const lab = await pair.get('FIF=lab8.tif&TIL=1,0');
    const jpeg = (body: Buffer) => body.subarray(body.indexOf(':') + 9, body.length - 2);
    const [a, b] = await Promise.all([decodePixels(jpeg(lab.ref.body)), decodePixels(jpeg(lab.ours.body))]);
    assert.ok(psnr(a, b) > 45, `CIELAB: PSNR ${psnr(a, b).toFixed(1)}`);
    // 1.1 labels the raw 5-band bytes JPEG (2): ours says raw (0); the bytes are the same.
    const bands = await pair.get('FIF=band5.tif&TIL=1,0');
    const header = (body: Buffer) => body.subarray(body.indexOf(':') + 1, body.indexOf(':') + 9).toString('hex');
    assert.deepEqual([header(bands.ref.body), header(bands.ours.body)], ['0200000000110000', '0000000000110000']);
    assert.ok(jpeg(bands.ours.body).equals(jpeg(bands.ref.body)));
  });

  it('differs on purpose: float without SMaxSampleValue (1.1: max 0, white; ours: 1.0 as iipsrv master)', async () => {
    const objects = await pair.get('FIF=float.tif&OBJ=Min-Max-sample-values');
    assert.match(objects.ref.body.toString(), /Min-Max-sample-values: 0 {2}0\r\n/);
    assert.match(objects.ours.body.toString(), /Min-Max-sample-values: 0 {2}1\r\n/);
    const { ref, ours } = await pair.get('FIF=float.tif&JTL=2,1');
    const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
    assert.ok(
      a.data.every((v) => v >= 250),
      '1.1: all but white',
    );
    assert.ok(b.data.some((v) => v < 100) && b.data.some((v) => v > 200), 'ours: the wave');
  });

  it('differs on purpose: signed data (1.1 reads the bits as unsigned, so -2000 is 63536 and bright; ours signed)', async () => {
    const objects = await pair.get('FIF=s16-split.tif&OBJ=Min-Max-sample-values');
    assert.match(objects.ref.body.toString(), /Min-Max-sample-values: 0 {2}65535\r\n/);
    assert.match(objects.ours.body.toString(), /Min-Max-sample-values: -32768 {2}32767\r\n/);
    const ranged = await pair.get('FIF=s16-split-range.tif&OBJ=Min-Max-sample-values');
    assert.equal(ranged.ours.body.toString(), ranged.ref.body.toString());
    assert.match(ranged.ours.body.toString(), /Min-Max-sample-values: -2000 {2}2000\r\n/);
    // [left, right] as 1.1 and we render them: -2000 and 2000 by 0..65535 (63536 -> 247, 2000 ->
    // 7) and by -32768..32767 (119, 135); with the range -2000..2000, 1.1 clips both to 255 (63536
    // is above 2000, 2000 + 2000 is the top), ours 0 and 255.
    const cases: Array<[string, number[], number[]]> = [
      ['s16-split.tif', [247, 7], [119, 135]],
      ['s16-split-range.tif', [255, 255], [0, 255]],
    ];
    for (const [file, refValues, ourValues] of cases) {
      for (const query of [`FIF=${file}&JTL=0,0`, `FIF=${file}&WID=600&CVT=jpeg`]) {
        const { ref, ours } = await pair.get(query);
        assert.equal(ref.status, 200, `reference ${query}`);
        assert.equal(ours.status, 200, `ours ${query}`);
        const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
        const at = (p: typeof a, fraction: number) => p.data[Math.floor(p.height / 2) * p.width * p.channels + Math.floor(p.width * fraction) * p.channels]!;
        for (const [side, fraction] of [
          [0, 1 / 6],
          [1, 5 / 6],
        ] as const) {
          assert.ok(Math.abs(at(a, fraction) - refValues[side]!) <= 2, `${query} 1.1 side ${side}: ${at(a, fraction)}, expected ${refValues[side]}`);
          assert.ok(Math.abs(at(b, fraction) - ourValues[side]!) <= 2, `${query} ours side ${side}: ${at(b, fraction)}, expected ${ourValues[side]}`);
        }
      }
    }
  });

  it('differs on purpose: 16-bit CIELAB (1.1 reads it as 8-bit; ours L/655.35 as master)', async () => {
    const { ref, ours } = await pair.get('FIF=lab16.tif&JTL=2,1');
    const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
    // a* = b* = 0: ours is grey (equal bands), 1.1's is not.
    let ourSpread = 0;
    let refSpread = 0;
    for (let i = 0; i < b.data.length; i += 3) {
      ourSpread = Math.max(ourSpread, Math.abs(b.data[i]! - b.data[i + 2]!));
      refSpread = Math.max(refSpread, Math.abs(a.data[i]! - a.data[i + 2]!));
    }
    assert.ok(ourSpread <= 6, `ours: grey within JPEG noise (${ourSpread})`);
    assert.ok(refSpread > 30, `1.1: colours (${refSpread})`);
  });
});
