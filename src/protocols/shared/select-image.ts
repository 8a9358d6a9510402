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
 * @throws FileError when there is no such image: the whole request becomes a 404, as in iipsrv
 */
export async function selectImage(session: Session, rawName: string): Promise<OpenImage | null> {
  const image = await session.context.engine.openImage(decodeImageName(rawName));
  session.image = image;
  // A sequence opens at its 000_090 view; SDS chooses another after FIF.
  session.horizontalView = DEFAULT_VIEW.horizontal;
  session.verticalView = DEFAULT_VIEW.vertical;

  // iipsrv 1.1 semantics, which are also HTTP's: not modified when the file is no newer than the
  // date the client holds. An unreadable date is ignored (1.1 compared garbage here).
  const since = parseHttpDate(session.request.headers['if-modified-since']);
  if (since !== null && image.modifiedSeconds <= since) {
    session.notModified = true;
    return null;
  }
  return image;
}
