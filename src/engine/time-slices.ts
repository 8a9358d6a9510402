/**
 * Long synchronous work on the event loop (our own TIFF decoders: LZW, PackBits, the predictors,
 * byte swapping, interleaving planes) cut into slices of about {@link SLICE_MS}, so that a worker
 * decoding a 32 MB tile still answers its other requests in between.
 *
 * One budget is shared by everything that runs in the same stretch of synchronous work (a tick
 * and its microtasks, until the next check phase): sixteen tiles of one request started together
 * share one slice, not one each. Work that finds the budget spent waits in one queue; each turn of
 * the event loop resumes the first in the queue for one slice, which then goes to the back. So
 * concurrent decodes take turns, a slice per turn, and the loop polls for I/O between any two.
 *
 * Stopping: a decode given an AbortSignal stops at its next pause once the signal fires (one tile
 * of a request failed: the others' work is no longer wanted).
 */

/**
 * Longest stretch of sliced work between two turns of the event loop. Measured with the default
 * MAX_TILE_BYTES, on the slowest case per byte (a 32 MiB tile of LZW literal codes and 16-bit
 * differencing, test/protocol/hostile-tiffs.test.ts) on a 2-core machine shared with other work:
 * about 360 slices of 2.0 ms CPU (median), the longest 9-13 ms of process CPU (the thread pool's
 * 47 MB read of the tile running beside the first ones); unsliced, the decode held the event loop
 * for 710 ms of CPU in one piece.
 */
export const SLICE_MS = 2;

/**
 * Work between two looks at the clock, in elements of the slowest loops (LZW output bytes at about
 * 30 MB/s: 16 KiB is half a millisecond). Plain copies look far less often.
 */
export const CHECK_ELEMENTS = 16 * 1024;
export const CHECK_COPY_BYTES = 1024 * 1024;

let budgetEnds = 0;
let budgetOpen = false;
const queue: Array<() => void> = [];
let turnScheduled = false;

function closeBudget(): void {
  budgetOpen = false;
}

/** A budget lasts until the next check phase: every other callback of this turn has had its chance by then. */
function openBudget(): void {
  budgetOpen = true;
  budgetEnds = performance.now() + SLICE_MS;
  setImmediate(closeBudget);
}

function turn(): void {
  turnScheduled = false;
  const next = queue.shift();
  if (!next) return;
  openBudget();
  next();
  if (queue.length > 0) scheduleTurn();
}

function scheduleTurn(): void {
  if (turnScheduled) return;
  turnScheduled = true;
  setImmediate(turn);
}

export class TimeSlices {
  constructor(private readonly signal?: AbortSignal) {}

  /** Has this stretch used up its time? Cheap: call it every {@link CHECK_ELEMENTS} or so. */
  due(): boolean {
    if (!budgetOpen) {
      openBudget();
      return false;
    }
    return performance.now() >= budgetEnds;
  }

  /** Waits for a turn of the event loop (behind the work already waiting); throws once the signal has fired. */
  async pause(): Promise<void> {
    this.signal?.throwIfAborted();
    await new Promise<void>((resolve) => {
      queue.push(resolve);
      scheduleTurn();
    });
    this.signal?.throwIfAborted();
  }

  /** Throws once the signal has fired (between steps that do not pause). */
  check(): void {
    this.signal?.throwIfAborted();
  }

  /**
   * `work(from, to)` over [0, total) in pieces of `step`, pausing between pieces when the slice is
   * spent. Without a pause due it runs straight through (a small tile costs one clock look a piece).
   */
  async run(total: number, step: number, work: (from: number, to: number) => void): Promise<void> {
    const piece = Math.max(1, Math.floor(step));
    for (let from = 0; from < total; from += piece) {
      if (from > 0 && this.due()) await this.pause();
      work(from, Math.min(total, from + piece));
    }
  }
}
