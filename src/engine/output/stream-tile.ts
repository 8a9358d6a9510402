/**
 * The tiles of IIP's TIL stream as iipsrv 1.1 sends them (iipsrv-reference §6.20): samples wider
 * than 8 bits, and 8-bit data of other than 1 or 3 bands, go as stored (uncompressed,
 * little-endian, edge tiles cropped; codec 3 for 16-bit, 0 otherwise) without processing; 8-bit
 * CIELAB goes as a JPEG of its Lab bytes (the client converts, knowing the colour space from
 * OBJ=Colorspace). Everything else is the JPEG tile JTL would send.
 */
import sharp from 'sharp';
import { jpegCodec } from '../codecs/jpeg.js';
import type { ImageSource } from '../source.js';
import { tileRect } from '../geometry.js';

export interface StreamTile {
  /** TIL's compression field: 0 raw, 2 JPEG, 3 raw 16-bit. */
  codec: 0 | 2 | 3;
  data: Buffer;
}

/** Null when the tile is JTL's JPEG. */
export async function streamTile(source: ImageSource, level: number, col: number, row: number, quality: number): Promise<StreamTile | null> {
  const d = source.description;
  const eightBit = d.bitsPerSample <= 8;
  if (eightBit && (d.channels === 1 || d.channels === 3) && d.colourSpace !== 'cielab') return null;
  const samples = await source.samples(level, tileRect(d.levels[level]!, col, row));
  const { data, width, height, channels } = samples;
  // Sources return typed arrays; anything else is copied to 8 bits.
  const bytes = ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(Array.from(data));
  if (eightBit && d.colourSpace === 'cielab' && channels === 3) {
    const raw = { data: bytes, width, height, channels: 3 as const, stride: width * 3 };
    const jpeg = jpegCodec
      ? await jpegCodec.encode(raw, quality)
      : await sharp(bytes, { raw: { width, height, channels: 3 } })
          .jpeg({ quality })
          .toBuffer();
    return { codec: 2, data: jpeg };
  }
  // iipsrv 1.1 labels 8-bit multiband raw data as JPEG (2); raw is what it is.
  return { codec: d.bitsPerSample === 16 ? 3 : 0, data: bytes };
}
