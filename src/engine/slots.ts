/**
 * A counting semaphore: at most `size` holders at once, the others served in arrival order. The
 * engine bounds expensive region exports with it and the JPEG2000 process pool its children, each
 * by the cores: more at once only adds memory, not speed.
 *
 * A waiter whose signal aborts (its client went away) leaves the queue at once: nobody is waiting
 * for its answer, and the requests behind it should not wait for it either.
 */
export class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly size: number) {
    this.free = size;
  }

  /** Holders now. */
  get held(): number {
    return this.size - this.free;
  }

  /** Waiters now. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Runs `task` in a slot, waiting for one first; the slot is given back however it ends.
   * @throws the signal's reason when it aborts before the task starts
   */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(signal);
    try {
      signal?.throwIfAborted();
      return await task();
    } finally {
      this.release();
    }
  }

  private acquire(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const index = this.waiting.indexOf(take);
        if (index >= 0) this.waiting.splice(index, 1);
        reject(signal!.reason as Error);
      };
      const take = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(take);
    });
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/**
 * Cheap region renders (thumbnails, small views) the engine runs at once beside `expensive`
 * expensive ones: twice as many, as each takes a few milliseconds. Here rather than in the
 * engine so that the primary process can size the thread pool without loading the engine.
 */
export function cheapRegionConcurrency(expensive: number): number {
  return 2 * expensive;
}
