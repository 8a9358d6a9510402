/**
 * From a plain request to a plain response, whatever transport carried it: picks the request
 * string (URI_MAP path or query string), runs it, maps failures to statuses, and adds what every
 * response carries (Server, CORS, Content-Length). The router never throws.
 */
import { AccessDeniedError, BadGatewayError, FileError, InvalidArgumentError, NotImplementedError, ServerFailureError, UnavailableError } from './errors.js';
import { deepzoom } from './protocols/deepzoom/index.js';
import { iiif } from './protocols/iiif/index.js';
import { runIip } from './protocols/iip/index.js';
import type { ProtocolContext } from './protocols/shared/context.js';
import type { Command } from './protocols/shared/session.js';
import { zoomify } from './protocols/zoomify/index.js';
import { createViewer } from './protocols/viewer/index.js';
import { mapUri } from './protocols/shared/uri-map.js';
import { type HeaderList, type PlainRequest, type PlainResponse, type RequestHandler } from './request.js';
import { SERVER_NAME, VERSION } from './version.js';
import { classify, labelsOf, serverKind, type RequestMetrics } from './metrics.js';
import type { AccessLog } from './access-log.js';
import type { ProtocolResponse } from './protocols/shared/responses.js';

const CORS_METHODS = 'GET, HEAD, POST, OPTIONS';
const CORS_HEADERS = 'Accept, Content-Type, X-Requested-With, If-Modified-Since';

function corsHeaders(origin: string): HeaderList {
  return [
    ['Access-Control-Allow-Origin', origin],
    ['Access-Control-Allow-Methods', CORS_METHODS],
    ['Access-Control-Allow-Headers', CORS_HEADERS],
    ['Access-Control-Max-Age', '86400'],
    // IIIF clients read the canonical and profile links of images.
    ['Access-Control-Expose-Headers', 'Link'],
  ];
}

function textResponse(status: number, message: string): PlainResponse {
  return {
    status,
    headers: [
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Cache-Control', 'no-cache'],
    ],
    body: Buffer.from(message, 'utf8'),
  };
}

/** @param viewerPath where the viewer page is, when it is on */
function bannerResponse(viewerPath: string | null): PlainResponse {
  const viewer = viewerPath === null ? '' : `<p>Or look at the images in the <a href="${viewerPath}">viewer</a>.</p>`;
  const html =
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/><title>iipsrv-ts</title></head>' +
    '<body style="font-family:sans-serif;margin:4em"><h1>iipsrv-ts</h1>' +
    `<p>IIPImage-compatible image server, version ${VERSION}.</p>` +
    '<p>Ask for an image with IIP (<code>?FIF=image.tif&amp;OBJ=IIP,1.0</code>), IIIF, DeepZoom or Zoomify.</p>' +
    viewer +
    '</body></html>';
  return {
    status: 200,
    headers: [
      ['Content-Type', 'text/html; charset=utf-8'],
      ['Cache-Control', 'no-cache'],
    ],
    body: Buffer.from(html, 'utf8'),
  };
}

/** Statuses without a body: no Content-Length, as HTTP wants. */
function hasBody(status: number): boolean {
  return status !== 204 && status !== 304 && !(status >= 100 && status < 200);
}

/**
 * IIP is the command language that carries the other protocols (as in iipsrv): `IIIF=`,
 * `DeepZoom=` and `Zoomify=` are commands of the same string, and URI_MAP turns a path into one.
 */
const HEALTH = serverKind('health');
const METRICS = serverKind('metrics');
const VIEWER = serverKind('viewer');

const PROTOCOL_COMMANDS: Readonly<Record<string, Command>> = { iiif, deepzoom, zoomify };

export function requestString(request: PlainRequest, context: ProtocolContext): string {
  return mapUri(request.path, request.scriptName, request.query, context.config.uriMap) ?? request.query;
}

/** What the worker adds to the router beyond the protocols' context. */
export interface RouterOptions {
  /** Counts every request; null = no metrics. */
  metrics?: RequestMetrics | null;
  /** The whole cluster's metrics as Prometheus text (asked of the primary); null = /metrics is an ordinary path. */
  scrape?: (() => Promise<{ contentType: string; text: string }>) | null;
  /** ACCESS_LOG's line per request; null = none. */
  accessLog?: AccessLog | null;
}

function jsonResponse(status: number, body: unknown): PlainResponse {
  return {
    status,
    headers: [
      ['Content-Type', 'application/json'],
      ['Cache-Control', 'no-cache'],
    ],
    body: Buffer.from(JSON.stringify(body), 'utf8'),
  };
}

/**
 * The health answer: 503 when the image folder cannot be read (nothing could be served), 200
 * otherwise; memcached's state is reported but never fails it (the server serves without it).
 */
async function health(context: ProtocolContext): Promise<PlainResponse> {
  const state = await context.engine.health();
  const ok = state.images.ok;
  if (!ok) context.log.error({ folder: state.images.folder, error: state.images.error }, 'health: the image folder cannot be read');
  return jsonResponse(ok ? 200 : 503, {
    status: ok ? 'ok' : 'failing',
    version: VERSION,
    // The folder's path stays in the log: a health answer may be public.
    images: state.images.ok ? 'readable' : 'unreadable',
    memcached: state.memcached === null ? 'off' : state.memcached ? 'up' : 'down',
  });
}

/** The health query of FastCGI sites: `?HEALTH` on the server's own URL, whatever the case. */
const HEALTH_QUERY = /^health$/i;

export function createRouter(context: ProtocolContext, options: RouterOptions = {}): RequestHandler {
  const { config, log } = context;
  const metrics = options.metrics ?? null;
  const scrape = options.scrape ?? null;
  const viewer = config.viewer ? createViewer(context) : null;
  const accessLog = options.accessLog ?? null;

  async function metricsResponse(): Promise<PlainResponse> {
    try {
      const { contentType, text } = await scrape!();
      return {
        status: 200,
        headers: [
          ['Content-Type', contentType],
          ['Cache-Control', 'no-cache'],
        ],
        body: Buffer.from(text, 'utf8'),
      };
    } catch (error) {
      log.error({ err: error }, 'metrics could not be gathered');
      return textResponse(503, 'Metrics could not be gathered');
    }
  }

  /** Which counters a request falls under (see metrics.ts); -1 before it is known. */
  function kindOf(request: PlainRequest, commands: string): number {
    if (request.path === config.healthPath || HEALTH_QUERY.test(request.query)) return serverKind('health');
    if (scrape && request.path === config.metricsPath) return serverKind('metrics');
    // Before the protocols: a URI_MAP of every path (`=>IIIF`) must not take the viewer's.
    if (viewer?.owns(request.path)) return VIEWER;
    if (commands === '') return serverKind('other');
    return classify(commands);
  }

  async function dispatch(request: PlainRequest, commands: string, kind: number): Promise<ProtocolResponse> {
    switch (request.method) {
      // iipsrv 1.1 ignores the method: a POST is answered from its query string like a GET.
      case 'GET':
      case 'HEAD':
      case 'POST':
        break;
      case 'OPTIONS':
        return { status: 204, headers: [['Allow', 'GET, HEAD, POST, OPTIONS']], body: Buffer.alloc(0) };
      default:
        return {
          status: 405,
          headers: [
            ['Allow', 'GET, HEAD, POST, OPTIONS'],
            ['Content-Type', 'text/plain; charset=utf-8'],
          ],
          body: Buffer.from(`Method ${request.method} is not allowed`),
        };
    }
    if (kind === HEALTH) return health(context);
    if (kind === METRICS) return metricsResponse();
    if (kind === VIEWER) return viewer!.answer(request);
    if (commands === '') return bannerResponse(viewer ? config.viewerPath : null);
    try {
      return await runIip(commands, request, context, PROTOCOL_COMMANDS);
    } catch (error) {
      if (error instanceof FileError) return textResponse(404, error.message);
      if (error instanceof InvalidArgumentError) return textResponse(400, error.message);
      if (error instanceof NotImplementedError) return textResponse(501, error.message);
      // The image store's failures: logged with the store's own reason, which clients do not see.
      const store = storeFailure(error);
      if (store) {
        log.warn(
          { query: commands, reason: (error as Error).cause instanceof Error ? ((error as Error).cause as Error).message : undefined },
          (error as Error).message,
        );
        return textResponse(store, (error as Error).message);
      }
      if (error instanceof ServerFailureError) {
        log.error({ err: error, query: commands }, 'request failed');
        return textResponse(500, error.message);
      }
      if (request.signal.aborted) return textResponse(503, 'Request aborted');
      log.error({ err: error, query: commands }, 'request failed');
      return textResponse(500, 'Internal server error');
    }
  }

  /** The status of an image store's failure, or null. */
  function storeFailure(error: unknown): number | null {
    if (error instanceof AccessDeniedError) return 403;
    if (error instanceof UnavailableError) return 503;
    if (error instanceof BadGatewayError) return 502;
    return null;
  }

  return async function handle(request: PlainRequest): Promise<PlainResponse> {
    const started = performance.now();
    let response: ProtocolResponse;
    let kind = serverKind('other');
    try {
      const commands = requestString(request, context);
      kind = kindOf(request, commands);
      response = await dispatch(request, commands, kind);
    } catch (error) {
      log.error({ err: error }, 'router failed');
      response = textResponse(500, 'Internal server error');
    }

    const headers: HeaderList = [['Server', SERVER_NAME], ...response.headers];
    // Every response, images and errors alike (iipsrv 1.1 leaves CORS off images).
    if (config.cors !== '') headers.push(...corsHeaders(config.cors));
    if (hasBody(response.status)) headers.push(['Content-Length', String(response.body.length)]);
    const finished: PlainResponse = { status: response.status, headers, body: hasBody(response.status) ? response.body : Buffer.alloc(0) };

    const elapsed = performance.now() - started;
    // What the client receives after the headers: transports send no body for HEAD.
    const sent = request.method === 'HEAD' ? 0 : finished.body.length;
    metrics?.record(kind, response.status, elapsed / 1000, sent);
    accessLog?.write({
      method: request.method,
      path: request.path,
      query: request.query,
      ...labelsOf(kind),
      status: response.status,
      bytes: sent,
      ms: Math.round(elapsed * 100) / 100,
      tier: response.cacheTier ?? 'none',
      remote: request.remoteAddress,
      agent: request.headers['user-agent'],
    });
    if (log.enabled(2)) {
      const micros = Math.round(elapsed * 1000);
      log.request(
        { method: request.method, query: request.query, path: request.path, status: response.status, bytes: response.body.length, micros },
        'request',
      );
    }
    return finished;
  };
}
