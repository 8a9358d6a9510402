/**
 * PFL=res:x1,y1-x2,y2 (or res:x,y): the samples along a horizontal or vertical line (or at one
 * point) of a resolution, in every band (horizontal view) of an image sequence, as JSON. iipsrv
 * 1.3's format, whose band keys are quoted (1.1 left them bare, which is not JSON).
 */
import { InvalidArgumentError } from '../../errors.js';
import { SINGLE_VIEW } from '../../engine/files/image-sequence.js';
import { levelForResolution, type Rect } from '../../engine/geometry.js';
import { atoi, atoiChain, formatFixed } from './numbers.js';
import { documentResponse } from '../shared/responses.js';
import { requireImage } from './responses.js';
import type { Session } from '../shared/session.js';

interface Line {
  resolution: number;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

function parseLine(argument: string): Line {
  const colon = argument.indexOf(':');
  const resolution = atoi(argument);
  const points = colon < 0 ? argument : argument.slice(colon + 1);
  // The dash between the points; a leading one would be a sign.
  const dash = points.indexOf('-', 1);
  const [x1, y1] = atoiChain(dash < 0 ? points : points.slice(0, dash), 2) as [number, number];
  const [x2, y2] = dash < 0 ? [x1, y1] : (atoiChain(points.slice(dash + 1), 2) as [number, number]);
  return { resolution, x1, y1, x2, y2 };
}

/**
 * From the start point rightwards when x2 > x1 (x2 excluded), else downwards when y2 > y1, else the
 * start point alone, as iipsrv reads it.
 */
function lineRect(line: Line): Rect {
  const { x1, y1, x2, y2 } = line;
  if (x2 > x1) return { left: x1, top: y1, width: x2 - x1, height: 1 };
  if (y2 > y1) return { left: x1, top: y1, width: 1, height: y2 - y1 };
  return { left: x1, top: y1, width: 1, height: 1 };
}

export async function pfl(session: Session, argument: string): Promise<void> {
  const image = requireImage(session, argument);
  if (!image) return;
  const line = parseLine(argument);
  const { levels } = image.source.description;
  if (line.resolution < 0 || line.resolution >= levels.length) {
    throw new InvalidArgumentError(`PFL: resolution ${line.resolution} does not exist (the image has ${levels.length})`);
  }
  const level = levelForResolution(levels.length, line.resolution);
  const { width, height } = levels[level]!;
  const inside = line.x1 >= 0 && line.y1 >= 0 && line.x1 < width && line.y1 < height && line.x2 >= 0 && line.y2 >= 0 && line.x2 <= width && line.y2 <= height;
  if (!inside) {
    throw new InvalidArgumentError(`PFL: ${argument} leaves the ${width}x${height} image at resolution ${line.resolution}`);
  }
  const rect = lineRect(line);
  const { engine } = session.context;
  const bands = (image.sequence ?? SINGLE_VIEW).horizontal;
  const lists: string[] = [];
  for (const band of bands) {
    const view = await engine.openView(image, band, session.verticalView);
    const samples = await engine.samples(view, level, rect);
    const float = view.source.description.sampleFormat === 'float';
    const values: string[] = [];
    for (let i = 0; i < samples.data.length; i++) {
      const value = samples.data[i]!;
      // JSON has no NaN or infinity (iipsrv prints printf's `nan`, which no parser takes): null.
      values.push(!float ? String(value) : Number.isFinite(value) ? formatFixed(value, 9) : 'null');
    }
    lists.push(`[${values.join(',')}]`);
  }
  const body =
    bands.length === 1 ? `{\n\t"profile": ${lists[0]}\n}` : `{\n\t"profile": {\n${bands.map((band, i) => `\t\t"${band}": ${lists[i]}`).join(',\n')}\n\t}\n}`;
  session.output = documentResponse(session, body, 'application/json');
}
