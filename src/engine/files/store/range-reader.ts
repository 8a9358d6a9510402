/**
 * Exact byte ranges of one object (tile data), fetched so that a screen of tiles costs a few round
 * trips: reads asked for in the same turn of the event loop that touch or overlap are merged into
 * one ranged request, and a read of bytes already being fetched waits for that fetch.
 */

/** A merged request larger than this is split: one slow transfer should not hold many tiles. */
const MAX_MERGED_BYTES = 8 * 1024 * 1024;

interface Pending {
  start: number;
  end: number;
  resolve: (bytes: Buffer) => void;
  reject: (error: unknown) => void;
}

export class RangeReader {
  private pending: Pending[] = [];
  private readonly inflight = new Map<string, Promise<Buffer>>();
  /** Ranged requests made, and reads they answered (for tests and the benchmark). */
  requests = 0;
  reads = 0;

  constructor(private readonly fetch: (start: number, end: number) => Promise<Buffer>) {}

  /** Bytes [start, end); end > start. */
  read(start: number, end: number): Promise<Buffer> {
    const key = `${start}-${end}`;
    const running = this.inflight.get(key);
    if (running) return running;
    this.reads++;
    const promise = new Promise<Buffer>((resolve, reject) => {
      this.pending.push({ start, end, resolve, reject });
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
    this.inflight.set(key, promise);
    const forget = () => this.inflight.delete(key);
    promise.then(forget, forget);
    return promise;
  }

  private flush(): void {
    const reads = this.pending.sort((a, b) => a.start - b.start);
    this.pending = [];
    let run: Pending[] = [];
    let runStart = 0;
    let runEnd = 0;
    for (const read of reads) {
      if (run.length > 0 && read.start <= runEnd && Math.max(runEnd, read.end) - runStart <= MAX_MERGED_BYTES) {
        run.push(read);
        runEnd = Math.max(runEnd, read.end);
        continue;
      }
      if (run.length > 0) this.send(run, runStart, runEnd);
      run = [read];
      runStart = read.start;
      runEnd = read.end;
    }
    if (run.length > 0) this.send(run, runStart, runEnd);
  }

  private send(run: Pending[], start: number, end: number): void {
    this.requests++;
    this.fetch(start, end).then(
      (bytes) => {
        for (const read of run) read.resolve(bytes.subarray(read.start - start, read.end - start));
      },
      (error: unknown) => {
        for (const read of run) read.reject(error);
      },
    );
  }
}
