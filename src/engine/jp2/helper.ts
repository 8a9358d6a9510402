/**
 * Persistent decoder processes (native/jp2-decoder.c over libopenjp2): each takes one request at
 * a time on its standard input and answers on its standard output, so that a tile costs a decode,
 * not a program start. At most `size` of them (the cores); one that hangs past its time is killed
 * and replaced by a fresh one on the next request; one that crashes fails only its own request.
 * Idle helpers do not keep the server alive, and end by themselves when it goes (end of input).
 *
 * Memory: each helper runs under an address-space limit (its first argument), so that a decode
 * that would need more fails by itself (status 3) instead of taking gigabytes; and each answer
 * says how much the helper still holds once the codec is gone. A helper that ran out, or that
 * still holds more than `maxResidentBytes`, is replaced by a fresh one rather than kept.
 *
 * A file that is not on the disk (an object in a store) is given as a {@link RangeSource}: the
 * helper then asks for the byte ranges the codec reads, one at a time, while the decode runs
 * (native/jp2-decoder.c), and each is answered from the source. A read that fails fails the decode
 * with the source's own error (a store that is down is a 503, not a damaged file); the decode's
 * time limit covers its reads, so a store that hangs cannot hold a helper longer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { DecodeArea } from './decode-area.js';
import type { DecodedPixels } from './pnm.js';
import { DecodeError } from './process-pool.js';

const MAGIC = 0x334b324a;
const HEADER_BYTES = 28;
/** A read request from the helper: magic, length (uint32), offset (uint64). */
const READ_MAGIC = 0x5152324a;
const READ_BYTES = 16;
const STATUS_UNSUPPORTED = 2;
const STATUS_OUT_OF_MEMORY = 3;

/** A file read by byte ranges through its owner (an object in a store). */
export interface RangeSource {
  readonly size: number;
  /** Exactly `length` bytes at `offset` (inside the file); its errors are what the decode fails with. */
  read(offset: number, length: number): Promise<Buffer>;
}

/**
 * Bytes one decode may read of a source, as a multiple of its size: OpenJPEG walks the tile-part
 * headers twice (before and after the tiles it decodes), so a decode of the whole image reads a
 * little more than the file (measured: 1.03x); more is a codec gone wrong.
 */
const MAX_READ_SHARE = 2;
const READ_SLACK = 1024 * 1024;

/** One decode, as the helper reads it from its input line: a file on the disk, or one read through its owner. */
export type HelperRequest = Pick<DecodeArea, 'reduce' | 'layers' | 'x0' | 'y0' | 'x1' | 'y1'> & ({ path: string } | { source: RangeSource });

/** Status 2: the helper cannot do this one (a colour conversion only opj_decompress has). */
export class HelperUnsupported extends Error {
  override name = 'HelperUnsupported';
}

export interface HelperLimits {
  /** Address-space limit of each helper, bytes; 0 = none. */
  memoryBytes: number;
  /** A helper holding more than this after an answer is replaced; 0 = never. */
  maxResidentBytes: number;
}

interface Answer {
  status: number;
  width: number;
  height: number;
  channels: number;
  /** What the helper holds after the decode, bytes (0 when it could not tell). */
  resident: number;
  payload: Buffer;
}

interface Pending {
  resolve: (pixels: DecodedPixels) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
  maxBytes: number;
  source: RangeSource | null;
  /** Bytes read of the source so far. */
  read: number;
  /** Reads of the source under way. */
  reading: number;
  /** The first failed read of the source: what the decode fails with. */
  readError: Error | null;
}

class Helper {
  readonly child: ChildProcess;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private pending: Pending | null = null;
  private errorText = '';
  alive = true;
  /** Ended by us for the memory it used (status 3, or too much kept after a decode). */
  retired = false;

  constructor(
    binary: string,
    private readonly limits: HelperLimits,
  ) {
    const megabytes = Math.floor(limits.memoryBytes / (1024 * 1024));
    this.child = spawn(binary, megabytes > 0 ? [String(megabytes)] : [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (chunk: Buffer) => this.onData(chunk));
    this.child.stderr!.on('data', (chunk: Buffer) => {
      if (this.errorText.length < 1000) this.errorText += chunk.toString('utf8');
    });
    this.child.stdin!.on('error', () => undefined);
    this.child.on('error', (error: NodeJS.ErrnoException) => this.onGone(error.code === 'ENOENT' ? `${binary} is missing` : error.message));
    this.child.on('close', (code, signal) => this.onGone(signal ? `the decoder died of ${signal}` : `the decoder exited with status ${code}`));
    this.idle();
  }

  decode(request: HelperRequest, timeoutMs: number, maxBytes: number): Promise<DecodedPixels> {
    return new Promise((resolve, reject) => {
      if (!this.alive) return reject(new DecodeError('the decoder has gone', 'failed'));
      const timer = setTimeout(() => {
        const stalled = (this.pending?.reading ?? 0) > 0;
        this.fail(new DecodeError(`timed out after ${timeoutMs} ms${stalled ? ' waiting for bytes of the file' : ''}`, stalled ? 'stalled' : 'timeout'));
        this.kill();
      }, timeoutMs);
      const source = 'source' in request ? request.source : null;
      this.pending = { resolve, reject, timer, maxBytes, source, read: 0, reading: 0, readError: null };
      this.busy();
      const { reduce, layers, x0, y0, x1, y1 } = request;
      // `@size` asks for reads; a path starting with @ is written so that it does not.
      const file = 'source' in request ? `@${request.source.size}` : request.path.startsWith('@') ? `./${request.path}` : request.path;
      this.child.stdin!.write(`${reduce} ${layers} ${x0} ${y0} ${x1} ${y1} ${file}\n`);
    });
  }

  /** An idle helper must not keep the event loop (and so the process) alive. */
  private idle(): void {
    this.child.unref();
    for (const stream of [this.child.stdin, this.child.stdout, this.child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
  }

  private busy(): void {
    this.child.ref();
    for (const stream of [this.child.stdin, this.child.stdout, this.child.stderr]) (stream as unknown as { ref?: () => void }).ref?.();
  }

  /** The answer being read: its header once complete, and its payload filled in place. */
  private answer: (Answer & { filled: number }) | null = null;

  private onData(chunk: Buffer): void {
    while (chunk.length > 0) {
      if (!this.answer) {
        this.chunks.push(chunk);
        this.buffered += chunk.length;
        if (this.buffered < 4) return;
        const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
        const isRead = all.readUInt32LE(0) === READ_MAGIC;
        if (all.length < (isRead ? READ_BYTES : HEADER_BYTES)) {
          this.chunks = [all];
          return;
        }
        this.chunks = [];
        this.buffered = 0;
        if (isRead) {
          if (!this.onRead(all.readUInt32LE(4), Number(all.readBigUInt64LE(8)))) return;
          chunk = all.subarray(READ_BYTES);
          continue;
        }
        const [magic, status, width, height, channels, length, residentKb] = [0, 4, 8, 12, 16, 20, 24].map((o) => all.readUInt32LE(o)) as [
          number,
          number,
          number,
          number,
          number,
          number,
          number,
        ];
        if (!this.pending || magic !== MAGIC) {
          this.fail(new DecodeError('the decoder answered garbage', 'failed'));
          this.kill();
          return;
        }
        if (length > this.pending.maxBytes) {
          this.fail(new DecodeError(`the decoder sent ${length} bytes where at most ${this.pending.maxBytes} were expected`, 'overflow'));
          this.kill();
          return;
        }
        this.answer = { status, width, height, channels, resident: residentKb * 1024, payload: Buffer.allocUnsafe(length), filled: 0 };
        chunk = all.subarray(HEADER_BYTES);
        continue;
      }
      const answer = this.answer;
      const take = Math.min(chunk.length, answer.payload.length - answer.filled);
      chunk.copy(answer.payload, answer.filled, 0, take);
      answer.filled += take;
      chunk = chunk.subarray(take);
      if (answer.filled < answer.payload.length) return;
      this.answer = null;
      this.finish(answer);
    }
  }

  /**
   * A read asked for by the helper: answered from the source with a count and the bytes, or with
   * a count of 0 when the read fails (the decode then fails, with the read's error). A read the
   * protocol does not allow (no source, beyond the end, more than a decode may read) ends the helper.
   * @returns false when the helper was ended
   */
  private onRead(length: number, offset: number): boolean {
    const pending = this.pending;
    const source = pending?.source;
    const refuse = (why: string) => {
      this.fail(new DecodeError(`the decoder asked for ${why}`, 'failed'));
      this.kill();
      return false;
    };
    if (!pending || !source) return refuse('a read of a file it was given by path');
    if (length === 0 || offset + length > source.size) return refuse(`${length} bytes at ${offset} of a ${source.size}-byte file`);
    pending.read += length;
    if (pending.read > MAX_READ_SHARE * source.size + READ_SLACK) return refuse(`${pending.read} bytes of a ${source.size}-byte file`);
    pending.reading++;
    const answer = (bytes: Buffer | null) => {
      pending.reading--;
      // A decode that ended meanwhile (timed out, killed): nobody waits for this answer.
      if (this.pending !== pending || !this.alive) return;
      const count = Buffer.allocUnsafe(4);
      count.writeUInt32LE(bytes ? bytes.length : 0);
      this.child.stdin!.write(bytes ? Buffer.concat([count, bytes]) : count);
    };
    source
      .read(offset, length)
      .then((bytes) => {
        if (bytes.length !== length) throw new Error(`the source gave ${bytes.length} bytes for a read of ${length}`);
        answer(bytes);
      })
      .catch((error: unknown) => {
        pending.readError ??= error instanceof Error ? error : new Error(String(error));
        answer(null);
      });
    return true;
  }

  private finish(answer: Answer): void {
    const pending = this.pending;
    if (!pending) return;
    clearTimeout(pending.timer);
    this.pending = null;
    this.idle();
    const { status, width, height, channels, payload } = answer;
    // Before answering, so that the pool never hands this helper out again.
    if (status === STATUS_OUT_OF_MEMORY || (this.limits.maxResidentBytes > 0 && answer.resident > this.limits.maxResidentBytes)) this.retire();
    // OpenJPEG takes a file that ends early for a truncated one, and may decode what it had.
    if (pending.readError) return pending.reject(pending.readError);
    if (status === STATUS_UNSUPPORTED) return pending.reject(new HelperUnsupported(payload.toString('utf8')));
    if (status === STATUS_OUT_OF_MEMORY) return pending.reject(new DecodeError(payload.toString('utf8'), 'memory'));
    if (status !== 0) return pending.reject(new DecodeError(payload.toString('utf8'), 'failed'));
    const samples = width * height * channels;
    if (payload.length === samples) return pending.resolve({ data: payload, width, height, channels });
    if (payload.length === samples * 2 && samples > 0) {
      // allocUnsafe may hand out a slice of a shared pool: 16-bit views need their own aligned buffer.
      const data =
        payload.byteOffset % 2 === 0
          ? new Uint16Array(payload.buffer, payload.byteOffset, samples)
          : new Uint16Array(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.length));
      return pending.resolve({ data, width, height, channels });
    }
    pending.reject(new DecodeError('the decoder sent a short image', 'failed'));
  }

  private fail(error: Error): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = null;
    clearTimeout(pending.timer);
    pending.reject(error);
  }

  private onGone(why: string): void {
    this.alive = false;
    const detail = this.errorText.replace(/\s+/g, ' ').trim().slice(0, 300);
    this.fail(new DecodeError(`${why}${detail ? `: ${detail}` : ''}`, /missing/.test(why) ? 'unavailable' : 'failed'));
  }

  kill(): void {
    this.alive = false;
    this.child.kill('SIGKILL');
  }

  /** Idle, but holding memory a fresh process would not: end it (at end of input it exits). */
  private retire(): void {
    this.retired = true;
    this.alive = false;
    this.child.stdin!.end();
  }
}

export class HelperPool {
  private readonly idleHelpers: Helper[] = [];
  private readonly all = new Set<Helper>();
  private readonly waiting: Array<(helper: Helper) => void> = [];
  /** Helpers replaced for the memory they used or kept (tests, statistics). */
  replaced = 0;
  /** Helpers that went (died, timed out, retired): the next decode that needs one starts a new one. */
  restarts = 0;

  constructor(
    private readonly binary: string,
    readonly size: number,
    private readonly limits: HelperLimits = { memoryBytes: 0, maxResidentBytes: 0 },
  ) {}

  /** The process ids of the helpers alive now (tests). */
  get pids(): number[] {
    return [...this.all].filter((h) => h.alive && h.child.pid !== undefined).map((h) => h.child.pid!);
  }

  /** Helper processes alive now. */
  get processes(): number {
    return [...this.all].filter((h) => h.alive).length;
  }

  async decode(request: HelperRequest, timeoutMs: number, maxBytes: number): Promise<DecodedPixels> {
    const helper = await this.acquire();
    try {
      return await helper.decode(request, timeoutMs, maxBytes);
    } finally {
      this.release(helper);
    }
  }

  private acquire(): Promise<Helper> {
    while (this.idleHelpers.length > 0) {
      const helper = this.idleHelpers.pop()!;
      if (helper.alive) return Promise.resolve(helper);
      this.restarts++;
      this.all.delete(helper);
    }
    if (this.all.size < this.size) return Promise.resolve(this.spawn());
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private spawn(): Helper {
    const helper = new Helper(this.binary, this.limits);
    this.all.add(helper);
    return helper;
  }

  private release(helper: Helper): void {
    if (!helper.alive) {
      if (helper.retired) this.replaced++;
      this.restarts++;
      this.all.delete(helper);
      const next = this.waiting.shift();
      if (next) next(this.spawn());
      return;
    }
    const next = this.waiting.shift();
    if (next) next(helper);
    else this.idleHelpers.push(helper);
  }

  /** Ends every helper (shutdown, tests). */
  close(): void {
    for (const helper of this.all) helper.kill();
    this.all.clear();
    this.idleHelpers.length = 0;
  }
}
