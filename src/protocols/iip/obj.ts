/**
 * OBJ: text answers about the server and the image, one `Name:value` line each, byte for byte as
 * iipsrv writes them: viewers parse these lines.
 */
import { IIP_ERROR, IipError } from '../../errors.js';
import type { ImageDescription, ImageMetadata } from '../../engine/source.js';
import type { Session } from '../shared/session.js';
import { requireImage } from './responses.js';
import { SINGLE_VIEW } from '../../engine/files/image-sequence.js';

/** What iipsrv has always reported as its IIP server version; clients compare it, so keep it. */
const IIP_SERVER_VERSION = '3.65';

/** C's `%.9g`, which iipsrv uses for sample values. */
export function formatG9(value: number): string {
  return formatG(value, 9);
}

/** C's `%.<precision>g`. */
export function formatG(value: number, precision: number): string {
  if (value === 0) return '0';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : value < 0 ? '-inf' : 'nan';
  // The exponent %g decides on is that of the value rounded to the precision.
  const exponent = Number(value.toExponential(precision - 1).split('e')[1]);
  if (exponent < -4 || exponent >= precision) {
    const [mantissa, power] = value.toExponential(precision - 1).split('e') as [string, string];
    const trimmed = mantissa.includes('.') ? mantissa.replace(/0+$/, '').replace(/\.$/, '') : mantissa;
    const sign = power.startsWith('-') ? '-' : '+';
    const digits = power.replace(/^[+-]/, '').padStart(2, '0');
    return `${trimmed}e${sign}${digits}`;
  }
  const fixed = value.toFixed(Math.max(0, precision - 1 - exponent));
  return fixed.includes('.') ? fixed.replace(/0+$/, '').replace(/\.$/, '') : fixed;
}

function fullSize(session: Session, description: ImageDescription): [number, number] {
  const { width, height } = description.levels[0]!;
  // iipsrv reports the rotated size when a ROT of 90 or 270 came first.
  const quarter = ((session.rotation % 360) + 360) % 360;
  return quarter === 90 || quarter === 270 ? [height, width] : [width, height];
}

/**
 * iipsrv 1.1 writes a fixed line per colour space whatever the band count: greyscale (MinIsBlack,
 * so multiband too) one plane, CIELAB and everything else (sRGB, bilevel) three.
 */
function colourSpaceLine(description: ImageDescription): string {
  const resolutions = description.levels.length;
  const space = description.colourSpace;
  const grey = space === 'grey' || space === 'multiband';
  const [calibrated, code, planes] = space === 'cielab' ? [1, 4, 3] : grey ? [0, 1, 1] : [0, 3, 3];
  const indices = Array.from({ length: planes }, (_, i) => ` ${i}`).join('');
  return `Colorspace,0-${resolutions - 1},0:${calibrated} 0 ${code} ${planes}${indices}`;
}

/** iipsrv 1.1's metadata names, in the order summary-info lists them. */
const METADATA_FIELDS: Array<[string, Exclude<keyof ImageMetadata, 'scale'>]> = [
  ['copyright', 'copyright'],
  ['subject', 'description'],
  ['author', 'author'],
  ['create-dtm', 'date'],
  ['app-name', 'software'],
];

function metadataLine(name: string, value: string | undefined): string | null {
  if (value === undefined || value === '') return null;
  return `${name}/${Buffer.byteLength(value, 'latin1')}:${value}`;
}

type ImageObject = (session: Session, description: ImageDescription) => string[];

/**
 * Master iipsrv's OBJ=metadata (OBJ.cc): a JSON object of the image's non-empty metadata by its
 * names (TPTImage.cc's tags; COPYRIGHT as "rights" when the image has none), keys sorted as its
 * std::map holds them, one a line after a tab, `{` and `}` on lines of their own. Values are JSON
 * strings (master writes them unescaped, the same text whenever a value has no quote, backslash or
 * control character).
 */
function metadataJson(session: Session, d: ImageDescription): string[] {
  const m = d.metadata;
  const fields: Record<string, string | undefined> = {
    creator: m.author,
    date: m.date,
    description: m.description,
    make: m.make,
    model: m.model,
    pagename: m.pageName,
    rights: m.copyright || session.context.config.copyright || undefined,
    scale: m.scale !== undefined ? formatG(m.scale, 6) : undefined,
    software: m.software,
    title: m.title,
  };
  const members = Object.entries(fields)
    .filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== '')
    .map(([key, value]) => `\n\t"${key}": ${jsonString(value)}`);
  session.objectContentType = 'application/json';
  return [members.length > 0 ? `{ ${members.join(',')}\n}` : '{\n}'];
}

/**
 * Master iipsrv's OBJ=stack (OBJ.cc): the pages of a stack as a JSON array of {id, name, scale},
 * the layout its stream writes; nothing for an image that is not a stack (the request then fails
 * as one that produced nothing). The scale is a C float printed with 9 digits.
 */
function stackJson(session: Session, d: ImageDescription): string[] {
  if (!d.stack) return [];
  const items = d.stack.map(
    (page, id) => `\n\t{\n\t\t"id": ${id},\n\t\t"name": ${jsonString(page.name)},\n\t\t"scale": ${formatG(Math.fround(page.scale), 9)}\n\t}`,
  );
  session.objectContentType = 'application/json';
  return [`[ ${items.join(',')}\n]`];
}

/** A JSON string of text read as Latin-1 (the body is written so): only what JSON requires is escaped. */
function jsonString(text: string): string {
  // eslint-disable-next-line no-control-regex -- the control characters are what it escapes
  return `"${text.replace(/[\\"\u0000-\u001f]/g, (c) => (c === '\\' || c === '"' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`))}"`;
}

const IMAGE_OBJECTS: Record<string, ImageObject> = {
  'basic-info': (session, d) => [
    `IIP-server:${IIP_SERVER_VERSION}`,
    `Max-size:${fullSize(session, d).join(' ')}`,
    `Resolution-number:${d.levels.length}`,
    colourSpaceLine(d),
  ],
  'max-size': (session, d) => [`Max-size:${fullSize(session, d).join(' ')}`],
  'resolution-number': (_s, d) => [`Resolution-number:${d.levels.length}`],
  'tile-size': (_s, d) => [`Tile-size:${d.levels[0]!.tileWidth} ${d.levels[0]!.tileHeight}`],
  // The file's own depth and range, not the widened ones we decode to (as iipsrv reports them).
  'bits-per-channel': (_s, d) => [`Bits-per-channel:${(d.stored ?? d).bitsPerSample}`],
  resolutions: (_s, d) => [
    `Resolutions:${[...d.levels]
      .reverse()
      .map((l) => `${l.width} ${l.height}`)
      .join(',')}`,
  ],
  'min-max-sample-values': (_s, d) => {
    const { minValues, maxValues } = d.stored ?? d;
    const values = minValues.flatMap((min, i) => [min, maxValues[i] ?? 0]);
    return [
      `Min-Max-sample-values:${values
        .map((v) => ` ${formatG9(v)} `)
        .join('')
        .replace(/ $/, '')}`,
    ];
  },
  // Every view of a sequence, whichever is selected; a single image is its own only view.
  // Of a stack, its pages (master iipsrv: SDS selects a page by its number).
  'horizontal-views': (session, d) => [
    `Horizontal-views:${(session.image!.sequence?.horizontal ?? (d.stack ? d.stack.map((_, i) => i) : SINGLE_VIEW.horizontal)).join(' ')}`,
  ],
  'vertical-views': (session) => [`Vertical-views:${(session.image!.sequence ?? SINGLE_VIEW).vertical.join(' ')}`],
  dpi: (_s, d) => {
    if (!d.resolution || d.resolution.unit < 2) return [];
    // iipsrv 1.3 reports pixels per metre under this name; viewers were written against that.
    const perMetre = d.resolution.unit === 3 ? 100 : 100 / 2.54;
    return [`DPI:${(d.resolution.x * perMetre).toFixed(6)} ${(d.resolution.y * perMetre).toFixed(6)}`];
  },
  'summary-info': (_s, d) => METADATA_FIELDS.map(([name, field]) => metadataLine(name, d.metadata[field])).filter((l): l is string => l !== null),
  copyright: (_s, d) => [metadataLine('copyright', d.metadata.copyright)].filter((l): l is string => l !== null),
  subject: (_s, d) => [metadataLine('subject', d.metadata.description)].filter((l): l is string => l !== null),
  author: (_s, d) => [metadataLine('author', d.metadata.author)].filter((l): l is string => l !== null),
  'create-dtm': (_s, d) => [metadataLine('create-dtm', d.metadata.date)].filter((l): l is string => l !== null),
  'app-name': (_s, d) => [metadataLine('app-name', d.metadata.software)].filter((l): l is string => l !== null),
  stack: stackJson,
  metadata: metadataJson,
  // Known to iipsrv, never present in a TIFF: answered with nothing, as iipsrv does.
  title: () => [],
  keywords: () => [],
  comment: () => [],
  'last-author': () => [],
  'rev-number': () => [],
  'edit-time': () => [],
  'last-printed': () => [],
  'last-save-dtm': () => [],
};

export function obj(session: Session, argument: string): void {
  const object = argument.toLowerCase();
  if (object === 'iip,1.0') {
    session.protocolLine = 'IIP:1.0';
    return;
  }
  if (object === 'iip-server') {
    session.objectLines.push(`IIP-server:${IIP_SERVER_VERSION}`);
    return;
  }
  if (object === 'iip-opt-comm') {
    session.objectLines.push('IIP-opt-comm:CVT CNT QLT JTL JTLS WID HEI RGN MINMAX SHD CMP INV CTW');
    return;
  }
  if (object === 'iip-opt-obj') {
    session.objectLines.push('IIP-opt-obj:Horizontal-views Vertical-views Tile-size Bits-per-channel Min-Max-sample-values Resolutions');
    return;
  }
  const answer = IMAGE_OBJECTS[object] ?? (object.includes('colorspace') ? (_s: Session, d: ImageDescription) => [colourSpaceLine(d)] : undefined);
  if (!answer) {
    session.errors.push(new IipError(IIP_ERROR.unsupportedObject, object));
    return;
  }
  const image = requireImage(session, object);
  if (image) session.objectLines.push(...answer(session, image.source.description));
}
