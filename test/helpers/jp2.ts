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

export const HTJ2K_SKIP = which('ojph_compress') ? null : 'ojph_compress not installed (apt-get install openjph-tools)';

/** Codes the image as a raw HTJ2K codestream with OpenJPH's ojph_compress (`options` its own). */
export function makeHtj2k(dir: string, name: string, image: TestImage, options: string[] = []): string {
  const source = path.join(dir, `${name}.${image.channels === 1 ? 'pgm' : 'ppm'}`);
  writePnm(source, image);
  const out = path.join(dir, name);
  execFileSync('ojph_compress', ['-i', source, '-o', out, ...options], { stdio: 'pipe' });
  return out;
}

function box(type: string, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, body]);
}

/**
 * A codestream in the JP2 box format, as the brand says: 'jp2 ' (a JP2 file, here with HT
 * code-blocks) or 'jph ' (the HTJ2K file format of Part 15): signature, ftyp, jp2h (ihdr, an
 * enumerated colr), jp2c.
 */
export function wrapCodestream(codestream: Buffer, brand: 'jp2 ' | 'jph ', image: Pick<TestImage, 'width' | 'height' | 'channels' | 'bits'>): Buffer {
  const signature = box('jP  ', Buffer.from([0x0d, 0x0a, 0x87, 0x0a]));
  const ftyp = box('ftyp', Buffer.from(brand, 'latin1'), Buffer.alloc(4), Buffer.from(brand, 'latin1'));
  const ihdr = Buffer.alloc(14);
  ihdr.writeUInt32BE(image.height, 0);
  ihdr.writeUInt32BE(image.width, 4);
  ihdr.writeUInt16BE(image.channels, 8);
  ihdr[10] = image.bits - 1;
  ihdr[11] = 7;
  const colr = Buffer.alloc(7);
  colr[0] = 1;
  colr.writeUInt32BE(image.channels === 1 ? 17 : 16, 3);
  return Buffer.concat([signature, ftyp, box('jp2h', box('ihdr', ihdr), box('colr', colr)), box('jp2c', codestream)]);
}
