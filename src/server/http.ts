/**
 * The plain HTTP listener (`--http HOST:PORT`): the same router and responses as FastCGI, written
 * the way a web server would have written our CGI headers. For trying the server out and for
 * development; production sites keep their web server in front and use FastCGI.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HTTP_LIMIT_DEFAULTS, type HttpLimits } from '../cli.js';
import type { PlainRequest, RequestHandler } from '../request.js';

/**
 * Request line and headers together, Node's own default written out: Node's process-wide
 * --max-http-header-size must not change what this listener accepts behind our back.
 */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface HttpListener {
  server: http.Server;
  address(): AddressInfo | string | null;
  /** Stop accepting, let requests in flight finish, then drop idle connections; force after graceMs. */
  close(graceMs: number): Promise<void>;
}

/** `http://host:port` at the start of an absolute-form target. */
const SCHEME_AND_AUTHORITY = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * The path and query of a request target. A client may send the absolute form
 * (`GET http://host/path?query`, RFC 9112 3.2.2) to an origin server too: its scheme and host are
 * dropped, since the Host header is what names this server (and what a proxy in front rewrites).
 */
function originForm(target: string): string {
  const authority = SCHEME_AND_AUTHORITY.exec(target);
  if (!authority) return target;
  const rest = target.slice(authority[0].length);
  return rest.startsWith('/') ? rest : '/' + rest;
}

function toRequest(req: http.IncomingMessage, signal: AbortSignal): PlainRequest {
  const url = originForm(req.url ?? '/');
  const question = url.indexOf('?');
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return {
    method: (req.method ?? 'GET').toUpperCase(),
    query: question < 0 ? '' : url.slice(question + 1),
    path: question < 0 ? url : url.slice(0, question),
    headers,
    scriptName: '',
    https: false,
    remoteAddress: req.socket.remoteAddress ?? '',
    signal,
  };
}

/**
 * What Node's parser refused before the router saw it, with Node's own statuses (a URL counts
 * towards its 16 KB header limit) and, as every other error here, a message saying why.
 */
function clientErrorResponse(code: string | undefined): string {
  const [status, reason, message] =
    code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', `The URL and headers are longer than the server accepts (${MAX_HEADER_BYTES} bytes)`]
      : code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'The request did not arrive in time']
        : [400, 'Bad Request', `Malformed HTTP request${code ? ` (${code})` : ''}`];
  const body = `${message}\n`;
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * A response the client stopped reading would keep its connection (and body) for ever: no
 * timeout of Node's covers a response being written. Dropped once no 'drain' has come for
 * `stallMs`; a slow reader that keeps draining keeps its connection.
 */
function dropWhenStalled(res: http.ServerResponse, stallMs: number): void {
  const socket = res.socket!;
  const timer = setTimeout(() => res.destroy(), stallMs).unref();
  const progress = () => timer.refresh();
  socket.on('drain', progress);
  res.once('close', () => {
    clearTimeout(timer);
    socket.off('drain', progress);
  });
}

export function createHttpListener(handler: RequestHandler, limits: HttpLimits = HTTP_LIMIT_DEFAULTS): HttpListener {
  const { idleTimeoutMs, readTimeoutMs } = limits;
  const options: http.ServerOptions = {
    keepAliveTimeout: idleTimeoutMs,
    headersTimeout: readTimeoutMs,
    requestTimeout: readTimeoutMs,
    maxHeaderSize: MAX_HEADER_BYTES,
  };
  // Node looks for requests past these only every connectionsCheckingInterval, 30 s by default:
  // a timeout of 30 s would fire after up to a minute. A quarter of it (at most a second) instead.
  if (readTimeoutMs > 0) options.connectionsCheckingInterval = Math.min(1000, Math.max(50, Math.floor(readTimeoutMs / 4)));
  const server = http.createServer(options, (req, res) => {
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    // Bodies are not used by any protocol; drain so that keep-alive stays in sync.
    req.resume();
    void handler(toRequest(req, controller.signal)).then((response) => {
      if (res.destroyed) return;
      res.statusCode = response.status;
      for (const [name, value] of response.headers) res.appendHeader(name, value);
      if (req.method === 'HEAD') res.end();
      else res.end(response.body);
      if (res.socket?.writableNeedDrain && readTimeoutMs > 0) dropWhenStalled(res, readTimeoutMs);
    });
  });
  // Node closes connections over the limit as they are accepted; those in progress carry on.
  server.maxConnections = limits.maxConnections;
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (socket.writable) socket.end(clientErrorResponse(error.code));
    else socket.destroy();
  });

  return {
    server,
    address: () => server.address(),
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
