/**
 * SPECTRA=res,tile,x,y: the value of one pixel in every band (horizontal view) of an image
 * sequence, as iipsrv's XML. A single image is a sequence of one band, at wavelength 0.
 */
import { InvalidArgumentError } from '../../errors.js';
import { SINGLE_VIEW } from '../../engine/files/image-sequence.js';
import type { ImageDescription } from '../../engine/source.js';
import { tileRect } from '../../engine/geometry.js';
import { atoiChain, formatFixed } from './numbers.js';
import { documentResponse } from '../shared/responses.js';
import { requireImage } from './responses.js';
import type { Session } from '../shared/session.js';
import { addressTile } from './tiles.js';

/**
 * iipsrv's scale: 8 and 16-bit integers as fractions of their range, wider data as stored, in
 * single precision as iipsrv keeps it (182 / 255 prints as 0.713726, not 0.713725).
 */
function reflectance(value: number, d: ImageDescription): number {
  if (d.sampleFormat !== 'float' && d.bitsPerSample <= 8) return Math.fround(value / 255);
  if (d.sampleFormat !== 'float' && d.bitsPerSample === 16) return Math.fround(value / 65535);
  return Math.fround(value);
}

export async function spectra(session: Session, argument: string): Promise<void> {
  const image = requireImage(session, argument);
  if (!image) return;
  const [resolution, tile, x, y] = atoiChain(argument, 4) as [number, number, number, number];
  const { level, col, row } = addressTile(image, resolution, tile);
  const size = image.source.description.levels[level]!;
  if (x < 0 || y < 0 || x >= size.tileWidth || y >= size.tileHeight) {
    throw new InvalidArgumentError('SPECTRA :: Error: x,y coordinates outside of tile boundaries');
  }
  const rect = tileRect(size, col, row);
  let body = '<?xml version="1.0" encoding="UTF-8"?>\n<spectra>\n';
  // A point in the part of an edge tile the image does not cover has no spectrum: iipsrv answers
  // with an empty list.
  if (x < rect.width && y < rect.height) {
    const { engine } = session.context;
    const point = { left: rect.left + x, top: rect.top + y, width: 1, height: 1 };
    for (const band of (image.sequence ?? SINGLE_VIEW).horizontal) {
      const view = await engine.openView(image, band, session.verticalView);
      const samples = await engine.samples(view, level, point);
      // The first channel: spectral bands are single-channel images.
      const value = reflectance(samples.data[0]!, view.source.description);
      body += `\t<point>\n\t\t<wavelength>${band}</wavelength>\n\t\t<reflectance>${formatFixed(value, 6)}</reflectance>\n\t</point>\n`;
    }
  }
  body += '</spectra>';
  session.output = documentResponse(session, body, 'application/xml');
}
