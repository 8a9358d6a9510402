/**
 * The commands that shape what the next image command produces: QLT, BITS, WID, HEI, RGN, ROT, SDS, LYR.
 * They only change the session; nothing is read until JTL, CVT or TIL.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { TiffCompression } from '../../engine/output/encoders.js';
import { atof, atoi } from './numbers.js';
import type { Session } from '../shared/session.js';

const TIFF_CODECS: Record<string, TiffCompression> = { lzw: 'lzw', deflate: 'deflate', jpeg: 'jpeg', webp: 'webp', zstd: 'zstd' };

/**
 * `QLT=n` or `QLT=codec:n` (iipsrv 1.3): one factor for every codec (JPEG 1-100, PNG zlib level
 * 0-9, WebP and AVIF below 1 lossless, TIFF 1-100), the codec naming the TIFF compression (an
 * unknown name is none, as in iipsrv).
 */
export function qlt(session: Session, argument: string): void {
  const colon = argument.indexOf(':');
  if (colon >= 0) session.tiffCompression = TIFF_CODECS[argument.slice(0, colon).toLowerCase()] ?? 'none';
  session.quality = atoi(colon >= 0 ? argument.slice(colon + 1) : argument);
}

/** `BITS=8|16` (our extension): the sample depth of PNG and TIFF output of 16-bit images. */
export function bits(session: Session, argument: string): void {
  const value = atoi(argument);
  if (value !== 8 && value !== 16) throw new InvalidArgumentError(`BITS: expected 8 or 16, got "${argument}"`);
  session.bits = value;
}

export function wid(session: Session, argument: string): void {
  session.width = Math.max(0, atoi(argument));
}

export function hei(session: Session, argument: string): void {
  session.height = Math.max(0, atoi(argument));
}

/**
 * `RGN=x,y,w,h` in fractions of the full image. As iipsrv: ignored unless four numbers with w and h
 * above 0; clipped to the image. Unlike iipsrv 1.1 (which crashes), a region with nothing left
 * inside the image is a 400.
 */
export function rgn(session: Session, argument: string): void {
  const parts = argument.split(',');
  if (parts.length !== 4) return;
  const [x, y, w, h] = parts.map(atof) as [number, number, number, number];
  if (!(w > 0 && h > 0)) return;
  const left = Math.min(1, Math.max(0, x));
  const top = Math.min(1, Math.max(0, y));
  const width = Math.min(w, 1 - left);
  const height = Math.min(h, 1 - top);
  if (width <= 0 || height <= 0) throw new InvalidArgumentError(`RGN: the region ${argument} lies outside the image`);
  session.viewport = { x: left, y: top, width, height };
}

/** `ROT=r` clockwise degrees, `!` first mirrors left-right (`!180` is therefore a vertical flip). */
export function rot(session: Session, argument: string): void {
  let text = argument.trim();
  session.mirror = text.startsWith('!');
  if (session.mirror) text = text.slice(1);
  const degrees = atof(text);
  session.rotation = ((degrees % 360) + 360) % 360;
}

/**
 * `SDS=h,v`: the view of an image sequence (horizontal angle or band, vertical angle). A single
 * value selects horizontal view h at vertical 0, as iipsrv 1.3 does (1.1 set both angles to it,
 * which no sequence has a use for). A single image has one view whatever the angles say.
 */
export function sds(session: Session, argument: string): Promise<void> {
  const comma = argument.indexOf(',');
  return session.selectView(atoi(argument), comma < 0 ? 0 : atoi(argument.slice(comma + 1)));
}

/**
 * `LYR=n`: JPEG2000 quality layers to decode (fewer = faster, coarser); more than the file has
 * means all of them. Other images ignore it. 0 or less falls back to MAX_LAYERS.
 */
export function lyr(session: Session, argument: string): void {
  const layers = atoi(argument);
  session.layers = layers > 0 ? Math.min(layers, 65535) : undefined;
}
