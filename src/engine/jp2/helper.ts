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
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { DecodeArea } from './decode-area.js';
import type { DecodedPixels } from './pnm.js';
import { DecodeError } from './process-pool.js';

const MAGIC = 0x334b324a;
const HEADER_BYTES = 28;
const STATUS_UNSUPPORTED = 2;
const STATUS_OUT_OF_MEMORY = 3;

/** One decode, as the helper reads it from its input line. */
export type HelperRequest = Pick<DecodeArea, 'reduce' | 'layers' | 'x0' | 'y0' | 'x1' | 'y1'> & { path: string };

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
        this.fail(new DecodeError(`timed out after ${timeoutMs} ms`, 'timeout'));
        this.kill();
      }, timeoutMs);
      this.pending = { resolve, reject, timer, maxBytes };
      this.busy();
      const { reduce, layers, x0, y0, x1, y1, path } = request;
      this.child.stdin!.write(`${reduce} ${layers} ${x0} ${y0} ${x1} ${y1} ${path}\n`);
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
        if (this.buffered < HEADER_BYTES) return;
        const all = Buffer.concat(this.chunks, this.buffered);
        this.chunks = [];
        this.buffered = 0;
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

  private finish(answer: Answer): void {
    const pending = this.pending;
    if (!pending) return;
    clearTimeout(pending.timer);
    this.pending = null;
    this.idle();
    const { status, width, height, channels, payload } = answer;
    // Before answering, so that the pool never hands this helper out again.
    if (status === STATUS_OUT_OF_MEMORY || (this.limits.maxResidentBytes > 0 && answer.resident > this.limits.maxResidentBytes)) this.retire();
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
