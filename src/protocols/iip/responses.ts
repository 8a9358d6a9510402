/**
 * The response blocks IIP clients parse: OBJ text, IIP error lines, images. Header order and body
 * framing follow iipsrv 1.1 (clients such as IIPMooViewer read the body line by line), with its
 * bugs left out: error lines are not cut at 31 characters, OBJ without FIF has no empty
 * Last-Modified, and images carry Content-Length and CORS like everything else.
 */
import type { HeaderList, IipResponse } from '../../request.js';
import type { IipError } from '../../errors.js';
import { httpDate } from '../shared/http-dates.js';
import type { IipSession } from '../shared/session.js';

export const IIP_CONTENT_TYPE = 'application/vnd.netfpx';

/** `Error/<n>:<code> <argument>` where n counts everything after the colon. */
export function errorLine(error: IipError): string {
  const text = `${error.code} ${error.argument}`;
  return `Error/${Buffer.byteLength(text, 'latin1')}:${text}`;
}

export function errorResponse(errors: IipError[]): IipResponse {
  // iipsrv's error block has no X-Powered-By (its OBJ and image answers do).
  const headers: HeaderList = [
    ['Cache-Control', 'no-cache'],
    ['Content-Type', IIP_CONTENT_TYPE],
    // iipsrv's wire format: clients that save the body get this name.
    ['Content-Disposition', 'inline;filename="IIPisAMadGameClosedToOurUnderstanding.netfpx"'],
  ];
  const body = Buffer.from(errors.map((e) => errorLine(e) + '\r\n').join(''), 'latin1');
  return { status: 400, headers, body };
}

export function objectResponse(session: IipSession): IipResponse {
  const { config } = session.context;
  const headers: HeaderList = [
    ['X-Powered-By', 'IIPImage'],
    ['Cache-Control', config.cacheControl],
  ];
  if (session.image) headers.push(['Last-Modified', httpDate(session.image.modifiedSeconds)]);
  headers.push(['Content-Type', IIP_CONTENT_TYPE]);
  // The first body line is `IIP:1.0` when asked for, otherwise empty: clients skip one line.
  const lines = [session.protocolLine ?? '', ...session.objectLines];
  const body = Buffer.from(lines.map((line) => line + '\r\n').join(''), 'latin1');
  return { status: 200, headers, body };
}

/** An image answer (tile or region) with the image's time and the site's caching policy. */
export function imageResponse(
  session: IipSession,
  body: Buffer,
  contentType: string,
  extra: HeaderList = [],
): IipResponse {
  // iipsrv marks tiles and regions with X-Powered-By but not its IIP tile stream (TIL).
  const headers: HeaderList = contentType === IIP_CONTENT_TYPE ? [] : [['X-Powered-By', 'IIPImage']];
  headers.push(['Content-Type', contentType]);
  if (session.image) headers.push(['Last-Modified', httpDate(session.image.modifiedSeconds)]);
  headers.push(['Cache-Control', session.context.config.cacheControl], ...extra);
  return { status: 200, headers, body };
}

/** A text document about the image (SPECTRA's XML, PFL's JSON), headers in iipsrv's order. */
export function documentResponse(session: IipSession, body: string, contentType: string): IipResponse {
  const headers: HeaderList = [['Content-Type', contentType]];
  if (session.image) headers.push(['Last-Modified', httpDate(session.image.modifiedSeconds)]);
  headers.push(['Cache-Control', session.context.config.cacheControl]);
  return { status: 200, headers, body: Buffer.from(body, 'utf8') };
}
