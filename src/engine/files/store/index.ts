/**
 * The store for a FILESYSTEM_PREFIX that names a bucket or a web server (config.ts parses which).
 */
import { HttpStore } from './http-store.js';
import type { ObjectStore, StoreTimeouts } from './object-store.js';
import { S3Store } from './s3-store.js';

export type StoreLocation = { kind: 's3'; bucket: string; forcePathStyle: boolean } | { kind: 'http'; baseUrl: string };

export function createObjectStore(location: StoreLocation, timeouts: StoreTimeouts): ObjectStore {
  if (location.kind === 's3') return new S3Store({ bucket: location.bucket, forcePathStyle: location.forcePathStyle, timeouts });
  return new HttpStore({ baseUrl: location.baseUrl, timeouts });
}
