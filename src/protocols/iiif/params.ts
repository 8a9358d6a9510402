/**
 * The IIIF Image API request parameters, for versions 2.1 and 3.0: the URL's
 * `{identifier}/{region}/{size}/{rotation}/{quality}.{format}` turned into pixels, an output size,
 * an angle, a colour mode and a format. Pure functions: no image is opened here.
 *
 * Errors are 400 (bad syntax, or a request the limits forbid) and 501 (a well-formed request for
 * a format, or an upscaling, this server does not produce), each with a message that says which part.
 */
import { InvalidArgumentError, NotImplementedError } from '../../errors.js';
import type { ColourMode } from '../../engine/engine.js';
import { writesFormat, type OutputFormat } from '../../engine/output/encoders.js';
import type { Rect } from '../../engine/geometry.js';

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

/** The output size of an image request, with what the canonical URI and the tile path need. */
export interface OutputSize extends ImageSize {
  /** The side the request left to the server (`w,` and `,h`), rounded from the region's aspect. */
  derived?: 'width' | 'height';
  /** Larger than the region on some side. */
  upscaled: boolean;
  /** `max` or `full` (v3 `^max`): the largest the request form allows. */
  max: boolean;
  /** The request changed the region's aspect ratio on purpose (`w,h`). */
  distorted: boolean;
}

/** `1e3`, `0x10`, `12abc`, `-1`, `.5` and friends are not IIIF numbers. */
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
    // Centred in the longer dimension, as the specification suggests.
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
 * never does), v2 upscales whenever asked (sizeAboveFull). An upscaling the site does not allow
 * (ALLOW_UPSCALING=0) is a 501, as the v3 specification asks for `^` sizes. `max` and the confined
 * `!w,h` forms stay inside MAX_CVT; any other size beyond it is a 400. Sizes that round to nothing
 * become 1 px: viewers ask for `1,` of very wide images.
 */
export function parseSize(text: string, region: Rect, limits: SizeLimits, version: IiifVersion): OutputSize {
  const caret = version === 3 && text.startsWith('^');
  const spec = caret ? text.slice(1) : text;
  const rw = region.width;
  const rh = region.height;
  const bounded = Number.isFinite(limits.maxWidth) && Number.isFinite(limits.maxHeight);
  // The largest scale the limits allow (Infinity without limits).
  const largest = Math.min(limits.maxWidth / rw, limits.maxHeight / rh);
  const atMost = (size: ImageSize): ImageSize => ({ width: Math.min(size.width, limits.maxWidth), height: Math.min(size.height, limits.maxHeight) });
  const fit = (scale: number): ImageSize => atMost({ width: Math.max(1, Math.round(rw * scale)), height: Math.max(1, Math.round(rh * scale)) });
  // May this request form be answered larger than the region?
  const mayUpscale = version === 2 || caret;

  let size: ImageSize;
  let derived: OutputSize['derived'];
  let max = false;
  let distorted = false;
  // 3.0 renamed 2.1's `full` to `max`; iipsrv takes `full` in every version, and every 2.1
  // manifest's `full/full/0/default.jpg` asks for it, so 3.0 takes it too (as `max`).
  if (spec === 'max' || spec === 'full') {
    // The region as it is, or smaller to fit the limits; v3 `^max` as large as the limits allow
    // (without limits there is no largest: the region as it is).
    const scale = caret && limits.allowUpscaling && bounded ? largest : Math.min(1, largest);
    size = fit(scale);
    max = true;
  } else if (spec.startsWith('pct:')) {
    const percent = decimal(spec.slice(4), 'size');
    if (percent <= 0) throw new InvalidArgumentError(`IIIF: invalid size "${text}": zero pixels`);
    const scale = percent / 100;
    size = { width: Math.max(1, Math.round(rw * scale)), height: Math.max(1, Math.round(rh * scale)) };
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
      if (w === 0 || h === 0) throw new InvalidArgumentError(`IIIF: invalid size "${text}": zero pixels`);
      let scale = Math.min(w / rw, h / rh);
      // As large as possible inside the box, but never beyond the region where upscaling is not
      // asked for (v3 without `^`) or not allowed (v2 with ALLOW_UPSCALING=0: a smaller image still
      // fits the box), nor beyond the limits.
      if (!mayUpscale || (version === 2 && !limits.allowUpscaling)) scale = Math.min(scale, 1);
      scale = Math.min(scale, largest);
      // Rounding must not overshoot the box.
      const fitted = fit(scale);
      size = { width: Math.min(fitted.width, w), height: Math.min(fitted.height, h) };
    } else if (ws !== '' && hs !== '') {
      size = { width: integer(ws, 'size'), height: integer(hs, 'size') };
      distorted = true;
    } else if (ws !== '') {
      const w = integer(ws, 'size');
      size = { width: w, height: Math.max(1, Math.round((w * rh) / rw)) };
      derived = 'height';
    } else if (hs !== '') {
      const h = integer(hs, 'size');
      size = { width: Math.max(1, Math.round((h * rw) / rh)), height: h };
      derived = 'width';
    } else {
      throw new InvalidArgumentError(`IIIF: invalid size "${text}"`);
    }
    if (size.width === 0 || size.height === 0) throw new InvalidArgumentError(`IIIF: invalid size "${text}": zero pixels`);
  }

  // Regions may be fractional (pct:): a side that rounds up to the next pixel is not an upscaling,
  // nor is what that does to a derived side.
  const wider = size.width > Math.ceil(rw - 1e-9);
  const taller = size.height > Math.ceil(rh - 1e-9);
  const upscaled = derived === 'height' ? wider : derived === 'width' ? taller : wider || taller;
  if (upscaled) {
    if (!mayUpscale) {
      throw new InvalidArgumentError(`IIIF: size "${text}" is larger than the region (${Math.round(rw)}x${Math.round(rh)}): upscaling must be prefixed with ^`);
    }
    if (!limits.allowUpscaling) {
      throw new NotImplementedError(`IIIF: size "${text}" is larger than the region (${Math.round(rw)}x${Math.round(rh)}) and this server does not upscale`);
    }
  }
  if (size.width > limits.maxWidth || size.height > limits.maxHeight) {
    throw new InvalidArgumentError(`IIIF: size "${text}" (${size.width}x${size.height}) exceeds the largest allowed (${limits.maxWidth}x${limits.maxHeight})`);
  }
  // A `w,h` that keeps the aspect ratio (within rounding) is not a distortion.
  if (distorted) distorted = size.height !== Math.max(1, Math.round((size.width * rh) / rw));
  return { ...size, derived, upscaled, max, distorted };
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
/** iipsrv 1.3's IIIF_EXTENSIONS qualities, in its order: INV, CNT=st, CNT=eq, GAM=log. */
export const EXTENSION_QUALITIES = ['negative', 'stretch', 'equalization', 'log'] as const;

const KNOWN_FORMATS: Record<string, OutputFormat> = {
  jpg: 'jpeg',
  png: 'png',
  webp: 'webp',
  tif: 'tiff',
  avif: 'avif',
  gif: 'gif',
  jp2: 'jp2',
  pdf: 'pdf',
};
/** The formats this installation writes, by extension (jp2 only where its encoder was built). */
const FORMATS: Record<string, OutputFormat> = Object.fromEntries(Object.entries(KNOWN_FORMATS).filter(([, format]) => writesFormat(format)));
/** Every extension we write, in the order info.json lists them. */
export const FORMAT_EXTENSIONS: readonly string[] = Object.keys(FORMATS);
/** IIIF formats we know of but do not write. */
const UNWRITTEN_FORMATS = new Set(['heic', 'jxl', ...Object.keys(KNOWN_FORMATS).filter((extension) => !Object.hasOwn(FORMATS, extension))]);

export interface QualityAndFormat {
  colour: ColourMode;
  format: OutputFormat;
  /** The quality as the canonical URI names it (`native` is `default`). */
  quality: string;
  /** The format's extension as asked (`jpg` when none was given). */
  extension: string;
}

/**
 * `default.jpg`; v2 also knows `native` (1.1's name for default); with IIIF_EXTENSIONS the
 * EXTENSION_QUALITIES too (colour, their processing named by `quality`).
 */
export function parseQualityFormat(text: string, version: IiifVersion, extensions = false): QualityAndFormat {
  const dot = text.lastIndexOf('.');
  // A missing format is taken as JPEG, as iipsrv does.
  const qualityName = dot < 0 ? text : text.slice(0, dot);
  const extension = dot < 0 ? 'jpg' : text.slice(dot + 1);
  const native = version === 2 && qualityName === 'native';
  const extended = extensions && (EXTENSION_QUALITIES as readonly string[]).includes(qualityName);
  const colour = native || extended ? 'colour' : Object.hasOwn(QUALITIES, qualityName) ? QUALITIES[qualityName] : undefined;
  if (!colour) {
    const known = extensions ? `default, color, gray, bitonal, ${EXTENSION_QUALITIES.join(', ')}` : 'default, color, gray or bitonal';
    throw new InvalidArgumentError(`IIIF: unsupported quality "${qualityName}" (${known})`);
  }
  const format = Object.hasOwn(FORMATS, extension) ? FORMATS[extension] : undefined;
  if (!format) {
    const written = FORMAT_EXTENSIONS.join(', ');
    if (UNWRITTEN_FORMATS.has(extension)) throw new NotImplementedError(`IIIF: format "${extension}" is not produced by this server (${written})`);
    throw new InvalidArgumentError(`IIIF: unknown format "${extension}" (${written})`);
  }
  return { colour, format, quality: native ? 'default' : qualityName, extension };
}

/** The parts of an image request URL, as text: the parameters decoded, the identifier as sent. */
export interface ImageRequestParts {
  /** Still URL-encoded: it is decoded where the image is opened, as every protocol's names are. */
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
 * `%XX` escapes to their characters (UTF-8), anything else as it is: clients escape `^` and `!`
 * (`%5E5000,`); a malformed escape stays and fails the parameter's own syntax.
 */
function decodeParameter(text: string): string {
  if (!text.includes('%')) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const hex = text.charCodeAt(i) === 0x25 ? text.slice(i + 1, i + 3) : '';
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of Buffer.from(text[i]!, 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/**
 * Splits `identifier/…` (identifiers may hold `/`: the parameters are the last four segments).
 * A `?query` on the last segment is dropped, as iipsrv does. The split is made on the path as
 * sent, before each parameter is decoded: an escaped `/` (`%2F`) never separates parameters, it
 * can only make one invalid.
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
  const [region, size, rotation, quality] = segments.slice(-4).map(decodeParameter) as [string, string, string, string];
  return { kind: 'image', parts: { identifier: segments.slice(0, -4).join('/'), region, size, rotation, quality } };
}
