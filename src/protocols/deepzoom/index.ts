/**
 * DeepZoom (`DeepZoom=image.tif.dzi`, `DeepZoom=image.tif_files/<level>/<col>_<row>.jpg`), as
 * OpenSeadragon and older Silverlight viewers ask for it. Level N is the full size, each level
 * below halves it (rounding up, as DeepZoom does) down to 1x1.
 */
import { InvalidArgumentError } from '../../errors.js';
import { decodeImageName } from '../../engine/files/image-path.js';
import { selectImage } from '../iip/fif.js';
import type { IipSession } from '../shared/session.js';
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

export async function deepzoom(session: IipSession, argument: string): Promise<void> {
  const path = argument.replace(/\?.*$/, '');
  if (path.endsWith('.dzi')) {
    await selectImage(session, decodeImageName(path.slice(0, -4)));
    if (session.notModified) return;
    const { levels } = session.image!.source.description;
    sendDescriptor(session, dziDocument(levels[0]!.width, levels[0]!.height, levels[0]!.tileWidth));
    return;
  }
  const match = TILE_PATH.exec(path);
  if (!match) throw new InvalidArgumentError(`DeepZoom: expected image.dzi or image_files/<level>/<col>_<row>.jpg, got "${argument}"`);
  const [, name, levelText, colText, rowText] = match as unknown as [string, string, string, string, string];
  await selectImage(session, decodeImageName(name));
  if (session.notModified) return;
  const full = session.image!.source.description.levels[0]!;
  const level = Number(levelText);
  const top = topLevel(full.width, full.height);
  if (level > top) throw new InvalidArgumentError(`DeepZoom: level ${level} does not exist (0 to ${top})`);
  await sendVirtualTile(session, 'DeepZoom', { index: level, ...levelSize(full.width, full.height, level) }, full.tileWidth, Number(colText), Number(rowText));
}
