/**
 * The viewer's HTML: the folder's images as links, and OpenSeadragon opening the chosen one from
 * this server's IIIF info.json. Everything the page loads comes from this server (its
 * Content-Security-Policy says so to the browser); file names are escaped, as a folder may hold
 * any name.
 */
import type { UriMapping } from '../../config.js';
import type { ImageList } from './image-list.js';

const HTML_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch]!);
}

/**
 * Where this server answers IIIF for `name`: below a URI_MAP prefix mapped to IIIF when there is
 * one (a named prefix before the catch-all), else by the query string. The identifier is encoded
 * whole, slashes of subfolders included, as IIIF asks.
 */
export function infoUrl(name: string, uriMap: readonly UriMapping[]): string {
  const identifier = encodeURIComponent(name);
  const mappings = uriMap.filter((m) => m.protocol === 'iiif');
  const mapping = mappings.find((m) => m.prefix !== '') ?? mappings[0];
  if (!mapping) return `/?IIIF=${identifier}/info.json`;
  return mapping.prefix === '' ? `/${identifier}/info.json` : `/${mapping.prefix}/${identifier}/info.json`;
}

export interface PageContent {
  /** VIEWER_PATH, ending in `/`. */
  base: string;
  /** Where OpenSeadragon's files are, ending in `/`; null when it is not installed. */
  openSeadragon: string | null;
  list: ImageList;
  /** The image asked for (`?image=`), listed or not; null for none. */
  chosen: string | null;
  uriMap: readonly UriMapping[];
}

const STYLE = `
html, body { height: 100%; margin: 0; }
body { display: flex; font: 14px/1.4 system-ui, sans-serif; background: #1d1f21; color: #ddd; }
nav { width: 18em; overflow: auto; padding: 0.5em 1em; border-right: 1px solid #444; flex: none; }
nav h1 { font-size: 1.1em; }
nav ul { list-style: none; padding: 0; margin: 0; }
nav a { color: #8cc4ff; text-decoration: none; word-break: break-all; display: block; padding: 0.15em 0; }
nav a[aria-current] { color: #fff; font-weight: bold; }
main { flex: 1; display: flex; flex-direction: column; min-width: 0; }
#viewer { flex: 1; background: #000; }
#status { margin: 0; padding: 0.4em 1em; border-top: 1px solid #444; }
.note { color: #f5a97f; }
`;

function listHtml(content: PageContent): string {
  const { list, base, chosen } = content;
  if (!list.ok) return `<p class="note">${escapeHtml(list.reason)}</p>`;
  if (list.names.length === 0) return '<p class="note">No images (TIFF, JPEG2000, JPEG, PNG …) in the image folder.</p>';
  const items = list.names.map((name) => {
    const current = name === chosen ? ' aria-current="page"' : '';
    return `<li><a href="${escapeHtml(`${base}?image=${encodeURIComponent(name)}`)}"${current}>${escapeHtml(name)}</a></li>`;
  });
  const more = list.truncated ? `<p class="note">Only the first ${list.names.length} images found are listed.</p>` : '';
  return `<ul>${items.join('')}</ul>${more}`;
}

export function viewerPage(content: PageContent): string {
  const { chosen, openSeadragon } = content;
  const viewerAttributes =
    chosen !== null && openSeadragon !== null
      ? ` data-info="${escapeHtml(infoUrl(chosen, content.uriMap))}" data-name="${escapeHtml(chosen)}" data-buttons="${escapeHtml(openSeadragon + 'images/')}"`
      : '';
  const status =
    openSeadragon === null
      ? 'OpenSeadragon is not installed (npm package openseadragon): images cannot be shown.'
      : chosen === null
        ? 'Choose an image.'
        : `Opening ${chosen} …`;
  const scripts =
    openSeadragon === null
      ? ''
      : `<script src="${escapeHtml(openSeadragon)}openseadragon.min.js"></script><script src="${escapeHtml(content.base)}viewer.js"></script>`;
  return (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/>' +
    '<meta name="viewport" content="width=device-width, initial-scale=1"/>' +
    `<title>${chosen === null ? '' : escapeHtml(chosen) + ' – '}iipsrv-ts viewer</title><style>${STYLE}</style></head>` +
    `<body><nav><h1>Images</h1>${listHtml(content)}</nav>` +
    `<main><div id="viewer"${viewerAttributes}></div><p id="status">${escapeHtml(status)}</p></main>` +
    `${scripts}</body></html>`
  );
}
