/**
 * JPEG2000 test images: known pixels written as PGM/PPM here, coded by OpenJPEG's opj_compress
 * (Debian libopenjp2-tools) with the options each test names.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { which } from './daemon.ts';

export const JP2_SKIP =
  which('opj_compress') && which('opj_decompress') ? null : 'opj_compress/opj_decompress not installed (apt-get install libopenjp2-tools)';

export interface TestImage {
  width: number;
  height: number;
  channels: 1 | 3;
  /** 8 or 16. */
  bits: number;
  /** Interleaved samples. */
  data: Uint8Array | Uint16Array;
}

/** A smooth gradient with a fine texture (so that layers and levels matter), deterministic. */
export function testImage(width: number, height: number, channels: 1 | 3, bits: 8 | 16): TestImage {
  const max = 2 ** bits - 1;
  const data = bits === 8 ? new Uint8Array(width * height * channels) : new Uint16Array(width * height * channels);
  let i = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        const base = c === 0 ? x / width : c === 1 ? y / height : (x + y) / (width + height);
        const texture = 0.15 * Math.sin((x * (c + 1)) / 3.1) * Math.cos(y / 4.7);
        data[i++] = Math.round(Math.min(1, Math.max(0, 0.1 + 0.75 * base + texture)) * max);
      }
    }
  }
  return { width, height, channels, bits, data };
}

/** PGM (grey) or PPM (RGB), 16-bit big-endian when bits = 16. */
export function writePnm(file: string, image: TestImage): void {
  const header = Buffer.from(`${image.channels === 1 ? 'P5' : 'P6'}\n${image.width} ${image.height}\n${2 ** image.bits - 1}\n`, 'latin1');
  const body = Buffer.alloc(image.data.length * (image.bits === 16 ? 2 : 1));
  if (image.bits === 16) image.data.forEach((v, i) => body.writeUInt16BE(v, i * 2));
  else body.set(image.data);
  writeFileSync(file, Buffer.concat([header, body]));
}

/** Codes the image with opj_compress; `name` ends in .jp2 or .j2k (the container follows it). */
export function makeJp2(dir: string, name: string, image: TestImage, options: string[] = []): string {
  const source = path.join(dir, `${name}.${image.channels === 1 ? 'pgm' : 'ppm'}`);
  writePnm(source, image);
  const out = path.join(dir, name);
  execFileSync('opj_compress', ['-i', source, '-o', out, ...options], { stdio: 'pipe' });
  return out;
}

/** The 8-bit view of a rectangle of the image (16-bit scaled as iipsrv's pipeline does). */
export function expectedRect(
  image: TestImage,
  left: number,
  top: number,
  width: number,
  height: number,
): { width: number; height: number; channels: number; data: Buffer } {
  const out = Buffer.alloc(width * height * image.channels);
  const scale = image.bits === 16 ? 255 / 65535 : 1;
  let o = 0;
  for (let y = top; y < top + height; y++) {
    for (let x = left; x < left + width; x++) {
      for (let c = 0; c < image.channels; c++) out[o++] = Math.round(image.data[(y * image.width + x) * image.channels + c]! * scale);
    }
  }
  return { width, height, channels: image.channels, data: out };
}
