/**
 * Positioned reads that are synchronous while the storage answers from memory, and go through
 * libuv's thread pool once it shows it is slow.
 *
 * Why: a tile read that the page cache serves costs about 5 µs of CPU as a synchronous pread()
 * and about 33 µs as an asynchronous one (the hand-over to a pool thread and back, measured on
 * this machine with 40 KB reads); on a tile server that reads a tile per request this is a large
 * share of the work (iipsrv, the anchor, reads synchronously too). But a synchronous read of
 * storage that is slow (a network filesystem, a cold disk) would stop every other request of the
 * worker while it waits. So every synchronous read is timed, and one that took longer than
 * 2 ms sends all reads of this process to the thread pool for 10 s; after
 * that, the next read tries again synchronously. A worker on slow storage stalls at most once per
 * period, for one read.
 */
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/** A read slower than this did not come from memory. */
let slowReadMs = 2;
/** How long reads stay asynchronous after a slow one. */
const ASYNC_PERIOD_MS = 10_000;

let asyncUntil = 0;

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
  if (started < asyncUntil) return (await handle.read(buffer, offset, length, position)).bytesRead;
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
