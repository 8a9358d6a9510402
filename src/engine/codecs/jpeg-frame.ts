/**
 * The frame header (SOF) of a JPEG stream: the size, bands and precision a decoder will allocate
 * for, read before decoding so that a few hundred bytes claiming 30000x30000 cannot make it
 * allocate a gigabyte.
 */

export interface JpegFrame {
  width: number;
  height: number;
  components: number;
  /** Bits a sample: 8, or 12 (and 16 for lossless). */
  precision: number;
}

/** SOF0-3, 5-7, 9-11, 13-15 (0xC4 is DHT, 0xC8 reserved, 0xCC DAC). */
function isFrameMarker(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/** The frame header, or null when `bytes` end (or the scan starts) before one: not a JPEG, or cut short. */
export function jpegFrame(bytes: Uint8Array): JpegFrame | null {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) return null;
    const marker = bytes[at + 1]!;
    // Fill bytes, and the markers that stand alone (TEM, RSTn, a repeated SOI).
    if (marker === 0xff) at++;
    else if (marker === 0x01 || marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7)) at += 2;
    else if (marker === 0xd9 || marker === 0xda) return null;
    else {
      const length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
      if (isFrameMarker(marker)) {
        if (at + 10 > bytes.length) return null;
        return {
          precision: bytes[at + 4]!,
          height: (bytes[at + 5]! << 8) | bytes[at + 6]!,
          width: (bytes[at + 7]! << 8) | bytes[at + 8]!,
          components: bytes[at + 9]!,
        };
      }
      if (length < 2) return null;
      at += 2 + length;
    }
  }
  return null;
}
