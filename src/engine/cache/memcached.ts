/**
 * The memcached tier: finished tiles shared by every worker and every instance, which is how a
 * site grows past one machine. It must never fail a request nor hold one up for long:
 *  - every get is raced against a short deadline;
 *  - sets are fire-and-forget;
 *  - after a failure the tier is skipped for a back-off period (a circuit breaker), so a dead or
 *    frozen memcached costs requests nothing; one probe at a time tries it again afterwards.
 */
import { createHash } from 'node:crypto';
import memjs from 'memjs';
import type { MemcachedServer } from '../../config.js';

const LEASE_VALUE = Buffer.from('1');

export interface MemcachedTierOptions {
  servers: MemcachedServer[];
  /** Entry lifetime in seconds (MEMCACHED_TIMEOUT). */
  lifetimeSeconds: number;
  /** Longest a lookup may delay a request. */
  getDeadlineMs?: number;
  /** Back-off after a failure: starts here and doubles up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Largest value stored (memcached's default item limit is 1 MB). */
  maxValueBytes?: number;
  onStateChange?: (up: boolean, reason: string) => void;
}

export class MemcachedTier {
  private readonly client: memjs.Client;
  private readonly getDeadlineMs: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly maxValueBytes: number;
  private backoffMs: number;
  /** While Date.now() is below this, the tier is skipped. */
  private openUntil = 0;
  private probing = false;
  private up = true;
  hits = 0;
  misses = 0;
  skipped = 0;
  /** Lookups that found another worker or instance computing the value (lease held elsewhere). */
  leasesWaited = 0;
  /** Waits for such a value that ran out of time. */
  leaseTimeouts = 0;
  /** Sets memcached confirmed, refused or failed; not sent: larger than memcached takes, or while it was skipped. */
  setsStored = 0;
  setsFailed = 0;
  setsTooBig = 0;
  setsSkipped = 0;
  private readonly pendingSets = new Set<Promise<void>>();

  constructor(private readonly options: MemcachedTierOptions) {
    const servers = options.servers.map((s) => (s.host.includes(':') ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`)).join(',');
    this.client = memjs.Client.create(servers, {
      // memjs' own retries would multiply the delay; the breaker below does the retrying.
      retries: 1,
      retry_delay: 0,
      timeout: 0.2,
      conntimeout: 0.2,
      failover: options.servers.length > 1,
      keepAlive: true,
      expires: options.lifetimeSeconds,
      logger: { log: () => undefined },
    });
    this.getDeadlineMs = options.getDeadlineMs ?? 60;
    this.baseBackoffMs = options.backoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.backoffMs = this.baseBackoffMs;
    this.maxValueBytes = options.maxValueBytes ?? 1_000_000;
  }

  /** memcached keys are at most 250 bytes without spaces: hash ours. */
  static key(key: string): string {
    return `iipsrv-ts:${createHash('sha1').update(key).digest('base64url')}`;
  }

  private available(): boolean {
    if (Date.now() >= this.openUntil) return true;
    this.skipped++;
    return false;
  }

  private failed(reason: string): void {
    const now = Date.now();
    // Already backing off: this is one more of the requests sent before the breaker opened (memjs
    // fails every request waiting on a socket at once, a set as well as a get). One outage, one
    // step of back-off: doubling it for each of them put a tier that had a few sets in flight
    // when memcached froze straight at the longest back-off, skipping memcached for 30 s after it
    // came back.
    if (now < this.openUntil) return;
    this.openUntil = now + this.backoffMs;
    this.backoffMs = Math.min(this.maxBackoffMs, this.backoffMs * 2);
    if (this.up) {
      this.up = false;
      this.options.onStateChange?.(false, reason);
    }
  }

  private succeeded(): void {
    this.backoffMs = this.baseBackoffMs;
    if (!this.up) {
      this.up = true;
      this.options.onStateChange?.(true, 'answering again');
    }
  }

  /** @param counted false for the polls of a lease wait, which are no lookups of a request's own */
  async get(key: string, counted = true): Promise<Buffer | null> {
    const answer = await this.lookUp(key);
    if (answer === null) return null;
    if (counted) {
      if (answer.value) this.hits++;
      else this.misses++;
    }
    return answer.value;
  }

  /**
   * A lookup that tells a miss (`{ value: null }`) from no answer (null: the breaker skips
   * memcached, or it failed or missed the deadline), for callers that must not take silence for
   * absence. Counts no hit or miss.
   */
  async lookUp(key: string): Promise<{ value: Buffer | null } | null> {
    if (!this.available()) return null;
    // After a back-off, let a single request find out whether memcached is back.
    if (!this.up) {
      if (this.probing) {
        this.skipped++;
        return null;
      }
      this.probing = true;
    }
    try {
      const result = await withinDeadline(this.client.get(MemcachedTier.key(key)), this.getDeadlineMs);
      if (result === 'timeout') {
        this.failed(`no answer within ${this.getDeadlineMs} ms`);
        return null;
      }
      this.succeeded();
      return { value: result.value ?? null };
    } catch (error) {
      this.failed((error as Error).message);
      return null;
    } finally {
      this.probing = false;
    }
  }

  /** Whether memcached answered its last request (false while the breaker keeps it skipped). */
  get answering(): boolean {
    return this.up;
  }

  /**
   * Asks memcached now, whatever the breaker says (health checks): true when it answers within
   * `deadlineMs`. An answer closes the breaker again; silence opens it as a failed lookup would.
   */
  async check(deadlineMs = 500): Promise<boolean> {
    try {
      const result = await withinDeadline(this.client.get('iipsrv-ts:health'), deadlineMs);
      if (result === 'timeout') {
        this.failed(`no answer within ${deadlineMs} ms`);
        return false;
      }
      this.openUntil = 0;
      this.succeeded();
      return true;
    } catch (error) {
      this.failed((error as Error).message);
      return false;
    }
  }

  /**
   * Takes the short lease on computing `key` (memcached add of a lock key that expires by
   * itself): true when this caller should compute it, false when another worker or instance holds
   * the lease. A memcached that does not answer grants it (each computes, as without a lease).
   */
  async lease(key: string, seconds: number): Promise<boolean> {
    if (!this.up || !this.available()) return true;
    try {
      const result = await withinDeadline(this.client.add(MemcachedTier.key(key) + ':lease', LEASE_VALUE, { expires: seconds }), this.getDeadlineMs);
      if (result === 'timeout') {
        this.failed(`no answer within ${this.getDeadlineMs} ms`);
        return true;
      }
      if (!result) this.leasesWaited++;
      return result;
    } catch (error) {
      this.failed((error as Error).message);
      return true;
    }
  }

  /** Gives the lease back once the value is stored (fire-and-forget; it also expires by itself). */
  release(key: string): void {
    if (!this.up) return;
    this.client.delete(MemcachedTier.key(key) + ':lease').then(
      () => undefined,
      () => undefined,
    );
  }

  /**
   * Polls for a value another holder of the lease is computing: the value, or null once `waitMs`
   * has passed without it (the caller then computes it itself).
   */
  async waitFor(key: string, waitMs: number, pollMs: number): Promise<Buffer | null> {
    const until = Date.now() + waitMs;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      const value = await this.get(key, false);
      if (value) return value;
      if (!this.up) return null;
    }
    this.leaseTimeouts++;
    return null;
  }

  set(key: string, value: Buffer): void {
    if (value.length > this.maxValueBytes) {
      this.setsTooBig++;
      return;
    }
    if (!this.up || !this.available()) {
      this.setsSkipped++;
      return;
    }
    const sent = this.client.set(MemcachedTier.key(key), value, { expires: this.options.lifetimeSeconds }).then(
      (stored) => {
        if (stored) this.setsStored++;
        else this.setsFailed++;
      },
      (error: Error) => {
        this.setsFailed++;
        this.failed(error.message);
      },
    );
    this.pendingSets.add(sent);
    void sent.finally(() => this.pendingSets.delete(sent));
  }

  /** Once every set sent so far has been answered (or failed): what a batch job waits for before it reports. */
  async settled(): Promise<void> {
    while (this.pendingSets.size > 0) await Promise.allSettled([...this.pendingSets]);
  }

  /**
   * Stores a value and waits for memcached to confirm it, whatever the breaker says: for the few
   * writes an operator's command depends on (a purge). Never expires unless memcached needs room.
   * @throws Error when memcached refuses it or gives no answer within `deadlineMs`
   */
  async store(key: string, value: Buffer, deadlineMs = 2000): Promise<void> {
    const result = await withinDeadline(this.client.set(MemcachedTier.key(key), value, { expires: 0 }), deadlineMs);
    if (result === 'timeout') throw new Error(`memcached gave no answer within ${deadlineMs} ms`);
    if (!result) throw new Error('memcached did not store the value');
  }

  close(): void {
    this.client.close();
  }
}

/** `work`'s result, or 'timeout' when it has not settled within `ms` (a later rejection is ignored). */
async function withinDeadline<T>(work: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
