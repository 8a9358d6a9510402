/**
 * The IIP processing commands that shape the pixels of the next image command: MINMAX, CNT, GAM,
 * INV, CMP, CTW, COL, SHD, CNV, with iipsrv's argument forms. The pixels are worked in the engine
 * (engine/pixels/processing.ts); these only fill the session's settings.
 */
import { InvalidArgumentError } from '../../errors.js';
import { KERNEL_PRESETS, MAX_KERNEL_SIDE, kernelSide } from '../../engine/pixels/convolution.js';
import { STRETCH, type Colormap } from '../../engine/pixels/processing.js';
import { decodeImageName } from '../../engine/files/image-path.js';
import { atof, atoi } from './numbers.js';
import type { Session } from '../shared/session.js';

/** `MINMAX=channel:min,max`, the channel counted from 1 as in iipsrv 1.1. */
export function minmax(session: Session, argument: string): void {
  const colon = argument.indexOf(':');
  const comma = argument.indexOf(',', colon + 1);
  if (colon < 0 || comma < 0) throw new InvalidArgumentError(`MINMAX: expected channel:min,max, got "${argument}"`);
  const channel = atoi(argument.slice(0, colon)) - 1;
  const min = atof(argument.slice(colon + 1, comma));
  const max = atof(argument.slice(comma + 1));
  const ranges = session.processing.ranges.filter((r) => r.channel !== channel);
  session.processing = { ...session.processing, ranges: [...ranges, { channel, min, max }] };
}

/**
 * `CNT=c`: a contrast factor; `eq`/`equalization` adds histogram equalisation (the factor stays);
 * `st`/`stretch`, like the factor -1 it stands for in iipsrv, stretches the histogram's range.
 */
export function cnt(session: Session, argument: string): void {
  const value = argument.toLowerCase();
  if (value === 'eq' || value === 'equalization') session.processing = { ...session.processing, equalise: true };
  else if (value === 'st' || value === 'stretch') session.processing = { ...session.processing, contrast: STRETCH };
  else session.processing = { ...session.processing, contrast: atof(argument) };
}

/** `GAM=g`, or `GAM=log` (iipsrv 1.3's logarithm). */
export function gam(session: Session, argument: string): void {
  const value = argument.toLowerCase();
  session.processing = { ...session.processing, gamma: value === 'log' || value === 'logarithm' ? 'log' : atof(argument) };
}

export function inv(session: Session): void {
  session.processing = { ...session.processing, invert: true };
}

const COLORMAPS = new Set<Colormap>(['hot', 'cold', 'jet', 'red', 'green', 'blue']);

/** `CMP=hot|cold|jet|red|green|blue`; an unknown name is ignored, as in iipsrv. */
export function cmp(session: Session, argument: string): void {
  const name = argument.toLowerCase() as Colormap;
  if (COLORMAPS.has(name)) session.processing = { ...session.processing, colormap: name };
}

/** `CTW=[a,b,c;d,e,f;g,h,i]`: one row per output channel (iipsrv 1.3), URL-decoded first. */
export function ctw(session: Session, argument: string): void {
  const text = decodeImageName(argument);
  const open = text.indexOf('[');
  const close = text.indexOf(']', open + 1);
  if (open < 0 || close < 0) throw new InvalidArgumentError(`CTW: expected [a,b,c;d,e,f;...], got "${argument}"`);
  const rows = text
    .slice(open + 1, close)
    .split(';')
    .map((row) => row.split(',').map(atof));
  if (rows.length === 0 || rows.some((row) => row.length === 0)) throw new InvalidArgumentError(`CTW: empty matrix "${argument}"`);
  session.processing = { ...session.processing, twist: rows };
}

/** `COL=grey|gray|binary`: one output colour space, the last one given. */
export function col(session: Session, argument: string): void {
  const value = argument.toLowerCase();
  if (value === 'grey' || value === 'gray') session.processing = { ...session.processing, grey: true, binary: false };
  else if (value === 'binary') session.processing = { ...session.processing, grey: false, binary: true };
  else throw new InvalidArgumentError(`COL: expected grey or binary, got "${argument}"`);
}

/** `SHD=h,v`: hill shading lit from azimuth h and elevation v (integer degrees, as iipsrv reads them). */
export function shd(session: Session, argument: string): void {
  const comma = argument.indexOf(',');
  if (comma < 0) throw new InvalidArgumentError(`SHD: expected azimuth,elevation in degrees, got "${argument}"`);
  const shade = { azimuth: atoi(argument.slice(0, comma)), elevation: atoi(argument.slice(comma + 1)) };
  session.processing = { ...session.processing, shade };
}

/**
 * `CNV=[v1,v2,...]`, a square kernel of odd side up to 5 given row by row, or a preset name, with
 * or without brackets; URL-decoded first. iipsrv ignores a kernel of the wrong size; here it is a
 * 400 so that the client learns why nothing changed.
 */
export function cnv(session: Session, argument: string): void {
  // As iipsrv: what lies between the first `[` (or the start) and the first `]` (or the end).
  const text = decodeImageName(argument);
  const close = text.indexOf(']');
  const inner = text.slice(text.indexOf('[') + 1, close < 0 ? undefined : close).trim();
  const preset = KERNEL_PRESETS[inner.toLowerCase()];
  let kernel: number[];
  if (preset) kernel = [...preset];
  else if (/^[\s\d.,eE+-]+$/.test(inner)) kernel = inner.split(',').map(atof);
  else throw new InvalidArgumentError(`CNV: expected [v1,v2,...] or one of ${Object.keys(KERNEL_PRESETS).join(', ')}, got "${argument}"`);
  if (kernelSide(kernel.length) === 0) {
    throw new InvalidArgumentError(`CNV: a kernel needs 1, 9 or 25 values (a square of odd side up to ${MAX_KERNEL_SIDE}); got ${kernel.length}`);
  }
  session.processing = { ...session.processing, convolution: kernel };
}
