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
  if (value === 0) return '0';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : value < 0 ? '-inf' : 'nan';
  const exponent = Math.floor(Math.log10(Math.abs(value)));
  if (exponent < -4 || exponent >= 9) {
    const [mantissa, power] = value.toExponential(8).split('e') as [string, string];
    const trimmed = mantissa.includes('.') ? mantissa.replace(/0+$/, '').replace(/\.$/, '') : mantissa;
    const sign = power.startsWith('-') ? '-' : '+';
    const digits = power.replace(/^[+-]/, '').padStart(2, '0');
    return `${trimmed}e${sign}${digits}`;
  }
  const fixed = value.toFixed(Math.max(0, 8 - exponent));
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
const METADATA_FIELDS: Array<[string, keyof ImageMetadata]> = [
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
  'horizontal-views': (session) => [`Horizontal-views:${(session.image!.sequence ?? SINGLE_VIEW).horizontal.join(' ')}`],
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
