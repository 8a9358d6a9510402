/**
 * libvips reads a file only when a pipeline runs, so damaged pixel data shows up as a sharp error
 * at encoding time. Such an error is the image's fault (404, as for a damaged tile we decode
 * ourselves), not the server's: told apart here by the libvips loader names in the message.
 */
import { FileError } from '../errors.js';

/** `tiff2vips:`, `jpeg2vips:` ... (loaders), `VipsJpeg:` (libjpeg), libtiff's `TIFFReadTile:` ... */
const LOADER_FAILURE = /(?:^|\n)(?:[a-z0-9]+2vips|VipsJpeg|VipsForeignLoad\w*|TIFF\w+):/;

/** The error to throw for a failure of a pipeline that reads `name`: a FileError when libvips could not decode it. */
export function asDecodeFailure(error: unknown, name: string): unknown {
  if (!(error instanceof Error) || error instanceof FileError || !LOADER_FAILURE.test(error.message)) return error;
  const reason = error.message.split('\n').filter(Boolean).join('; ');
  return new FileError(`${name}: the image data cannot be decoded (${reason})`);
}
