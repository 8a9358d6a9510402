/**
 * JPEG2000 against the real iipsrv 1.1 (which decodes in-process with OpenJPEG): the same JP2
 * files behind one nginx, the same requests. OBJ answers must be byte-identical where the level
 * sizes agree (sizes divisible by 2^levels); tiles close in PSNR at every resolution. Where we
 * differ on purpose (ceil level sizes, LYR honoured, raw J2K) the test says so.
 *
 * Skips, naming the Debian package, when nginx, iipsrv 1.1 or opj_compress is absent.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tempDir } from '../helpers/daemon.ts';
import { JP2_SKIP, makeJp2, testImage } from '../helpers/jp2.ts';
import { decodePixels, imagesDir, psnr, referenceSkipReason, startDifferentialPair, type DifferentialPair } from '../helpers/reference-iipsrv.ts';

const SKIP = referenceSkipReason() ?? JP2_SKIP;

describe('JPEG2000 against iipsrv 1.1', { skip: SKIP ?? false }, () => {
  let pair: DifferentialPair;

  before(async () => {
    const dir = tempDir('iipsrv-jp2diff-');
    const images = imagesDir(dir);
    makeJp2(images, 'layers.jp2', testImage(1024, 768, 3, 8), ['-n', '4', '-t', '512,512', '-r', '100,30,10']);
    makeJp2(images, 'grey.jp2', testImage(512, 512, 1, 8), ['-n', '3']);
    makeJp2(images, 'odd.jp2', testImage(1001, 733, 3, 8), ['-n', '3']);
    makeJp2(images, 'raw.j2k', testImage(512, 512, 3, 8), ['-n', '2']);
    // All layers on both sides: 1.1 decodes all of them whatever MAX_LAYERS says (see below).
    pair = await startDifferentialPair({ dir, images, env: { JPEG_QUALITY: '90', MAX_LAYERS: '-1' } });
  });
  after(async () => {
    await pair?.stop();
  });

  it('answers OBJ requests byte for byte', async () => {
    for (const image of ['layers.jp2', 'grey.jp2']) {
      for (const object of ['Max-size', 'Resolution-number', 'Resolutions', 'Tile-size', 'Bits-per-channel', 'Colorspace,0-2,0']) {
        const { ref, ours } = await pair.get(`FIF=${image}&OBJ=${object}`);
        assert.equal(ref.status, 200, `${image} ${object}: ${ref.body}`);
        assert.equal(ours.body.toString(), ref.body.toString(), `${image} ${object}`);
      }
    }
  });

  it('sends tiles close to 1.1 at every resolution', async () => {
    for (const [image, resolutions] of [
      ['layers.jp2', 3],
      ['grey.jp2', 2],
    ] as const) {
      for (let r = 0; r < resolutions; r++) {
        for (const tile of [0, r > 0 ? 3 : 0]) {
          const query = `FIF=${image}&JTL=${r},${tile}`;
          const { ref, ours } = await pair.get(query);
          assert.equal(ref.status, 200, query);
          assert.equal(ours.status, 200, `${query}: ${ours.body}`);
          const a = await decodePixels(ours.body);
          const b = await decodePixels(ref.body);
          assert.ok(psnr(a, b) > 35, `${query}: PSNR ${psnr(a, b).toFixed(1)} dB against 1.1`);
        }
      }
    }
  });

  it('differs on purpose: LYR decodes fewer layers (1.1 ignores LYR on tiles and always decodes all)', async () => {
    const one = await pair.get('FIF=layers.jp2&LYR=1&JTL=2,5');
    const all = await pair.get('FIF=layers.jp2&JTL=2,5');
    // 1.1: the same tile with and without LYR.
    assert.equal(psnr(await decodePixels(one.ref.body), await decodePixels(all.ref.body)), Infinity);
    // Ours: the all-layer tile is 1.1's; one layer is visibly coarser.
    assert.ok(psnr(await decodePixels(all.ours.body), await decodePixels(all.ref.body)) > 35);
    assert.ok(psnr(await decodePixels(one.ours.body), await decodePixels(all.ref.body)) < 33);
  });

  it('differs on purpose: level sizes by the codec (ceil), where 1.1 floor-halves', async () => {
    const { ref, ours } = await pair.get('FIF=odd.jp2&OBJ=Resolutions');
    assert.equal(ref.body.toString().trim(), 'Resolutions:250 183,500 366,1001 733');
    assert.equal(ours.body.toString().trim(), 'Resolutions:251 184,501 367,1001 733');
  });

  it('differs on purpose: raw J2K codestreams are served (1.1 refuses them)', async () => {
    const { ref, ours } = await pair.get('FIF=raw.j2k&OBJ=Max-size');
    assert.notEqual(ref.status, 200);
    assert.equal(ours.status, 200);
    assert.equal(ours.body.toString().trim(), 'Max-size:512 512');
  });
});
