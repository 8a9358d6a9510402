/**
 * DeepZoom and Zoomify address tiles by levels of their own and describe an image in an XML
 * document. A level the file stores is served through the engine's tile path, exactly as an IIP
 * JTL of the same tile (caches, stored-JPEG passthrough, the IIP modifiers given before); a level
 * the file lacks (DeepZoom goes down to 1x1) is made by scaling the region down, where iipsrv 1.1
 * sent the smallest stored tile as it was.
 */
import { FileError } from '../../errors.js';
import { planExactRegion, virtualTile, type LevelSize } from '../../engine/geometry.js';
import { documentResponse, imageResponse } from './responses.js';
import { selectImage } from './select-image.js';
import type { Session } from './session.js';

/** A level of a tiling scheme: its number in that scheme and its size. */
export interface VirtualLevel {
  index: number;
  width: number;
  height: number;
}

/**
 * The scheme's descriptor of the image `rawName` (DeepZoom's .dzi, Zoomify's ImageProperties.xml),
 * made from its full-resolution size and tile size: application/xml with the image's time, as
 * iipsrv sends them.
 */
export async function sendDescriptor(session: Session, rawName: string, describe: (full: LevelSize) => string): Promise<void> {
  const image = await selectImage(session, rawName);
  if (!image) return;
  session.output = documentResponse(session, describe(image.source.description.levels[0]!), 'application/xml');
}

/**
 * Tile `col`,`row` of a level of the image `rawName`, in tiles of the image's own tile size.
 * @param levelOf the scheme's level, from the full-resolution size (throws for one that does not exist)
 * @throws FileError for a tile outside the level (404, as iipsrv)
 */
export async function sendVirtualTile(
  session: Session,
  protocol: string,
  rawName: string,
  levelOf: (full: LevelSize) => VirtualLevel,
  col: number,
  row: number,
): Promise<void> {
  const image = await selectImage(session, rawName);
  if (!image) return;
  const { levels } = image.source.description;
  const full = levels[0]!;
  const level = levelOf(full);
  const tile = virtualTile(levels, level, full.tileWidth, col, row);
  if (!tile) throw new FileError(`${protocol}: no tile ${col},${row} at level ${level.index} (${level.width}x${level.height})`);
  const { engine } = session.context;
  const result =
    tile.kind === 'stored'
      ? await engine.tile(image, session.tileRequest({ level: tile.level, col: tile.col, row: tile.row }))
      : await engine.region(image, planExactRegion(levels, tile.region, tile.width, tile.height), session.regionOutput('jpeg'), session.request.signal);
  session.output = imageResponse(session, session.bytesOf(result), 'image/jpeg');
}
