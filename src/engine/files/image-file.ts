/**
 * Finds out what an image file is without decoding it: a regular file, its modification time (the
 * Last-Modified of every response and part of every cache key) and its format from the magic bytes,
 * as iipsrv does, so that renaming a file never changes how it is read.
 */
import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { FileError, InvalidArgumentError } from '../../errors.js';
import type { ImageFormat } from '../source.js';

export interface ImageFileInfo extends ImageFileStat {
  format: ImageFormat;
}

const JP2_SIGNATURE = Buffer.from([0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a]);

export function sniffFormat(head: Buffer): ImageFormat | null {
  if (head.length >= JP2_SIGNATURE.length && head.subarray(0, JP2_SIGNATURE.length).equals(JP2_SIGNATURE)) {
    return 'jp2';
  }
  // A bare JPEG2000 codestream (.j2k, .j2c): SOC then SIZ. iipsrv 1.1 refuses these.
  if (head.length >= 4 && head.readUInt32BE(0) === 0xff4fff51) return 'jp2';
  if (head.length >= 4) {
    const magic = head.subarray(0, 4).toString('latin1');
    // Classic TIFF and BigTIFF, both byte orders.
    if (magic === 'II*\0' || magic === 'MM\0*' || magic === 'II+\0' || magic === 'MM\0+') return 'tiff';
    // The "I I" magic of some old TIFF writers, which iipsrv accepts too.
    if (magic.startsWith('I I')) return 'tiff';
  }
  if (sniffPlain(head)) return 'plain';
  return null;
}

/**
 * The images without a pyramid that libvips reads and we serve: JPEG, PNG, GIF, WebP, HEIF/AVIF,
 * JPEG XL and binary PNM. Only these are handed to libvips: its other loaders (SVG, PDF, FITS ...)
 * parse whole documents or run large libraries on a client's say-so.
 */
function sniffPlain(head: Buffer): boolean {
  if (head.length < 12) return false;
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return true;
  if (head.readUInt32BE(0) === 0x89504e47) return true;
  const ascii = head.toString('latin1', 0, 12);
  if (ascii.startsWith('GIF87a') || ascii.startsWith('GIF89a')) return true;
  if (ascii.startsWith('RIFF') && ascii.slice(8, 12) === 'WEBP') return true;
  if (ascii.slice(4, 8) === 'ftyp' && /^(?:heic|heix|mif1|msf1|avif|avis)$/.test(ascii.slice(8, 12))) return true;
  if (head[0] === 0xff && head[1] === 0x0a) return true;
  if (ascii.startsWith('\0\0\0\x0cJXL ')) return true;
  return /^P[56][\s]/.test(ascii);
}

/** What `stat` says of an image file: enough to tell whether a file already opened has changed. */
export interface ImageFileStat {
  /** Absolute path on disk, or the object's URL (`s3://bucket/key`); never shown to clients. */
  path: string;
  /** Modification time in whole seconds, as HTTP dates carry it. */
  mtimeSeconds: number;
  size: number;
  /**
   * What changes whenever the content does (part of every cache key): the modification time for
   * a local file, the ETag for an object in a store (replaced within a second, it is still new).
   */
  version: string;
  /** The file's identity: a link pointed elsewhere leads to another (0 for objects in a store). */
  dev: number;
  ino: number;
}

/**
 * Done on every request (a replaced file must never be served stale), so it opens nothing. The
 * stat is synchronous, as iipsrv's is: the inode is in the kernel's cache after the first request,
 * and a synchronous stat then costs about 1 µs of CPU against about 21 µs for the thread-pool round
 * trip of an asynchronous one (measured on this machine), on every tile.
 * @param name the image name as the client gave it, for messages
 * @throws FileError when the file is missing or not a regular file
 */
export function statImageFile(path: string, name: string): ImageFileStat {
  let info;
  try {
    info = statSync(path, { throwIfNoEntry: false });
  } catch {
    info = undefined;
  }
  if (!info?.isFile()) throw new FileError(`${name} is neither a file nor part of an image sequence`);
  const mtimeSeconds = Math.floor(info.mtimeMs / 1000);
  return { path, mtimeSeconds, size: info.size, version: String(mtimeSeconds), dev: info.dev, ino: info.ino };
}

/** iipsrv reads this many bytes to recognise a format; a shorter file is no image (404). */
const MAGIC_LENGTH = 10;

/**
 * The format from the magic bytes, for a file not opened before (or changed since).
 * @throws FileError when the file cannot be read or is too short to be an image (404, as iipsrv)
 * @throws InvalidArgumentError for a file of another kind (400 "Unsupported image type", as iipsrv)
 */
export async function identifyImageFile(file: ImageFileStat, name: string): Promise<ImageFileInfo> {
  const head = Buffer.alloc(16);
  let bytesRead = 0;
  try {
    const handle = await open(file.path, 'r');
    try {
      ({ bytesRead } = await handle.read(head, 0, head.length, 0));
    } finally {
      await handle.close();
    }
  } catch {
    throw new FileError(`${name} cannot be read`);
  }
  return identifyByHead(file, head.subarray(0, bytesRead), name);
}

/**
 * The format of a file from its first bytes (16 are enough).
 * @throws FileError, InvalidArgumentError as {@link identifyImageFile}
 */
export function identifyByHead(file: ImageFileStat, head: Buffer, name: string): ImageFileInfo {
  if (head.length < MAGIC_LENGTH) throw new FileError(`${name} is too short to be an image`);
  const format = sniffFormat(head);
  if (!format) throw new InvalidArgumentError(`Unsupported image type: ${name} (not a TIFF, JPEG2000, JPEG, PNG, GIF, WebP, HEIF, JPEG XL or PNM image)`);
  return { ...file, format };
}
