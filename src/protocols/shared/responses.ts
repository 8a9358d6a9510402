/**
 * The successful answers every protocol builds: images and documents about an image, with the
 * image's time and the site's caching policy. Header order follows iipsrv 1.1, so that responses
 * match it byte for byte.
 */
import path from 'node:path';
import type { CacheTier } from '../../engine/engine.js';
import { EXTENSIONS, type OutputFormat } from '../../engine/output/encoders.js';
import type { HeaderList, PlainResponse } from '../../request.js';
import { httpDate } from './http-dates.js';
import type { Session } from './session.js';

/** A protocol's answer, with what the access log tells of it beyond the bytes. */
export interface ProtocolResponse extends PlainResponse {
  /** The cache tier that answered the tiles or region in it; absent when none went in. */
  cacheTier?: CacheTier;
}

/** A tile or region: iipsrv marks them with X-Powered-By. */
export function imageResponse(session: Session, body: Buffer, contentType: string, extra: HeaderList = []): PlainResponse {
  const headers: HeaderList = [['X-Powered-By', 'IIPImage'], ['Content-Type', contentType], ...cachingHeaders(session)];
  headers.push(...extra);
  return { status: 200, headers, body };
}

/**
 * The name a browser saves an exported image under, as iipsrv 1.1 sends it with CVT (and so with
 * IIIF): the image's file name without its last extension, then the format's
 * (`inline;filename="scan.jpg"` for `dir/scan.tif`).
 */
export function contentDisposition(imageName: string, format: OutputFormat): [string, string] {
  const base = path.posix.basename(imageName).replace(/\.[^.]*$/, '') || 'image';
  // A quote or a line break would end the header's value early.
  const filename = base.replace(/["\\\r\n]/g, '_');
  return ['Content-Disposition', `inline;filename="${filename}.${EXTENSIONS[format]}"`];
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
