/**
 * A log file (or stderr) written without ever blocking the event loop. A synchronous write waits
 * for the disk, or forever for a pipe nobody reads, and the whole worker waits with it. Here lines
 * queue in memory and go out one asynchronous write at a time (on libuv's thread pool). The queue
 * is bounded: when the target cannot keep up, new lines are dropped and counted rather than waited
 * for, and a line saying how many were lost follows as soon as there is room again.
 */
import { close, open, openSync, write } from 'node:fs';
import path from 'node:path';
import { makeDirectoriesSync } from './make-directories.js';

/** About 4 000 request lines: a second or more of a busy server's log while the disk stalls. */
export const MAX_QUEUED_BYTES = 1 << 20;

/** How soon to try again when a non-blocking pipe is full. */
const RETRY_MS = 20;

/**
 * POSIX's PIPE_BUF on Linux: a pipe takes a write of up to this many bytes whole, never mixed
 * with another process's. Every worker writes to the same stdout or stderr, so writes there end
 * at a line's end within this size; a file opened for appending needs no such care.
 */
const PIPE_ATOMIC_BYTES = 4096;

export interface LogDestinationOptions {
  maxQueuedBytes?: number;
  /** Called, once there is room again, with the number of lines lost since the last call. */
  onDropped?: (lines: number) => void;
}

export class AsyncLogDestination {
  private queue: string[] = [];
  /** Bytes queued and in flight: the memory the log holds. */
  private queuedBytes = 0;
  /** A write or a reopen is under way; the next one starts when it ends. */
  private busy = false;
  private reopenWanted = false;
  /** Lines queued when the reopen was asked for: they were logged before it and go to the old file. */
  private linesBeforeReopen = 0;
  private dropped = 0;
  /** No note about lost lines while writes fail: the note would be lost too, and again. */
  private failing = false;
  private waiting: Array<() => void> = [];
  private readonly maxQueuedBytes: number;

  private constructor(
    private fd: number,
    private readonly file: string | null,
    private readonly options: LogDestinationOptions,
  ) {
    this.maxQueuedBytes = options.maxQueuedBytes ?? MAX_QUEUED_BYTES;
  }

  /**
   * Opens the file for appending, synchronously: at start-up, so that a LOGFILE that cannot be
   * written is reported at once.
   * @throws the open's error
   */
  static appendTo(file: string, options: LogDestinationOptions = {}): AsyncLogDestination {
    makeDirectoriesSync(path.dirname(file));
    return new AsyncLogDestination(openSync(file, 'a'), file, options);
  }

  static stderr(options: LogDestinationOptions = {}): AsyncLogDestination {
    return new AsyncLogDestination(2, null, options);
  }

  static stdout(options: LogDestinationOptions = {}): AsyncLogDestination {
    return new AsyncLogDestination(1, null, options);
  }

  /** pino's stream interface: one line, newline included. */
  write(line: string): void {
    const bytes = Buffer.byteLength(line);
    if (this.queuedBytes + bytes > this.maxQueuedBytes) {
      this.dropped++;
      return;
    }
    this.queue.push(line);
    this.queuedBytes += bytes;
    this.pump();
  }

  /** After logrotate moved the file: later lines go to a new file of the same name. */
  reopen(): void {
    if (this.file === null) return;
    this.reopenWanted = true;
    this.linesBeforeReopen = this.queue.length;
    this.pump();
  }

  /** Resolves once everything queued is written, or after `timeoutMs` (exiting must not hang on a stuck disk). */
  flush(timeoutMs = 2000): Promise<void> {
    if (!this.busy && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.waiting.push(done);
    });
  }

  private pump(): void {
    if (this.busy) return;
    if (this.reopenWanted && this.linesBeforeReopen > 0) {
      const chunk = Buffer.from(this.queue.splice(0, this.linesBeforeReopen).join(''), 'utf8');
      this.linesBeforeReopen = 0;
      this.busy = true;
      this.send(chunk, 0);
      return;
    }
    if (this.reopenWanted && this.file !== null) {
      this.reopenWanted = false;
      this.busy = true;
      open(this.file, 'a', (error, fd) => {
        if (!error) {
          close(this.fd, () => undefined);
          this.fd = fd;
        }
        // Else the old file keeps the lines: better than none.
        this.busy = false;
        this.pump();
      });
      return;
    }
    if (this.dropped > 0 && !this.failing && this.queuedBytes < this.maxQueuedBytes / 2 && this.options.onDropped) {
      const lines = this.dropped;
      this.dropped = 0;
      // Writes the note through the logger, which comes back to write(): queued, not yet sent.
      this.busy = true;
      this.options.onDropped(lines);
      this.busy = false;
    }
    if (this.queue.length === 0) {
      for (const done of this.waiting.splice(0)) done();
      return;
    }
    const chunk = Buffer.from(this.file === null ? this.takeAtomic() : this.queue.splice(0).join(''), 'utf8');
    this.busy = true;
    this.send(chunk, 0);
  }

  /** Whole lines from the queue's head, as many as fit in one atomic pipe write (at least one). */
  private takeAtomic(): string {
    let bytes = 0;
    let lines = 0;
    for (const line of this.queue) {
      bytes += Buffer.byteLength(line);
      if (lines > 0 && bytes > PIPE_ATOMIC_BYTES) break;
      lines++;
    }
    return this.queue.splice(0, lines).join('');
  }

  private send(chunk: Buffer, offset: number): void {
    write(this.fd, chunk, offset, chunk.length - offset, null, (error, written) => {
      if (error && (error.code === 'EAGAIN' || error.code === 'EWOULDBLOCK')) {
        setTimeout(() => this.send(chunk, offset), RETRY_MS).unref();
        return;
      }
      if (!error && offset + written < chunk.length) {
        this.send(chunk, offset + written);
        return;
      }
      // A failed write (disk full, stderr closed) loses its lines; later ones try again.
      if (error) this.dropped += countLines(chunk.subarray(offset));
      this.failing = error !== null;
      this.queuedBytes -= chunk.length;
      this.busy = false;
      this.pump();
    });
  }
}

function countLines(bytes: Buffer): number {
  let lines = 0;
  for (let at = bytes.indexOf(0x0a); at >= 0; at = bytes.indexOf(0x0a, at + 1)) lines++;
  return lines;
}
