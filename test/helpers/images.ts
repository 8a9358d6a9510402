/** Test images made on the fly (big ones are never committed). */
import assert from 'node:assert/strict';
import sharp, { type Sharp } from 'sharp';

export interface PyramidOptions {
  width: number;
  height: number;
  tileSize?: number;
  compression?: 'jpeg' | 'deflate' | 'lzw' | 'none';
  quality?: number;
  /** Solid colour; default a horizontal ramp so that pixels differ. */
  colour?: { r: number; g: number; b: number };
}

/**
 * Raw 8-bit RGB: red ramps from 0 at the left to 255 at the right, green from the top to the
 * bottom, blue as given (128 unless a function of x and y says otherwise).
 */
export function rampPixels(width: number, height: number, blue: (x: number, y: number) => number = () => 128): Buffer {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = Math.floor((x * 255) / Math.max(1, width - 1));
      raw[i + 1] = Math.floor((y * 255) / Math.max(1, height - 1));
      raw[i + 2] = blue(x, y);
    }
  }
  return raw;
}

/** A tiled pyramid TIFF in the main IFD chain, the layout iipsrv 1.1 reads. */
export async function makePyramidTiff(file: string, options: PyramidOptions): Promise<void> {
  const { width, height } = options;
  let image: Sharp;
  if (options.colour) {
    image = sharp({ create: { width, height, channels: 3, background: options.colour } });
  } else {
    image = sharp(rampPixels(width, height), { raw: { width, height, channels: 3 } });
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

export interface Pixels {
  width: number;
  height: number;
  channels: number;
  data: Buffer;
}

/** Decodes an image (JPEG ..., or a sharp pipeline) to raw 8-bit samples, as many bands as it has. */
export async function decodePixels(image: Buffer | Sharp): Promise<Pixels> {
  let pipeline = Buffer.isBuffer(image) ? sharp(image) : image;
  const { channels } = await pipeline.clone().metadata();
  // sharp's raw output is sRGB unless told otherwise: keep a grey image one band.
  if (channels === 1) pipeline = pipeline.toColourspace('b-w');
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels, data };
}

/** Peak signal-to-noise ratio in dB of two images of the same size and bands (Infinity if equal). */
export function psnr(a: Pixels, b: Pixels): number {
  if (a.width !== b.width || a.height !== b.height || a.channels !== b.channels) {
    throw new Error(`cannot compare ${a.width}x${a.height}x${a.channels} with ${b.width}x${b.height}x${b.channels}`);
  }
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = a.data[i]! - b.data[i]!;
    sum += d * d;
  }
  const mse = sum / a.data.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

export function meanAbsoluteDifference(a: Pixels, b: Pixels): number {
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) sum += Math.abs(a.data[i]! - b.data[i]!);
  return sum / a.data.length;
}

/** Checks every pixel of an answer showing the image from (left, top) onwards against `expected(x, y)`. */
export function assertPixels(p: Pixels, left: number, top: number, expected: (x: number, y: number) => number[], what: string): void {
  for (let y = 0; y < p.height; y++) {
    for (let x = 0; x < p.width; x++) {
      const want = expected(left + x, top + y);
      const got = [...p.data.subarray((y * p.width + x) * p.channels, (y * p.width + x + 1) * p.channels)];
      if (got.join() !== want.join()) assert.fail(`${what}: pixel ${left + x},${top + y} is ${got}, expected ${want}`);
    }
  }
}

/** Smooth RGB colours with structure, so that scaled tiles can be compared with a scaled source. */
export function smoothPicture(width: number, height: number): Buffer {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = Math.round(127 + 120 * Math.sin(x / 150));
      raw[i + 1] = Math.round(127 + 120 * Math.cos(y / 100));
      raw[i + 2] = Math.round((255 * (x + y)) / (width + height));
    }
  }
  return raw;
}
