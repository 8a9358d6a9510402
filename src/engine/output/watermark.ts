/**
 * WATERMARK: an image added to output pixels (iipsrv §12.5). It is read once at start-up and
 * premultiplied there (`rgb × opacity × alpha / 255`), then added with clipping at a random place
 * inside a tile (cropped when the tile is smaller), with WATERMARK_PROBABILITY per tile; regions
 * get one chance per block of twice the tile size, as current iipsrv does. One-band output uses
 * the watermark's red band; alpha bands are left alone.
 */
import sharp, { type Sharp } from 'sharp';
import { outputBands } from './encoders.js';

/** Interleaved samples to mark in place: 8-bit (Uint8Array / Buffer) or 16-bit. */
export interface MarkablePixels {
  data: Uint8Array | Uint16Array;
  width: number;
  height: number;
  channels: number;
  /** Samples per row; width × channels when absent. */
  stride?: number;
}

export interface Area {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface WatermarkSettings {
  path: string;
  probability: number;
  opacity: number;
}

export class Watermark {
  private constructor(
    readonly width: number,
    readonly height: number,
    /** Premultiplied red, green, blue per pixel, truncated to whole 8-bit values as iipsrv keeps them. */
    private readonly values: Uint8Array,
    readonly probability: number,
    /** Distinguishes this watermark's outputs from any other's in shared caches. */
    readonly fingerprint: string,
    private readonly random: () => number,
  ) {}

  /**
   * @throws Error naming the file when it is not an image sharp reads
   */
  static async load(settings: WatermarkSettings, random: () => number = Math.random): Promise<Watermark> {
    let decoded;
    try {
      // The values as stored, as iipsrv's RGBA reader gives them (no ICC conversion).
      decoded = await sharp(settings.path, { ignoreIcc: true }).ensureAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    } catch (error) {
      throw new Error(`WATERMARK ${settings.path} cannot be read as an image: ${(error as Error).message}`);
    }
    const { data, info } = decoded;
    const pixels = info.width * info.height;
    const values = new Uint8Array(pixels * 3);
    for (let i = 0; i < pixels; i++) {
      const scale = (settings.opacity * data[i * 4 + 3]!) / 255;
      for (let c = 0; c < 3; c++) values[i * 3 + c] = Math.trunc(data[i * 4 + c]! * scale);
    }
    const fingerprint = `${settings.path}:${settings.probability}:${settings.opacity}:${info.width}x${info.height}:${checksum(data)}`;
    return new Watermark(info.width, info.height, values, settings.probability, fingerprint, random);
  }

  /** One draw against WATERMARK_PROBABILITY. */
  draw(): boolean {
    return this.probability >= 1 || (this.probability > 0 && this.random() < this.probability);
  }

  /** Marks a tile the caller has drawn for (it must know first: a marked tile is never the stored one). */
  markTile(pixels: MarkablePixels): void {
    this.place(pixels, 0, 0, pixels.width, pixels.height);
  }

  /**
   * The blocks of a region (twice the tile size) that get a watermark, a draw for each: drawn
   * before the pixels exist, so that a region without any is never taken apart for nothing.
   */
  drawBlocks(width: number, height: number, tileWidth: number, tileHeight: number): Area[] {
    const blockWidth = Math.max(1, 2 * tileWidth);
    const blockHeight = Math.max(1, 2 * tileHeight);
    const blocks: Area[] = [];
    for (let top = 0; top < height; top += blockHeight) {
      for (let left = 0; left < width; left += blockWidth) {
        if (this.draw()) blocks.push({ left, top, width: Math.min(blockWidth, width - left), height: Math.min(blockHeight, height - top) });
      }
    }
    return blocks;
  }

  /** Marks the blocks drawn for a region of this size. */
  markBlocks(pixels: MarkablePixels, blocks: Area[]): void {
    for (const block of blocks) this.place(pixels, block.left, block.top, block.width, block.height);
  }

  /** Draws and marks in one go, for a region whose size is only known from its pixels. */
  markRegion(pixels: MarkablePixels, tileWidth: number, tileHeight: number): void {
    this.markBlocks(pixels, this.drawBlocks(pixels.width, pixels.height, tileWidth, tileHeight));
  }

  /** Adds the watermark at a random offset inside the area (at its corner, cropped, when larger). */
  private place(pixels: MarkablePixels, areaLeft: number, areaTop: number, areaWidth: number, areaHeight: number): void {
    areaWidth = Math.min(areaWidth, pixels.width - areaLeft);
    areaHeight = Math.min(areaHeight, pixels.height - areaTop);
    if (areaWidth <= 0 || areaHeight <= 0) return;
    const x0 = areaLeft + (areaWidth > this.width ? Math.floor(this.random() * (areaWidth - this.width + 1)) : 0);
    const y0 = areaTop + (areaHeight > this.height ? Math.floor(this.random() * (areaHeight - this.height + 1)) : 0);
    const width = Math.min(this.width, areaLeft + areaWidth - x0);
    const height = Math.min(this.height, areaTop + areaHeight - y0);
    const { data, channels } = pixels;
    const stride = pixels.stride ?? pixels.width * channels;
    const colours = channels >= 3 ? 3 : 1;
    const area = { x0, y0, width, height, stride, channels, colours };
    if (data instanceof Uint16Array) this.add(data, area, 256, 65535);
    else this.add(data, area, 1, 255);
  }

  private add(
    data: Uint8Array | Uint16Array,
    area: { x0: number; y0: number; width: number; height: number; stride: number; channels: number; colours: number },
    scale: number,
    max: number,
  ): void {
    const { x0, y0, width, height, stride, channels, colours } = area;
    const values = this.values;
    for (let y = 0; y < height; y++) {
      let out = (y0 + y) * stride + x0 * channels;
      let mark = y * this.width * 3;
      if (colours === 3) {
        for (let x = 0; x < width; x++, out += channels, mark += 3) {
          const r = data[out]! + values[mark]! * scale;
          const g = data[out + 1]! + values[mark + 1]! * scale;
          const b = data[out + 2]! + values[mark + 2]! * scale;
          data[out] = r > max ? max : r;
          data[out + 1] = g > max ? max : g;
          data[out + 2] = b > max ? max : b;
        }
      } else {
        for (let x = 0; x < width; x++, out += channels, mark += 3) {
          const v = data[out]! + values[mark]! * scale;
          data[out] = v > max ? max : v;
        }
      }
    }
  }
}

/**
 * Runs a pipeline to its pixels (in the output's band layout), marks them and hands back a
 * pipeline of the marked pixels: watermarking is the last step before encoding.
 */
export async function markPipeline(pipeline: Sharp, channels: number, bits: 8 | 16, mark: (pixels: MarkablePixels) => void): Promise<Sharp> {
  const { data, info } = await outputBands(pipeline, channels, bits)
    .raw(bits === 16 ? { depth: 'ushort' } : {})
    .toBuffer({ resolveWithObject: true });
  const samples = bits === 16 ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : data;
  mark({ data: samples, width: info.width, height: info.height, channels: info.channels });
  return sharp(samples, { raw: { width: info.width, height: info.height, channels: info.channels as 1 | 2 | 3 | 4 } });
}

/** A cheap content checksum, so that a replaced watermark file changes cache keys. */
function checksum(data: Buffer): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) hash = Math.imul(hash ^ data[i]!, 0x01000193);
  return (hash >>> 0).toString(16);
}
