/**
 * DeepZoom and Zoomify address tiles by levels of their own. A level the file stores is served
 * through the engine's tile path, exactly as an IIP JTL of the same tile (caches, stored-JPEG
 * passthrough, the IIP modifiers given before); a level the file lacks (DeepZoom goes down to
 * 1x1) is made by scaling the region down, where iipsrv 1.1 sent the smallest stored tile as it was.
 */
import { FileError } from '../../errors.js';
import { planExactRegion, virtualTile } from '../../engine/geometry.js';
import { httpDate } from './http-dates.js';
import { imageResponse } from '../iip/responses.js';
import type { IipSession } from './session.js';

export async function sendVirtualTile(
  session: IipSession,
  protocol: string,
  level: { index: number; width: number; height: number },
  tileSize: number,
  col: number,
  row: number,
): Promise<void> {
  const image = session.image!;
  const { levels } = image.source.description;
  const tile = virtualTile(levels, level, tileSize, col, row);
  if (!tile) throw new FileError(`${protocol}: no tile ${col},${row} at level ${level.index} (${level.width}x${level.height})`);
  const { engine } = session.context;
  const body =
    tile.kind === 'stored'
      ? await engine.tile(image, session.tileRequest({ level: tile.level, col: tile.col, row: tile.row }))
      : await engine.region(image, planExactRegion(levels, tile.region, tile.width, tile.height), {
          format: 'jpeg',
          quality: session.effectiveQuality,
          rotation: 0,
          mirror: false,
          processing: session.processing,
          layers: session.layers,
        });
  session.output = imageResponse(session, body, 'image/jpeg');
}

/** The XML descriptors: application/xml with the image's time, as iipsrv sends them. */
export function sendDescriptor(session: IipSession, xml: string): void {
  const { config } = session.context;
  const headers: Array<[string, string]> = [['Content-Type', 'application/xml']];
  if (session.image) headers.push(['Last-Modified', httpDate(session.image.modifiedSeconds)]);
  headers.push(['Cache-Control', config.cacheControl]);
  session.output = { status: 200, headers, body: Buffer.from(xml, 'utf8') };
}
