/**
 * OBJ: text answers about the server and the image, one `Name:value` line each, byte for byte as
 * iipsrv writes them (viewers parse these lines). The image objects come with the engine.
 */
import { IIP_ERROR, IipError } from '../../errors.js';
import type { IipSession } from './session.js';

/** What iipsrv has always reported as its IIP server version; clients compare it, so keep it. */
const IIP_SERVER_VERSION = '3.65';

type ObjectAnswer = (session: IipSession) => void;

const OBJECTS: Record<string, ObjectAnswer> = {
  'iip,1.0': (session) => {
    session.protocolLine = 'IIP:1.0';
  },
  'iip-server': (session) => {
    session.objectLines.push(`IIP-server:${IIP_SERVER_VERSION}`);
  },
};

/** Objects that describe the image: without a FIF first they are error 1 3, as in iipsrv. */
const IMAGE_OBJECTS = new Set([
  'basic-info',
  'max-size',
  'resolution-number',
  'tile-size',
  'bits-per-channel',
  'resolutions',
  'min-max-sample-values',
  'horizontal-views',
  'vertical-views',
  'dpi',
  'summary-info',
  'copyright',
  'title',
  'subject',
  'author',
  'keywords',
  'comment',
  'last-author',
  'rev-number',
  'edit-time',
  'last-printed',
  'create-dtm',
  'last-save-dtm',
  'app-name',
]);

export function obj(session: IipSession, argument: string): void {
  const object = argument.toLowerCase();
  const answer = OBJECTS[object];
  if (answer) {
    answer(session);
    return;
  }
  if ((IMAGE_OBJECTS.has(object) || object.includes('colorspace')) && !session.image) {
    session.errors.push(new IipError(IIP_ERROR.imageUnavailable, object));
    return;
  }
  session.errors.push(new IipError(IIP_ERROR.unsupportedObject, object));
}
