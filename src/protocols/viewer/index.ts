/**
 * The viewer page (VIEWER=1, at VIEWER_PATH): a list of the folder's images and OpenSeadragon
 * showing the chosen one over this server's IIIF. Below VIEWER_PATH: the page itself, its script
 * (`viewer.js`) and OpenSeadragon's files (`openseadragon/<version>/...`); nothing else.
 */
import type { HeaderList, PlainRequest, PlainResponse } from '../../request.js';
import type { ProtocolContext } from '../shared/context.js';
import { findOpenSeadragon, OpenSeadragonAssets } from './assets.js';
import { BROWSER_SCRIPT } from './browser-script.js';
import { LIST_LIMITS, listImages, storedImages, type ImageList } from './image-list.js';
import { viewerPage } from './page.js';

export interface Viewer {
  /** Is this request path the viewer's? */
  owns(path: string): boolean;
  answer(request: PlainRequest): Promise<PlainResponse>;
}

/** A year: asset URLs carry the package's version, so a file at one never changes. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

function response(status: number, contentType: string, body: string | Buffer, headers: HeaderList = []): PlainResponse {
  return {
    status,
    headers: [['Content-Type', contentType], ['X-Content-Type-Options', 'nosniff'], ...headers],
    body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body,
  };
}

function notFound(path: string): PlainResponse {
  return response(404, 'text/plain; charset=utf-8', `The viewer has no ${path}`, [['Cache-Control', 'no-cache']]);
}

/**
 * Scripts and everything fetched from this server only; BASE_URL's site too when it is set, since
 * info.json then names tiles there.
 */
function securityPolicy(baseUrl: string): string {
  let sources = "'self'";
  try {
    if (baseUrl !== '') sources += ` ${new URL(baseUrl).origin}`;
  } catch {
    // A BASE_URL that is no URL names no site.
  }
  return [
    "default-src 'none'",
    "script-src 'self'",
    // OpenSeadragon sets style attributes on the elements it makes.
    "style-src 'self' 'unsafe-inline'",
    `img-src ${sources} data: blob:`,
    `connect-src ${sources}`,
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
}

export function createViewer(context: ProtocolContext): Viewer {
  const { config, log } = context;
  const base = config.viewerPath;
  const bare = base.slice(0, -1);
  let assets: OpenSeadragonAssets | null | undefined;

  /** Looked for once, on the first request; a missing package leaves the list working. */
  function openSeadragon(): OpenSeadragonAssets | null {
    if (assets === undefined) {
      try {
        assets = new OpenSeadragonAssets(findOpenSeadragon());
      } catch (error) {
        log.error({ err: error }, 'viewer: OpenSeadragon (npm package openseadragon) cannot be found');
        assets = null;
      }
    }
    return assets;
  }

  /** The folder's images, walked on disk; an object store's, as it lists them. */
  async function imageList(): Promise<ImageList> {
    if (!config.remote) {
      return listImages({ prefix: config.filesystemPrefix, suffix: config.filesystemSuffix, confineSymlinks: config.filesystemConfineSymlinks });
    }
    try {
      const keys = await context.engine.storedNames(LIST_LIMITS.maxEntries);
      return storedImages(keys ?? [], config.filesystemSuffix);
    } catch (error) {
      return { ok: false, reason: `The image store (FILESYSTEM_PREFIX) cannot be listed: ${(error as Error).message}.` };
    }
  }

  async function page(request: PlainRequest): Promise<PlainResponse> {
    const list = await imageList();
    if (!list.ok) log.error({ folder: config.filesystemPrefix, reason: list.reason }, 'viewer: the image folder cannot be listed');
    const chosen = new URLSearchParams(request.query).get('image') || null;
    const osd = openSeadragon();
    const html = viewerPage({ base, openSeadragon: osd ? `${base}openseadragon/${osd.version}/` : null, list, chosen, uriMap: config.uriMap });
    return response(200, 'text/html; charset=utf-8', html, [
      ['Cache-Control', 'no-cache'],
      ['Content-Security-Policy', securityPolicy(config.baseUrl)],
      ['Referrer-Policy', 'same-origin'],
    ]);
  }

  async function asset(path: string, rest: string): Promise<PlainResponse> {
    const osd = openSeadragon();
    const slash = rest.indexOf('/');
    if (!osd || slash < 0 || rest.slice(0, slash) !== osd.version) return notFound(path);
    const found = await osd.get(rest.slice(slash + 1));
    return found ? response(200, found.contentType, found.body, [['Cache-Control', IMMUTABLE]]) : notFound(path);
  }

  return {
    owns: (path) => path === bare || path.startsWith(base),
    async answer(request) {
      const path = request.path;
      if (path === bare) return response(301, 'text/plain; charset=utf-8', `The viewer is at ${base}`, [['Location', base]]);
      const rest = path.slice(base.length);
      if (rest === '') return page(request);
      if (rest === 'viewer.js') return response(200, 'text/javascript; charset=utf-8', BROWSER_SCRIPT, [['Cache-Control', 'no-cache']]);
      if (rest.startsWith('openseadragon/')) return asset(path, rest.slice('openseadragon/'.length));
      return notFound(path);
    },
  };
}
