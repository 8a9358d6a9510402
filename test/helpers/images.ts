/** Test images made on the fly (big ones are never committed). */
import sharp from 'sharp';

export interface PyramidOptions {
  width: number;
  height: number;
  tileSize?: number;
  compression?: 'jpeg' | 'deflate' | 'lzw' | 'none';
  quality?: number;
  /** Solid colour; default a horizontal ramp so that pixels differ. */
  colour?: { r: number; g: number; b: number };
}

/** A tiled pyramid TIFF in the main IFD chain, the layout iipsrv 1.1 reads. */
export async function makePyramidTiff(file: string, options: PyramidOptions): Promise<void> {
  const { width, height } = options;
  let image: sharp.Sharp;
  if (options.colour) {
    image = sharp({ create: { width, height, channels: 3, background: options.colour } });
  } else {
    const raw = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 3;
        raw[i] = Math.floor((x * 255) / Math.max(1, width - 1));
        raw[i + 1] = Math.floor((y * 255) / Math.max(1, height - 1));
        raw[i + 2] = 128;
      }
    }
    image = sharp(raw, { raw: { width, height, channels: 3 } });
  }
  await image
    .tiff({
      tile: true,
      pyramid: true,
      tileWidth: options.tileSize ?? 256,
      tileHeight: options.tileSize ?? 256,
      compression: options.compression ?? 'jpeg',
      quality: options.quality ?? 90,
    })
    .toFile(file);
}
