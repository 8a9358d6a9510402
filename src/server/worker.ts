/**
 * One worker process: the engine, the router and the listeners. It serves until the primary asks
 * it to stop (or goes away), then finishes what is in flight and exits.
 */
import { chmod } from 'node:fs/promises';
import type { HttpLimits, ListenTarget } from '../cli.js';
import type { Config } from '../config.js';
import { Engine } from '../engine/engine.js';
import { Watermark } from '../engine/output/watermark.js';
import type { AccessLog } from '../access-log.js';
import type { Log } from '../log.js';
import { createRouter } from '../router.js';
import { engineMetrics, RequestMetrics, workerRegistry } from '../metrics.js';
import type { Registry } from 'prom-client';
import { coresPerWorker, engineOptionsFor, memcachedTierFor, regionConcurrency } from './engine-options.js';
import { createFastCgiServer, type FastCgiServer } from './fastcgi/server.js';
import { createHttpListener, type HttpListener } from './http.js';

export interface WorkerOptions {
  config: Config;
  log: Log;
  fastcgi: ListenTarget | null;
  http: { host: string; port: number } | null;
  httpLimits?: HttpLimits;
  shutdownGraceMs: number;
  /** Worker processes in all, to share the cores between their JPEG2000 decoders. */
  workers?: number;
  /** The whole cluster's metrics (asked of the primary); null or absent = no metrics. */
  scrapeMetrics?: (() => Promise<{ contentType: string; text: string }>) | null;
  /** ACCESS_LOG's writer; null or absent = no access log. */
  accessLog?: AccessLog | null;
}

export interface RunningWorker {
  engine: Engine;
  fastcgi: FastCgiServer | null;
  http: HttpListener | null;
  /** This worker's metrics, which the primary sums over the workers; null without metrics. */
  metrics: Registry | null;
  /** Stop accepting, finish requests in flight (bounded), close. */
  stop(): Promise<void>;
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { config, log } = options;
  const memcached = memcachedTierFor(config, (up, reason) =>
    up ? log.info({ reason }, 'memcached is answering') : log.warn({ reason }, 'memcached is not answering; going on without it'),
  );
  // A watermark that cannot be read is iipsrv's case too: it serves without one. The primary has
  // said so at start-up.
  const watermark = config.watermark ? await Watermark.load(config.watermark).catch(() => null) : null;
  const base = engineOptionsFor(config);
  const engine = new Engine({
    ...base,
    memcached,
    // The decoders of all workers together: one per core.
    jp2Decoder: { ...base.jp2Decoder, concurrency: coresPerWorker(options.workers ?? 1) },
    regionConcurrency: regionConcurrency(options.workers ?? 1),
    watermark,
  });
  const scrape = options.scrapeMetrics ?? null;
  let requestMetrics: RequestMetrics | null = null;
  let registry: Registry | null = null;
  if (scrape) {
    requestMetrics = new RequestMetrics();
    registry = workerRegistry([...requestMetrics.metrics(), ...engineMetrics(engine, memcached !== null)]);
  }
  const handler = createRouter({ config, engine, log }, { metrics: requestMetrics, scrape, accessLog: options.accessLog });

  let fastcgi: FastCgiServer | null = null;
  if (options.fastcgi) {
    fastcgi = createFastCgiServer(handler, {
      log,
      allowedPeers: config.allowedPeers,
      ...config.fastcgi,
    });
    const target = options.fastcgi;
    if (target.kind === 'tcp') await fastcgi.listen({ host: target.host, port: target.port, backlog: target.backlog });
    else if (target.kind === 'unix') {
      await fastcgi.listen({ path: target.path, backlog: target.backlog });
      // The web server usually runs as another user than the one that started us.
      await chmod(target.path, 0o666).catch(() => undefined);
    }
    // target.kind === 'fd': the primary listens on the inherited socket and hands us connections
    // (see server/connection-handoff.ts); the worker must not hold that socket itself.
  }

  let http: HttpListener | null = null;
  if (options.http) {
    http = createHttpListener(handler, options.httpLimits);
    const { host, port } = options.http;
    await new Promise<void>((resolve, reject) => {
      http!.server.once('error', reject);
      http!.server.listen({ host, port, backlog: 2048 }, () => {
        http!.server.off('error', reject);
        resolve();
      });
    });
  }

  return {
    engine,
    fastcgi,
    http,
    metrics: registry,
    async stop() {
      await Promise.all([fastcgi?.close(options.shutdownGraceMs), http?.close(options.shutdownGraceMs)]);
    },
  };
}
