/**
 * Positioned reads from an open file, every one checked against the file size.
 *
 * Reads are synchronous while the storage answers from memory, and go through libuv's thread
 * pool once it shows it is slow. A tile read that the page cache serves costs about 5 µs of CPU
 * as a synchronous pread() and about 33 µs as an asynchronous one (the hand-over to a pool thread
 * and back, measured on this machine with 40 KB reads): on a tile server that reads a tile per
 * request this is a large share of the work (iipsrv, the anchor, reads synchronously too). But a
 * synchronous read of slow storage (a network filesystem, a cold disk) would stop every other
 * request of the worker while it waits. So every synchronous read is timed, and one that took
 * longer than 2 ms sends all reads of this process to the thread pool for 10 s; after that, the
 * next read tries again synchronously. A worker on slow storage stalls at most once per period,
 * for one read. Reads of more than {@link MAX_SYNC_READ} always go to the pool: even from memory,
 * copying tens of megabytes (a huge tile of a hostile file) would hold the event loop for as many
 * milliseconds.
 */
import { readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { TiffFormatError } from './errors.js';

/** A read slower than this did not come from memory. */
let slowReadMs = 2;
/** How long reads stay asynchronous after a slow one. */
const ASYNC_PERIOD_MS = 10_000;

let asyncUntil = 0;

/** Largest read done synchronously: a quarter of a millisecond's copy from the page cache, far above a tile's bytes. */
export const MAX_SYNC_READ = 1024 * 1024;

/** Whether the next read will be synchronous (for tests and statistics). */
export function readsAreSynchronous(now = performance.now()): boolean {
  return now >= asyncUntil;
}

/**
 * Reads up to `length` bytes at `position` into `buffer` at `offset`.
 * @returns the bytes read (0 at the end of the file)
 */
export async function readAt(handle: FileHandle, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  const started = performance.now();
  if (started < asyncUntil || length > MAX_SYNC_READ) return (await handle.read(buffer, offset, length, position)).bytesRead;
  const bytesRead = readSync(handle.fd, buffer, offset, length, position);
  const finished = performance.now();
  if (finished - started > slowReadMs) asyncUntil = finished + ASYNC_PERIOD_MS;
  return bytesRead;
}

/** Test hooks: the state after a slow read (`slow`) or the initial one, and the threshold. */
export function setStorageSlowForTests(slow: boolean, thresholdMs = 2): void {
  asyncUntil = slow ? performance.now() + ASYNC_PERIOD_MS : 0;
  slowReadMs = thresholdMs;
}

/** Largest single read we allow (a tile, a tag value, an offsets array): Node's Buffer limit is 2-4 GiB. */
export const MAX_READ = 0x7fff_ffff;

/**
 * What the TIFF reader reads from: a local file ({@link PositionedFile}) or an object in a store
 * read by byte ranges (files/store/remote-file.ts).
 */
export interface RandomAccessFile {
  readonly size: number;
  /** True if [position, position+length) lies inside the file. */
  contains(position: number, length: number): boolean;
  /**
   * Exactly `length` bytes at `position`, after `headroom` bytes left for the caller to fill.
   * `purpose` tells a remote file how to fetch: the structure (header, directories, tile arrays) is
   * read by whole blocks, kept and shared, since the next structure read is usually nearby; tile
   * data is read exactly, since it is read once and the rendered tile is what gets cached.
   */
  read(position: number, length: number, what: string, headroom?: number, purpose?: ReadPurpose): Promise<Buffer>;
  close(): Promise<void>;
}

export type ReadPurpose = 'structure' | 'data';

/** True if [position, position+length) lies inside a file of `size` bytes. */
export function rangeInside(size: number, position: number, length: number): boolean {
  return Number.isSafeInteger(position) && Number.isSafeInteger(length) && position >= 0 && length >= 0 && position + length <= size;
}

/**
 * Refuses a read that cannot be right, with the messages clients see for a damaged file.
 * @throws TiffFormatError
 */
export function checkRead(size: number, position: number, length: number, what: string): void {
  if (!Number.isSafeInteger(length) || length < 0 || !Number.isSafeInteger(position) || position < 0) {
    throw new TiffFormatError(`corrupt TIFF: ${what} has an impossible location (${length} bytes at offset ${position})`);
  }
  if (position + length > size) {
    throw new TiffFormatError(`truncated TIFF: ${what} (${length} bytes at offset ${position}) is beyond the end of the file (${size} bytes)`);
  }
  if (length > MAX_READ) throw new TiffFormatError(`${what} is too large (${length} bytes)`);
}

export class PositionedFile implements RandomAccessFile {
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
    return rangeInside(this.size, position, length);
  }

  /**
   * Exactly `length` bytes at `position`, after `headroom` bytes left for the caller to fill (so
   * that a prefix costs no second buffer and copy); TiffFormatError ("truncated ...") if the file
   * is shorter.
   */
  async read(position: number, length: number, what: string, headroom = 0): Promise<Buffer> {
    if (this.closed) throw new Error('TIFF file is closed');
    checkRead(this.size, position, length, what);
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
