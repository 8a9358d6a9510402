/**
 * DeepZoom (`DeepZoom=image.tif.dzi`, `DeepZoom=image.tif_files/<level>/<col>_<row>.jpg`), as
 * OpenSeadragon and older Silverlight viewers ask for it. Level N is the full size, each level
 * below halves it (rounding up, as DeepZoom does) down to 1x1.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { LevelSize } from '../../engine/geometry.js';
import type { Session } from '../shared/session.js';
import { sendDescriptor, sendVirtualTile } from '../shared/virtual-tiles.js';

/** The top DeepZoom level: the one at full size. */
export function topLevel(width: number, height: number): number {
  return Math.ceil(Math.log2(Math.max(width, height, 1)));
}

export function levelSize(width: number, height: number, level: number): { width: number; height: number } {
  const scale = 2 ** (topLevel(width, height) - level);
  return { width: Math.ceil(width / scale), height: Math.ceil(height / scale) };
}

/** The .dzi document byte for byte as iipsrv 1.1 writes it (CRLF inside, none at the end). */
export function dziDocument(width: number, height: number, tileSize: number): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n' +
    '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008"\r\n' +
    `TileSize="${tileSize}" Overlap="0" Format="jpg"><Size Width="${width}" Height="${height}"/></Image>`
  );
}

const TILE_PATH = /^(.*)_files\/(\d+)\/(\d+)_(\d+)(\.[A-Za-z0-9]+)?$/;

export async function deepzoom(session: Session, argument: string): Promise<void> {
  const path = argument.replace(/\?.*$/, '');
  if (path.endsWith('.dzi')) return sendDescriptor(session, path.slice(0, -4), (full) => dziDocument(full.width, full.height, full.tileWidth));
  const match = TILE_PATH.exec(path);
  if (!match) throw new InvalidArgumentError(`DeepZoom: expected image.dzi or image_files/<level>/<col>_<row>.jpg, got "${argument}"`);
  const [, name, levelText, colText, rowText] = match as unknown as [string, string, string, string, string];
  const level = Number(levelText);
  const levelOf = (full: LevelSize) => {
    const top = topLevel(full.width, full.height);
    if (level > top) throw new InvalidArgumentError(`DeepZoom: level ${level} does not exist (0 to ${top})`);
    return { index: level, ...levelSize(full.width, full.height, level) };
  };
  await sendVirtualTile(session, 'DeepZoom', name, levelOf, Number(colText), Number(rowText));
}
