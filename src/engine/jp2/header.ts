/**
 * The JPEG2000 header without decoding a pixel: the JP2 boxes (ihdr, colr with its ICC profile,
 * res, XMP) and the codestream's main header (SIZ, COD, QCD) up to the first tile-part. Reads a
 * JP2 file or a raw J2K codestream (FF4F FF51) alike.
 */
import type { FileHandle } from 'node:fs/promises';

/** What the header is read from (a file, an object in a store): up to `length` bytes at `position`, fewer at the end. */
export interface HeaderBytes {
  read(position: number, length: number): Promise<Buffer>;
}

/** An open file as header bytes. */
export function fileHeaderBytes(file: FileHandle): HeaderBytes {
  return {
    async read(position, length) {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await file.read(buffer, 0, length, position);
      return buffer.subarray(0, bytesRead);
    },
  };
}

export class Jp2FormatError extends Error {
  override name = 'Jp2FormatError';
}

export interface Jp2Component {
  /** Bits per sample as coded (1-38). */
  precision: number;
  signed: boolean;
  /** Subsampling on the reference grid. */
  dx: number;
  dy: number;
}

export interface Jp2Header {
  /** 'jp2' for the box container, 'j2k' for a bare codestream. */
  container: 'jp2' | 'j2k';
  /** Image area on the reference grid: x0 (XOsiz) to x1 (Xsiz), y likewise. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  components: Jp2Component[];
  /** Codestream tile size and origin. */
  tileWidth: number;
  tileHeight: number;
  tileX0: number;
  tileY0: number;
  /** Wavelet decomposition levels (COD): the codestream holds levels + 1 resolutions. */
  dwtLevels: number;
  qualityLayers: number;
  /** LRCP, RLCP, RPCL, PCRL, CPRL. */
  progression: string;
  /** 5-3 reversible wavelet (lossless capable) or 9-7 irreversible. */
  reversible: boolean;
  /** Multiple component transform (RGB coded as YCbCr) on. */
  mct: boolean;
  /**
   * Code-blocks coded with the high-throughput block coder (HTJ2K, JPEG2000 Part 15: the COD's
   * or any COC's code-block style has bit 6): OpenJPEG decodes these whole tiles only
   * (jp2/decoder.ts).
   */
  highThroughput: boolean;
  /**
   * Code-block size as exponents of 2 (COD; the smallest any COC gives a component): with the
   * precincts, what the codec's bookkeeping for a codestream tile costs (jp2/memory.ts).
   */
  codeBlock: { widthExp: number; heightExp: number };
  /** Precinct size exponents per resolution, lowest first (15 when the COD gives none). */
  precincts: Array<{ widthExp: number; heightExp: number }>;
  /** From colr: an enumerated space (16 sRGB, 17 grey, 18 sYCC ...), or null. */
  enumeratedColourSpace: number | null;
  icc: Buffer | null;
  /** Pixels per metre from the res box (capture resolution preferred), or null. */
  resolution: { x: number; y: number } | null;
  xmp: string | null;
  /** Byte offset of the codestream in the file. */
  codestreamOffset: number;
  /** Byte offset of the first tile-part (the end of the main header) in the file. */
  tilePartsOffset: number;
  /**
   * The length of every tile-part in codestream order, from the TLM markers, or null when there are
   * none (or they do not add up within the file): where each tile-part starts without reading them.
   */
  tilePartLengths: number[] | null;
}

const PROGRESSIONS = ['LRCP', 'RLCP', 'RPCL', 'PCRL', 'CPRL'];
const XMP_UUID = 'be7acfcb97a942e89c71999491e3afac';
/** A main header larger than this is not one a sane encoder writes. */
const MAX_MAIN_HEADER = 16 * 1024 * 1024;
/** Metadata boxes are read up to this size; larger ones are skipped. */
const MAX_METADATA_BOX = 4 * 1024 * 1024;

interface Box {
  type: string;
  /** Offset of the contents (after the box header). */
  start: number;
  /** Offset just past the box. */
  end: number;
}

function readAt(file: HeaderBytes, position: number, length: number): Promise<Buffer> {
  return file.read(position, length);
}

async function boxAt(file: HeaderBytes, position: number, limit: number): Promise<Box | null> {
  if (position + 8 > limit) return null;
  const head = await readAt(file, position, 16);
  if (head.length < 8) return null;
  let length = head.readUInt32BE(0);
  const type = head.toString('latin1', 4, 8);
  let start = position + 8;
  if (length === 1) {
    if (head.length < 16) throw new Jp2FormatError('truncated box header');
    length = Number(head.readBigUInt64BE(8));
    start = position + 16;
  } else if (length === 0) length = limit - position;
  const end = position + length;
  if (length < start - position || end > limit) throw new Jp2FormatError(`box '${type}' runs past the end of the file`);
  return { type, start, end };
}

/** The boxes inside a byte range (a file or a superbox's contents). */
async function* boxes(file: HeaderBytes, start: number, end: number): AsyncGenerator<Box> {
  let position = start;
  for (;;) {
    const box = await boxAt(file, position, end);
    if (!box) return;
    yield box;
    position = box.end;
  }
}

/**
 * @param size the file's length in bytes
 * @throws Jp2FormatError for anything that is not a readable JP2 / J2K header
 */
export async function readJp2Header(file: HeaderBytes, size: number): Promise<Jp2Header> {
  const magic = await readAt(file, 0, 12);
  if (magic.length >= 4 && magic.readUInt32BE(0) === 0xff4fff51) return { ...(await readCodestream(file, 0, size)), ...noBoxes(), container: 'j2k' };
  if (magic.length < 12 || magic.toString('latin1', 4, 8) !== 'jP  ') throw new Jp2FormatError('neither a JP2 file nor a J2K codestream');

  const found = noBoxes();
  let ihdr: Buffer | null = null;
  for await (const box of boxes(file, 0, size)) {
    if (box.type === 'jp2h') {
      for await (const inner of boxes(file, box.start, box.end)) {
        if (inner.type === 'ihdr') ihdr = await readAt(file, inner.start, Math.min(14, inner.end - inner.start));
        else if (inner.type === 'colr' && found.enumeratedColourSpace === null && found.icc === null) {
          const colr = await readAt(file, inner.start, Math.min(inner.end - inner.start, MAX_METADATA_BOX));
          if (colr.length >= 7 && colr[0] === 1) found.enumeratedColourSpace = colr.readUInt32BE(3);
          else if (colr.length > 3 && (colr[0] === 2 || colr[0] === 3)) found.icc = Buffer.from(colr.subarray(3));
        } else if (inner.type === 'res ') found.resolution = await readResolution(file, inner);
      }
    } else if (box.type === 'uuid' && box.end - box.start > 16 && box.end - box.start <= MAX_METADATA_BOX) {
      const contents = await readAt(file, box.start, box.end - box.start);
      if (contents.toString('hex', 0, 16) === XMP_UUID) found.xmp = contents.toString('utf8', 16);
    } else if (box.type === 'jp2c') {
      if (!ihdr || ihdr.length < 14) throw new Jp2FormatError('no image header (ihdr) before the codestream');
      const codestream = await readCodestream(file, box.start, box.end);
      const height = ihdr.readUInt32BE(0);
      const width = ihdr.readUInt32BE(4);
      if (width !== codestream.x1 - codestream.x0 || height !== codestream.y1 - codestream.y0) {
        throw new Jp2FormatError(`the image header says ${width}x${height}, the codestream ${codestream.x1 - codestream.x0}x${codestream.y1 - codestream.y0}`);
      }
      return { ...codestream, ...found, container: 'jp2' };
    }
  }
  throw new Jp2FormatError('no codestream (jp2c box)');
}

function noBoxes(): Pick<Jp2Header, 'enumeratedColourSpace' | 'icc' | 'resolution' | 'xmp'> {
  return { enumeratedColourSpace: null, icc: null, resolution: null, xmp: null };
}

/** resc (capture) wins over resd (display): both are numerator/denominator * 10^exponent per metre. */
async function readResolution(file: HeaderBytes, res: Box): Promise<{ x: number; y: number } | null> {
  let chosen: { x: number; y: number } | null = null;
  for await (const box of boxes(file, res.start, res.end)) {
    if ((box.type !== 'resc' && box.type !== 'resd') || box.end - box.start < 10) continue;
    const b = await readAt(file, box.start, 10);
    const value = (num: number, den: number, exp: number) => (den === 0 ? 0 : (num / den) * 10 ** exp);
    const r = { y: value(b.readUInt16BE(0), b.readUInt16BE(2), b.readInt8(8)), x: value(b.readUInt16BE(4), b.readUInt16BE(6), b.readInt8(9)) };
    if (box.type === 'resc' || !chosen) chosen = r;
  }
  return chosen && chosen.x > 0 && chosen.y > 0 ? chosen : null;
}

type Codestream = Omit<Jp2Header, 'container' | 'enumeratedColourSpace' | 'icc' | 'resolution' | 'xmp'>;

/** The main header: SOC, SIZ first, then markers up to the first SOT. */
async function readCodestream(file: HeaderBytes, start: number, end: number): Promise<Codestream> {
  let length = Math.min(end - start, 64 * 1024);
  for (;;) {
    const bytes = await readAt(file, start, length);
    const parsed = parseMainHeader(bytes, start);
    if (parsed) return parsed;
    if (bytes.length < length || length >= end - start || length >= MAX_MAIN_HEADER) {
      throw new Jp2FormatError('the codestream ends inside its main header');
    }
    length = Math.min(end - start, length * 4, MAX_MAIN_HEADER);
  }
}

/** Null when the buffer ends before the first tile-part (read more). */
function parseMainHeader(b: Buffer, offset: number): Codestream | null {
  if (b.length < 4) return null;
  if (b.readUInt16BE(0) !== 0xff4f) throw new Jp2FormatError('the codestream does not start with SOC');
  if (b.readUInt16BE(2) !== 0xff51) throw new Jp2FormatError('SIZ does not follow SOC');
  let siz: Omit<Codestream, keyof ReturnType<typeof parseCod> | 'codestreamOffset' | 'tilePartsOffset' | 'tilePartLengths'> | null = null;
  let cod: ReturnType<typeof parseCod> | null = null;
  const cocs: Array<Pick<Codestream, 'codeBlock' | 'precincts' | 'highThroughput'>> = [];
  const tlms: Buffer[] = [];
  let quantised = false;
  let position = 2;
  for (;;) {
    if (position + 4 > b.length) return null;
    const marker = b.readUInt16BE(position);
    if (marker === 0xff90) break;
    if (marker >> 8 !== 0xff) throw new Jp2FormatError(`not a marker at codestream byte ${position}`);
    const size = b.readUInt16BE(position + 2);
    if (size < 2) throw new Jp2FormatError(`marker ${marker.toString(16)} has length ${size}`);
    if (position + 2 + size > b.length) return null;
    const body = b.subarray(position + 4, position + 2 + size);
    if (marker === 0xff51) siz = parseSiz(body);
    else if (marker === 0xff52) cod = parseCod(body);
    else if (marker === 0xff53) {
      if (!siz) throw new Jp2FormatError('COC before SIZ');
      cocs.push(parseCoc(body, siz.components.length));
    } else if (marker === 0xff5c) quantised = body.length >= 1;
    else if (marker === 0xff55) tlms.push(body);
    position += 2 + size;
  }
  if (!siz) throw new Jp2FormatError('no SIZ marker');
  if (!cod) throw new Jp2FormatError('no COD marker in the main header');
  if (!quantised) throw new Jp2FormatError('no QCD marker in the main header');
  for (const coc of cocs) {
    cod.highThroughput ||= coc.highThroughput;
    cod.codeBlock = {
      widthExp: Math.min(cod.codeBlock.widthExp, coc.codeBlock.widthExp),
      heightExp: Math.min(cod.codeBlock.heightExp, coc.codeBlock.heightExp),
    };
    cod.precincts = cod.precincts.map((p, r) => {
      const other = coc.precincts[Math.min(r, coc.precincts.length - 1)]!;
      return { widthExp: Math.min(p.widthExp, other.widthExp), heightExp: Math.min(p.heightExp, other.heightExp) };
    });
  }
  return { ...siz, ...cod, codestreamOffset: offset, tilePartsOffset: offset + position, tilePartLengths: parseTlms(tlms) };
}

/**
 * TLM segments (Ztlm, Stlm, then Ttlm/Ptlm pairs), in their Ztlm order: the tile-part lengths, or
 * null when there are none or one cannot be read (a hint only: the codec reads the SOTs anyway).
 */
function parseTlms(segments: Buffer[]): number[] | null {
  if (segments.length === 0) return null;
  const lengths: number[] = [];
  for (const b of [...segments].sort((x, y) => (x[0] ?? 0) - (y[0] ?? 0))) {
    if (b.length < 2) return null;
    const indexBytes = (b[1]! >> 4) & 3;
    const lengthBytes = (b[1]! >> 6) & 1 ? 4 : 2;
    if (indexBytes === 3 || (b.length - 2) % (indexBytes + lengthBytes) !== 0) return null;
    for (let at = 2 + indexBytes; at < b.length; at += indexBytes + lengthBytes) {
      const length = lengthBytes === 4 ? b.readUInt32BE(at) : b.readUInt16BE(at);
      // A tile-part holds at least its SOT and SOD.
      if (length < 14) return null;
      lengths.push(length);
    }
  }
  return lengths;
}

function parseSiz(b: Buffer) {
  if (b.length < 36) throw new Jp2FormatError('SIZ is too short');
  const x1 = b.readUInt32BE(2);
  const y1 = b.readUInt32BE(6);
  const x0 = b.readUInt32BE(10);
  const y0 = b.readUInt32BE(14);
  const tileWidth = b.readUInt32BE(18);
  const tileHeight = b.readUInt32BE(22);
  const tileX0 = b.readUInt32BE(26);
  const tileY0 = b.readUInt32BE(30);
  const count = b.readUInt16BE(34);
  if (x1 <= x0 || y1 <= y0) throw new Jp2FormatError(`SIZ: empty image area ${x0},${y0} to ${x1},${y1}`);
  if (tileWidth === 0 || tileHeight === 0) throw new Jp2FormatError('SIZ: zero tile size');
  if (count === 0 || count > 16384 || b.length < 36 + 3 * count) throw new Jp2FormatError(`SIZ: ${count} components do not fit`);
  const components: Jp2Component[] = [];
  for (let i = 0; i < count; i++) {
    const s = b[36 + 3 * i]!;
    const dx = b[37 + 3 * i]!;
    const dy = b[38 + 3 * i]!;
    if (dx === 0 || dy === 0) throw new Jp2FormatError('SIZ: zero subsampling');
    components.push({ precision: (s & 0x7f) + 1, signed: (s & 0x80) !== 0, dx, dy });
  }
  return { x0, y0, x1, y1, tileWidth, tileHeight, tileX0, tileY0, components };
}

function parseCod(b: Buffer) {
  if (b.length < 10) throw new Jp2FormatError('COD is too short');
  const progression = PROGRESSIONS[b[1]!];
  if (!progression) throw new Jp2FormatError(`COD: unknown progression order ${b[1]}`);
  const qualityLayers = b.readUInt16BE(2);
  if (qualityLayers === 0) throw new Jp2FormatError('COD: zero quality layers');
  const coding = parseCodingStyle('COD', b[0]!, b.subarray(5));
  return { progression, qualityLayers, mct: b[4] === 1, ...coding };
}

/** COC: a component's own coding style; only its code-block and precinct sizes and its block coder matter here. */
function parseCoc(b: Buffer, components: number) {
  const indexBytes = components < 257 ? 1 : 2;
  if (b.length < indexBytes + 6) throw new Jp2FormatError('COC is too short');
  const { codeBlock, precincts, highThroughput } = parseCodingStyle('COC', b[indexBytes]!, b.subarray(indexBytes + 1));
  return { codeBlock, precincts, highThroughput };
}

/** SPcod / SPcoc: decomposition levels, code-block size, transform, precinct sizes (Scod bit 0). */
function parseCodingStyle(marker: string, style: number, b: Buffer) {
  if (b.length < 5) throw new Jp2FormatError(`${marker} is too short`);
  const dwtLevels = b[0]!;
  if (dwtLevels > 32) throw new Jp2FormatError(`${marker}: ${dwtLevels} decomposition levels`);
  const codeBlock = { widthExp: (b[1]! & 0x0f) + 2, heightExp: (b[2]! & 0x0f) + 2 };
  // Part 1: each side at most 1024, at most 4096 samples.
  if (codeBlock.widthExp > 10 || codeBlock.heightExp > 10 || codeBlock.widthExp + codeBlock.heightExp > 12) {
    throw new Jp2FormatError(`${marker}: code-blocks of ${2 ** codeBlock.widthExp}x${2 ** codeBlock.heightExp}`);
  }
  const precincts: Array<{ widthExp: number; heightExp: number }> = [];
  for (let r = 0; r <= dwtLevels; r++) {
    if ((style & 1) === 0) precincts.push({ widthExp: 15, heightExp: 15 });
    else {
      const packed = b[5 + r];
      if (packed === undefined) throw new Jp2FormatError(`${marker}: precinct sizes missing`);
      precincts.push({ widthExp: packed & 0x0f, heightExp: packed >> 4 });
    }
  }
  // Code-block style bit 6: the HT block coder (bit 7 with it: HT and classic code-blocks mixed).
  return { dwtLevels, reversible: b[4] === 1, codeBlock, precincts, highThroughput: (b[3]! & 0x40) !== 0 };
}
