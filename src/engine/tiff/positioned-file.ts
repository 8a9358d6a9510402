/** Positioned reads from an open file, every one checked against the file size. */
import { open, type FileHandle } from 'node:fs/promises';
import { readAt } from '../files/positioned-reads.js';
import { TiffFormatError } from './errors.js';

/** Largest single read we allow (a tile, a tag value, an offsets array): Node's Buffer limit is 2-4 GiB. */
export const MAX_READ = 0x7fff_ffff;

export class PositionedFile {
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<PositionedFile> {
    const handle = await open(path, 'r');
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new TiffFormatError('not a regular file');
      return new PositionedFile(handle, stat.size);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
  }

  /** True if [position, position+length) lies inside the file. */
  contains(position: number, length: number): boolean {
    return Number.isSafeInteger(position) && Number.isSafeInteger(length) && position >= 0 && length >= 0 && position + length <= this.size;
  }

  /**
   * Exactly `length` bytes at `position`, after `headroom` bytes left for the caller to fill (so
   * that a prefix costs no second buffer and copy); TiffFormatError ("truncated ...") if the file
   * is shorter.
   */
  async read(position: number, length: number, what: string, headroom = 0): Promise<Buffer> {
    if (this.closed) throw new Error('TIFF file is closed');
    if (!Number.isSafeInteger(length) || length < 0 || !Number.isSafeInteger(position) || position < 0) {
      throw new TiffFormatError(`corrupt TIFF: ${what} has an impossible location (${length} bytes at offset ${position})`);
    }
    if (!this.contains(position, length)) {
      throw new TiffFormatError(`truncated TIFF: ${what} (${length} bytes at offset ${position}) is beyond the end of the file (${this.size} bytes)`);
    }
    if (length > MAX_READ) throw new TiffFormatError(`${what} is too large (${length} bytes)`);
    const buffer = Buffer.allocUnsafe(headroom + length);
    let done = 0;
    while (done < length) {
      const bytesRead = await readAt(this.handle, buffer, headroom + done, length - done, position + done);
      if (bytesRead === 0) {
        throw new TiffFormatError(`truncated TIFF: unexpected end of file reading ${what} at offset ${position + done}`);
      }
      done += bytesRead;
    }
    return buffer;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}
