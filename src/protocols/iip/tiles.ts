/**
 * JTL (one tile), JTLS (a tile of a view of an image sequence) and TIL (a stream of tiles): resolution
 * numbering from the smallest (0) up, tiles numbered row by row from the top left, edge tiles
 * cropped to the image.
 */
import { FileError, InvalidArgumentError } from '../../errors.js';
import type { OpenImage } from '../../engine/engine.js';
import { CONTENT_TYPES, type OutputFormat } from '../../engine/output/encoders.js';
import { NO_PROCESSING } from '../../engine/pixels/processing.js';
import { levelForResolution, tileGrid } from '../../engine/geometry.js';
import { atoi } from './numbers.js';
import { documentResponse, imageResponse } from '../shared/responses.js';
import { IIP_CONTENT_TYPE, requireImage } from './responses.js';
import type { Session } from '../shared/session.js';

interface TileAddress {
  level: number;
  col: number;
  row: number;
}

/** Checks a resolution and tile number against the image; iipsrv answers 404 for both. */
export function addressTile(image: OpenImage, resolution: number, tile: number): TileAddress {
  const { levels } = image.source.description;
  if (resolution < 0 || tile < 0) throw new InvalidArgumentError('resolution and tile numbers cannot be negative');
  if (resolution >= levels.length) throw new FileError(`Asked for non-existent resolution: ${resolution}`);
  const level = levelForResolution(levels.length, resolution);
  const { across, down } = tileGrid(levels[level]!);
  if (tile >= across * down) throw new FileError(`Asked for non-existent tile: ${tile}`);
  return { level, col: tile % across, row: Math.floor(tile / across) };
}

/** The encoded tile for the session's settings (quality, rotation). */
export async function renderTile(session: Session, resolution: number, tile: number, format: OutputFormat = 'jpeg'): Promise<Buffer> {
  const image = session.image!;
  session.checkBits(format);
  const address = addressTile(image, resolution, tile);
  const { level } = address;
  let { col, row } = address;
  const rotation = Math.round(session.rotation / 90) * 90 === session.rotation ? session.rotation : 0;
  if (rotation === 180 && !session.mirror) {
    // A client that rotates the whole image by 180 asks for tile i and expects the one opposite.
    // (`!180`, a vertical flip, flips the tile asked for, as iipsrv 1.1 does.)
    const { across, down } = tileGrid(image.source.description.levels[level]!);
    const opposite = across * down - 1 - (row * across + col);
    [col, row] = [opposite % across, Math.floor(opposite / across)];
  }
  return session.bytesOf(await session.context.engine.tile(image, { ...session.tileRequest({ level, col, row }), format, rotation, mirror: session.mirror }));
}

function parsePair(argument: string): [number, number] {
  // `JTL=2` without a comma means resolution 2, tile 2 (iipsrv reads the one number twice).
  const comma = argument.indexOf(',');
  if (comma < 0) return [atoi(argument), atoi(argument)];
  return [atoi(argument.slice(0, comma)), atoi(argument.slice(comma + 1))];
}

/** JTL and iipsrv 1.3's PTL, WTL, ATL, TTL: one tile as JPEG, PNG, WebP, AVIF or TIFF. */
function tileCommand(format: OutputFormat) {
  return async (session: Session, argument: string): Promise<void> => {
    if (!requireImage(session)) return;
    const [resolution, tile] = parsePair(argument);
    const body = await renderTile(session, resolution, tile, format);
    session.output = imageResponse(session, body, CONTENT_TYPES[format]);
  };
}

export const jtl = tileCommand('jpeg');
export const ptl = tileCommand('png');
export const wtl = tileCommand('webp');
export const atl = tileCommand('avif');
export const ttl = tileCommand('tiff');

/** `JTLS=h,res,tile,v`: the sequence angles, then JTL. */
export async function jtls(session: Session, argument: string): Promise<void> {
  const parts = argument.split(',');
  if (parts.length !== 4) throw new InvalidArgumentError('JTLS needs four values: h,resolution,tile,v');
  const [h, resolution, tile, v] = parts.map(atoi) as [number, number, number, number];
  await session.selectView(h, v);
  if (!requireImage(session)) return;
  const body = await renderTile(session, resolution, tile);
  session.output = imageResponse(session, body, 'image/jpeg');
}

/** The most tiles one TIL may ask for: a stream of a whole huge level would tie a worker up. */
const MAX_TIL_TILES = 1024;

/**
 * `TIL=res,start[-end]`: every tile of the rectangle from the start tile to the end tile, column
 * by column, each framed as `Tile,<res>,<n>,0/<length+8>:` + codec + subtype + data + CRLF.
 */
export async function til(session: Session, argument: string): Promise<void> {
  const image = requireImage(session);
  if (!image) return;
  const comma = argument.indexOf(',');
  const resolution = atoi(argument);
  const range = comma < 0 ? '0' : argument.slice(comma + 1);
  const dash = range.indexOf('-', 1);
  const start = atoi(range);
  const end = dash < 0 ? start : atoi(range.slice(dash + 1));
  const first = addressTile(image, resolution, start);
  const last = addressTile(image, resolution, end);
  const [colStart, colEnd] = first.col <= last.col ? [first.col, last.col] : [last.col, first.col];
  const [rowStart, rowEnd] = first.row <= last.row ? [first.row, last.row] : [last.row, first.row];
  if ((colEnd - colStart + 1) * (rowEnd - rowStart + 1) > MAX_TIL_TILES) {
    throw new InvalidArgumentError(`TIL: at most ${MAX_TIL_TILES} tiles per request`);
  }
  const { across } = tileGrid(image.source.description.levels[first.level]!);
  const parts: Buffer[] = [];
  for (let col = colStart; col <= colEnd; col++) {
    for (let row = rowStart; row <= rowEnd; row++) {
      const number = row * across + col;
      // The stream carries the tiles unprocessed and upright, as in iipsrv 1.1 (QLT still sets the
      // quality of a re-encoded tile).
      const request = { ...session.tileRequest({ level: first.level, col, row }), processing: NO_PROCESSING };
      request.passthrough = session.context.config.codecPassthrough && session.quality === null;
      const raw = await session.context.engine.streamTile(image, first.level, col, row, request.quality);
      // Raw stream tiles are read and converted for each request, never cached.
      if (raw) session.answeredBy('computed');
      const data = raw ? raw.data : session.bytesOf(await session.context.engine.tile(image, request));
      const codec = Buffer.from([raw ? raw.codec : 2, 0, 0, 0, 0x00, 0x11, 0x00, 0x00]);
      parts.push(Buffer.from(`Tile,${resolution},${number},0/${data.length + 8}:`, 'latin1'), codec, data, Buffer.from('\r\n'));
    }
  }
  session.output = documentResponse(session, Buffer.concat(parts), IIP_CONTENT_TYPE);
}
