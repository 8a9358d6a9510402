/**
 * Puts an ICC profile (and XMP) into bytes an encoder already produced, without decoding them:
 * libjpeg-turbo's binding and sharp's raw input have no way to attach a profile as it is (sharp's
 * withIccProfile converts the pixels to it), and re-encoding would cost far more than splicing.
 *
 * JPEG: APP2 `ICC_PROFILE` chunks and an APP1 XMP packet after the JFIF header and comments, the
 * layout iipsrv 1.1 writes (JFIF, COM, ICC, XMP, then the tables). PNG: an iCCP chunk after IHDR.
 * WebP: an ICCP chunk in the extended (VP8X) layout. TIFF: the ICCProfile tag (34675) in a
 * rewritten first IFD. JP2: the header's colour box as an ICC one (OpenJPEG 2.5.0's encoder
 * cannot write it), and XMP in a `uuid` box after the codestream.
 */
import { crc32, deflateSync } from 'node:zlib';

const ICC_SIGNATURE = Buffer.from('ICC_PROFILE\0', 'latin1');
const XMP_SIGNATURE = Buffer.from('http://ns.adobe.com/xap/1.0/\0', 'latin1');
/** A marker segment holds 65535 bytes with its length field: 65533 of payload. */
const SEGMENT_PAYLOAD = 65533;
/** ICC bytes per APP2 chunk: the payload less the signature and the two sequence bytes. */
export const ICC_CHUNK = SEGMENT_PAYLOAD - ICC_SIGNATURE.length - 2;

export class EmbedError extends Error {}

function segment(marker: number, payload: Buffer[]): Buffer {
  const length = payload.reduce((sum, part) => sum + part.length, 2);
  const head = Buffer.from([0xff, marker, length >> 8, length & 0xff]);
  return Buffer.concat([head, ...payload]);
}

/** The APP2 segments of a profile: at most 255 chunks of 65519 bytes, numbered from 1. */
export function iccSegments(icc: Buffer): Buffer[] {
  const count = Math.ceil(icc.length / ICC_CHUNK);
  if (count > 255) throw new EmbedError(`an ICC profile of ${icc.length} bytes does not fit in JPEG markers`);
  const segments: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    segments.push(segment(0xe2, [ICC_SIGNATURE, Buffer.from([i + 1, count]), icc.subarray(i * ICC_CHUNK, (i + 1) * ICC_CHUNK)]));
  }
  return segments;
}

/** Where the JFIF/JFXX header and comments end: after SOI, APP0 and COM segments. */
function jpegHeaderEnd(jpeg: Buffer): number {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new EmbedError('not a JPEG');
  let at = 2;
  while (at + 4 <= jpeg.length && jpeg[at] === 0xff && (jpeg[at + 1] === 0xe0 || jpeg[at + 1] === 0xfe)) {
    at += 2 + jpeg.readUInt16BE(at + 2);
  }
  return at;
}

/** An image's profile is spliced into every tile: its segments are made once per profile. */
const segmentsOf = new WeakMap<Buffer, Buffer>();

function iccMarkers(icc: Buffer): Buffer {
  let markers = segmentsOf.get(icc);
  if (!markers) {
    markers = Buffer.concat(iccSegments(icc));
    segmentsOf.set(icc, markers);
  }
  return markers;
}

export function embedInJpeg(jpeg: Buffer, icc: Buffer | null, xmp: string | null): Buffer {
  if (!icc && !xmp) return jpeg;
  const parts: Buffer[] = icc ? [iccMarkers(icc)] : [];
  if (xmp) {
    const packet = Buffer.from(xmp, 'utf8');
    // An XMP packet too big for one segment would need Extended XMP; iipsrv sends none either.
    if (packet.length + XMP_SIGNATURE.length <= SEGMENT_PAYLOAD) parts.push(segment(0xe1, [XMP_SIGNATURE, packet]));
  }
  const at = jpegHeaderEnd(jpeg);
  return Buffer.concat([jpeg.subarray(0, at), ...parts, jpeg.subarray(at)]);
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4))), 0);
  return Buffer.concat([head, data, crc]);
}

export function embedInPng(png: Buffer, icc: Buffer): Buffer {
  // Signature (8) + IHDR (4 length, 4 type, 13 data, 4 CRC).
  const ihdrEnd = 8 + 25;
  if (png.length < ihdrEnd || png.toString('latin1', 12, 16) !== 'IHDR') throw new EmbedError('not a PNG');
  // Profile name, NUL, compression method 0 (zlib), the compressed profile.
  const data = Buffer.concat([Buffer.from('icc\0\0', 'latin1'), deflateSync(icc)]);
  return Buffer.concat([png.subarray(0, ihdrEnd), pngChunk('iCCP', data), png.subarray(ihdrEnd)]);
}

function riffChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.write(type, 0, 'latin1');
  head.writeUInt32LE(data.length, 4);
  return Buffer.concat(data.length % 2 ? [head, data, Buffer.alloc(1)] : [head, data]);
}

/** VP8/VP8L bitstream dimensions, for the VP8X header a simple WebP lacks. */
function webpSize(type: string, data: Buffer): { width: number; height: number; alpha: boolean } {
  if (type === 'VP8L') {
    const bits = data.readUInt32LE(1);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, alpha: ((bits >>> 28) & 1) === 1 };
  }
  // VP8 key frame: 3 bytes frame tag, 3 bytes start code, then 14-bit width and height.
  return { width: data.readUInt16LE(6) & 0x3fff, height: data.readUInt16LE(8) & 0x3fff, alpha: false };
}

interface WebpChunk {
  type: string;
  data: Buffer;
}

/**
 * A WebP in the extended layout (VP8X first, made from the bitstream's size when missing), with
 * its other chunks as `edit` orders them; VP8X's flags may be set in `header`.
 */
function rewriteWebp(webp: Buffer, edit: (chunks: { header: Buffer; rest: WebpChunk[] }) => WebpChunk[]): Buffer {
  if (webp.length < 20 || webp.toString('latin1', 0, 4) !== 'RIFF' || webp.toString('latin1', 8, 12) !== 'WEBP') throw new EmbedError('not a WebP');
  const chunks: WebpChunk[] = [];
  for (let at = 12; at + 8 <= webp.length;) {
    const type = webp.toString('latin1', at, at + 4);
    const length = webp.readUInt32LE(at + 4);
    chunks.push({ type, data: webp.subarray(at + 8, at + 8 + length) });
    at += 8 + length + (length % 2);
  }
  let header = chunks.find((c) => c.type === 'VP8X');
  if (!header) {
    const first = chunks[0];
    if (!first || (first.type !== 'VP8 ' && first.type !== 'VP8L')) throw new EmbedError('WebP without a bitstream');
    const { width, height, alpha } = webpSize(first.type, first.data);
    const data = Buffer.alloc(10);
    data[0] = alpha ? 0x10 : 0;
    data.writeUIntLE(width - 1, 4, 3);
    data.writeUIntLE(height - 1, 7, 3);
    header = { type: 'VP8X', data };
    chunks.unshift(header);
  }
  const flags = Buffer.from(header.data);
  const rest = edit({ header: flags, rest: chunks.filter((c) => c !== header) });
  const body = Buffer.concat([Buffer.from('WEBP', 'latin1'), riffChunk('VP8X', flags), ...rest.map((c) => riffChunk(c.type, c.data))]);
  const riff = Buffer.alloc(8);
  riff.write('RIFF', 0, 'latin1');
  riff.writeUInt32LE(body.length, 4);
  return Buffer.concat([riff, body]);
}

export function embedInWebp(webp: Buffer, icc: Buffer): Buffer {
  return rewriteWebp(webp, (chunks) => {
    chunks.header[0]! |= 0x20;
    // ICCP comes right after VP8X.
    return [{ type: 'ICCP', data: icc }, ...chunks.rest.filter((c) => c.type !== 'ICCP')];
  });
}

const EXIF_SIGNATURE = Buffer.from('Exif\0\0', 'latin1');

/**
 * EXIF (the TIFF-structured data, without the "Exif\0\0" of JPEG's APP1) into a JPEG, PNG or WebP,
 * as iipsrv master's compressors write it: JPEG an APP1 segment after the header, PNG an eXIf chunk
 * before the image data, WebP an EXIF chunk after the bitstream (flagged in VP8X). Data too big for
 * a JPEG segment is left out, as the image is still worth sending.
 */
export function embedExif(bytes: Buffer, format: 'jpeg' | 'png' | 'webp', exif: Buffer): Buffer {
  switch (format) {
    case 'jpeg': {
      if (exif.length + EXIF_SIGNATURE.length > SEGMENT_PAYLOAD) return bytes;
      const at = jpegHeaderEnd(bytes);
      return Buffer.concat([bytes.subarray(0, at), segment(0xe1, [EXIF_SIGNATURE, exif]), bytes.subarray(at)]);
    }
    case 'png': {
      const ihdrEnd = 8 + 25;
      if (bytes.length < ihdrEnd || bytes.toString('latin1', 12, 16) !== 'IHDR') throw new EmbedError('not a PNG');
      return Buffer.concat([bytes.subarray(0, ihdrEnd), pngChunk('eXIf', exif), bytes.subarray(ihdrEnd)]);
    }
    case 'webp':
      return rewriteWebp(bytes, (chunks) => {
        chunks.header[0]! |= 0x08;
        return [...chunks.rest.filter((c) => c.type !== 'EXIF'), { type: 'EXIF', data: exif }];
      });
  }
}

/** EXIF as libvips gives it (APP1 payload, "Exif\0\0" first) without that prefix. */
export function exifWithoutPrefix(exif: Buffer): Buffer {
  return exif.subarray(0, 6).equals(EXIF_SIGNATURE) ? exif.subarray(6) : exif;
}

const TIFF_ICC_TAG = 34675;
const TIFF_UNDEFINED = 7;

/**
 * A copy of the first IFD with the ICC tag added, written after the data with the profile, and
 * the header pointed at it: the old IFD stays as unreferenced bytes, which readers ignore.
 */
export function embedInTiff(tiff: Buffer, icc: Buffer): Buffer {
  const order = tiff.toString('latin1', 0, 2);
  if ((order !== 'II' && order !== 'MM') || tiff.length < 8) throw new EmbedError('not a TIFF');
  const le = order === 'II';
  const u16 = (at: number) => (le ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at: number) => (le ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  if (u16(2) !== 42) throw new EmbedError('BigTIFF output is not expected here');
  const ifd = u32(4);
  const count = u16(ifd);
  const entries: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const entry = tiff.subarray(ifd + 2 + i * 12, ifd + 14 + i * 12);
    const tag = le ? entry.readUInt16LE(0) : entry.readUInt16BE(0);
    if (tag !== TIFF_ICC_TAG) entries.push(entry);
  }
  const next = u32(ifd + 2 + count * 12);
  // Word-aligned profile, then the IFD.
  const iccAt = tiff.length + (tiff.length % 2);
  const ifdAt = iccAt + icc.length + (icc.length % 2);
  const entry = Buffer.alloc(12);
  if (le) {
    entry.writeUInt16LE(TIFF_ICC_TAG, 0);
    entry.writeUInt16LE(TIFF_UNDEFINED, 2);
    entry.writeUInt32LE(icc.length, 4);
    entry.writeUInt32LE(iccAt, 8);
  } else {
    entry.writeUInt16BE(TIFF_ICC_TAG, 0);
    entry.writeUInt16BE(TIFF_UNDEFINED, 2);
    entry.writeUInt32BE(icc.length, 4);
    entry.writeUInt32BE(iccAt, 8);
  }
  const tagOf = (e: Buffer) => (le ? e.readUInt16LE(0) : e.readUInt16BE(0));
  entries.push(entry);
  entries.sort((a, b) => tagOf(a) - tagOf(b));
  const table = Buffer.alloc(2 + entries.length * 12 + 4);
  if (le) table.writeUInt16LE(entries.length, 0);
  else table.writeUInt16BE(entries.length, 0);
  entries.forEach((e, i) => e.copy(table, 2 + i * 12));
  if (le) table.writeUInt32LE(next, table.length - 4);
  else table.writeUInt32BE(next, table.length - 4);
  const head = Buffer.from(tiff.subarray(0, 8));
  if (le) head.writeUInt32LE(ifdAt, 4);
  else head.writeUInt32BE(ifdAt, 4);
  const pad = (n: number) => Buffer.alloc(n % 2);
  return Buffer.concat([head, tiff.subarray(8), pad(tiff.length), icc, pad(icc.length), table]);
}

/** The UUID of a JP2 box holding an XMP packet (XMP Specification Part 3, §1.1.4). */
const JP2_XMP_UUID = Buffer.from('be7acfcb97a942e89c71999491e3afac', 'hex');

function jp2Box(type: string, ...data: Buffer[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(
    data.reduce((sum, part) => sum + part.length, 8),
    0,
  );
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, ...data]);
}

/**
 * The profile replaces the colour box of the JP2 header (method 2, an ICC profile; precedence and
 * approximation 0); nothing after the header holds an offset into the file, so only the header's
 * length changes. The XMP packet goes last, where readers skip boxes they do not know.
 */
export function embedInJp2(jp2: Buffer, icc: Buffer | null, xmp: string | null): Buffer {
  if (jp2.length < 12 || jp2.toString('latin1', 4, 8) !== 'jP  ') throw new EmbedError('not a JP2');
  let out = jp2;
  if (icc) {
    let header: { at: number; end: number } | null = null;
    for (let at = 0; at + 8 <= jp2.length;) {
      const length = jp2.readUInt32BE(at);
      // Length 0 (to the end) and 1 (64-bit) are only used for the codestream, which follows the header.
      if (length < 8) break;
      if (jp2.toString('latin1', at + 4, at + 8) === 'jp2h') {
        header = { at, end: at + length };
        break;
      }
      at += length;
    }
    if (!header) throw new EmbedError('JP2 without a header box');
    const boxes: Buffer[] = [];
    for (let at = header.at + 8; at + 8 <= header.end;) {
      const length = jp2.readUInt32BE(at);
      if (length < 8 || at + length > header.end) throw new EmbedError('a damaged JP2 header');
      const type = jp2.toString('latin1', at + 4, at + 8);
      if (type === 'colr') boxes.push(jp2Box('colr', Buffer.from([2, 0, 0]), icc));
      else boxes.push(jp2.subarray(at, at + length));
      at += length;
    }
    out = Buffer.concat([jp2.subarray(0, header.at), jp2Box('jp2h', ...boxes), jp2.subarray(header.end)]);
  }
  if (xmp) out = Buffer.concat([out, jp2Box('uuid', JP2_XMP_UUID, Buffer.from(xmp, 'utf8'))]);
  return out;
}
