/**
 * Process roles. The primary parses the command line and the environment, writes the start-up
 * banner and keeps N workers alive; each worker serves on the shared listening socket (TCP, unix
 * socket or the inherited fd 0 alike). Signals as in iipsrv: SIGTERM/SIGINT stop (after requests in
 * flight finish), SIGHUP empties the caches and keeps serving.
 */
import cluster, { type Worker } from 'node:cluster';
import net, { type Socket } from 'node:net';
import { unlink } from 'node:fs/promises';
import { parseArguments, TOOL_USAGE, USAGE, type CliOptions } from './cli.js';
import { ConfigError, describeConfig, loadConfig, type Config } from './config.js';
import { openAccessLog } from './access-log.js';
import { createLog } from './log.js';
import { VERSION } from './version.js';
import type { RunningWorker } from './server/worker.js';
import { HANDOFF_MESSAGE, startConnectionHandoff, type ConnectionHandoff } from './server/connection-handoff.js';
import { threadPoolSize } from './server/engine-options.js';
import type { ClusterMetrics, WorkerMetrics } from './metrics.js';

type PrimaryMessage =
  | { type: 'shutdown' }
  | { type: 'flush-caches' }
  | { type: 'reopen-log' }
  | { type: 'metrics'; id: number; contentType: string; text: string | null }
  | { type: 'metrics-collect'; id: number };
type WorkerMessage =
  | { type: 'ready'; http: string | null; fastcgi: string | null }
  | { type: 'start-failed'; message: string }
  | { type: 'metrics-request'; id: number }
  | { type: 'metrics-collected'; id: number; metrics: WorkerMetrics };

/** Replacing workers that die at once would spin; past this many deaths in a window, wait. */
const RESTART_WINDOW_MS = 10_000;
const RESTARTS_PER_WINDOW = 10;
const OPTIONS_ENV = 'IIPSRV_TS_WORKER_OPTIONS';
/** Longest the primary waits for one worker's metrics. */
const METRICS_COLLECT_MS = 2000;

export async function main(argv: string[]): Promise<void> {
  if (cluster.isWorker) {
    await runWorker();
    return;
  }

  const command = parseArguments(argv);
  if (command.kind === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (command.kind === 'version') {
    process.stdout.write(`iipsrv-ts ${VERSION}\n`);
    return;
  }
  if (command.kind === 'usage-error') {
    process.stderr.write(`iipsrv: ${command.message}\n\n${USAGE}`);
    process.exitCode = 1;
    return;
  }
  if (command.kind === 'tool-help') {
    process.stdout.write(TOOL_USAGE[command.tool]);
    return;
  }
  // 2, as scripts expect of a command used wrongly; 1 stays for a tool that ran and failed.
  if (command.kind === 'tool-usage-error') {
    process.stderr.write(`iipsrv ${command.tool}: ${command.message}\n\n${TOOL_USAGE[command.tool]}`);
    process.exitCode = 2;
    return;
  }

  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`iipsrv: invalid configuration: ${error.message}\n`);
    process.exitCode = 1;
    return;
  }
  if (command.kind === 'run') {
    await runPrimary(command.options, config);
    return;
  }
  // Loaded only for the tools: the primary stays small.
  const { runCacheTool } = await import('./tools/run.js');
  const status = await runCacheTool(command, config);
  process.exitCode = status;
  // Everything is closed; should a handle linger anyway, a job run from cron must still end.
  setTimeout(() => process.exit(status), 2000).unref();
}

function modeDescription(options: CliOptions): string {
  const parts: string[] = [];
  const target = options.fastcgi;
  if (target?.kind === 'tcp') parts.push(`FastCGI on ${target.host}:${target.port} (backlog ${target.backlog})`);
  if (target?.kind === 'unix') parts.push(`FastCGI on unix socket ${target.path} (backlog ${target.backlog})`);
  if (target?.kind === 'fd') parts.push('FastCGI on the listening socket inherited as fd 0');
  if (options.http) parts.push(`HTTP on ${options.http.host}:${options.http.port}`);
  return parts.join(', ');
}

/** A unix socket file left behind by a killed server blocks listen(); remove it if nobody answers. */
async function removeStaleSocket(path: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (!alive) await unlink(path).catch(() => undefined);
}

async function runPrimary(options: CliOptions, config: Config): Promise<void> {
  const log = createLog({ target: config.logTarget, verbosity: config.verbosity, base: { role: 'primary' } });
  log.info({ version: VERSION, mode: modeDescription(options), workers: options.workers }, 'iipsrv-ts starting');
  log.info({ config: describeConfig(config) }, 'configuration');
  for (const warning of config.warnings) log.warn({}, warning);
  if (config.watermark) {
    // Loaded only to check it (the primary serves nothing and otherwise never loads libvips).
    const { Watermark } = await import('./engine/output/watermark.js');
    await Watermark.load(config.watermark).catch((error: Error) => {
      const message = `${error.message}; serving without a watermark`;
      log.warn({}, message);
      process.stderr.write(`iipsrv: warning: ${message}\n`);
    });
  }

  if (options.fastcgi?.kind === 'unix') await removeStaleSocket(options.fastcgi.path);

  // Workers accept on the shared socket themselves: no hand-off through the primary per connection.
  // Except on a socket inherited from a web server (fd 0): there the primary alone holds it and
  // hands each connection over (see server/connection-handoff.ts).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  let handoff: ConnectionHandoff | null = null;
  if (options.fastcgi?.kind === 'fd') {
    try {
      handoff = await startConnectionHandoff(options.fastcgi.fd, options.fastcgi.backlog, (error) =>
        log.warn({ err: error }, 'error on the inherited FastCGI socket'),
      );
    } catch (error) {
      process.stderr.write(`iipsrv: cannot listen on the inherited socket (fd ${options.fastcgi.fd}): ${(error as Error).message}\n`);
      log.error({ err: error }, 'cannot listen on the inherited socket');
      await log.flush();
      process.exit(1);
    }
  }
  // Workers get their listening socket from the primary, never as an inherited stdin: a socket
  // inherited on fd 0 (mod_fcgid, lighttpd, spawn-fcgi) would otherwise stay open, and go on
  // accepting connections nobody answers, in workers still finishing requests after the primary died.
  // METRICS: on by default with --http, off when serving FastCGI alone.
  // Loaded only then: the primary stays small.
  const clusterMetrics: ClusterMetrics | null = metricsEnabled(options, config) ? new (await import('./metrics.js')).ClusterMetrics() : null;
  cluster.setupPrimary({ silent: false, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: workerExecArgv() });

  let stopping = false;
  let announced = false;
  const deaths: number[] = [];
  const env: Record<string, string> = {
    [OPTIONS_ENV]: JSON.stringify(options),
    // libvips' threads free large decode buffers into glibc's arenas, which keep them: served from
    // mmap instead, they go back to the system (a worker after CVT exports: 170 MB -> 133 MB).
    MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? '131072',
    // Read by libuv when a worker first uses its thread pool: too late to set from inside.
    UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? String(threadPoolSize(options.workers)),
  };

  // Metrics: the workers that serve are asked for their numbers, each for a bounded time (one
  // starting or stuck leaves the scrape without its numbers rather than failing it).
  const ready = new Set<Worker>();
  const collecting = new Map<number, (metrics: WorkerMetrics) => void>();
  let collectId = 0;
  const collect = (worker: Worker) =>
    new Promise<WorkerMetrics | null>((resolve) => {
      const id = collectId++;
      const timer = setTimeout(() => finish(null), METRICS_COLLECT_MS);
      const finish = (metrics: WorkerMetrics | null) => {
        clearTimeout(timer);
        collecting.delete(id);
        resolve(metrics);
      };
      collecting.set(id, finish);
      if (worker.isConnected()) worker.send({ type: 'metrics-collect', id } satisfies PrimaryMessage);
      else finish(null);
    });
  const gatherMetrics = async (metrics: ClusterMetrics): Promise<string> => {
    const answers = (await Promise.all([...ready].map(collect))).filter((m): m is WorkerMetrics => m !== null);
    metrics.workers = answers.length;
    return metrics.text(answers);
  };

  const fork = (): Worker => {
    const worker = cluster.fork(env);
    worker.on('message', (message: WorkerMessage) => {
      if (message.type === 'start-failed') {
        // A listen error repeats in every worker: report it once and stop instead of respawning.
        process.stderr.write(`iipsrv: ${message.message}\n`);
        log.error({ error: message.message }, 'worker could not start');
        void stop(1);
      } else if (message.type === 'metrics-request') {
        const answer = (text: string | null) => {
          if (worker.isConnected())
            worker.send({ type: 'metrics', id: message.id, contentType: clusterMetrics?.contentType ?? '', text } satisfies PrimaryMessage);
        };
        if (!clusterMetrics) answer(null);
        else
          gatherMetrics(clusterMetrics).then(answer, (error: Error) => {
            log.warn({ err: error }, 'metrics could not be gathered from the workers');
            answer(null);
          });
      } else if (message.type === 'metrics-collected') {
        collecting.get(message.id)?.(message.metrics);
      } else if (message.type === 'ready') {
        ready.add(worker);
        handoff?.addWorker(worker);
        if (announced) return;
        announced = true;
        log.info({ http: message.http, fastcgi: message.fastcgi }, 'ready');
        if (message.http) process.stderr.write(`iipsrv-ts ${VERSION} serving HTTP on ${message.http} with ${options.workers} worker(s)\n`);
      }
    });
    return worker;
  };

  cluster.on('exit', (worker, code, signal) => {
    ready.delete(worker);
    handoff?.removeWorker(worker);
    if (stopping) return;
    log.error({ worker: worker.id, code, signal }, 'worker died; starting a new one');
    if (clusterMetrics) clusterMetrics.workerRestarts++;
    const now = Date.now();
    deaths.push(now);
    while (deaths.length > 0 && deaths[0]! < now - RESTART_WINDOW_MS) deaths.shift();
    if (deaths.length > RESTARTS_PER_WINDOW) setTimeout(fork, 1000);
    else fork();
  });

  const broadcast = (message: PrimaryMessage) => {
    for (const worker of Object.values(cluster.workers ?? {})) {
      // A worker whose channel is gone (dying, or never started) cannot be told: its exit is
      // handled on its own, and a send to it would throw ERR_IPC_CHANNEL_CLOSED in the primary.
      if (worker?.isConnected()) worker.send(message, (error: Error | null) => void error);
    }
  };

  const stop = async (exitCode: number, signal?: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    if (signal) log.info({ signal }, `caught ${signal}: stopping after requests in flight`);
    handoff?.close();
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    const exited = Promise.all(workers.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve())))));
    broadcast({ type: 'shutdown' });
    const killer = setTimeout(() => {
      for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL');
    }, options.shutdownGraceMs + 2000);
    await exited;
    clearTimeout(killer);
    if (options.fastcgi?.kind === 'unix') await unlink(options.fastcgi.path).catch(() => undefined);
    log.info({}, 'stopped');
    await log.flush();
    process.exit(exitCode);
  };

  process.on('SIGTERM', () => void stop(0, 'SIGTERM'));
  process.on('SIGINT', () => void stop(0, 'SIGINT'));
  process.on('SIGUSR1', () => void stop(0, 'SIGUSR1'));
  process.on('SIGHUP', () => {
    log.info({}, 'caught SIGHUP: emptying caches and reopening the log');
    log.reopen();
    broadcast({ type: 'flush-caches' });
    broadcast({ type: 'reopen-log' });
  });
  // The web server may close our stdout/stderr; a write to them must not kill the primary.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);

  for (let i = 0; i < options.workers; i++) fork();
}

async function runWorker(): Promise<void> {
  const options = JSON.parse(process.env[OPTIONS_ENV] ?? '{}') as CliOptions;
  const config = loadConfig(process.env);
  const log = createLog({ target: config.logTarget, verbosity: config.verbosity, base: { role: 'worker', worker: cluster.worker?.id } });
  const accessLog = openAccessLog(config.accessLog, {
    worker: cluster.worker?.id,
    // Each worker says so: the primary never opens the access log.
    onOpenError: (message) => (log.enabled(1) ? log.error({}, message) : process.stderr.write(message + '\n')),
    onDropped: (lines) => log.warn({ dropped: lines }, 'access log lines dropped: the access log target could not keep up'),
  });
  const send = (message: WorkerMessage) => process.send?.(message);
  process.on('uncaughtException', (error) => {
    // Should not happen (the router catches everything); leave a trace, and let the primary replace us.
    log.error({ err: error }, 'uncaught exception in worker');
    // The log is written asynchronously: give the line its (bounded) moment.
    void log.flush().finally(() => process.exit(1));
  });

  // Signals reach the whole process group (Ctrl-C, systemd): the primary coordinates the stop.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  process.on('SIGHUP', () => undefined);
  process.on('SIGUSR1', () => undefined);

  // The primary may ask us to stop while we are still starting: remember it rather than lose it.
  let running: RunningWorker | null = null;
  let starting = true;
  let stopping = false;
  const finish = async () => {
    await running?.stop();
    await Promise.all([log.flush(), accessLog?.flush()]);
    process.exit(0);
  };
  const stop = () => {
    if (stopping) return;
    stopping = true;
    if (!starting) void finish();
  };
  // Scrapes waiting for the primary's answer.
  const scrapes = new Map<number, { resolve: (value: { contentType: string; text: string }) => void; reject: (error: Error) => void }>();
  let scrapeId = 0;
  const scrapeMetrics = metricsEnabled(options, config)
    ? () =>
        new Promise<{ contentType: string; text: string }>((resolve, reject) => {
          const id = scrapeId++;
          const timer = setTimeout(() => {
            scrapes.delete(id);
            reject(new Error('the primary did not answer within 10 s'));
          }, 10_000);
          scrapes.set(id, {
            resolve: (value) => {
              clearTimeout(timer);
              resolve(value);
            },
            reject: (error) => {
              clearTimeout(timer);
              reject(error);
            },
          });
          send({ type: 'metrics-request', id });
        })
    : null;
  process.on('message', (message: PrimaryMessage | typeof HANDOFF_MESSAGE, handle?: unknown) => {
    if (message === HANDOFF_MESSAGE) {
      const socket = handle as Socket | undefined;
      if (socket && running?.fastcgi && !stopping) running.fastcgi.adopt(socket);
      else socket?.destroy();
      return;
    }
    if (message.type === 'shutdown') stop();
    else if (message.type === 'flush-caches') running?.engine.flushCaches();
    else if (message.type === 'reopen-log') {
      log.reopen();
      accessLog?.reopen();
    } else if (message.type === 'metrics-collect') {
      const id = message.id;
      void (running?.metrics?.getMetricsAsJSON() ?? Promise.resolve([])).then(
        (metrics) => send({ type: 'metrics-collected', id, metrics }),
        () => send({ type: 'metrics-collected', id, metrics: [] }),
      );
    } else if (message.type === 'metrics') {
      const waiting = scrapes.get(message.id);
      scrapes.delete(message.id);
      if (message.text === null) waiting?.reject(new Error('the primary could not gather the metrics'));
      else waiting?.resolve({ contentType: message.contentType, text: message.text });
    }
  });
  // The primary is gone (killed without a chance to stop us): do not linger as an orphan.
  process.on('disconnect', stop);

  try {
    // Only workers load the engine (sharp, libvips, codecs): the primary stays small.
    const { startWorker } = await import('./server/worker.js');
    running = await startWorker({
      config,
      log,
      fastcgi: options.fastcgi,
      http: options.http,
      httpLimits: options.httpLimits,
      shutdownGraceMs: options.shutdownGraceMs,
      workers: options.workers,
      scrapeMetrics,
      accessLog,
    });
  } catch (error) {
    send({ type: 'start-failed', message: `cannot listen: ${(error as Error).message}` });
    starting = false;
    if (stopping) await finish();
    return;
  }
  starting = false;
  if (stopping) {
    await finish();
    return;
  }

  const address = (a: ReturnType<NonNullable<typeof running.http>['address']> | undefined) =>
    a === null || a === undefined ? null : typeof a === 'string' ? a : `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
  const fastcgiAddress = running.fastcgi?.address();
  send({
    type: 'ready',
    http: address(running.http?.address()),
    fastcgi:
      fastcgiAddress === null || fastcgiAddress === undefined
        ? null
        : typeof fastcgiAddress === 'string'
          ? fastcgiAddress
          : `${fastcgiAddress.address}:${fastcgiAddress.port}`,
  });
}

/** METRICS, or by default: on when serving HTTP, off for FastCGI alone. */
function metricsEnabled(options: CliOptions, config: Config): boolean {
  return config.metrics ?? options.http !== null;
}

/**
 * Node options for the workers. A young generation of 4 MB semi-spaces instead of V8's 16 MB:
 * the tile path allocates a buffer or two per request that die young, and the smaller nursery is
 * collected sooner, so dead tile buffers do not pile up in malloc before a scavenge frees them
 * (a worker serving random tiles: 141 -> 116 MB, the same CPU per tile). An operator's own
 * setting, on the command line or in NODE_OPTIONS, wins.
 */
function workerExecArgv(): string[] {
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ');
  return /--max-semi-space-size/.test(given) ? process.execArgv : [...process.execArgv, '--max-semi-space-size=4'];
}
