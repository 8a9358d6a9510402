/**
 * CVT: export a region (RGN) of the image at a size (WID, HEI), rotated (ROT), as one image.
 * Reads from the smallest pyramid level that has enough pixels; see engine/view.ts.
 */
import path from 'node:path';
import { IIP_ERROR, IipError, InvalidArgumentError } from '../../errors.js';
import { planRegion } from '../../engine/view.js';
import { imageResponse } from './responses.js';
import type { IipSession } from './session.js';

const FORMATS: Record<string, { format: 'jpeg'; type: string; extension: string }> = {
  jpeg: { format: 'jpeg', type: 'image/jpeg', extension: 'jpg' },
  jpg: { format: 'jpeg', type: 'image/jpeg', extension: 'jpg' },
};

export async function cvt(session: IipSession, argument: string): Promise<void> {
  const output = FORMATS[argument.toLowerCase()];
  if (!output) throw new InvalidArgumentError(`CVT: unsupported output format "${argument}" (supported: jpeg)`);
  if (!session.image) {
    session.errors.push(new IipError(IIP_ERROR.imageUnavailable, ''));
    return;
  }
  const { config, engine } = session.context;
  const plan = planRegion(session.image.source.description.levels, {
    viewport: session.viewport,
    width: session.width,
    height: session.height,
    maxSize: config.maxCvt,
    allowUpscaling: config.allowUpscaling,
  });
  const body = await engine.region(session.image, plan, {
    format: output.format,
    quality: session.effectiveQuality,
    rotation: session.rotation,
    mirror: session.mirror,
  });
  const base = path.posix.basename(session.image.name).replace(/\.[^.]*$/, '') || 'image';
  const filename = base.replace(/["\\\r\n]/g, '_');
  session.output = imageResponse(session, body, output.type, [['Content-Disposition', `inline;filename="${filename}.${output.extension}"`]]);
}
