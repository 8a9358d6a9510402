/**
 * The plain request and response objects that sit between the transports (FastCGI, HTTP) and
 * the protocols. Transports build a PlainRequest from whatever their peer sent and write a
 * PlainResponse back; nothing on the protocol side knows which transport is in use.
 */

export interface PlainRequest {
  /** Upper-case HTTP method (`GET`, `HEAD`, ...). */
  method: string;
  /** The raw query string, without the leading `?` and not URL-decoded (iipsrv decodes per command). */
  query: string;
  /** The request path as the client sent it (REQUEST_URI up to `?`), not URL-decoded. */
  path: string;
  /**
   * HTTP request headers with lower-case names (`host`, `if-modified-since`, `x-forwarded-proto`).
   * FastCGI `HTTP_FOO_BAR` params arrive here as `foo-bar`.
   */
  headers: Record<string, string>;
  /** The front end's SCRIPT_NAME, when it sent one (used to rebuild external URLs). */
  scriptName: string;
  /**
   * The IIIF id the front end's own configuration imposes (FastCGI parameter `IIIF_ID`, e.g.
   * nginx `fastcgi_param IIIF_ID ...`): a parameter without the `HTTP_` prefix, which no request
   * header can produce. Absent over plain HTTP.
   */
  iiifId?: string;
  /**
   * The port the front end took the request on (CGI `SERVER_PORT`), when it says: the port of
   * the URLs the server gives out when the Host header it passes carries none.
   */
  serverPort?: string;
  /** True when the client reached the front end over TLS (CGI `HTTPS=on`). */
  https: boolean;
  /** Client address as the transport saw it (the web server's, behind FastCGI). */
  remoteAddress: string;
  /** Aborted when the client goes away (FastCGI ABORT_REQUEST, closed connection). */
  signal: AbortSignal;
}

/** A header list keeps order and allows repeats, so that responses match iipsrv's byte for byte. */
export type HeaderList = Array<[name: string, value: string]>;

export interface PlainResponse {
  status: number;
  headers: HeaderList;
  body: Buffer;
}

/** Reason phrases for the statuses this server produces (CGI `Status:` lines need them). */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  204: 'No Content',
  303: 'See Other',
  304: 'Not Modified',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

export function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? 'Unknown'}`;
}

export function getHeader(headers: HeaderList, name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [key, value] of headers) if (key.toLowerCase() === wanted) return value;
  return undefined;
}

/** The signature every transport calls; it must never reject (errors become responses). */
export type RequestHandler = (request: PlainRequest) => Promise<PlainResponse>;
