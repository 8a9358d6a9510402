/**
 * Timeouts and retries shared by the store clients. One attempt gets its own deadline (the
 * caller's signal still wins); an attempt that fails in a way another try may fix (the network, a
 * 5xx, throttling) throws {@link Transient}, and is tried again after a doubling, jittered pause.
 * Anything else (404, 403, 412...) goes straight to the caller. So the worst case of one call is
 * bounded: attempts × requestTimeoutMs plus the pauses, at most backoffMs × (2^(attempts-1) - 1).
 */
import { StoreError, type StoreTimeouts } from './object-store.js';

/** A failure worth another attempt; after the last one it becomes a StoreError 'unavailable'. */
export class Transient extends Error {
  override name = 'Transient';
}

export interface Attempt {
  /** Aborts when the caller gives up or the attempt's time is over. */
  signal: AbortSignal;
  /**
   * Pushes the deadline back by a whole timeout: for downloads, where the timeout bounds the
   * silence between chunks rather than the whole copy, so a large object is not cut off.
   */
  progress(): void;
}

/** A pause that ends early (with the caller's reason) when the signal aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The pause before attempt `index` (1 = the second attempt): between half and all of the doubled back-off. */
export function backoffBefore(index: number, backoffMs: number): number {
  const full = backoffMs * 2 ** (index - 1);
  return full / 2 + Math.random() * (full / 2);
}

/**
 * Runs `attempt` until it succeeds, fails for good, or the attempts run out.
 * @param what names the object in messages, e.g. `s3://bucket/key`
 * @throws the caller's abort reason when `signal` aborts; StoreError otherwise
 */
export async function withAttempts<T>(
  timeouts: StoreTimeouts,
  what: string,
  signal: AbortSignal | undefined,
  attempt: (attempt: Attempt) => Promise<T>,
): Promise<T> {
  const attempts = Math.max(1, Math.floor(timeouts.attempts) || 1);
  let lastProblem = '';
  for (let index = 0; index < attempts; index++) {
    if (index > 0) await pause(backoffBefore(index, timeouts.backoffMs), signal);
    signal?.throwIfAborted();
    const deadline = new AbortController();
    const expire = () => deadline.abort(new Transient(`no answer within ${timeouts.requestTimeoutMs} ms`));
    let timer = setTimeout(expire, timeouts.requestTimeoutMs);
    const combined = signal ? AbortSignal.any([signal, deadline.signal]) : deadline.signal;
    const progress = () => {
      clearTimeout(timer);
      timer = setTimeout(expire, timeouts.requestTimeoutMs);
    };
    try {
      return await untilAborted(attempt({ signal: combined, progress }), combined);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (deadline.signal.aborted) lastProblem = (deadline.signal.reason as Transient).message;
      else if (error instanceof Transient) lastProblem = error.message;
      else throw error;
    } finally {
      clearTimeout(timer);
    }
  }
  const tries = attempts === 1 ? '1 attempt' : `${attempts} attempts`;
  throw new StoreError('unavailable', `${what}: ${lastProblem} (${tries})`);
}

/**
 * The promise, or a rejection as soon as the signal aborts: some work (the SDK's credential chain)
 * does not listen to the signal, and a call must still end on time. What the abandoned work
 * returns later is dropped.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error as Error);
      },
    );
  });
}
