/**
 * The FastCGI 1.0 wire format: the 8-byte record header, name-value pairs and the records this
 * responder writes. Pure functions over Buffers, no I/O, so that the connection code stays about
 * state and the framing can be tested on its own.
 *
 * Strings are byte strings: names, values and response headers go through latin1, which maps
 * each byte to one UTF-16 unit and back. CGI params are bytes in no declared encoding (a
 * REQUEST_URI may hold raw non-UTF-8 bytes), and decoding them as UTF-8 would replace those
 * bytes with U+FFFD and lose them for good.
 */

export const FCGI_VERSION_1 = 1;
export const HEADER_LENGTH = 8;
/** The content length field is 16 bits. */
export const MAX_CONTENT_LENGTH = 0xffff;
/**
 * What one STDOUT/STDERR record carries at most here: the largest multiple of 8 that fits, so
 * that full records need no padding and the peer's reads stay 8-byte aligned.
 */
export const STREAM_CHUNK = 65528;

// Record types (FastCGI spec 8).
export const BEGIN_REQUEST = 1;
export const ABORT_REQUEST = 2;
export const END_REQUEST = 3;
export const PARAMS = 4;
export const STDIN = 5;
export const STDOUT = 6;
export const STDERR = 7;
export const DATA = 8;
export const GET_VALUES = 9;
export const GET_VALUES_RESULT = 10;
export const UNKNOWN_TYPE = 11;

/** Request id 0 carries management records (GET_VALUES), not a request. */
export const NULL_REQUEST_ID = 0;

// Roles in BEGIN_REQUEST.
export const RESPONDER = 1;
export const AUTHORIZER = 2;
export const FILTER = 3;

// BEGIN_REQUEST flags.
export const KEEP_CONN = 1;

// protocolStatus in END_REQUEST.
export const REQUEST_COMPLETE = 0;
export const CANT_MPX_CONN = 1;
export const OVERLOADED = 2;
export const UNKNOWN_ROLE = 3;

// Names a GET_VALUES record may ask for.
export const FCGI_MAX_CONNS = 'FCGI_MAX_CONNS';
export const FCGI_MAX_REQS = 'FCGI_MAX_REQS';
export const FCGI_MPXS_CONNS = 'FCGI_MPXS_CONNS';

/** The peer broke the protocol; the connection cannot be trusted to stay in sync. */
export class FastCgiProtocolError extends Error {
  override name = 'FastCgiProtocolError';
}

export interface RecordHeader {
  version: number;
  type: number;
  requestId: number;
  contentLength: number;
  paddingLength: number;
}

export function readRecordHeader(buffer: Buffer, offset = 0): RecordHeader {
  return {
    version: buffer[offset]!,
    type: buffer[offset + 1]!,
    requestId: (buffer[offset + 2]! << 8) | buffer[offset + 3]!,
    contentLength: (buffer[offset + 4]! << 8) | buffer[offset + 5]!,
    paddingLength: buffer[offset + 6]!,
  };
}

/** Padding that brings a record to a multiple of 8 bytes, as the spec recommends. */
export function paddingFor(contentLength: number): number {
  return -contentLength & 7;
}

/** Writes a header at `offset`; returns where the content goes. */
export function writeRecordHeader(out: Buffer, offset: number, type: number, requestId: number, contentLength: number, paddingLength: number): number {
  out[offset] = FCGI_VERSION_1;
  out[offset + 1] = type;
  out[offset + 2] = requestId >>> 8;
  out[offset + 3] = requestId & 0xff;
  out[offset + 4] = contentLength >>> 8;
  out[offset + 5] = contentLength & 0xff;
  out[offset + 6] = paddingLength;
  out[offset + 7] = 0;
  return offset + HEADER_LENGTH;
}

/** Zeroes padding: the buffers come from allocUnsafe and must not leak old memory to the peer. */
function writePadding(out: Buffer, offset: number, paddingLength: number): number {
  if (paddingLength > 0) out.fill(0, offset, offset + paddingLength);
  return offset + paddingLength;
}

/** One complete record, padded. */
export function encodeRecord(type: number, requestId: number, content?: Buffer): Buffer {
  const length = content?.length ?? 0;
  if (length > MAX_CONTENT_LENGTH) throw new RangeError(`record content of ${length} bytes exceeds ${MAX_CONTENT_LENGTH}`);
  const padding = paddingFor(length);
  const out = Buffer.allocUnsafe(HEADER_LENGTH + length + padding);
  let offset = writeRecordHeader(out, 0, type, requestId, length, padding);
  if (content) offset += content.copy(out, offset);
  writePadding(out, offset, padding);
  return out;
}

export const END_REQUEST_RECORD_LENGTH = 16;

export function writeEndRequest(out: Buffer, offset: number, requestId: number, appStatus: number, protocolStatus: number): number {
  offset = writeRecordHeader(out, offset, END_REQUEST, requestId, 8, 0);
  out.writeUInt32BE(appStatus >>> 0, offset);
  out[offset + 4] = protocolStatus;
  out[offset + 5] = 0;
  out[offset + 6] = 0;
  out[offset + 7] = 0;
  return offset + 8;
}

export function encodeEndRequest(requestId: number, appStatus: number, protocolStatus: number): Buffer {
  const out = Buffer.allocUnsafe(END_REQUEST_RECORD_LENGTH);
  writeEndRequest(out, 0, requestId, appStatus, protocolStatus);
  return out;
}

/** The management reply to a record type we do not know; the body echoes the type. */
export function encodeUnknownType(type: number): Buffer {
  const out = Buffer.alloc(HEADER_LENGTH + 8);
  writeRecordHeader(out, 0, UNKNOWN_TYPE, NULL_REQUEST_ID, 8, 0);
  out[HEADER_LENGTH] = type;
  return out;
}

/** Bytes that `length` bytes of stream data take once cut into records (0 for no data). */
export function streamRecordsLength(length: number): number {
  const full = Math.floor(length / STREAM_CHUNK);
  const rest = length - full * STREAM_CHUNK;
  return full * (HEADER_LENGTH + STREAM_CHUNK) + (rest > 0 ? HEADER_LENGTH + rest + paddingFor(rest) : 0);
}

/**
 * Copies `data[start, end)` into `out` as stream records of `type` (STDOUT, STDERR); returns
 * the offset after them. Writes nothing for empty data: the empty record that ends a stream is
 * the caller's, because it must come only once, after the last piece.
 */
export function writeStreamRecords(out: Buffer, offset: number, type: number, requestId: number, data: Buffer, start = 0, end = data.length): number {
  while (start < end) {
    const length = Math.min(STREAM_CHUNK, end - start);
    const padding = paddingFor(length);
    offset = writeRecordHeader(out, offset, type, requestId, length, padding);
    offset += data.copy(out, offset, start, start + length);
    offset = writePadding(out, offset, padding);
    start += length;
  }
  return offset;
}

/**
 * A byte string (see above) as stream records. The common case, a response head well under
 * one record, is written straight into `out` without an intermediate Buffer.
 */
export function writeStreamRecordsLatin1(out: Buffer, offset: number, type: number, requestId: number, text: string): number {
  const length = text.length;
  if (length === 0) return offset;
  if (length > STREAM_CHUNK) return writeStreamRecords(out, offset, type, requestId, Buffer.from(text, 'latin1'));
  const padding = paddingFor(length);
  offset = writeRecordHeader(out, offset, type, requestId, length, padding);
  offset += out.write(text, offset, length, 'latin1');
  return writePadding(out, offset, padding);
}

/** Stream data as records, plus the empty record that ends the stream when `end` is set. */
export function encodeStreamRecords(type: number, requestId: number, data: Buffer, end = false): Buffer {
  const out = Buffer.allocUnsafe(streamRecordsLength(data.length) + (end ? HEADER_LENGTH : 0));
  const offset = writeStreamRecords(out, 0, type, requestId, data);
  if (end) writeRecordHeader(out, offset, type, requestId, 0, 0);
  return out;
}

// Name-value pairs (spec 3.4): each length is 1 byte when < 128, else 4 bytes with the top bit set.

function lengthSize(length: number): number {
  return length < 0x80 ? 1 : 4;
}

function writeLength(out: Buffer, offset: number, length: number): number {
  if (length < 0x80) {
    out[offset] = length;
    return offset + 1;
  }
  out.writeUInt32BE((length | 0x80000000) >>> 0, offset);
  return offset + 4;
}

export function encodeNameValuePairs(pairs: Iterable<readonly [string, string]>): Buffer {
  const list = Array.from(pairs);
  let size = 0;
  for (const [name, value] of list) {
    if (name.length > 0x7fffffff || value.length > 0x7fffffff) throw new RangeError('name-value pair too long');
    size += lengthSize(name.length) + lengthSize(value.length) + name.length + value.length;
  }
  const out = Buffer.allocUnsafe(size);
  let offset = 0;
  for (const [name, value] of list) {
    offset = writeLength(out, offset, name.length);
    offset = writeLength(out, offset, value.length);
    offset += out.write(name, offset, name.length, 'latin1');
    offset += out.write(value, offset, value.length, 'latin1');
  }
  return out;
}

/**
 * Calls `visit` for every pair in a complete params block. Throws FastCgiProtocolError when a
 * pair runs past the end: callers reassemble the whole PARAMS stream first, so a truncated pair
 * here is the peer's fault, never a record boundary.
 */
export function forEachNameValuePair(buffer: Buffer, visit: (name: string, value: string) => void): void {
  const end = buffer.length;
  let offset = 0;
  while (offset < end) {
    let nameLength = buffer[offset]!;
    if (nameLength & 0x80) {
      if (offset + 4 > end) throw new FastCgiProtocolError('truncated name length in name-value pairs');
      nameLength = buffer.readUInt32BE(offset) & 0x7fffffff;
      offset += 4;
    } else offset += 1;
    if (offset >= end) throw new FastCgiProtocolError('truncated value length in name-value pairs');
    let valueLength = buffer[offset]!;
    if (valueLength & 0x80) {
      if (offset + 4 > end) throw new FastCgiProtocolError('truncated value length in name-value pairs');
      valueLength = buffer.readUInt32BE(offset) & 0x7fffffff;
      offset += 4;
    } else offset += 1;
    const nameEnd = offset + nameLength;
    const valueEnd = nameEnd + valueLength;
    if (valueEnd > end) throw new FastCgiProtocolError('name-value pair runs past the end of the params');
    visit(buffer.toString('latin1', offset, nameEnd), buffer.toString('latin1', nameEnd, valueEnd));
    offset = valueEnd;
  }
}

export function readNameValuePairs(buffer: Buffer): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  forEachNameValuePair(buffer, (name, value) => pairs.push([name, value]));
  return pairs;
}
