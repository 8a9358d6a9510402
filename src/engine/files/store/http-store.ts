/**
 * Objects on a plain web server that honours Range requests (nginx, Apache, a CDN): the key is a
 * path under the base URL, each segment percent-encoded. Node's own http/https clients with
 * keep-alive; the same attempts, deadlines and error kinds as the S3 store. Redirects are not
 * followed: the base URL should name where the files are.
 */
import http from 'node:http';
import https from 'node:https';
import { withAttempts, Transient, type Attempt } from './attempts.js';
import { readExactly, removeOnFailure, writeExactly } from './bodies.js';
import { checkKey, checkRange, checkRangeArguments, checkVersion } from './checks.js';
import { StoreError, type ObjectInfo, type ObjectStore, type StoreTimeouts } from './object-store.js';

export interface HttpStoreOptions {
  /** `http://host/path/` or `https://...`; a missing final `/` is added. */
  baseUrl: string;
  timeouts: StoreTimeouts;
}

const MAX_SOCKETS = 64;

/** The response's failure for a status other than the one wanted. */
function statusFailure(status: number, what: string): Error {
  if (status === 404 || status === 410) return new StoreError('missing', `${what}: no such object`);
  if (status === 401 || status === 403) return new StoreError('denied', `${what}: access denied (${status})`);
  if (status === 412) return new StoreError('changed', `${what}: the object changed`);
  if (status === 416) return new StoreError('invalid', `${what}: the range is outside the object`);
  if (status === 408 || status === 429 || status >= 500) return new Transient(`the server answered ${status}`);
  if (status >= 300 && status < 400) return new StoreError('invalid', `${what}: the server redirects (${status}); give the final location as the base URL`);
  return new StoreError('invalid', `${what}: the server answered ${status}`);
}

function networkFailure(error: unknown): Error {
  if (error instanceof StoreError || error instanceof Transient) return error;
  const code = (error as { code?: string }).code;
  return new Transient(`cannot reach the server (${code ?? (error as Error).name})`);
}

function header(response: http.IncomingMessage, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function contentLength(response: http.IncomingMessage): number | undefined {
  const value = header(response, 'content-length');
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

function infoOf(response: http.IncomingMessage, size: number): ObjectInfo {
  const modified = Date.parse(header(response, 'last-modified') ?? '');
  return { size, etag: header(response, 'etag') ?? null, lastModifiedMs: Number.isNaN(modified) ? 0 : modified };
}

/**
 * If-Match compares strongly, so a weak ETag (W/"...") would never match and every read would
 * report a change: for those the version is checked on the answer's ETag only.
 */
function ifMatch(etag: string | null): Record<string, string> {
  return etag === null || etag.startsWith('W/') ? {} : { 'if-match': etag };
}

export class HttpStore implements ObjectStore {
  readonly description: string;
  private readonly base: URL;
  private readonly client: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly timeouts: StoreTimeouts;
  private readonly authorization: string | undefined;

  constructor(options: HttpStoreOptions) {
    const base = new URL(options.baseUrl);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error(`${base.protocol} is not http: or https:`);
    if (base.search || base.hash) throw new Error('the base URL takes no query or fragment');
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    // Credentials in the URL become a header and leave the URL, so they appear in no message.
    if (base.username || base.password) {
      this.authorization = 'Basic ' + Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64');
      base.username = '';
      base.password = '';
    }
    this.base = base;
    this.description = base.href;
    this.timeouts = options.timeouts;
    this.client = base.protocol === 'https:' ? https : http;
    this.agent = new this.client.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  }

  private url(key: string): URL {
    checkKey(key, this.base.href + key);
    return new URL(key.split('/').map(encodeURIComponent).join('/'), this.base);
  }

  /** One request; resolves at the response's head, the body still to read (or destroy). */
  private send(method: 'GET' | 'HEAD', url: URL, headers: Record<string, string>, attempt: Attempt): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const request = this.client.request(
        url,
        {
          method,
          agent: this.agent,
          signal: attempt.signal,
          headers: { ...headers, ...(this.authorization ? { authorization: this.authorization } : {}) },
        },
        (response) => {
          // Its errors reach whoever reads the body; one before the reading starts must not crash the process.
          response.on('error', () => {});
          resolve(response);
        },
      );
      request.on('error', (error) => reject(networkFailure(error)));
      request.end();
    });
  }

  /**
   * A request whose answer must have status `wanted`; any other status is turned into its
   * failure, the body thrown away unread. The answer's body is read by `use` within the attempt.
   */
  private async exchange<T>(
    what: string,
    attempt: Attempt,
    method: 'GET' | 'HEAD',
    url: URL,
    headers: Record<string, string>,
    wanted: number,
    use: (response: http.IncomingMessage) => Promise<T>,
  ): Promise<T> {
    const response = await this.send(method, url, headers, attempt);
    try {
      if (response.statusCode === 200 && wanted === 206) {
        throw new StoreError('invalid', `${what}: the server does not honour Range requests (it sent the whole object)`);
      }
      if (response.statusCode !== wanted) throw statusFailure(response.statusCode ?? 0, what);
      const encoding = header(response, 'content-encoding');
      if (encoding !== undefined && encoding !== 'identity') throw new StoreError('invalid', `${what}: the server sent an encoded body (${encoding})`);
      return await use(response);
    } catch (error) {
      response.destroy();
      throw networkFailure(error);
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<ObjectInfo | null> {
    const url = this.url(key);
    const what = url.href;
    try {
      return await withAttempts(this.timeouts, what, signal, (attempt) =>
        this.exchange(what, attempt, 'HEAD', url, {}, 200, async (response) => {
          response.resume();
          const size = contentLength(response);
          if (size === undefined) throw new StoreError('invalid', `${what}: the server gave no Content-Length`);
          return infoOf(response, size);
        }),
      );
    } catch (error) {
      if (error instanceof StoreError && error.kind === 'missing') return null;
      throw error;
    }
  }

  async read(key: string, start: number, end: number, etag: string | null, signal?: AbortSignal): Promise<Buffer> {
    const url = this.url(key);
    const what = url.href;
    checkRangeArguments(start, end, what);
    if (start === end) return Buffer.alloc(0);
    const headers = { range: `bytes=${start}-${end - 1}`, ...ifMatch(etag) };
    return withAttempts(this.timeouts, what, signal, (attempt) =>
      this.exchange(what, attempt, 'GET', url, headers, 206, (response) => {
        checkVersion(etag, header(response, 'etag'), what);
        checkRange(header(response, 'content-range'), contentLength(response), start, end, what);
        return readExactly(response, end - start, what, attempt.signal);
      }),
    );
  }

  async download(key: string, path: string, etag: string | null, signal?: AbortSignal): Promise<ObjectInfo> {
    const url = this.url(key);
    const what = url.href;
    return removeOnFailure(path, () =>
      withAttempts(this.timeouts, what, signal, (attempt) =>
        this.exchange(what, attempt, 'GET', url, ifMatch(etag), 200, async (response) => {
          checkVersion(etag, header(response, 'etag'), what);
          const size = contentLength(response);
          if (size === undefined) throw new StoreError('invalid', `${what}: the server gave no Content-Length`);
          await writeExactly(response, path, size, what, attempt.signal, attempt.progress);
          return infoOf(response, size);
        }),
      ),
    );
  }

  async list(_prefix: string, _limit: number): Promise<string[]> {
    throw new StoreError('invalid', 'listing is not possible over HTTP');
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
