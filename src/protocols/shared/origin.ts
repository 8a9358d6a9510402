/**
 * The scheme and host the server names in the URLs it gives out (IIIF ids, redirects, canonical
 * links) when BASE_URL does not pin them. A client chooses every header it sends, and a URL-keyed
 * cache in front stores what one client got for everyone: so a header may decide these URLs only
 * when the operator listed it in TRUSTED_HEADERS, which says that a proxy in front sets it and drops
 * what the client sent. Host is the exception, as in iipsrv: it is the request's own authority,
 * part of the very URL a cache keys on, so it cannot poison another URL's entry.
 */
import type { TrustedHeader } from '../../config.js';
import { InvalidArgumentError } from '../../errors.js';
import type { PlainRequest } from '../../request.js';

/** host[:port]: a name or IPv4 address, or an IPv6 literal; nothing that could carry a path or user. */
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::\d{1,5})?$/;

/**
 * Each proxy that passes a request on may append to an X-Forwarded header: the last value is the
 * one the proxy next to us wrote, the only one it vouches for.
 */
function lastValue(value: string | undefined): string {
  if (value === undefined) return '';
  const comma = value.lastIndexOf(',');
  return (comma < 0 ? value : value.slice(comma + 1)).trim();
}

export interface Origin {
  scheme: 'http' | 'https';
  /** host[:port] */
  host: string;
}

/**
 * @throws InvalidArgumentError when the Host (or a trusted X-Forwarded-Host) is no host[:port]:
 * a 400, as HTTP asks of an invalid Host, rather than a URL with someone's path in it
 */
export function requestOrigin(request: PlainRequest, trusted: readonly TrustedHeader[]): Origin {
  let scheme: Origin['scheme'] = request.https ? 'https' : 'http';
  if (trusted.includes('x-forwarded-proto')) {
    const proto = lastValue(request.headers['x-forwarded-proto']).toLowerCase();
    if (proto === 'https' || proto === 'http') scheme = proto;
  }
  let host = request.headers.host ?? '';
  let from = 'Host';
  if (trusted.includes('x-forwarded-host')) {
    const forwarded = lastValue(request.headers['x-forwarded-host']);
    if (forwarded !== '') [host, from] = [forwarded, 'X-Forwarded-Host'];
  }
  // HTTP/1.0 through a front end that passes no Host: as iipsrv, a URL on this machine.
  if (host === '') return { scheme, host: 'localhost' };
  if (!AUTHORITY.test(host)) throw new InvalidArgumentError(`The ${from} header is not a host name with an optional port`);
  return { scheme, host };
}

/** The request headers (besides Host) that requestOrigin's answer depends on, as Vary names them. */
export function originVary(trusted: readonly TrustedHeader[]): string[] {
  const vary: string[] = [];
  if (trusted.includes('x-forwarded-host')) vary.push('X-Forwarded-Host');
  if (trusted.includes('x-forwarded-proto')) vary.push('X-Forwarded-Proto');
  return vary;
}
