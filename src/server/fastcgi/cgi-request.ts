/**
 * From the CGI variables a web server sends as FastCGI PARAMS to the transport-neutral
 * PlainRequest. Only the variables the protocols use are read; the rest are skipped without
 * building anything.
 */
import type { PlainRequest } from '../../request.js';
import { forEachNameValuePair } from './records.js';

/** `HTTP_IF_MODIFIED_SINCE` -> `if-modified-since`: the names the HTTP listener produces too. */
function headerName(param: string): string {
  return param.slice(5).toLowerCase().replaceAll('_', '-');
}

function isOn(value: string): boolean {
  const lower = value.toLowerCase();
  return lower === 'on' || lower === '1';
}

/**
 * `params` is the complete, reassembled PARAMS stream. `socketAddress` stands in for a missing
 * REMOTE_ADDR (a front end that does not send it still deserves an address in the logs); it is
 * asked only then, since getpeername() costs a system call per connection.
 */
export function requestFromParams(params: Buffer, signal: () => AbortSignal, socketAddress: () => string): PlainRequest {
  let method = 'GET';
  let query = '';
  let requestUri = '';
  let scriptName = '';
  let pathInfo = '';
  let https = false;
  let iiifId = '';
  let remoteAddress: string | undefined;
  let contentType = '';
  let contentLength = '';
  const headers: Record<string, string> = {};

  forEachNameValuePair(params, (name, value) => {
    if (name.startsWith('HTTP_')) {
      if (name.length === 5) return;
      const key = headerName(name);
      // Older nginx sends a repeated header as repeated params; join them as HTTP does.
      headers[key] = Object.hasOwn(headers, key) ? `${headers[key]}, ${value}` : value;
      return;
    }
    switch (name) {
      case 'REQUEST_METHOD':
        if (value !== '') method = value.toUpperCase();
        break;
      case 'QUERY_STRING':
        query = value;
        break;
      case 'REQUEST_URI':
        requestUri = value;
        break;
      case 'SCRIPT_NAME':
        scriptName = value;
        break;
      case 'PATH_INFO':
        pathInfo = value;
        break;
      case 'HTTPS':
        https = isOn(value);
        break;
      case 'IIIF_ID':
        iiifId = value;
        break;
      case 'REMOTE_ADDR':
        remoteAddress = value;
        break;
      case 'CONTENT_TYPE':
        contentType = value;
        break;
      case 'CONTENT_LENGTH':
        contentLength = value;
        break;
    }
  });

  // nginx always sends CONTENT_TYPE and CONTENT_LENGTH, empty for a GET: no header then.
  if (contentType !== '') headers['content-type'] = contentType;
  if (contentLength !== '') headers['content-length'] = contentLength;

  let path: string;
  if (requestUri !== '') {
    const question = requestUri.indexOf('?');
    path = question < 0 ? requestUri : requestUri.slice(0, question);
  } else path = scriptName + pathInfo;

  return {
    method,
    query,
    path,
    headers,
    scriptName,
    ...(iiifId !== '' && { iiifId }),
    https,
    remoteAddress: remoteAddress ?? socketAddress(),
    // An AbortController per request costs more than most requests' work here: made on demand.
    get signal() {
      return signal();
    },
  };
}
