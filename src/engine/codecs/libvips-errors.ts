/**
 * libvips reads a file only when a pipeline runs, so damaged pixel data shows up as a sharp error
 * at encoding time. Such an error is the image's fault (404, as for a damaged tile we decode
 * ourselves), not the server's: told apart here by the libvips loader names in the message.
 */
import { FileError, IipError, InvalidArgumentError, NotImplementedError, ServerFailureError } from '../../errors.js';

/**
 * `tiff2vips:`, `jpeg2vips:` ... (loaders), `VipsJpeg:` (libjpeg), libtiff's `TIFFReadTile:` ...;
 * and sharp's own words when no loader takes a file we read as an image, or its header fails the
 * loader's checks (libtiff refuses directories our reader accepts: a tag with a wrong count, a
 * tile width not a multiple of 16 ...).
 */
const LOADER_FAILURE =
  /(?:^|\n)(?:(?:[a-z0-9]+2vips|VipsJpeg|VipsForeignLoad\w*|TIFF\w+):|Input (?:file|buffer) (?:contains unsupported image format|has corrupt header))/;

/** The error to throw for a failure of a pipeline that reads `name`: a FileError when libvips could not decode it. */
export function asDecodeFailure(error: unknown, name: string): unknown {
  if (!(error instanceof Error) || error instanceof FileError || !LOADER_FAILURE.test(error.message)) return error;
  const reason = error.message.split('\n').filter(Boolean).join('; ');
  return new FileError(`${name}: the image data cannot be decoded (${reason})`);
}

const OUR_ERRORS = [FileError, InvalidArgumentError, NotImplementedError, ServerFailureError, IipError];

/**
 * Runs a pipeline that reads `name`, with its decoding failures as FileErrors. libvips keeps one
 * error buffer for every thread, so a pipeline failing at the same moment can take this one's
 * reason (sharp then says "Unknown error", or names only the encoder that got no pixels): an
 * unexplained libvips failure is tried once more to learn whether the image is at fault. So `run`
 * must build its pipeline each time it is called: a sharp pipeline given its operations twice
 * applies them twice (an extract of the extract).
 */
export async function decoding<T>(name: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const failure = asDecodeFailure(error, name);
    // A request aborted because its client left is not tried again either.
    const ours = error instanceof Error && (error.name === 'AbortError' || OUR_ERRORS.some((kind) => error instanceof kind));
    if (failure !== error || !(error instanceof Error) || ours) throw failure;
  }
  try {
    return await run();
  } catch (error) {
    throw asDecodeFailure(error, name);
  }
}
