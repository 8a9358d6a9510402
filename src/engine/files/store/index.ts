/**
 * The store for a FILESYSTEM_PREFIX that names a bucket or a web server (config.ts parses which).
 * Its client is loaded on first use: the AWS SDK alone adds 24 MB and 0.1 s to a process, which
 * a server of local files, the common case, must not pay in every worker.
 */
import type { ObjectStore, StoreTimeouts } from './object-store.js';

export type StoreLocation = { kind: 's3'; bucket: string; forcePathStyle: boolean } | { kind: 'http'; baseUrl: string };

export function createObjectStore(location: StoreLocation, timeouts: StoreTimeouts): ObjectStore {
  let loading: Promise<ObjectStore> | null = null;
  const client = () =>
    (loading ??=
      location.kind === 's3'
        ? import('./s3-store.js').then(({ S3Store }) => new S3Store({ bucket: location.bucket, forcePathStyle: location.forcePathStyle, timeouts }))
        : import('./http-store.js').then(({ HttpStore }) => new HttpStore({ baseUrl: location.baseUrl, timeouts })));
  return {
    description: location.kind === 's3' ? `s3://${location.bucket}/` : location.baseUrl,
    head: async (...args) => (await client()).head(...args),
    read: async (...args) => (await client()).read(...args),
    download: async (...args) => (await client()).download(...args),
    list: async (...args) => (await client()).list(...args),
    close: async () => {
      if (loading) await (await loading).close();
    },
  };
}
