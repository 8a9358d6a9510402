/** FIF: choose the image the following commands act on (and answer 304 when the client's copy is current). */
import { selectImage } from '../shared/select-image.js';
import type { Session } from '../shared/session.js';

export async function fif(session: Session, argument: string): Promise<void> {
  await selectImage(session, argument);
}
