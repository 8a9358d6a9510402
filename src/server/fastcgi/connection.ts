/**
 * One FastCGI connection from the web server: an incremental record parser fed by the socket's
 * 'data' events, the table of requests in flight on it (ids are multiplexed), and the response
 * writer.
 *
 * Everything the peer sends is untrusted. A protocol violation closes this connection only;
 * nothing here throws out of a socket event handler, so one bad peer cannot take the process
 * (and every other connection) down with it.
 */
import type { Socket } from 'node:net';
import { statusLine, type PlainRequest, type PlainResponse, type RequestHandler } from '../../request.js';
import { requestFromParams } from './cgi-request.js';
import {
  ABORT_REQUEST,
  BEGIN_REQUEST,
  CANT_MPX_CONN,
  DATA,
  END_REQUEST_RECORD_LENGTH,
  FastCgiProtocolError,
  FCGI_VERSION_1,
  GET_VALUES,
  GET_VALUES_RESULT,
  HEADER_LENGTH,
  KEEP_CONN,
  NULL_REQUEST_ID,
  OVERLOADED,
  PARAMS,
  REQUEST_COMPLETE,
  RESPONDER,
  STDIN,
  STDOUT,
  STREAM_CHUNK,
  UNKNOWN_ROLE,
  encodeEndRequest,
  encodeNameValuePairs,
  encodeRecord,
  encodeUnknownType,
  paddingFor,
  readNameValuePairs,
  streamRecordsLength,
  writeEndRequest,
  writeRecordHeader,
  writeStreamRecords,
  writeStreamRecordsLatin1,
} from './records.js';

/** The logger hook: the project's Log fits (it has `detail`), so does pino (it has `debug`). */
export interface FastCgiLog {
  warn(fields: object, message: string): void;
  debug?(fields: object, message: string): void;
  detail?(fields: object, message: string): void;
}

/** Counters shared by all connections of one server (cheap increments, read by tests and ops). */
export interface FastCgiStats {
  connections: number;
  requestsInFlight: number;
  requestsTotal: number;
  /** socket.write() calls made for responses and replies. */
  socketWrites: number;
  protocolErrors: number;
  /** Input held for requests still arriving: PARAMS not yet ended, records received in part. */
  heldInputBytes: number;
  /** Connections closed at once because the worker had maxConnections open. */
  connectionsRefused: number;
  /** Connections closed by the idle or read timeout, or by a response the peer stopped reading. */
  timeouts: number;
  /** Connections closed to keep heldInputBytes within its bound. */
  connectionsShed: number;
}

export interface ConnectionOptions {
  handler: RequestHandler;
  log: FastCgiLog;
  stats: FastCgiStats;
  multiplex: boolean;
  maxRequestsPerConnection: number;
  maxParamsBytes: number;
  /** Closes a connection with no request in progress, and one whose peer stops reading; 0: never. */
  idleTimeoutMs: number;
  /** How long a request's input (and any record begun) may take to arrive in full; 0: no limit. */
  readTimeoutMs: number;
  /** The GET_VALUES answers, by name. */
  values: ReadonlyMap<string, string>;
  /**
   * Room for `bytes` more held input, made by shedding the connections that hold the most when
   * the worker's bound is reached. False when `connection` itself was shed.
   */
  reserve(connection: FastCgiConnection, bytes: number): boolean;
  onClose(connection: FastCgiConnection): void;
}

/**
 * Up to this size a response (records and END_REQUEST included) goes out in one system call,
 * nothing to interleave: built in one Buffer for one socket.write() when its body is small, the
 * body written in place between its records in one corked writev() when it is a tile. Above it
 * the body is sent in place, record by record, waiting for the socket to drain.
 */
export const SMALL_RESPONSE_BYTES = 64 * 1024;
/** Bodies smaller than this are copied into the response's one buffer; larger ones are not. */
const COPIED_BODY_BYTES = 4096;

/**
 * Ids that were answered or refused before the peer finished sending their input. Their late
 * PARAMS/STDIN records are legal and must be swallowed, but a peer that keeps opening ids it
 * never finishes would grow the table without bound.
 */
const MAX_DRAINING_IDS = 1024;

/** After our FIN, how long to wait for the peer's before dropping a half-open socket. */
const LINGER_MS = 2000;

/** A monotonic clock: timeouts must not jump with the wall clock. */
const now = (): number => performance.now();

const EMPTY = Buffer.alloc(0);
/** Shared padding source: written data is never modified, so one buffer serves every record. */
const ZEROS = Buffer.alloc(8);
const INTERNAL_ERROR_BODY = Buffer.from('Internal Server Error\n');

/** An answer of ours that no handler made (timeouts, limits), with a message saying why. */
function plainError(status: number, message: string): PlainResponse {
  const body = Buffer.from(`${message}\n`, 'latin1');
  return {
    status,
    headers: [
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Content-Length', String(body.length)],
    ],
    body,
  };
}

class RequestState {
  /** Made when the handler first asks for the request's signal: most requests never do. */
  private controller: AbortController | null = null;
  private aborted = false;
  /**
   * The PARAMS stream so far. nginx sends it in one record, kept as a view of the input; a
   * second record makes it an owned, growing buffer. (A list of views would cost an object per
   * record, and a peer sending one-byte records would turn 1 MiB of params into ~100 MB.)
   */
  params: Buffer | null = null;
  paramsOwned = false;
  paramsBytes = 0;
  /** Bytes of `params` counted in the worker's held input (released once the request starts). */
  held = 0;
  paramsDone = false;
  stdinDone = false;
  /** Everything the peer will send for this id has arrived (or it no longer matters). */
  inputDone = false;
  /** When BEGIN_REQUEST arrived: its input must be complete within the read timeout. */
  readonly begunAt = now();
  started = false;
  /** END_REQUEST sent (or the connection is gone): any late result is dropped. */
  done = false;
  method = 'GET';

  constructor(
    readonly id: number,
    readonly keepConn: boolean,
    /** Already answered; only its remaining input is expected, and ignored. */
    public draining: boolean,
  ) {}

  /** Aborted when the peer aborts the request or goes away. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort();
    }
    return this.controller.signal;
  }

  abort(): void {
    this.aborted = true;
    this.controller?.abort();
  }
}

function cleanHeaderText(text: string): string {
  // Values may echo request data; a CR or LF would let it forge headers or a body.
  return text.includes('\r') || text.includes('\n') ? text.replace(/[\r\n]+/g, ' ') : text;
}

function responseHead(response: PlainResponse): string {
  let head = `Status: ${statusLine(response.status)}\r\n`;
  for (const [name, value] of response.headers) head += `${cleanHeaderText(name)}: ${cleanHeaderText(value)}\r\n`;
  return `${head}\r\n`;
}

export class FastCgiConnection {
  /** Unparsed input: records may straddle chunks, and a chunk may hold many records. */
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already parsed. */
  private offset = 0;
  /** Unparsed bytes over all chunks. */
  private buffered = 0;

  private readonly requests = new Map<number, RequestState>();
  private lingerTimer: NodeJS.Timeout | null = null;
  /** Requests not yet answered (the ones that count against the cap and for close()). */
  private active = 0;
  private draining = 0;
  /** Entries of `requests` whose input has not all arrived. */
  private awaiting = 0;

  /** Held input counted in the worker's bound: the partial record and unfinished PARAMS. */
  private held = 0;
  /** The part of `held` that is the partial record at the end of `chunks`. */
  private heldPartial = 0;
  /** Records parsed so far, to tell whether the partial record is still the same one. */
  private recordsParsed = 0;
  private partialRecord = -1;
  private partialSince = 0;

  /**
   * One timer serves every timeout: it is armed for the earliest moment one could expire and,
   * when it fires, works out what actually has (see deadline() and onTimer()). Requests that
   * arrive whole in one read, as nginx sends them, never touch it.
   */
  private timer: NodeJS.Timeout | null = null;
  private timerDue = Number.POSITIVE_INFINITY;
  /** Last write, drain or finished request: idle and stalled-write time counts from here. */
  private lastActivity = now();
  /** When the connection last started waiting for input (a lower bound of every wait's start). */
  private inputSince = 0;

  /** The socket is gone: no more writes, no more parsing. */
  private closed = false;
  /** We sent (or are about to send) FIN: parse nothing more. */
  private ending = false;
  private closeWhenIdle = false;
  private inputPaused = false;
  private drainWaiters: Array<() => void> = [];

  constructor(
    readonly socket: Socket,
    private readonly options: ConnectionOptions,
  ) {
    // Responses are whole by the time we write them: Nagle would only add latency.
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (error) => this.debug({ err: error }, 'FastCGI connection error'));
    socket.on('close', () => this.onClose());
    this.watch();
  }

  /** Requests still to be answered on this connection. */
  get inFlight(): number {
    return this.active;
  }

  /** Bytes of input this connection holds for requests still arriving. */
  get heldBytes(): number {
    return this.held;
  }

  /** For close(): finish what is in flight, then close; an idle connection closes now. */
  shutdownWhenIdle(): void {
    this.closeWhenIdle = true;
    if (this.active === 0) this.end();
  }

  /** Drop the connection now; requests in flight are aborted before this returns. */
  destroy(): void {
    this.ending = true;
    this.abortAll();
    this.releaseHeld();
    this.socket.destroy();
  }

  /**
   * The worker holds too much input for requests still arriving, and this connection holds the
   * most: its waiting requests get a 503, and it closes.
   */
  shed(): void {
    this.options.stats.connectionsShed++;
    this.options.log.warn(
      { remoteAddress: this.socketAddress, heldBytes: this.held },
      'FastCGI connection holding the most unfinished request input closed: the worker holds as much as it may',
    );
    this.failWaiting(503, 'The server is receiving too many requests at once; try again');
  }

  /** The peer's address, for messages: looked up only when one is written (a system call). */
  private get socketAddress(): string {
    return this.socket.remoteAddress ?? '';
  }

  private debug(fields: object, message: string): void {
    const log = this.options.log;
    if (log.debug) log.debug(fields, message);
    else log.detail?.(fields, message);
  }

  // ---- input ----

  private onData(chunk: Buffer): void {
    if (this.closed || this.ending) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    // A record trickling in as tiny segments would otherwise pile up thousands of Buffers.
    if (this.chunks.length > 1024) this.merge();
    try {
      this.parse();
      if (this.closed || this.ending) return;
      if (!this.holdPartial()) return;
      this.watch();
    } catch (error) {
      if (error instanceof FastCgiProtocolError) this.violation(error.message);
      else this.internalFailure(error);
    }
  }

  /**
   * What is left after parsing is at most one record in part: counted as held input, and timed
   * from its first byte (a record that keeps trickling in counts as one wait, not many).
   */
  private holdPartial(): boolean {
    if (this.buffered > 0) {
      if (this.partialRecord !== this.recordsParsed) {
        this.partialRecord = this.recordsParsed;
        this.partialSince = now();
      }
    } else this.partialRecord = -1;
    const delta = this.buffered - this.heldPartial;
    if (delta > 0) {
      if (!this.hold(delta)) return false;
    } else if (delta < 0) this.unhold(-delta);
    this.heldPartial = this.buffered;
    return true;
  }

  private parse(): void {
    while (this.buffered >= HEADER_LENGTH && !this.closed && !this.ending) {
      let first = this.chunks[0]!;
      let at = this.offset;
      if (first.length - at < HEADER_LENGTH) {
        this.merge();
        first = this.chunks[0]!;
        at = 0;
      }
      if (first[at] !== FCGI_VERSION_1) throw new FastCgiProtocolError(`unsupported FastCGI version ${first[at]}`);
      const type = first[at + 1]!;
      const requestId = (first[at + 2]! << 8) | first[at + 3]!;
      const contentLength = (first[at + 4]! << 8) | first[at + 5]!;
      const total = HEADER_LENGTH + contentLength + first[at + 6]!;
      // Wait for the whole record before copying anything: a record that arrives in many small
      // chunks is merged once, not once per chunk.
      if (this.buffered < total) return;
      if (first.length - at < total) {
        this.merge();
        first = this.chunks[0]!;
        at = 0;
      }
      // A view, not a copy: Node hands every 'data' event a buffer of its own.
      const content = first.subarray(at + HEADER_LENGTH, at + HEADER_LENGTH + contentLength);
      this.buffered -= total;
      if (at + total === first.length) {
        this.chunks.shift();
        this.offset = 0;
      } else this.offset = at + total;
      this.recordsParsed++;
      this.dispatch(type, requestId, content);
    }
  }

  private merge(): void {
    this.chunks[0] = this.chunks[0]!.subarray(this.offset);
    this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    this.offset = 0;
  }

  private dispatch(type: number, requestId: number, content: Buffer): void {
    if (requestId === NULL_REQUEST_ID) {
      this.management(type, content);
      return;
    }
    switch (type) {
      case BEGIN_REQUEST:
        this.beginRequest(requestId, content);
        break;
      case ABORT_REQUEST:
        this.abortRequest(requestId);
        break;
      case PARAMS:
        this.params(requestId, content);
        break;
      case STDIN:
        this.stdin(requestId, content);
        break;
      case DATA:
        // Only the FILTER role has a DATA stream, and we refuse that role: nothing to keep.
        this.known(requestId, 'DATA');
        break;
      default:
        // Includes the types only an application sends (STDOUT, END_REQUEST, ...).
        this.send(encodeUnknownType(type));
    }
  }

  private management(type: number, content: Buffer): void {
    if (type !== GET_VALUES) {
      this.send(encodeUnknownType(type));
      return;
    }
    const answer = new Map<string, string>();
    for (const [name] of readNameValuePairs(content)) {
      const value = this.options.values.get(name);
      if (value !== undefined) answer.set(name, value);
    }
    this.send(encodeRecord(GET_VALUES_RESULT, NULL_REQUEST_ID, encodeNameValuePairs(answer)));
  }

  /** The request a stream record belongs to; an id never begun means the peer lost track. */
  private known(requestId: number, what: string): RequestState {
    const request = this.requests.get(requestId);
    if (request === undefined) throw new FastCgiProtocolError(`${what} record for unknown request id ${requestId}`);
    return request;
  }

  private beginRequest(requestId: number, content: Buffer): void {
    if (content.length < 8) throw new FastCgiProtocolError(`BEGIN_REQUEST body of ${content.length} bytes`);
    const role = (content[0]! << 8) | content[1]!;
    const keepConn = (content[2]! & KEEP_CONN) !== 0;
    const existing = this.requests.get(requestId);
    if (existing !== undefined) {
      if (!existing.draining) throw new FastCgiProtocolError(`BEGIN_REQUEST for request id ${requestId}, which is in use`);
      // The peer reuses an id we answered early; what it did not send for the old one never comes.
      this.forget(existing);
    }
    if (role !== RESPONDER) this.refuse(requestId, keepConn, UNKNOWN_ROLE);
    else if (!this.options.multiplex && this.active > 0) this.refuse(requestId, keepConn, CANT_MPX_CONN);
    else if (this.active >= this.options.maxRequestsPerConnection) this.refuse(requestId, keepConn, OVERLOADED);
    else {
      this.requests.set(requestId, new RequestState(requestId, keepConn, false));
      this.awaiting++;
      this.active++;
      this.options.stats.requestsInFlight++;
      this.options.stats.requestsTotal++;
    }
  }

  private refuse(requestId: number, keepConn: boolean, protocolStatus: number): void {
    this.send(encodeEndRequest(requestId, 0, protocolStatus));
    // The peer has usually sent PARAMS and STDIN already, right behind BEGIN_REQUEST.
    const request = new RequestState(requestId, keepConn, true);
    this.awaiting++;
    if (!this.startDraining(request)) {
      throw new FastCgiProtocolError('too many unfinished request ids');
    }
    if (!keepConn) this.end();
  }

  private startDraining(request: RequestState): boolean {
    request.draining = true;
    this.dropParams(request);
    this.requests.set(request.id, request);
    return ++this.draining <= MAX_DRAINING_IDS;
  }

  /** The id leaves the table. */
  private forget(request: RequestState): void {
    this.requests.delete(request.id);
    if (request.draining) this.draining--;
    this.inputArrived(request);
    this.dropParams(request);
  }

  /** Nothing more is expected for this request (it no longer waits against the read timeout). */
  private inputArrived(request: RequestState): void {
    if (request.inputDone) return;
    request.inputDone = true;
    this.awaiting--;
  }

  /**
   * ABORT_REQUEST for an id we already answered is a normal race (the peer sent it before our
   * END_REQUEST arrived), so an unknown id is ignored here rather than treated as a violation.
   */
  private abortRequest(requestId: number): void {
    const request = this.requests.get(requestId);
    if (request === undefined || request.draining || request.done) {
      this.debug({ requestId }, 'FastCGI ABORT_REQUEST for a request no longer in flight');
      return;
    }
    request.abort();
    this.send(encodeEndRequest(requestId, 0, REQUEST_COMPLETE));
    this.finish(request);
  }

  private params(requestId: number, content: Buffer): void {
    const request = this.known(requestId, 'PARAMS');
    if (request.draining) return;
    if (request.paramsDone) {
      this.debug({ requestId }, 'FastCGI PARAMS after the end of the params stream; ignored');
      return;
    }
    if (content.length > 0) {
      const length = request.paramsBytes + content.length;
      const max = this.options.maxParamsBytes;
      if (length > max) {
        // A limit of ours, not a broken peer: the request gets an answer, and the rest of its
        // input is read and dropped so that the connection stays usable.
        this.options.log.warn(
          { requestId, remoteAddress: this.socketAddress, limit: max },
          'FastCGI request parameters over FCGI_MAX_PARAMS_SIZE; answered 431',
        );
        this.dropParams(request);
        this.respond(request, plainError(431, `The request's headers and parameters are larger than the server accepts (${max} bytes)`));
        return;
      }
      // What is counted is what the params take: a view's length, or the grown buffer's capacity.
      if (request.params === null) {
        if (!this.hold(content.length)) return;
        request.held = content.length;
        request.params = content;
      } else {
        if (!request.paramsOwned || length > request.params.length) {
          const capacity = Math.min(Math.max(length, 2 * request.params.length), max);
          if (!this.hold(capacity - request.held)) return;
          const grown = Buffer.allocUnsafe(capacity);
          request.params.copy(grown, 0, 0, request.paramsBytes);
          request.held = capacity;
          request.params = grown;
          request.paramsOwned = true;
        }
        content.copy(request.params, request.paramsBytes);
      }
      request.paramsBytes = length;
      return;
    }
    request.paramsDone = true;
    if (request.stdinDone) this.inputArrived(request);
    this.maybeStart(request);
  }

  private stdin(requestId: number, content: Buffer): void {
    const request = this.known(requestId, 'STDIN');
    // No protocol reads a body: dropped record by record, never stored, so a body of any size
    // costs one record of memory; the read timeout bounds how long it may take.
    if (content.length > 0) return;
    if (request.draining) {
      this.forget(request);
      return;
    }
    request.stdinDone = true;
    if (request.paramsDone) this.inputArrived(request);
    this.maybeStart(request);
  }

  private maybeStart(request: RequestState): void {
    if (!request.paramsDone || !request.stdinDone || request.started) return;
    request.started = true;
    const params = request.params === null ? EMPTY : request.params.subarray(0, request.paramsBytes);
    this.dropParams(request);
    const iipRequest: PlainRequest = requestFromParams(
      params,
      () => request.signal,
      () => this.socketAddress,
    );
    request.method = iipRequest.method;
    let result: Promise<PlainResponse>;
    try {
      result = Promise.resolve(this.options.handler(iipRequest));
    } catch (error) {
      result = Promise.reject(error);
    }
    result
      .then(
        (response) => this.respond(request, response),
        (error: unknown) => this.handlerFailed(request, error),
      )
      .catch((error: unknown) => this.internalFailure(error));
  }

  /** A bug of ours; still not a reason to take down the other connections. */
  private internalFailure(error: unknown): void {
    this.options.log.warn({ err: error, remoteAddress: this.socketAddress }, 'FastCGI connection failed');
    this.destroy();
  }

  /** The request leaves the active set: END_REQUEST has been queued (or there is nobody to tell). */
  private finish(request: RequestState): void {
    if (request.done) return;
    request.done = true;
    this.active--;
    this.options.stats.requestsInFlight--;
    if (this.closed) return;
    if (request.stdinDone) this.forget(request);
    else if (!this.startDraining(request)) {
      this.violation('too many unfinished request ids');
      return;
    }
    if (!request.keepConn || (this.closeWhenIdle && this.active === 0)) this.end();
    else this.watch();
  }

  // ---- held input ----

  /** Counts `bytes` more held input against the worker's bound; false when we were shed for it. */
  private hold(bytes: number): boolean {
    if (!this.options.reserve(this, bytes)) return false;
    this.held += bytes;
    this.options.stats.heldInputBytes += bytes;
    return true;
  }

  private unhold(bytes: number): void {
    this.held -= bytes;
    this.options.stats.heldInputBytes -= bytes;
  }

  private dropParams(request: RequestState): void {
    request.params = null;
    if (request.held > 0) {
      this.unhold(request.held);
      request.held = 0;
    }
  }

  /** Synchronous, so that shedding frees the worker's bound before reserve() looks again. */
  private releaseHeld(): void {
    for (const request of this.requests.values()) request.params = null;
    if (this.held !== 0) this.unhold(this.held);
    for (const request of this.requests.values()) request.held = 0;
    this.heldPartial = 0;
    this.chunks = [];
    this.buffered = 0;
  }

  // ---- timeouts ----

  /**
   * The earliest moment something may time out in the current state; a wait's true deadline is
   * never earlier, so a timer set for it may fire early (onTimer() then looks closer) but never late.
   */
  private deadline(): number {
    const { idleTimeoutMs, readTimeoutMs } = this.options;
    const idle = idleTimeoutMs > 0 ? this.lastActivity + idleTimeoutMs : Number.POSITIVE_INFINITY;
    // A response the peer does not read, or our FIN stuck behind one.
    if (this.socket.writableNeedDrain || (this.ending && this.socket.writableLength > 0)) return idle;
    if (this.ending) return Number.POSITIVE_INFINITY;
    if (this.awaiting > 0 || this.buffered > 0) {
      if (this.inputSince === 0) this.inputSince = now();
      return readTimeoutMs > 0 ? this.inputSince + readTimeoutMs : Number.POSITIVE_INFINITY;
    }
    this.inputSince = 0;
    return this.active === 0 ? idle : Number.POSITIVE_INFINITY;
  }

  /** Arms the timer when the current state may time out sooner than it is set for. */
  private watch(): void {
    if (this.closed) return;
    const due = this.deadline();
    if (due === Number.POSITIVE_INFINITY || due >= this.timerDue) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerDue = due;
    // Unref'd: a pending timeout must not keep a stopping worker alive.
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, Math.ceil(due - now()))).unref();
  }

  private onTimer(): void {
    this.timer = null;
    this.timerDue = Number.POSITIVE_INFINITY;
    if (this.closed) return;
    const at = now();
    const { idleTimeoutMs, readTimeoutMs } = this.options;
    const stalledWrite = this.socket.writableNeedDrain || (this.ending && this.socket.writableLength > 0);
    if (stalledWrite || (!this.ending && this.awaiting === 0 && this.buffered === 0 && this.active === 0)) {
      if (idleTimeoutMs > 0 && at - this.lastActivity >= idleTimeoutMs) {
        this.options.stats.timeouts++;
        if (stalledWrite) {
          // Nothing can be said to a peer that does not read: drop it.
          this.debug({ remoteAddress: this.socketAddress }, 'FastCGI peer stopped reading; connection dropped');
          this.destroy();
        } else {
          // Harmless to a web server's pool: nginx watches its idle upstream connections and
          // drops the one we close; one it reused at that very moment is retried on a new one.
          this.debug({ remoteAddress: this.socketAddress }, 'FastCGI connection idle; closed');
          this.end();
        }
        return;
      }
    } else if (!this.ending && (this.awaiting > 0 || this.buffered > 0) && readTimeoutMs > 0) {
      const since = this.oldestWait();
      if (at - since >= readTimeoutMs) {
        this.readTimedOut();
        return;
      }
      this.inputSince = since;
    }
    this.watch();
  }

  /** When the longest wait for input began: the oldest unfinished request or partial record. */
  private oldestWait(): number {
    let since = this.buffered > 0 ? this.partialSince : Number.POSITIVE_INFINITY;
    for (const request of this.requests.values()) if (!request.inputDone && request.begunAt < since) since = request.begunAt;
    return since;
  }

  /**
   * The peer stopped sending in the middle of a request (or of a record). The requests still
   * waiting for their input get a 408; the stream can no longer be trusted to resume, so the
   * connection closes, taking along any handler still running for it.
   */
  private readTimedOut(): void {
    this.options.stats.timeouts++;
    this.options.log.warn({ remoteAddress: this.socketAddress }, 'FastCGI request input did not arrive within FCGI_READ_TIMEOUT; connection closed');
    this.failWaiting(408, 'The request did not arrive in time');
  }

  /** Answers every request still waiting for its input with `status`, then closes. */
  private failWaiting(status: number, message: string): void {
    if (this.closed || this.ending) return;
    const response = plainError(status, message);
    for (const request of this.requests.values()) {
      if (request.started || request.draining || request.done) continue;
      this.send(this.wholeResponse(request, responseHead(response), response.body));
      request.done = true;
      this.active--;
      this.options.stats.requestsInFlight--;
    }
    this.end();
  }

  // ---- output ----

  private handlerFailed(request: RequestState, error: unknown): void {
    if (request.done) return; // Aborted: the rejection is the handler noticing.
    this.options.log.warn({ err: error, requestId: request.id }, 'request handler failed');
    this.respond(request, {
      status: 500,
      headers: [
        ['Content-Type', 'text/plain'],
        ['Content-Length', String(INTERNAL_ERROR_BODY.length)],
      ],
      body: INTERNAL_ERROR_BODY,
    });
  }

  private respond(request: RequestState, response: PlainResponse): void {
    if (request.done || this.closed || this.ending) return;
    let head: string;
    let body: Buffer;
    try {
      head = responseHead(response);
      body = request.method === 'HEAD' ? EMPTY : response.body;
      if (!Buffer.isBuffer(body)) throw new TypeError('response body is not a Buffer');
    } catch (error) {
      // A malformed response is a handler bug like a rejection; the 500 below cannot fail here.
      this.handlerFailed(request, error);
      return;
    }
    const size = streamRecordsLength(head.length) + streamRecordsLength(body.length) + HEADER_LENGTH + END_REQUEST_RECORD_LENGTH;
    if (size <= SMALL_RESPONSE_BYTES && body.length >= COPIED_BODY_BYTES) {
      this.sendAround(request, head, body);
      this.finish(request);
    } else if (size <= SMALL_RESPONSE_BYTES) {
      this.send(this.wholeResponse(request, head, body));
      this.finish(request);
    } else {
      this.sendLarge(request, head, body).catch((error: unknown) => {
        this.options.log.warn({ err: error, requestId: request.id }, 'FastCGI response write failed');
        this.socket.destroy();
      });
    }
  }

  /** A small response, records and END_REQUEST, in one buffer for one write. */
  private wholeResponse(request: RequestState, head: string, body: Buffer): Buffer {
    const size = streamRecordsLength(head.length) + streamRecordsLength(body.length) + HEADER_LENGTH + END_REQUEST_RECORD_LENGTH;
    const out = Buffer.allocUnsafe(size);
    let offset = writeStreamRecordsLatin1(out, 0, STDOUT, request.id, head);
    offset = writeStreamRecords(out, offset, STDOUT, request.id, body);
    offset = writeRecordHeader(out, offset, STDOUT, request.id, 0, 0);
    writeEndRequest(out, offset, request.id, 0, REQUEST_COMPLETE);
    return out;
  }

  /**
   * A body of one record goes out in place between the records around it, corked: one writev()
   * system call, as cheap as one write, without copying the body (a tile) into a new buffer.
   */
  private sendAround(request: RequestState, head: string, body: Buffer): void {
    const padding = paddingFor(body.length);
    const before = Buffer.allocUnsafe(streamRecordsLength(head.length) + HEADER_LENGTH);
    writeRecordHeader(before, writeStreamRecordsLatin1(before, 0, STDOUT, request.id, head), STDOUT, request.id, body.length, padding);
    const after = Buffer.allocUnsafe(padding + HEADER_LENGTH + END_REQUEST_RECORD_LENGTH);
    after.fill(0, 0, padding);
    writeEndRequest(after, writeRecordHeader(after, padding, STDOUT, request.id, 0, 0), request.id, 0, REQUEST_COMPLETE);
    this.socket.cork();
    this.send(before);
    this.send(body);
    this.send(after);
    this.socket.uncork();
  }

  /**
   * The body goes out in place, one record per write (header and slice corked together), and
   * waits for 'drain' whenever the socket says its buffer is full. Other requests' responses may
   * go out between two records: records of different ids may interleave, bytes of one may not.
   */
  private async sendLarge(request: RequestState, head: string, body: Buffer): Promise<void> {
    const headRecords = Buffer.allocUnsafe(streamRecordsLength(head.length));
    writeStreamRecordsLatin1(headRecords, 0, STDOUT, request.id, head);
    let ok = this.send(headRecords);
    for (let start = 0; start < body.length;) {
      if (!ok) await this.drained();
      if (request.done || this.closed || this.ending) return;
      const length = Math.min(STREAM_CHUNK, body.length - start);
      const padding = paddingFor(length);
      const header = Buffer.allocUnsafe(HEADER_LENGTH);
      writeRecordHeader(header, 0, STDOUT, request.id, length, padding);
      this.socket.cork();
      this.send(header);
      ok = this.send(body.subarray(start, start + length));
      if (padding > 0) ok = this.send(ZEROS.subarray(0, padding));
      this.socket.uncork();
      ok = ok && !this.socket.writableNeedDrain;
      start += length;
    }
    if (request.done || this.closed || this.ending) return;
    const tail = Buffer.allocUnsafe(HEADER_LENGTH + END_REQUEST_RECORD_LENGTH);
    writeEndRequest(tail, writeRecordHeader(tail, 0, STDOUT, request.id, 0, 0), request.id, 0, REQUEST_COMPLETE);
    this.send(tail);
    this.finish(request);
  }

  /** Every write goes through here: nothing is written to a closed socket. */
  private send(data: Buffer): boolean {
    if (this.closed || this.socket.writableEnded || this.socket.destroyed) return false;
    this.options.stats.socketWrites++;
    this.lastActivity = now();
    const ok = this.socket.write(data);
    if (!ok && !this.inputPaused) {
      // A peer that sends requests but does not read answers must not make us buffer without end.
      this.inputPaused = true;
      this.socket.pause();
      // Nor keep the connection for ever: the idle timeout now counts until the next 'drain'.
      this.watch();
    }
    return ok;
  }

  private drained(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private onDrain(): void {
    this.lastActivity = now();
    if (this.inputPaused) {
      this.inputPaused = false;
      this.socket.resume();
    }
    this.wakeWriters();
  }

  private wakeWriters(): void {
    const waiters = this.drainWaiters;
    if (waiters.length === 0) return;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }

  // ---- closing ----

  private violation(reason: string): void {
    this.options.stats.protocolErrors++;
    this.options.log.warn({ reason, remoteAddress: this.socketAddress }, 'FastCGI protocol error; closing the connection');
    this.destroy();
  }

  /** Close after what is queued is flushed (END_REQUEST of the last request included). */
  private end(): void {
    if (this.ending || this.closed) return;
    this.ending = true;
    this.abortAll();
    this.releaseHeld();
    // Keep reading (and ignoring): unread input at close() would make the kernel send RST, which
    // can throw away the response still on its way.
    if (this.inputPaused) {
      this.inputPaused = false;
      this.socket.resume();
    }
    this.socket.end(() => {
      // Cleared on close: at thousands of connections a second, timers left to run out would
      // keep every closed connection (and its buffers) alive for LINGER_MS.
      if (!this.closed) this.lingerTimer = setTimeout(() => this.socket.destroy(), LINGER_MS).unref();
    });
    // A peer that reads nothing more never lets that flush finish: the idle timeout ends the wait.
    this.watch();
  }

  private abortAll(): void {
    for (const request of this.requests.values()) {
      if (request.draining || request.done) continue;
      request.abort();
      request.done = true;
      this.active--;
      this.options.stats.requestsInFlight--;
    }
  }

  private onClose(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.closed) return;
    this.closed = true;
    this.abortAll();
    this.releaseHeld();
    this.requests.clear();
    this.awaiting = 0;
    this.wakeWriters();
    this.options.onClose(this);
  }
}
