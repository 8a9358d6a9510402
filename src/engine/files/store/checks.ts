/**
 * Checks of what a store answered and of what we are about to ask it, shared by the clients so
 * that S3 and plain web servers are held to the same rules.
 */
import { StoreError } from './object-store.js';

/** A Content-Range header's parts: `bytes first-last/total` (total may be `*`, given as null). */
export function parseContentRange(header: string | undefined): { first: number; last: number; total: number | null } | null {
  const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header?.trim() ?? '');
  if (!match) return null;
  return { first: Number(match[1]), last: Number(match[2]), total: match[3] === '*' ? null : Number(match[3]) };
}

/**
 * Checks that a ranged answer covers [start, end) exactly.
 * @throws StoreError 'invalid' naming what came instead
 */
export function checkRange(contentRange: string | undefined, contentLength: number | undefined, start: number, end: number, what: string): void {
  const range = parseContentRange(contentRange);
  if (range === null) throw new StoreError('invalid', `${what}: the store answered a range request without a usable Content-Range`);
  if (range.first !== start || range.last !== end - 1) {
    throw new StoreError('invalid', `${what}: asked for bytes ${start}-${end - 1}, the store sent ${range.first}-${range.last} of ${range.total ?? 'unknown'}`);
  }
  if (contentLength !== undefined && contentLength !== end - start) {
    throw new StoreError('invalid', `${what}: Content-Length ${contentLength} does not match bytes ${start}-${end - 1}`);
  }
}

/**
 * Checks the version of what came back when a particular one was asked for: a store that does not
 * honour If-Match (some S3 imitations) would otherwise hand over bytes of a newer object.
 */
export function checkVersion(expected: string | null, got: string | null | undefined, what: string): void {
  if (expected !== null && got && got !== expected) throw new StoreError('changed', `${what}: the object changed (ETag ${got}, expected ${expected})`);
}

/** Refuses a range no request can have: negative, reversed or not whole numbers. */
export function checkRangeArguments(start: number, end: number, what: string): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new StoreError('invalid', `${what}: no such byte range [${start}, ${end})`);
  }
}

/**
 * Refuses keys with `.` or `..` segments: over HTTP they would climb out of the base, and some
 * S3-compatible servers normalise paths the same way.
 */
export function checkKey(key: string, what: string): void {
  if (key === '' || key.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new StoreError('invalid', `${what}: not a usable object key`);
  }
}
