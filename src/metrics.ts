/**
 * Prometheus metrics (METRICS, /metrics). Each worker counts its requests in plain typed arrays
 * (a few increments per request, nothing allocated) and reads the engine's own counters (caches,
 * renderings, JPEG2000 helpers) only when scraped. A scrape reaching any worker asks the primary,
 * which gathers every worker's numbers, sums them with prom-client's AggregatorRegistry and
 * adds its own (worker restarts). Only workers that have said they are ready are asked, each for a
 * bounded time: a worker starting or stuck leaves the scrape without its numbers, never fails it.
 */
import { AggregatorRegistry, Registry, type Metric } from 'prom-client';

export const PROTOCOLS = ['iip', 'iiif', 'deepzoom', 'zoomify', 'server'] as const;
export const KINDS = ['tile', 'region', 'image', 'info', 'health', 'metrics', 'viewer', 'other'] as const;
export type ProtocolLabel = (typeof PROTOCOLS)[number];
export type KindLabel = (typeof KINDS)[number];

/** Seconds; request latencies from a RAM hit (well under a millisecond) to a large export. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const STATUSES = 600;
const P = PROTOCOLS.length;
const K = KINDS.length;
const B = LATENCY_BUCKETS.length;

const IIIF = /^IIIF=/i;
const DEEPZOOM = /^DeepZoom=/i;
const ZOOMIFY = /^Zoomify=/i;
const IIP_TILE = /(?:^|&)(?:JTLS?|TIL|PTL)=/i;
const IIP_REGION = /(?:^|&)CVT=/i;

/**
 * The protocol and kind of an IIP command string (after URI_MAP), as an index into the counters:
 * protocol * KINDS.length + kind. Only tests of the string, no allocation.
 */
export function classify(commands: string): number {
  if (IIIF.test(commands)) return 1 * K + (commands.endsWith('info.json') ? 3 : 2);
  if (DEEPZOOM.test(commands)) return 2 * K + (commands.endsWith('.dzi') || commands.endsWith('.xml') ? 3 : 0);
  if (ZOOMIFY.test(commands)) return 3 * K + (commands.endsWith('ImageProperties.xml') ? 3 : 0);
  if (IIP_TILE.test(commands)) return 0;
  if (IIP_REGION.test(commands)) return 1;
  return 3;
}

/** The labels of an index from classify() or serverKind(). */
export function labelsOf(index: number): { protocol: ProtocolLabel; kind: KindLabel } {
  return { protocol: PROTOCOLS[Math.floor(index / K)]!, kind: KINDS[index % K]! };
}

/** The index of the server's own answers (health, metrics, the viewer, the banner page, refused methods). */
export function serverKind(kind: 'health' | 'metrics' | 'viewer' | 'other'): number {
  return 4 * K + KINDS.indexOf(kind);
}

type Sample = { value: number; labels: Record<string, string | number>; metricName?: string };
type Collected = { name: string; help: string; type: 'counter' | 'gauge' | 'histogram'; values: Sample[]; aggregator: 'sum' | 'max' | 'min' };

/** A metric prom-client's registry serialises and aggregates, built from our own numbers at scrape time. */
function metric(name: string, help: string, type: Collected['type'], values: () => Sample[], aggregator: Collected['aggregator'] = 'sum'): Metric {
  const object = {
    name,
    help,
    type,
    aggregator,
    get: () => Promise.resolve<Collected>({ name, help, type, values: values(), aggregator }),
  };
  return object as unknown as Metric;
}

/** One worker's request counters. */
export class RequestMetrics {
  private readonly requests = new Float64Array(P * K * STATUSES);
  private readonly buckets = new Float64Array(P * K * B);
  private readonly durations = new Float64Array(P * K);
  private readonly counts = new Float64Array(P * K);
  private readonly bytes = new Float64Array(P * K);

  /** @param index from classify() or serverKind() */
  record(index: number, status: number, seconds: number, bodyBytes: number): void {
    this.requests[index * STATUSES + (status > 0 && status < STATUSES ? status : 0)]!++;
    this.counts[index]!++;
    this.durations[index]! += seconds;
    this.bytes[index]! += bodyBytes;
    const base = index * B;
    for (let b = 0; b < B; b++) {
      if (seconds <= LATENCY_BUCKETS[b]!) {
        this.buckets[base + b]!++;
        break;
      }
    }
  }

  metrics(): Metric[] {
    const each = (visit: (index: number, labels: { protocol: ProtocolLabel; kind: KindLabel }) => void) => {
      for (let index = 0; index < P * K; index++) if (this.counts[index]! > 0) visit(index, labelsOf(index));
    };
    return [
      metric('iipsrv_requests_total', 'Requests answered, by protocol, command kind and HTTP status', 'counter', () => {
        const values: Sample[] = [];
        each((index, labels) => {
          for (let status = 0; status < STATUSES; status++) {
            const value = this.requests[index * STATUSES + status]!;
            if (value > 0) values.push({ value, labels: { ...labels, status } });
          }
        });
        return values;
      }),
      metric('iipsrv_request_duration_seconds', 'Time from the request to its response, by protocol and command kind', 'histogram', () => {
        const values: Sample[] = [];
        each((index, labels) => {
          let cumulative = 0;
          for (let b = 0; b < B; b++) {
            cumulative += this.buckets[index * B + b]!;
            values.push({ value: cumulative, labels: { ...labels, le: LATENCY_BUCKETS[b]! }, metricName: 'iipsrv_request_duration_seconds_bucket' });
          }
          values.push({ value: this.counts[index]!, labels: { ...labels, le: '+Inf' }, metricName: 'iipsrv_request_duration_seconds_bucket' });
          values.push({ value: this.durations[index]!, labels, metricName: 'iipsrv_request_duration_seconds_sum' });
          values.push({ value: this.counts[index]!, labels, metricName: 'iipsrv_request_duration_seconds_count' });
        });
        return values;
      }),
      metric('iipsrv_response_bytes_total', 'Bytes of response bodies, by protocol and command kind', 'counter', () => {
        const values: Sample[] = [];
        each((index, labels) => values.push({ value: this.bytes[index]!, labels }));
        return values;
      }),
    ];
  }
}

/** What the engine counts, read at scrape time. */
export interface EngineCounters {
  cacheStats(): Record<string, number>;
  storageStats(): Record<string, number>;
  renderStats(): Readonly<Record<string, { count: number; seconds: number }>>;
  jp2HelperRestarts(): number;
}

export function engineMetrics(engine: EngineCounters, memcachedConfigured: boolean): Metric[] {
  const stat = (name: string) => engine.cacheStats()[name] ?? 0;
  const tiers = () => {
    const tiers: Array<['ram' | 'memcached', string]> = [['ram', 'ram']];
    if (memcachedConfigured) tiers.push(['memcached', 'memcached']);
    return tiers;
  };
  return [
    metric('iipsrv_cache_hits_total', 'Tiles and regions found in a cache tier', 'counter', () =>
      tiers().map(([tier, prefix]) => ({ value: stat(`${prefix}Hits`), labels: { tier } })),
    ),
    metric('iipsrv_cache_misses_total', 'Tiles and regions a cache tier did not have', 'counter', () =>
      tiers().map(([tier, prefix]) => ({ value: stat(`${prefix}Misses`), labels: { tier } })),
    ),
    metric('iipsrv_cache_coalesced_total', 'Requests answered by the rendering of an identical request in flight in the same worker', 'counter', () => [
      { value: stat('coalesced'), labels: {} },
    ]),
    metric('iipsrv_cache_lease_waits_total', 'Renderings left to another worker or instance holding the memcached lease', 'counter', () => [
      { value: stat('memcachedLeasesWaited'), labels: {} },
    ]),
    metric('iipsrv_cache_lease_timeouts_total', 'Waits for a leased rendering that ran out of time (rendered here instead)', 'counter', () => [
      { value: stat('memcachedLeaseTimeouts'), labels: {} },
    ]),
    metric('iipsrv_decodes_total', 'Tiles and regions rendered (decoded, processed, encoded) because no cache had them, by source codec', 'counter', () =>
      Object.entries(engine.renderStats()).map(([codec, { count }]) => ({ value: count, labels: { codec } })),
    ),
    metric('iipsrv_decode_seconds_total', 'Time spent rendering what no cache had, by source codec', 'counter', () =>
      Object.entries(engine.renderStats()).map(([codec, { seconds }]) => ({ value: seconds, labels: { codec } })),
    ),
    metric('iipsrv_store_requests_total', 'Requests to the object store (FILESYSTEM_PREFIX s3:// or http(s)://), by kind', 'counter', () =>
      labelled(engine.storageStats(), 'request:', 'request'),
    ),
    metric('iipsrv_store_failures_total', 'Requests to the object store that failed after their retries, by kind of failure', 'counter', () =>
      labelled(engine.storageStats(), 'failure:', 'kind'),
    ),
    metric('iipsrv_store_blocks_total', 'Blocks of file structure fetched, from the store or from memcached (read by another instance)', 'counter', () => {
      const stats = engine.storageStats();
      if (!('blocksFromStore' in stats)) return [];
      return [
        { value: stats.blocksFromStore!, labels: { source: 'store' } },
        { value: stats.blocksFromMemcached ?? 0, labels: { source: 'memcached' } },
      ];
    }),
    metric('iipsrv_jp2_helper_restarts_total', 'JPEG2000 decoder helper processes that died, timed out or were retired and were replaced', 'counter', () => [
      { value: engine.jp2HelperRestarts(), labels: {} },
    ]),
  ];
}

/** The counters named `prefix<label value>` as values of one label. */
function labelled(stats: Record<string, number>, prefix: string, label: string): Array<{ value: number; labels: Record<string, string> }> {
  return Object.entries(stats)
    .filter(([name]) => name.startsWith(prefix))
    .map(([name, value]) => ({ value, labels: { [label]: name.slice(prefix.length) } }));
}

/** A worker's registry: what it sends the primary when asked (as JSON, which the primary sums). */
export function workerRegistry(metrics: Metric[]): Registry {
  const registry = new Registry();
  for (const m of metrics) registry.registerMetric(m);
  return registry;
}

/** One worker's metrics as its registry gives them, for the primary. */
export type WorkerMetrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** The primary's side: every worker's numbers summed (AggregatorRegistry.aggregate), and the primary's own. */
export class ClusterMetrics {
  private readonly own = new Registry();
  workerRestarts = 0;
  workers = 0;

  constructor() {
    this.own.registerMetric(
      metric('iipsrv_worker_restarts_total', 'Worker processes that died and were replaced', 'counter', () => [{ value: this.workerRestarts, labels: {} }]),
    );
    this.own.registerMetric(metric('iipsrv_workers', 'Worker processes serving', 'gauge', () => [{ value: this.workers, labels: {} }]));
  }

  readonly contentType = Registry.PROMETHEUS_CONTENT_TYPE;

  /** @param perWorker what each worker that answered sent */
  async text(perWorker: WorkerMetrics[]): Promise<string> {
    return AggregatorRegistry.aggregate([...perWorker, await this.own.getMetricsAsJSON()]).metrics();
  }
}
