/**
 * Choosing the image a request's later commands act on (IIP's FIF, and the identifier of IIIF,
 * DeepZoom and Zoomify requests). If-Modified-Since is decided here, as in iipsrv, so that it
 * applies to every protocol that names an image.
 */
import type { OpenImage } from '../../engine/engine.js';
import { decodeImageName } from '../../engine/files/image-path.js';
import { DEFAULT_VIEW } from '../../engine/files/image-sequence.js';
import { parseHttpDate } from './http-dates.js';
import type { Session } from './session.js';

/**
 * Opens the image `rawName` (URL-encoded, as it came in the request) for the session.
 * @returns the image, or null when the client's copy is current (the session then answers 304)
 * @param pageDelimiter IIIF_DELIMITER for IIIF identifiers (`image.tif;1`), or '' for none
 * @throws FileError when there is no such image (or page, or view): the whole request becomes a 404, as in iipsrv
 */
export async function selectImage(session: Session, rawName: string, pageDelimiter = ''): Promise<OpenImage | null> {
  let name = decodeImageName(rawName);
  let page: number | null = null;
  if (pageDelimiter !== '') {
    const at = name.lastIndexOf(pageDelimiter);
    if (at >= 0) {
      page = atoi(name.slice(at + pageDelimiter.length));
      name = name.slice(0, at);
    }
  }
  session.image = await session.context.engine.openImage(name);
  // A sequence opens at its 000_090 view; SDS chooses another after FIF.
  session.horizontalView = DEFAULT_VIEW.horizontal;
  session.verticalView = DEFAULT_VIEW.vertical;
  // As master iipsrv's IIIF_DELIMITER: the page of a stack, the horizontal angle of a sequence's view
  // (at the vertical 90), nothing for a single image.
  if (page !== null) await session.selectView(page, DEFAULT_VIEW.vertical);
  const image = session.image;

  // iipsrv 1.1 semantics, which are also HTTP's: not modified when the file is no newer than the
  // date the client holds. An unreadable date is ignored (1.1 compared garbage here).
  const since = parseHttpDate(session.request.headers['if-modified-since']);
  if (since !== null && image.modifiedSeconds <= since) {
    session.notModified = true;
    return null;
  }
  return image;
}

/** C's atoi, as master iipsrv reads the page after IIIF_DELIMITER: leading digits, else 0. */
function atoi(text: string): number {
  const match = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(text);
  if (!match) return 0;
  const value = Number.parseInt(match[1]!, 10);
  // Beyond an int, a page no stack has.
  return Number.isSafeInteger(value) ? value : Number.MAX_SAFE_INTEGER;
}
