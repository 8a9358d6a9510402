/**
 * The PNM family opj_decompress writes: P5 (grey), P6 (RGB) and P7 (PAM: grey+alpha, RGBA), with
 * a `#` comment line, 8-bit samples when MAXVAL < 256, else 16-bit big-endian.
 */
import { DecodeError } from './process-pool.js';

export interface DecodedPixels {
  /** Interleaved; Uint16Array (native byte order) for samples above 8 bits. */
  data: Uint8Array | Uint16Array;
  width: number;
  height: number;
  channels: number;
}

export function parsePnm(bytes: Buffer): DecodedPixels {
  const magic = bytes.toString('latin1', 0, 2);
  let width: number;
  let height: number;
  let channels: number;
  let maxValue: number;
  let dataStart: number;
  if (magic === 'P5' || magic === 'P6') {
    // Four tokens (magic, width, height, maxval), comments skipped, then one whitespace byte.
    const tokens: string[] = [];
    let i = 0;
    while (tokens.length < 4 && i < bytes.length && i < 1024) {
      const c = bytes[i]!;
      if (c === 0x23) {
        while (i < bytes.length && bytes[i] !== 0x0a) i++;
      } else if (c <= 0x20) i++;
      else {
        const start = i;
        while (i < bytes.length && bytes[i]! > 0x20) i++;
        tokens.push(bytes.toString('latin1', start, i));
      }
    }
    if (tokens.length < 4) throw new DecodeError('the decoder wrote an incomplete PNM header');
    [width, height, maxValue] = tokens.slice(1).map(Number) as [number, number, number];
    channels = magic === 'P5' ? 1 : 3;
    dataStart = i + 1;
  } else if (magic === 'P7') {
    const end = bytes.indexOf('ENDHDR\n', 0, 'latin1');
    if (end < 0 || end > 1024) throw new DecodeError('the decoder wrote an incomplete PAM header');
    const fields = new Map<string, string>();
    for (const line of bytes.toString('latin1', 3, end).split('\n')) {
      const [key, value] = line.trim().split(/\s+/, 2);
      if (key && value && !key.startsWith('#')) fields.set(key, value);
    }
    width = Number(fields.get('WIDTH'));
    height = Number(fields.get('HEIGHT'));
    channels = Number(fields.get('DEPTH'));
    maxValue = Number(fields.get('MAXVAL'));
    dataStart = end + 'ENDHDR\n'.length;
  } else throw new DecodeError('the decoder wrote no PNM image');
  if (![width, height, channels, maxValue].every((n) => Number.isInteger(n) && n > 0) || maxValue > 65535) {
    throw new DecodeError('the decoder wrote an invalid PNM header');
  }
  const wide = maxValue > 255;
  const count = width * height * channels;
  const needed = count * (wide ? 2 : 1);
  if (bytes.length - dataStart < needed) throw new DecodeError(`the decoder wrote ${bytes.length - dataStart} of ${needed} pixel bytes`);
  if (!wide) return { data: bytes.subarray(dataStart, dataStart + needed), width, height, channels };
  const data = new Uint16Array(count);
  for (let i = 0, o = dataStart; i < count; i++, o += 2) data[i] = (bytes[o]! << 8) | bytes[o + 1]!;
  return { data, width, height, channels };
}
