/**
 * The IIP processing commands that shape the pixels of the next image command: MINMAX, CNT, GAM,
 * INV, CMP, CTW, with iipsrv's argument forms. The pixels are worked in the engine
 * (engine/processing.ts); these only fill the session's settings.
 */
import { InvalidArgumentError, NotImplementedError } from '../../errors.js';
import type { Colormap } from '../../engine/processing.js';
import { decodeImageName } from '../../engine/image-path.js';
import { atof, atoi } from './numbers.js';
import type { IipSession } from './session.js';

/** `MINMAX=channel:min,max`, the channel counted from 1 as in iipsrv 1.1. */
export function minmax(session: IipSession, argument: string): void {
  const colon = argument.indexOf(':');
  const comma = argument.indexOf(',', colon + 1);
  if (colon < 0 || comma < 0) throw new InvalidArgumentError(`MINMAX: expected channel:min,max, got "${argument}"`);
  const channel = atoi(argument.slice(0, colon)) - 1;
  const min = atof(argument.slice(colon + 1, comma));
  const max = atof(argument.slice(comma + 1));
  const ranges = session.processing.ranges.filter((r) => r.channel !== channel);
  session.processing = { ...session.processing, ranges: [...ranges, { channel, min, max }] };
}

/** `CNT=c`: contrast factor; equalisation and stretch come with the histogram. */
export function cnt(session: IipSession, argument: string): void {
  const value = argument.toLowerCase();
  if (['eq', 'equalization', 'st', 'stretch', '-1'].includes(value)) throw new NotImplementedError(`CNT=${argument}: histogram equalisation and stretch are not supported yet`);
  session.processing = { ...session.processing, contrast: atof(argument) };
}

/** `GAM=g`, or `GAM=log` (iipsrv 1.3's logarithm). */
export function gam(session: IipSession, argument: string): void {
  const value = argument.toLowerCase();
  session.processing = { ...session.processing, gamma: value === 'log' || value === 'logarithm' ? 'log' : atof(argument) };
}

export function inv(session: IipSession): void {
  session.processing = { ...session.processing, invert: true };
}

const COLORMAPS = new Set<Colormap>(['hot', 'cold', 'jet', 'red', 'green', 'blue']);

/** `CMP=hot|cold|jet|red|green|blue`; an unknown name is ignored, as in iipsrv. */
export function cmp(session: IipSession, argument: string): void {
  const name = argument.toLowerCase() as Colormap;
  if (COLORMAPS.has(name)) session.processing = { ...session.processing, colormap: name };
}

/** `CTW=[a,b,c;d,e,f;g,h,i]`: one row per output channel (iipsrv 1.3), URL-decoded first. */
export function ctw(session: IipSession, argument: string): void {
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

/** `COL=grey|gray`; `COL=binary` needs the image's histogram (Otsu), which is not in yet. */
export function col(session: IipSession, argument: string): void {
  const value = argument.toLowerCase();
  if (value === 'grey' || value === 'gray') session.processing = { ...session.processing, grey: true };
  else if (value === 'binary') throw new NotImplementedError('COL=binary is not supported yet');
  else throw new InvalidArgumentError(`COL: expected grey or binary, got "${argument}"`);
}
