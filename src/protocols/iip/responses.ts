/**
 * The response blocks IIP clients parse: OBJ text and IIP error lines (images and documents are
 * the shared responses). Header order and body framing follow iipsrv 1.1 (clients such as
 * IIPMooViewer read the body line by line), with its bugs left out: error lines are not cut at 31
 * characters, and OBJ without FIF has no empty Last-Modified.
 */
import type { HeaderList, PlainResponse } from '../../request.js';
import type { OpenImage } from '../../engine/engine.js';
import { IIP_ERROR, IipError } from '../../errors.js';
import { httpDate } from '../shared/http-dates.js';
import type { Session } from '../shared/session.js';

export const IIP_CONTENT_TYPE = 'application/vnd.netfpx';

/** `Error/<n>:<code> <argument>` where n counts everything after the colon. */
export function errorLine(error: IipError): string {
  const text = `${error.code} ${error.argument}`;
  return `Error/${Buffer.byteLength(text, 'latin1')}:${text}`;
}

export function errorResponse(errors: IipError[]): PlainResponse {
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

export function objectResponse(session: Session): PlainResponse {
  const { config } = session.context;
  const headers: HeaderList = [
    ['X-Powered-By', 'IIPImage'],
    ['Cache-Control', config.cacheControl],
  ];
  if (session.image) headers.push(['Last-Modified', httpDate(session.image.modifiedSeconds)]);
  headers.push(['Content-Type', session.objectContentType ?? IIP_CONTENT_TYPE]);
  // The first body line is `IIP:1.0` when asked for, otherwise empty: clients skip one line. A JSON
  // answer (OBJ=stack, OBJ=metadata) is the body alone, as master iipsrv sends it.
  const lead = session.protocolLine ?? (session.objectContentType ? [] : ['']);
  const lines = [...(typeof lead === 'string' ? [lead] : lead), ...session.objectLines];
  const body = Buffer.from(lines.map((line) => line + '\r\n').join(''), 'latin1');
  return { status: 200, headers, body };
}

/**
 * The image FIF chose, or null after noting IIP's "image unavailable" error for a command that
 * needs one (iipsrv goes on with the next command).
 */
export function requireImage(session: Session, argument = ''): OpenImage | null {
  if (!session.image) session.errors.push(new IipError(IIP_ERROR.imageUnavailable, argument));
  return session.image;
}
