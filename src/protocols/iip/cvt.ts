/**
 * CVT: export a region (RGN) of the image at a size (WID, HEI), rotated (ROT), as one image.
 * Reads from the smallest pyramid level that has enough pixels; see engine/geometry.ts.
 */
import { InvalidArgumentError } from '../../errors.js';
import { CONTENT_TYPES, type OutputFormat } from '../../engine/output/encoders.js';
import { planRegion } from '../../engine/geometry.js';
import { contentDisposition, imageResponse } from '../shared/responses.js';
import { requireImage } from './responses.js';
import type { Session } from '../shared/session.js';

/** CVT's format names, as iipsrv 1.3 takes them. */
const FORMATS: Record<string, OutputFormat> = {
  jpeg: 'jpeg',
  jpg: 'jpeg',
  png: 'png',
  webp: 'webp',
  avif: 'avif',
  tiff: 'tiff',
  tif: 'tiff',
};

export async function cvt(session: Session, argument: string): Promise<void> {
  const format = FORMATS[argument.toLowerCase()];
  // iipsrv sends a JPEG for a format it does not know; a client asking for one gets told instead.
  if (!format) throw new InvalidArgumentError(`CVT: unsupported output format "${argument}" (supported: ${Object.keys(FORMATS).join(', ')})`);
  const image = requireImage(session);
  if (!image) return;
  session.checkBits(format);
  const { config, engine } = session.context;
  const plan = planRegion(image.source.description.levels, {
    viewport: session.viewport,
    width: session.width,
    height: session.height,
    maxSize: config.maxCvt,
    allowUpscaling: config.allowUpscaling,
  });
  const output = session.regionOutput(format, { rotation: session.rotation, mirror: session.mirror });
  const body = session.bytesOf(await engine.region(image, plan, { ...output, bits: session.bits }, session.request.signal));
  session.output = imageResponse(session, body, CONTENT_TYPES[format], [contentDisposition(image.name, format)]);
}
