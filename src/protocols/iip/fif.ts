/**
 * FIF: choose the image the following commands act on. Also where If-Modified-Since is decided,
 * as in iipsrv, so that it applies to every protocol that names an image.
 */
import { parseHttpDate } from '../shared/http-dates.js';
import { decodeImageName } from '../../engine/files/image-path.js';
import { DEFAULT_VIEW } from '../../engine/files/image-sequence.js';
import type { IipSession } from '../shared/session.js';

/** @param name the decoded image name */
export async function selectImage(session: IipSession, name: string): Promise<void> {
  // A failure is a FileError: the whole request becomes a 404, as iipsrv answers a missing image.
  session.image = await session.context.engine.openImage(name);
  // A sequence opens at its 000_090 view; SDS chooses another after FIF.
  session.horizontalView = DEFAULT_VIEW.horizontal;
  session.verticalView = DEFAULT_VIEW.vertical;

  // iipsrv 1.1 semantics, which are also HTTP's: not modified when the file is no newer than the
  // date the client holds. An unreadable date is ignored (1.1 compared garbage here).
  const since = parseHttpDate(session.request.headers['if-modified-since']);
  if (since !== null && session.image.modifiedSeconds <= since) session.notModified = true;
}

export function fif(session: IipSession, argument: string): Promise<void> {
  return selectImage(session, decodeImageName(argument));
}
