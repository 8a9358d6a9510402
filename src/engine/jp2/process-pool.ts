/**
 * Runs codec programs (opj_decompress, the JPEG2000 encoder) with bounded concurrency: at most
 * `size` children at once (more than the cores only adds memory and context switches), each killed
 * when it outlives its time or writes more than it may, and always waited for, so that none is
 * left behind as a zombie.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Slots } from '../slots.js';

/**
 * `failed`: the program said no (a damaged file); `memory`: the file needs more memory than a
 * decoder may have (the file's fault too); `stalled`: the decode timed out waiting for bytes of a
 * file read through its owner (a store that does not answer); the others are the server's trouble.
 */
export type DecodeFailure = 'failed' | 'memory' | 'timeout' | 'overflow' | 'unavailable' | 'stalled';

export class DecodeError extends Error {
  override name = 'DecodeError';
  constructor(
    message: string,
    readonly kind: DecodeFailure = 'failed',
  ) {
    super(message);
  }
}

export interface RunOptions {
  timeoutMs: number;
  /** Most bytes of output accepted; a child writing more is killed. */
  maxBytes: number;
  /** Written in turn to the child's standard input (which is otherwise closed). */
  input?: Buffer[];
}

export class ProcessPool {
  private readonly slots: Slots;
  private readonly children = new Set<ChildProcess>();

  constructor(readonly size: number) {
    this.slots = new Slots(size);
  }

  /** Children running now (for tests and statistics). */
  get active(): number {
    return this.slots.held;
  }

  /**
   * The child's standard output once it exits with status 0.
   * @throws DecodeError when it fails, times out or writes too much (with its error output)
   */
  run(command: string, args: string[], options: RunOptions): Promise<Buffer> {
    return this.slots.run(() => this.spawnOne(command, args, options));
  }

  private spawnOne(command: string, args: string[], options: RunOptions): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, { stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
      this.children.add(child);
      if (options.input) {
        // A child that dies early closes its input: its exit status tells why, not the EPIPE.
        child.stdin!.on('error', () => undefined);
        for (const part of options.input) child.stdin!.write(part);
        child.stdin!.end();
      }
      const chunks: Buffer[] = [];
      let bytes = 0;
      let errorText = '';
      let failure: string | null = null;
      let kind: DecodeFailure = 'failed';
      const kill = (why: string, reason: DecodeFailure) => {
        if (failure === null) [failure, kind] = [why, reason];
        child.kill('SIGKILL');
      };
      const timer = setTimeout(() => kill(`timed out after ${options.timeoutMs} ms`, 'timeout'), options.timeoutMs);
      child.stdout!.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > options.maxBytes) kill(`wrote more than the ${options.maxBytes} bytes expected`, 'overflow');
        else chunks.push(chunk);
      });
      child.stderr!.on('data', (chunk: Buffer) => {
        if (errorText.length < 2000) errorText += chunk.toString('utf8');
      });
      child.on('error', (error: NodeJS.ErrnoException) => {
        if (failure === null) [failure, kind] = [`${command}: ${error.message}`, error.code === 'ENOENT' ? 'unavailable' : 'failed'];
      });
      // 'close' comes after the exit has been reaped and both pipes have ended.
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        this.children.delete(child);
        if (failure === null && code === 0) return resolve(Buffer.concat(chunks, bytes));
        const detail = errorText.replace(/\s+/g, ' ').trim().slice(0, 300);
        const why = failure ?? (signal ? `killed by ${signal}` : `exit status ${code}`);
        reject(new DecodeError(`${why}${detail ? `: ${detail}` : ''}`, kind));
      });
    });
  }

  /** Kills every child still running (shutdown). */
  killAll(): void {
    for (const child of this.children) child.kill('SIGKILL');
  }
}
