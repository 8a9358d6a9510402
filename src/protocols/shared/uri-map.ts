/**
 * URI_MAP: path-style URLs (`/iiif/image.tif/full/max/0/default.jpg`) turned into the request
 * string the protocols take (`IIIF=image.tif/full/max/0/default.jpg`).
 *
 * iipsrv only looks for the prefix right after the first `/` of REQUEST_URI and does not check the
 * boundary (`/iiifoo` matches `iiif`). Here the prefix must be a whole path segment, found either at
 * the start of the path or right after the front end's SCRIPT_NAME (Apache ScriptAlias, lighttpd
 * bin-path mounts), so every web server's way of forwarding works.
 */
import type { UriMapping } from '../../config.js';

const COMMAND_FOR_PROTOCOL = {
  iip: 'FIF',
  iiif: 'IIIF',
  deepzoom: 'DeepZoom',
  zoomify: 'Zoomify',
} as const;

function stripPrefix(path: string, prefix: string): string | null {
  if (prefix === '') return path.replace(/^\/+/, '');
  const head = `/${prefix}`;
  if (path === head) return '';
  if (path.startsWith(head + '/')) return path.slice(head.length + 1);
  return null;
}

/**
 * @param path the request path, not URL-decoded (the protocols decode their own arguments)
 * @returns the request string, or null when no mapping applies
 */
export function mapUri(path: string, scriptName: string, query: string, mappings: UriMapping[]): string | null {
  if (mappings.length === 0) return null;
  const candidates = [path];
  if (scriptName !== '' && scriptName !== '/' && path.startsWith(scriptName)) {
    candidates.push(path.slice(scriptName.length) || '/');
  }
  for (const candidate of candidates) {
    for (const { prefix, protocol } of mappings) {
      const rest = stripPrefix(candidate, prefix);
      if (rest === null) continue;
      // An empty-prefix map must not swallow plain query-string requests to the script itself.
      if (rest === '' && prefix === '') continue;
      const command = COMMAND_FOR_PROTOCOL[protocol];
      // IIP keeps its query string: `/iip/image.tif?OBJ=IIP,1.0` is FIF plus the commands.
      if (protocol === 'iip') return query === '' ? `${command}=${rest}` : `${command}=${rest}&${query}`;
      return `${command}=${rest}`;
    }
  }
  return null;
}
