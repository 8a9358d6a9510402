/**
 * Zoomify (`Zoomify=image.tif/ImageProperties.xml`, `Zoomify=image.tif/TileGroup<g>/<z>-<x>-<y>.jpg`).
 * Tier 0 is the first halving (rounding down, as Zoomify viewers compute) that fits in one tile;
 * the tile group is accepted whatever it says, as iipsrv does, since the tier and position name the
 * tile already.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { LevelSize } from '../../engine/geometry.js';
import type { Session } from '../shared/session.js';
import { sendDescriptor, sendVirtualTile } from '../shared/virtual-tiles.js';

/** Tier sizes, smallest first, as Zoomify viewers derive them from the full size and tile size. */
export function tiers(width: number, height: number, tileSize: number): Array<{ width: number; height: number }> {
  const sizes = [{ width, height }];
  let w = width;
  let h = height;
  while (w > tileSize || h > tileSize) {
    w = Math.floor(w / 2);
    h = Math.floor(h / 2);
    sizes.push({ width: w, height: h });
  }
  return sizes.reverse();
}

/**
 * ImageProperties.xml as iipsrv 1.1 writes it, except NUMTILES: the tiles of every tier (1.1
 * counted only the full resolution's, which confuses clients that derive the tiers from it).
 */
export function imageProperties(width: number, height: number, tileSize: number): string {
  const numTiles = tiers(width, height, tileSize).reduce((sum, t) => sum + Math.ceil(t.width / tileSize) * Math.ceil(t.height / tileSize), 0);
  return `<IMAGE_PROPERTIES WIDTH="${width}" HEIGHT="${height}" NUMTILES="${numTiles}" NUMIMAGES="1" VERSION="1.8" TILESIZE="${tileSize}" />`;
}

const PROPERTIES = '/ImageProperties.xml';
const TILE_PATH = /^(.*)\/TileGroup\d+\/(\d+)-(\d+)-(\d+)(\.[A-Za-z0-9]+)?$/;

export async function zoomify(session: Session, argument: string): Promise<void> {
  const path = argument.replace(/\?.*$/, '');
  if (path.endsWith(PROPERTIES)) {
    return sendDescriptor(session, path.slice(0, -PROPERTIES.length), (full) => imageProperties(full.width, full.height, full.tileWidth));
  }
  const match = TILE_PATH.exec(path);
  if (!match) throw new InvalidArgumentError(`Zoomify: expected image/ImageProperties.xml or image/TileGroup<n>/<z>-<x>-<y>.jpg, got "${argument}"`);
  const [, name, tierText, xText, yText] = match as unknown as [string, string, string, string, string];
  const tier = Number(tierText);
  const levelOf = (full: LevelSize) => {
    const all = tiers(full.width, full.height, full.tileWidth);
    const size = all[tier];
    if (!size) throw new InvalidArgumentError(`Zoomify: tier ${tier} does not exist (0 to ${all.length - 1})`);
    return { index: tier, ...size };
  };
  await sendVirtualTile(session, 'Zoomify', name, levelOf, Number(xText), Number(yText));
}
