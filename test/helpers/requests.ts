/** Plain request objects, as a transport would hand them to the router (no sockets). */
import type { PlainRequest } from '../../src/request.ts';

/** A GET of the classic iipsrv URL with this query string. */
export function plainRequest(query: string, extra: Partial<PlainRequest> = {}): PlainRequest {
  return {
    method: 'GET',
    query,
    path: '/fcgi-bin/iipsrv.fcgi',
    headers: {},
    scriptName: '/fcgi-bin/iipsrv.fcgi',
    https: false,
    remoteAddress: '127.0.0.1',
    signal: new AbortController().signal,
    ...extra,
  };
}
