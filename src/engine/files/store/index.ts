/**
 * The store for a FILESYSTEM_PREFIX that names a bucket or a web server (config.ts parses which),
 * behind one object that counts what is asked of it for /metrics. Its client is loaded on first
 * use: the AWS SDK alone adds 24 MB and 0.1 s to a process, which a server of local files, the
 * common case, must not pay in every worker.
 */
import { StoreError, type ObjectStore, type StoreErrorKind, type StoreTimeouts } from './object-store.js';

export type StoreLocation = { kind: 's3'; bucket: string; forcePathStyle: boolean } | { kind: 'http'; baseUrl: string };

export type StoreRequestKind = 'head' | 'read' | 'download' | 'list';

/** Requests by kind, and those that failed (after their retries) by kind of failure. */
export interface StoreCounts {
  requests: Record<StoreRequestKind, number>;
  failures: Partial<Record<StoreErrorKind | 'other', number>>;
}

export function createObjectStore(
  location: StoreLocation,
  timeouts: StoreTimeouts,
  counts: StoreCounts = { requests: { head: 0, read: 0, download: 0, list: 0 }, failures: {} },
): ObjectStore {
  let loading: Promise<ObjectStore> | null = null;
  const client = () =>
    (loading ??=
      location.kind === 's3'
        ? import('./s3-store.js').then(({ S3Store }) => new S3Store({ bucket: location.bucket, forcePathStyle: location.forcePathStyle, timeouts }))
        : import('./http-store.js').then(({ HttpStore }) => new HttpStore({ baseUrl: location.baseUrl, timeouts })));
  const counted =
    <A extends unknown[], R>(kind: StoreRequestKind, call: (store: ObjectStore, ...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      counts.requests[kind]++;
      try {
        return await call(await client(), ...args);
      } catch (error) {
        const failure = error instanceof StoreError ? error.kind : 'other';
        counts.failures[failure] = (counts.failures[failure] ?? 0) + 1;
        throw error;
      }
    };
  return {
    description: location.kind === 's3' ? `s3://${location.bucket}/` : location.baseUrl,
    head: counted('head', (store, key: string, signal?: AbortSignal) => store.head(key, signal)),
    read: counted('read', (store, key: string, start: number, end: number, etag: string | null, signal?: AbortSignal) =>
      store.read(key, start, end, etag, signal),
    ),
    download: counted('download', (store, key: string, path: string, etag: string | null, signal?: AbortSignal) => store.download(key, path, etag, signal)),
    list: counted('list', (store, prefix: string, limit: number, signal?: AbortSignal) => store.list(prefix, limit, signal)),
    close: async () => {
      if (loading) await (await loading).close();
    },
  };
}
