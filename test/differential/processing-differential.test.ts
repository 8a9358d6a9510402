/**
 * The processing commands beside the real iipsrv 1.1 behind one nginx: the same tiles and regions
 * of 8-bit and 16-bit images through CNT, GAM, INV, CMP, CTW and MINMAX, compared by size, bands
 * and pixels (both sides encode JPEG, so a PSNR threshold); COL=grey, and the histogram commands
 * CNT=eq, CNT=st and COL=binary. (1.1 has no CNV, and crashes on SHD.)
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { tempDir } from '../helpers/daemon.ts';
import { decodePixels, psnr } from '../helpers/images.ts';
import { imagesDir, referenceSkipReason, startDifferentialPair, type DifferentialPair } from '../helpers/reference-iipsrv.ts';

const skip = referenceSkipReason();

describe('processing commands beside iipsrv 1.1', { skip: skip ?? false }, () => {
  let pair: DifferentialPair;
  before(async () => {
    const dir = tempDir();
    const images = imagesDir(dir);
    const width = 700;
    const height = 500;
    // Ramps in every band, 8 and 16 bits, in the main IFD chain (the layout 1.1 reads).
    const rgb8 = Buffer.alloc(width * height * 3);
    const grey16 = new Uint16Array(width * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        rgb8.set([Math.floor((255 * x) / width), Math.floor((255 * y) / height), 128], i * 3);
        grey16[i] = Math.floor((60000 * (x + y)) / (width + height));
      }
    }
    const tiled = { tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'deflate' } as const;
    await sharp(rgb8, { raw: { width, height, channels: 3 } })
      .tiff(tiled)
      .toFile(path.join(images, 'rgb8.tif'));
    await sharp(grey16, { raw: { width, height, channels: 1 } })
      .toColourspace('grey16')
      .tiff(tiled)
      .toFile(path.join(images, 'grey16.tif'));
    pair = await startDifferentialPair({ dir: path.join(dir, 'web'), images, env: { JPEG_QUALITY: '90' } });
  });
  after(async () => pair?.stop());

  const queries = [
    'FIF=rgb8.tif&CNT=1.5&JTL=2,1',
    'FIF=rgb8.tif&GAM=0.5&JTL=2,4',
    'FIF=rgb8.tif&INV&JTL=1,0',
    'FIF=rgb8.tif&CMP=jet&JTL=2,2',
    'FIF=rgb8.tif&CMP=hot&WID=300&CVT=jpeg',
    'FIF=rgb8.tif&CTW=[0,0,1;0,1,0;1,0,0]&JTL=2,0',
    'FIF=rgb8.tif&COL=grey&JTL=2,1',
    'FIF=rgb8.tif&COL=grey&INV&WID=300&CVT=jpeg',
    'FIF=grey16.tif&JTL=2,3',
    'FIF=grey16.tif&MINMAX=1:0,30000&JTL=2,3',
    'FIF=grey16.tif&GAM=2&CNT=1.2&WID=350&CVT=jpeg',
    'FIF=grey16.tif&CMP=cold&JTL=1,1',
    // The image histogram: equalisation, stretch, Otsu (1.1 mangles COL=binary on 8-bit RGB JTL only).
    'FIF=rgb8.tif&CNT=eq&JTL=2,1',
    'FIF=rgb8.tif&CNT=eq&WID=300&CVT=jpeg',
    'FIF=rgb8.tif&CNT=eq&ROT=90&JTL=2,4',
    'FIF=rgb8.tif&CNT=st&JTL=2,1',
    'FIF=rgb8.tif&CNT=st&WID=300&CVT=jpeg',
    // At the level's own size: a threshold turns the two resizers' 1-level differences into 255s.
    'FIF=rgb8.tif&COL=binary&WID=700&CVT=jpeg',
    'FIF=rgb8.tif&COL=binary&RGN=0.2,0.1,0.5,0.5&WID=350&CVT=jpeg',
    // IIIF's bitonal is COL=binary in iipsrv (Otsu, not a fixed middle grey).
    'IIIF=rgb8.tif/full/700,/0/bitonal.jpg',
    'IIIF=rgb8.tif/full/700,/90/bitonal.jpg',
    'FIF=grey16.tif&CNT=st&JTL=2,3',
    'FIF=grey16.tif&CNT=-1&WID=350&CVT=jpeg',
    'FIF=grey16.tif&CNT=eq&JTL=2,3',
    'FIF=grey16.tif&CNT=eq&WID=350&CVT=jpeg',
    'FIF=grey16.tif&COL=binary&JTL=2,3',
    'FIF=grey16.tif&COL=binary&WID=350&CVT=jpeg',
    'FIF=grey16.tif&CNT=st&GAM=0.7&INV&JTL=2,3',
    // One contrast value: a later factor replaces the stretch; a stretch replaces MINMAX;
    // equalisation keeps a factor; COL is one colour space, the last given.
    'FIF=rgb8.tif&CNT=st&CNT=1.5&JTL=2,1',
    'FIF=rgb8.tif&MINMAX=1:0,100&CNT=st&JTL=2,1',
    'FIF=rgb8.tif&CNT=eq&CNT=2&JTL=2,1',
    'FIF=rgb8.tif&COL=binary&COL=grey&JTL=2,1',
    'FIF=rgb8.tif&CNT=eq&COL=binary&WID=700&CVT=jpeg',
  ];
  for (const query of queries) {
    it(query, async () => {
      const { ref, ours } = await pair.get(query);
      assert.equal(ref.status, 200, 'reference');
      assert.equal(ours.status, 200, `ours: ${ours.body.toString().slice(0, 200)}`);
      const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
      assert.deepEqual([b.width, b.height, b.channels], [a.width, a.height, a.channels]);
      const quality = psnr(a, b);
      assert.ok(quality > 30, `PSNR ${quality.toFixed(1)} dB`);
    });
  }
});
