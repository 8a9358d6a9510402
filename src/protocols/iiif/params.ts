/**
 * The IIIF Image API request parameters, for versions 2.1 and 3.0: the URL's
 * `{identifier}/{region}/{size}/{rotation}/{quality}.{format}` turned into pixels, an output size,
 * an angle, a colour mode and a format. Pure functions: no image is opened here.
 *
 * Errors are 400 (bad syntax, or a request the limits forbid) and 501 (a well-formed request for
 * a format or quality this server does not produce), each with a message that says which part.
 */
import { InvalidArgumentError, NotImplementedError } from '../../errors.js';
import type { ColourMode } from '../../engine/engine.js';
import type { OutputFormat } from '../../engine/encoders.js';
import type { Rect } from '../../engine/view.js';

export type IiifVersion = 2 | 3;

export interface ImageSize {
  width: number;
  height: number;
}

/** What the site allows: MAX_CVT and ALLOW_UPSCALING. */
export interface SizeLimits {
  /** Largest output side; Infinity when unlimited. */
  maxWidth: number;
  maxHeight: number;
  /** May an output be larger than its region? */
  allowUpscaling: boolean;
}

/** `1e3`, `0x10`, `12abc` and friends are not IIIF numbers. */
const DECIMAL = /^\d+(\.\d+)?$/;
const INTEGER = /^\d+$/;

function decimal(text: string, part: string): number {
  if (!DECIMAL.test(text)) throw new InvalidArgumentError(`IIIF: invalid ${part} "${text}"`);
  return Number(text);
}

function integer(text: string, part: string): number {
  if (!INTEGER.test(text)) throw new InvalidArgumentError(`IIIF: invalid ${part} "${text}"`);
  return Number(text);
}

/**
 * The region in full-resolution pixels, clipped to the image. A region with nothing inside the
 * image is a 400 (iipsrv 1.1 crashed there).
 */
export function parseRegion(text: string, image: ImageSize): Rect {
  const { width: W, height: H } = image;
  if (text === 'full') return { left: 0, top: 0, width: W, height: H };
  if (text === 'square') {
    const side = Math.min(W, H);
    return { left: Math.floor((W - side) / 2), top: Math.floor((H - side) / 2), width: side, height: side };
  }
  const percent = text.startsWith('pct:');
  const parts = (percent ? text.slice(4) : text).split(',');
  if (parts.length !== 4) throw new InvalidArgumentError(`IIIF: incorrect region format "${text}" (full, square, x,y,w,h or pct:x,y,w,h)`);
  // Pixels are integers in the specification; decimals are taken as iipsrv does (atof).
  const [x, y, w, h] = parts.map((p) => decimal(p, 'region')) as [number, number, number, number];
  if (!(w > 0 && h > 0)) throw new InvalidArgumentError(`IIIF: region "${text}" has no width or height`);
  const [left, top, width, height] = percent ? [(x * W) / 100, (y * H) / 100, (w * W) / 100, (h * H) / 100] : [x, y, w, h];
  if (left >= W || top >= H) throw new InvalidArgumentError(`IIIF: region "${text}" lies outside the image (${W}x${H})`);
  return { left, top, width: Math.min(width, W - left), height: Math.min(height, H - top) };
}

/**
 * The output size for a region, by the rules of the version: v3 upscales only with `^` (and `max`
 * never does), v2 upscales whenever asked (sizeAboveFull) if the site allows it. Sizes that round
 * to nothing become 1 px: viewers ask for `1,` of very wide images.
 */
export function parseSize(text: string, region: Rect, limits: SizeLimits, version: IiifVersion): ImageSize {
  const upscale = version === 3 && text.startsWith('^');
  const spec = upscale ? text.slice(1) : text;
  const rw = region.width;
  const rh = region.height;
  const fit = (scale: number): ImageSize => ({ width: Math.max(1, Math.round(rw * scale)), height: Math.max(1, Math.round(rh * scale)) });
  const largest = () => Math.min(limits.maxWidth / rw, limits.maxHeight / rh);

  let size: ImageSize;
  let isMax = false;
  if (spec === 'max' || (version === 2 && spec === 'full')) {
    // The region as it is, or as large as the limits allow (v3 ^max: up to them).
    const scale = upscale && limits.allowUpscaling ? largest() : Math.min(1, largest());
    size = fit(scale);
    isMax = true;
  } else if (spec.startsWith('pct:')) {
    const percent = decimal(spec.slice(4), 'size');
    if (percent <= 0) throw new InvalidArgumentError(`IIIF: invalid size "${text}"`);
    size = fit(percent / 100);
  } else {
    const confined = spec.startsWith('!');
    const pair = confined ? spec.slice(1) : spec;
    const comma = pair.indexOf(',');
    if (comma < 0) throw new InvalidArgumentError(`IIIF: invalid size "${text}": no comma found`);
    const ws = pair.slice(0, comma);
    const hs = pair.slice(comma + 1);
    if (confined) {
      const w = integer(ws, 'size');
      const h = integer(hs, 'size');
      if (w === 0 || h === 0) throw new InvalidArgumentError(`IIIF: invalid size "${text}"`);
      let scale = Math.min(w / rw, h / rh);
      // v3 `!w,h` without `^` fits inside the box but never beyond the region itself.
      if (version === 3 && !upscale) scale = Math.min(scale, 1);
      // Fitting must not overshoot the box through rounding.
      size = fit(scale);
      size = { width: Math.min(size.width, w), height: Math.min(size.height, h) };
    } else if (ws !== '' && hs !== '') {
      size = { width: integer(ws, 'size'), height: integer(hs, 'size') };
    } else if (ws !== '') {
      const w = integer(ws, 'size');
      size = { width: w, height: Math.max(1, Math.round((w * rh) / rw)) };
    } else if (hs !== '') {
      const h = integer(hs, 'size');
      size = { width: Math.max(1, Math.round((h * rw) / rh)), height: h };
    } else {
      throw new InvalidArgumentError(`IIIF: invalid size "${text}"`);
    }
    if (size.width === 0 || size.height === 0) throw new InvalidArgumentError(`IIIF: invalid size "${text}": zero pixels`);
  }

  const larger = size.width > Math.ceil(rw) || size.height > Math.ceil(rh);
  if (larger && !isMax) {
    if (version === 3 && !upscale) throw new InvalidArgumentError(`IIIF: size "${text}" is larger than the region (${Math.round(rw)}x${Math.round(rh)}): upscaling must be prefixed with ^`);
    if (!limits.allowUpscaling) throw new InvalidArgumentError(`IIIF: size "${text}" is larger than the region and this server does not upscale`);
  }
  if (size.width > limits.maxWidth || size.height > limits.maxHeight) {
    throw new InvalidArgumentError(`IIIF: size "${text}" (${size.width}x${size.height}) exceeds the largest allowed (${limits.maxWidth}x${limits.maxHeight})`);
  }
  return size;
}

export interface Rotation {
  /** Clockwise degrees, 0 <= d < 360. */
  degrees: number;
  /** Mirror left-right before rotating. */
  mirror: boolean;
}

export function parseRotation(text: string): Rotation {
  const mirror = text.startsWith('!');
  const angle = decimal(mirror ? text.slice(1) : text, 'rotation');
  if (angle > 360) throw new InvalidArgumentError(`IIIF: invalid rotation "${text}" (0 to 360, ! mirrors)`);
  return { degrees: angle % 360, mirror };
}

const QUALITIES: Record<string, ColourMode> = { default: 'colour', color: 'colour', gray: 'grey', bitonal: 'bitonal' };

const FORMATS: Record<string, OutputFormat> = { jpg: 'jpeg', png: 'png', webp: 'webp', tif: 'tiff', avif: 'avif' };
/** IIIF formats we know of but do not write. */
const UNWRITTEN_FORMATS = new Set(['gif', 'jp2', 'pdf', 'heic', 'jxl']);

export interface QualityAndFormat {
  colour: ColourMode;
  format: OutputFormat;
}

/** `default.jpg`; v2 also knows `native` (1.1's name for default) and `grey`. */
export function parseQualityFormat(text: string, version: IiifVersion): QualityAndFormat {
  const dot = text.lastIndexOf('.');
  // A missing format is taken as JPEG, as iipsrv does.
  const qualityName = dot < 0 ? text : text.slice(0, dot);
  const formatName = dot < 0 ? 'jpg' : text.slice(dot + 1);
  const colour = QUALITIES[qualityName] ?? (version === 2 && qualityName === 'native' ? 'colour' : undefined);
  if (!colour) throw new InvalidArgumentError(`IIIF: unsupported quality "${qualityName}" (default, color, gray or bitonal)`);
  const format = FORMATS[formatName];
  if (!format) {
    if (UNWRITTEN_FORMATS.has(formatName)) throw new NotImplementedError(`IIIF: format "${formatName}" is not produced by this server (jpg, png, webp, tif, avif)`);
    throw new InvalidArgumentError(`IIIF: unknown format "${formatName}" (jpg, png, webp, tif, avif)`);
  }
  return { colour, format };
}

/** The parts of an image request URL, still as text. */
export interface ImageRequestParts {
  identifier: string;
  region: string;
  size: string;
  rotation: string;
  quality: string;
}

export type IiifPath =
  | { kind: 'info'; identifier: string }
  | { kind: 'image'; parts: ImageRequestParts }
  /** No parameters at all: maybe an identifier alone (the base URI), which redirects to info.json. */
  | { kind: 'base'; identifier: string };

/**
 * Splits `identifier/…` (identifiers may hold `/`: the parameters are the last four segments).
 * A `?query` on the last segment is dropped, as iipsrv does.
 */
export function splitIiifPath(raw: string): IiifPath {
  const path = raw.replace(/\?.*$/, '').replace(/^\/+/, '');
  const segments = path.split('/');
  while (segments.length > 1 && segments[segments.length - 1] === '') segments.pop();
  const last = segments[segments.length - 1]!;
  if (last === 'info.json') {
    const identifier = segments.slice(0, -1).join('/');
    if (identifier === '') throw new InvalidArgumentError('IIIF: no identifier before info.json');
    return { kind: 'info', identifier };
  }
  if (segments.length < 5) return { kind: 'base', identifier: segments.join('/') };
  const [region, size, rotation, quality] = segments.slice(-4) as [string, string, string, string];
  return { kind: 'image', parts: { identifier: segments.slice(0, -4).join('/'), region, size, rotation, quality } };
}
