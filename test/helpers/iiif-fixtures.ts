/** The IIIF validator's test image, shared by the IIIF tests. */
import { copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { fixtureDir } from './daemon.ts';
import { decodePixels, type Pixels } from './images.ts';

export const VALIDATOR_DIR = fixtureDir('iiif-validator');
export const VALIDATOR_ID = '67352ccc-d1b0-11e1-89ae-279075081939';

/**
 * The IIIF validator's test image (1000x1000, 10x10 coloured squares, 128-px JPEG tiles) copied
 * to each target, and its lossless original; where the shared fixtures are missing, a look-alike
 * made here (same layout, our own colours, JPEG tiles at libvips' default quality), so the checks
 * still run.
 */
export async function validatorImage(target: string[]): Promise<Pixels> {
  const tif = path.join(VALIDATOR_DIR, `${VALIDATOR_ID}.tif`);
  const png = path.join(VALIDATOR_DIR, `${VALIDATOR_ID}.png`);
  if (existsSync(tif) && existsSync(png)) {
    for (const file of target) copyFileSync(tif, file);
    return decodePixels(sharp(png).removeAlpha());
  }
  const raw = Buffer.alloc(1000 * 1000 * 3);
  for (let y = 0; y < 1000; y++) {
    for (let x = 0; x < 1000; x++) {
      const [col, row] = [Math.floor(x / 100), Math.floor(y / 100)];
      raw.set([20 + col * 23, 20 + row * 23, 240 - (col + row) * 12], (y * 1000 + x) * 3);
    }
  }
  const picture = sharp(raw, { raw: { width: 1000, height: 1000, channels: 3 } });
  for (const file of target)
    await picture.clone().tiff({ tile: true, pyramid: true, tileWidth: 128, tileHeight: 128, compression: 'jpeg', quality: 75 }).toFile(file);
  return { width: 1000, height: 1000, channels: 3, data: raw };
}
