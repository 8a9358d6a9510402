/**
 * Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, GCS's XML API...) through the AWS
 * SDK for JavaScript v3 and its standard configuration: AWS_REGION (us-east-1 when nothing names
 * one, as MinIO and Ceph set-ups often leave it out), AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (the
 * SDK reads both itself), credentials from the SDK's default chain (environment, shared files,
 * SSO, container and instance roles). The SDK's own retries are off: attempts, timeouts and
 * back-off are ours (attempts.ts), so that the worst case of a call is known.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, type GetObjectCommandOutput } from '@aws-sdk/client-s3';
import { withAttempts, Transient, type Attempt } from './attempts.js';
import { readExactly, removeOnFailure, writeExactly } from './bodies.js';
import { checkKey, checkRange, checkRangeArguments, checkVersion } from './checks.js';
import { StoreError, type ObjectInfo, type ObjectStore, type StoreTimeouts } from './object-store.js';

export interface S3StoreOptions {
  bucket: string;
  timeouts: StoreTimeouts;
  /** Path-style URLs (endpoint/bucket/key) instead of bucket.endpoint: MinIO, Ceph, s3rver. */
  forcePathStyle: boolean;
}

/** Sockets per store: enough for a worker's concurrent range reads, few enough to be polite. */
const MAX_SOCKETS = 64;
/** ListObjectsV2 gives at most this many keys a page. */
const PAGE_KEYS = 1000;
/** Pages one listing may take, whatever the store says about more to come. */
const MAX_PAGES = 100;
const DEFAULT_REGION = 'us-east-1';

/**
 * The SDK warns on every start under Node 20 that its releases after January 2027 will need Node
 * 22: nothing an operator of this server can act on today. It offers this documented switch,
 * which an operator who sets it either way still controls.
 */
function quietNodeVersionWarning(): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}

/** The region from the SDK's own chain (AWS_REGION, the shared config file), else us-east-1. */
function regionWithDefault(): () => Promise<string> {
  let region: Promise<string> | undefined;
  return () => {
    region ??= (async () => {
      const probe = new S3Client({});
      try {
        return await probe.config.region();
      } catch {
        return DEFAULT_REGION;
      } finally {
        probe.destroy();
      }
    })();
    return region;
  };
}

interface SdkError {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

const DENIED_CODES = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden', 'Unauthorized', 'ExpiredToken', 'InvalidToken']);
const THROTTLED_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
]);

/**
 * What an SDK failure means for the caller. The store's own message is left out: it can quote
 * the request (a signature mismatch echoes the string that was signed), and the code says enough.
 */
function storeFailure(error: unknown, what: string): Error {
  if (error instanceof StoreError || error instanceof Transient) return error;
  const failure = error as SdkError;
  const name = failure.name ?? 'Error';
  const status = failure.$metadata?.httpStatusCode;
  if (name === 'CredentialsProviderError') {
    return new StoreError('denied', `${what}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the machine a role)`);
  }
  if (name === 'NoSuchBucket') {
    // Every object is affected: a misconfiguration to fix, not a 404 to pass on to clients.
    return new StoreError('unavailable', `${what}: the bucket does not exist at this endpoint (check FILESYSTEM_PREFIX and AWS_ENDPOINT_URL)`);
  }
  if (status === 404 || name === 'NoSuchKey' || name === 'NotFound') return new StoreError('missing', `${what}: no such object`);
  if (status === 401 || status === 403 || DENIED_CODES.has(name)) return new StoreError('denied', `${what}: access denied (${name})`);
  if (status === 412 || name === 'PreconditionFailed') return new StoreError('changed', `${what}: the object changed`);
  if (status === 416 || name === 'InvalidRange') return new StoreError('invalid', `${what}: the range is outside the object`);
  if (status === 429 || (status !== undefined && status >= 500) || THROTTLED_CODES.has(name)) {
    return new Transient(`the store answered ${status ?? ''} ${name}`.replace('  ', ' '));
  }
  if (status === undefined && (failure.code !== undefined || name === 'TimeoutError')) {
    return new Transient(`cannot reach the store (${failure.code ?? name})`);
  }
  return new StoreError('invalid', `${what}: the store answered ${status ?? 'without a status'} ${name}`);
}

function infoOf(size: number, etag: string | undefined, lastModified: Date | undefined): ObjectInfo {
  return { size, etag: etag ?? null, lastModifiedMs: lastModified?.getTime() ?? 0 };
}

export class S3Store implements ObjectStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly timeouts: StoreTimeouts;

  constructor(options: S3StoreOptions) {
    quietNodeVersionWarning();
    this.bucket = options.bucket;
    this.timeouts = options.timeouts;
    this.description = `s3://${options.bucket}/`;
    const agent = { keepAlive: true, maxSockets: MAX_SOCKETS };
    this.client = new S3Client({
      region: regionWithDefault(),
      forcePathStyle: options.forcePathStyle,
      // On AWS a bucket in another region than the configured (or defaulted) one answers 301:
      // the SDK then asks again, once, in the bucket's region.
      followRegionRedirects: true,
      maxAttempts: 1,
      requestHandler: {
        // Our own deadline covers the whole attempt; these end a dead connection early and free its socket.
        connectionTimeout: options.timeouts.requestTimeoutMs,
        socketTimeout: options.timeouts.requestTimeoutMs,
        httpAgent: new http.Agent(agent),
        httpsAgent: new https.Agent(agent),
      },
    });
  }

  private name(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  /** One attempt's SDK call, its failures translated. */
  private async send<T>(what: string, attempt: Attempt, call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      return await call(attempt.signal);
    } catch (error) {
      throw storeFailure(error, what);
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    const what = this.name(key);
    checkKey(key, what);
    try {
      return await withAttempts(this.timeouts, what, signal, async (attempt) => {
        const answer = await this.send(what, attempt, (abortSignal) =>
          this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal }),
        );
        if (answer.ContentLength === undefined) throw new StoreError('invalid', `${what}: the store gave no size`);
        return infoOf(answer.ContentLength, answer.ETag, answer.LastModified);
      });
    } catch (error) {
      if (error instanceof StoreError && error.kind === 'missing') return null;
      throw error;
    }
  }

  /** A GetObject whose body is read (or dropped) within the same attempt. */
  private async getObject<T>(
    what: string,
    attempt: Attempt,
    input: { Key: string; Range?: string; IfMatch?: string },
    use: (answer: GetObjectCommandOutput, body: Readable) => Promise<T>,
  ): Promise<T> {
    const answer = await this.send(what, attempt, (abortSignal) => this.client.send(new GetObjectCommand({ Bucket: this.bucket, ...input }), { abortSignal }));
    const body = answer.Body as Readable | undefined;
    if (body === undefined) throw new StoreError('invalid', `${what}: the store sent no body`);
    // Its errors reach whoever reads it; one before the reading starts must not crash the process.
    body.on('error', () => {});
    try {
      return await use(answer, body);
    } catch (error) {
      body.destroy();
      throw storeFailure(error, what);
    }
  }

  async read(key: string, start: number, end: number, etag: string | null, signal?: AbortSignal): Promise<Buffer> {
    const what = this.name(key);
    checkKey(key, what);
    checkRangeArguments(start, end, what);
    if (start === end) return Buffer.alloc(0);
    const input = { Key: key, Range: `bytes=${start}-${end - 1}`, ...(etag === null ? {} : { IfMatch: etag }) };
    return withAttempts(this.timeouts, what, signal, (attempt) =>
      this.getObject(what, attempt, input, (answer, body) => {
        checkVersion(etag, answer.ETag, what);
        checkRange(answer.ContentRange, answer.ContentLength, start, end, what);
        return readExactly(body, end - start, what, attempt.signal);
      }),
    );
  }

  async download(key: string, path: string, etag: string | null, signal?: AbortSignal): Promise<ObjectInfo> {
    const what = this.name(key);
    checkKey(key, what);
    const input = { Key: key, ...(etag === null ? {} : { IfMatch: etag }) };
    return removeOnFailure(path, () =>
      withAttempts(this.timeouts, what, signal, (attempt) =>
        this.getObject(what, attempt, input, async (answer, body) => {
          checkVersion(etag, answer.ETag, what);
          const size = answer.ContentLength;
          if (size === undefined) throw new StoreError('invalid', `${what}: the store gave no size`);
          await writeExactly(body, path, size, what, attempt.signal, attempt.progress);
          return infoOf(size, answer.ETag, answer.LastModified);
        }),
      ),
    );
  }

  async list(prefix: string, limit: number, signal?: AbortSignal): Promise<string[]> {
    const what = this.name(prefix);
    const keys: string[] = [];
    let token: string | undefined;
    for (let page = 0; page < MAX_PAGES && keys.length < limit; page++) {
      const answer = await withAttempts(this.timeouts, what, signal, (attempt) =>
        this.send(what, attempt, (abortSignal) =>
          this.client.send(
            new ListObjectsV2Command({
              Bucket: this.bucket,
              Prefix: prefix,
              Delimiter: '/',
              MaxKeys: Math.min(PAGE_KEYS, limit - keys.length),
              ContinuationToken: token,
            }),
            { abortSignal },
          ),
        ),
      );
      for (const entry of answer.Contents ?? []) {
        const key = entry.Key;
        // A directory marker (the prefix itself) is no image; a key outside the prefix, a confused store.
        if (key === undefined || !key.startsWith(prefix) || key === prefix || key.includes('/', prefix.length)) continue;
        if (keys.length < limit) keys.push(key);
      }
      const next = answer.NextContinuationToken;
      if (!answer.IsTruncated || next === undefined || next === token) break;
      token = next;
    }
    return keys;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
