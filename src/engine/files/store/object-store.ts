/**
 * The contract every remote image store meets (S3-compatible buckets, web servers that honour
 * Range): what the engine needs of an object and nothing more. The engine reads a file by byte
 * ranges, asks now and then whether it changed, and copies it whole to disk only for the formats
 * whose decoders need a file. Implementations do their own timeouts and retries; what they cannot
 * overcome they report as one of the {@link StoreError} kinds, which the server maps to a status.
 */

/** What a store says of an object: enough to read it and to tell when it was replaced. */
export interface ObjectInfo {
  size: number;
  /** The store's entity tag (quotes kept, as sent); null when it gives none. */
  etag: string | null;
  /** Last-Modified in milliseconds since the epoch; 0 when the store gives none. */
  lastModifiedMs: number;
}

export type StoreErrorKind =
  /** No such object (404). */
  | 'missing'
  /** The store refused us (401/403): wrong or missing credentials, a private bucket. */
  | 'denied'
  /** The store is down, overloaded or too slow, even after the retries (503 to clients). */
  | 'unavailable'
  /** The object changed between two reads (its ETag no longer matches): re-open it. */
  | 'changed'
  /** The store answered something impossible (a short range, a range it ignored). */
  | 'invalid';

/**
 * A failure of the store. Messages name the object by its key, never the credentials or a signed
 * URL: they end up in logs and, for clients, in error bodies.
 */
export class StoreError extends Error {
  override name = 'StoreError';
  constructor(
    readonly kind: StoreErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export interface ObjectStore {
  /** Where objects come from, for the start-up banner and logs (no credentials). */
  readonly description: string;
  /**
   * The object's size and version.
   * @returns null when there is no such object
   * @throws StoreError ('denied', 'unavailable', 'invalid')
   */
  head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null>;
  /**
   * Bytes [start, end) of the object; exactly end - start of them. With `etag`, the read fails
   * with 'changed' when the object is no longer that version (If-Match).
   * @throws StoreError
   */
  read(key: string, start: number, end: number, etag: string | null, signal?: AbortSignal): Promise<Buffer>;
  /**
   * The whole object written to `path` (created or truncated), for decoders that need a file.
   * @throws StoreError
   */
  download(key: string, path: string, etag: string | null, signal?: AbortSignal): Promise<ObjectInfo>;
  /**
   * The keys that start with `prefix` and have no further `/` after it (a directory listing), at
   * most `limit` of them. Stores that cannot list (plain web servers) throw 'invalid'.
   */
  list(prefix: string, limit: number, signal?: AbortSignal): Promise<string[]>;
  close(): Promise<void>;
}

/** A store's settings from the environment, parsed in config.ts. */
export interface StoreTimeouts {
  /** Longest one attempt (connect + first byte + body) may take. */
  requestTimeoutMs: number;
  /** Attempts for an idempotent read, the first included. */
  attempts: number;
  /** First back-off between attempts; doubles, with jitter. */
  backoffMs: number;
}
