/**
 * A counting semaphore: at most `size` holders at once, the others served in arrival order. The
 * engine bounds region exports with it and the JPEG2000 process pool its children, each by the
 * cores: more at once only adds memory, not speed.
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

  /** Runs `task` in a slot, waiting for one first; the slot is given back however it ends. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  private acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}
