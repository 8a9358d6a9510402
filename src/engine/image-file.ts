/**
 * Finds out what an image file is without decoding it: a regular file, its modification time (the
 * Last-Modified of every response and part of every cache key) and its format from the magic bytes,
 * as iipsrv does, so that renaming a file never changes how it is read.
 */
import { open, stat } from 'node:fs/promises';
import { FileError } from '../errors.js';

export type ImageFormat = 'tiff' | 'jp2';

export interface ImageFileInfo {
  /** Absolute path on disk; never shown to clients. */
  path: string;
  /** Modification time in whole seconds, as HTTP dates carry it. */
  mtimeSeconds: number;
  size: number;
  format: ImageFormat;
}

const JP2_SIGNATURE = Buffer.from([0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a]);

export function sniffFormat(head: Buffer): ImageFormat | null {
  if (head.length >= JP2_SIGNATURE.length && head.subarray(0, JP2_SIGNATURE.length).equals(JP2_SIGNATURE)) {
    return 'jp2';
  }
  if (head.length >= 4) {
    const magic = head.subarray(0, 4).toString('latin1');
    // Classic TIFF and BigTIFF, both byte orders.
    if (magic === 'II*\0' || magic === 'MM\0*' || magic === 'II+\0' || magic === 'MM\0+') return 'tiff';
  }
  return null;
}

/**
 * @param name the image name as the client gave it, for messages
 * @throws FileError when the file is missing, not a regular file, unreadable or of another format
 */
export async function inspectImageFile(path: string, name: string): Promise<ImageFileInfo> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new FileError(`${name} is neither a file nor part of an image sequence`);
  }
  if (!info.isFile()) throw new FileError(`${name} is neither a file nor part of an image sequence`);

  const head = Buffer.alloc(16);
  let bytesRead = 0;
  try {
    const handle = await open(path, 'r');
    try {
      ({ bytesRead } = await handle.read(head, 0, head.length, 0));
    } finally {
      await handle.close();
    }
  } catch {
    throw new FileError(`${name} cannot be read`);
  }
  const format = sniffFormat(head.subarray(0, bytesRead));
  if (!format) throw new FileError(`${name} is not a TIFF or JPEG2000 image`);
  return { path, mtimeSeconds: Math.floor(info.mtimeMs / 1000), size: info.size, format };
}
