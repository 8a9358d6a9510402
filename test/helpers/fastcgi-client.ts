/**
 * A deliberately small FastCGI client for the tests: it builds records by hand (independently
 * of src/server/fastcgi/records.ts, so the server is not checked against its own encoder), sends
 * arbitrary bytes, and sorts what comes back by request id.
 */
import net from 'node:net';

export const FCGI = {
  BEGIN_REQUEST: 1,
  ABORT_REQUEST: 2,
  END_REQUEST: 3,
  PARAMS: 4,
  STDIN: 5,
  STDOUT: 6,
  STDERR: 7,
  DATA: 8,
  GET_VALUES: 9,
  GET_VALUES_RESULT: 10,
  UNKNOWN_TYPE: 11,
  RESPONDER: 1,
  AUTHORIZER: 2,
  FILTER: 3,
  KEEP_CONN: 1,
  REQUEST_COMPLETE: 0,
  CANT_MPX_CONN: 1,
  OVERLOADED: 2,
  UNKNOWN_ROLE: 3,
} as const;

export interface RawRecord {
  version: number;
  type: number;
  requestId: number;
  content: Buffer;
  paddingLength: number;
  padding: Buffer;
}

/** One record; `padding` defaults to what aligns it to 8 bytes. `version` may be set to anything. */
export function record(type: number, requestId: number, content: Buffer = Buffer.alloc(0), padding?: number, version = 1): Buffer {
  const pad = padding ?? (8 - (content.length % 8)) % 8;
  const out = Buffer.alloc(8 + content.length + pad);
  out[0] = version;
  out[1] = type;
  out.writeUInt16BE(requestId, 2);
  out.writeUInt16BE(content.length, 4);
  out[6] = pad;
  content.copy(out, 8);
  return out;
}

function encodeLength(length: number): Buffer {
  if (length < 128) return Buffer.from([length]);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((length | 0x80000000) >>> 0);
  return out;
}

export type Pairs = Array<[string | Buffer, string | Buffer]> | Record<string, string>;

/** Name-value pairs; strings are taken as latin1 bytes, Buffers as they are. */
export function nameValuePairs(pairs: Pairs): Buffer {
  const list = Array.isArray(pairs) ? pairs : Object.entries(pairs);
  const parts: Buffer[] = [];
  for (const [name, value] of list) {
    const n = typeof name === 'string' ? Buffer.from(name, 'latin1') : name;
    const v = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
    parts.push(encodeLength(n.length), encodeLength(v.length), n, v);
  }
  return Buffer.concat(parts);
}

export function beginRequest(requestId: number, options: { role?: number; keepConn?: boolean } = {}): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(options.role ?? FCGI.RESPONDER, 0);
  body[2] = options.keepConn ? FCGI.KEEP_CONN : 0;
  return record(FCGI.BEGIN_REQUEST, requestId, body);
}

/** A stream (PARAMS, STDIN) cut into records of at most `chunk` bytes, plus the empty end record. */
export function streamRecords(type: number, requestId: number, data: Buffer, chunk = 65535): Buffer {
  const parts: Buffer[] = [];
  for (let start = 0; start < data.length; start += chunk) parts.push(record(type, requestId, data.subarray(start, start + chunk)));
  parts.push(record(type, requestId));
  return Buffer.concat(parts);
}

export function paramsRecords(requestId: number, pairs: Pairs, chunk?: number): Buffer {
  return streamRecords(FCGI.PARAMS, requestId, nameValuePairs(pairs), chunk);
}

export function stdinRecords(requestId: number, data: Buffer = Buffer.alloc(0), chunk?: number): Buffer {
  return streamRecords(FCGI.STDIN, requestId, data, chunk);
}

export const DEFAULT_PARAMS: Record<string, string> = {
  REQUEST_METHOD: 'GET',
  REQUEST_URI: '/fcgi-bin/iipsrv.fcgi?FIF=x.tif&OBJ=IIP,1.0',
  QUERY_STRING: 'FIF=x.tif&OBJ=IIP,1.0',
  SCRIPT_NAME: '/fcgi-bin/iipsrv.fcgi',
  REMOTE_ADDR: '192.0.2.7',
};

/** BEGIN_REQUEST + PARAMS + empty STDIN, as nginx sends them. */
export function fullRequest(requestId: number, options: { params?: Pairs; keepConn?: boolean; role?: number; stdin?: Buffer } = {}): Buffer {
  return Buffer.concat([beginRequest(requestId, options), paramsRecords(requestId, options.params ?? DEFAULT_PARAMS), stdinRecords(requestId, options.stdin)]);
}

export interface Reply {
  /** STDOUT contents joined (computed on access). */
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** Every record for this id, in arrival order. */
  records: RawRecord[];
  end: { appStatus: number; protocolStatus: number } | null;
}

export interface CgiResponse {
  status: string;
  headers: Array<[string, string]>;
  body: Buffer;
}

/** Splits what a responder wrote on STDOUT into its CGI header block and body. */
export function parseCgiResponse(stdout: Buffer): CgiResponse {
  const blank = stdout.indexOf('\r\n\r\n');
  if (blank < 0) throw new Error(`no header/body separator in ${JSON.stringify(stdout.subarray(0, 200).toString('latin1'))}`);
  const lines = stdout.subarray(0, blank).toString('latin1').split('\r\n');
  const headers: Array<[string, string]> = [];
  let status = '';
  for (const line of lines) {
    const colon = line.indexOf(': ');
    const name = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (name === 'Status') status = value;
    else headers.push([name, value]);
  }
  return { status, headers, body: stdout.subarray(blank + 4) };
}

export class FastCgiTestClient {
  readonly socket: net.Socket;
  /** Every record received, in order. */
  readonly received: RawRecord[] = [];
  /** Number of 'data' events. */
  dataEvents = 0;
  closed = false;
  /** Set when the server's bytes did not parse as records. */
  parseError: string | null = null;
  private pending: Buffer = Buffer.alloc(0);
  private readonly replies = new Map<number, Reply>();
  private readonly listeners = new Set<() => void>();
  readonly closedPromise: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.dataEvents++;
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
      this.parse();
      this.notify();
    });
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        this.notify();
        resolve();
      }),
    );
  }

  static connect(target: { port: number; host?: string } | { path: string }): Promise<FastCgiTestClient> {
    return new Promise((resolve, reject) => {
      const socket = 'path' in target ? net.connect({ path: target.path }) : net.connect(target.port, target.host ?? '127.0.0.1');
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new FastCgiTestClient(socket));
      });
      socket.once('error', reject);
    });
  }

  private parse(): void {
    while (this.pending.length >= 8) {
      const header = this.pending;
      const contentLength = header.readUInt16BE(4);
      const paddingLength = header[6]!;
      const total = 8 + contentLength + paddingLength;
      if (header.length < total) return;
      const raw: RawRecord = {
        version: header[0]!,
        type: header[1]!,
        requestId: header.readUInt16BE(2),
        content: Buffer.from(header.subarray(8, 8 + contentLength)),
        paddingLength,
        padding: Buffer.from(header.subarray(8 + contentLength, total)),
      };
      if (raw.version !== 1) this.parseError ??= `record with version ${raw.version}`;
      this.pending = this.pending.subarray(total);
      this.received.push(raw);
      const reply = this.reply(raw.requestId);
      reply.records.push(raw);
      if (reply.end !== null) this.parseError ??= `record of type ${raw.type} after END_REQUEST for id ${raw.requestId}`;
      if (raw.type === FCGI.END_REQUEST) {
        reply.end = { appStatus: raw.content.readUInt32BE(0), protocolStatus: raw.content[4]! };
      }
    }
  }

  /** What has arrived for `requestId` so far (id 0: management records). */
  reply(requestId: number): Reply {
    let reply = this.replies.get(requestId);
    if (reply === undefined) {
      const records: RawRecord[] = [];
      const joined = (type: number) => Buffer.concat(records.filter((r) => r.type === type).map((r) => r.content));
      reply = {
        records,
        end: null,
        get stdout() {
          return joined(FCGI.STDOUT);
        },
        get stderr() {
          return joined(FCGI.STDERR);
        },
      };
      this.replies.set(requestId, reply);
    }
    return reply;
  }

  /** Drops what was collected for `requestId`, so that the id can be used again. */
  forget(requestId: number): void {
    this.replies.delete(requestId);
  }

  hasReply(requestId: number): boolean {
    return this.replies.has(requestId);
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Resolves once `check()` is true (re-checked on every arrival); rejects after timeoutMs. */
  waitUntil(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const listener = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve();
      };
      this.listeners.add(listener);
    });
  }

  async waitForEnd(requestId: number, timeoutMs = 5000): Promise<Reply> {
    await this.waitUntil(() => this.reply(requestId).end !== null, `END_REQUEST for id ${requestId}`, timeoutMs);
    return this.reply(requestId);
  }

  async waitForRecord(type: number, timeoutMs = 5000): Promise<RawRecord> {
    await this.waitUntil(() => this.received.some((r) => r.type === type), `a record of type ${type}`, timeoutMs);
    return this.received.find((r) => r.type === type)!;
  }

  waitForClose(timeoutMs = 5000): Promise<void> {
    return this.waitUntil(() => this.closed, 'the connection to close', timeoutMs);
  }

  /** Sends a full request (forgetting an earlier reply for the id) and returns its parsed CGI response. */
  async request(requestId: number, options: Parameters<typeof fullRequest>[1] = {}): Promise<CgiResponse & { reply: Reply }> {
    this.forget(requestId);
    this.send(fullRequest(requestId, options));
    const reply = await this.waitForEnd(requestId);
    return { ...parseCgiResponse(reply.stdout), reply };
  }

  destroy(): void {
    this.socket.destroy();
  }
}
