/**
 * The successful answers every protocol builds: images and documents about an image, with the
 * image's time and the site's caching policy. Header order follows iipsrv 1.1, so that responses
 * match it byte for byte.
 */
import type { HeaderList, PlainResponse } from '../../request.js';
import { httpDate } from './http-dates.js';
import type { Session } from './session.js';

/** A tile or region: iipsrv marks them with X-Powered-By. */
export function imageResponse(session: Session, body: Buffer, contentType: string, extra: HeaderList = []): PlainResponse {
  const headers: HeaderList = [['X-Powered-By', 'IIPImage'], ['Content-Type', contentType], ...cachingHeaders(session)];
  headers.push(...extra);
  return { status: 200, headers, body };
}

/**
 * A document about the image (SPECTRA's XML, PFL's JSON, the DeepZoom and Zoomify descriptors) or
 * IIP's tile stream: no X-Powered-By, as iipsrv sends them.
 */
export function documentResponse(session: Session, body: string | Buffer, contentType: string): PlainResponse {
  const headers: HeaderList = [['Content-Type', contentType], ...cachingHeaders(session)];
  return { status: 200, headers, body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body };
}

/** Last-Modified (when an image is selected) and the site's Cache-Control. */
function cachingHeaders(session: Session): HeaderList {
  const headers: HeaderList = [];
  if (session.image) headers.push(['Last-Modified', httpDate(session.image.modifiedSeconds)]);
  headers.push(['Cache-Control', session.context.config.cacheControl]);
  return headers;
}
