/**
 * Faults under load: what users see while memcached freezes, dies and comes back, and while a
 * worker is killed. Starts a real memcached on a free loopback port, ./bin/iipsrv (compiled dist/,
 * default workers, FastCGI on loopback, MEMCACHED_SERVERS pointing at that memcached) behind the
 * nginx configuration of examples/nginx, and drives it with a steady load of the soak's request
 * mix (tiles, IIIF tiles, thumbnails, regions of the benchmark image: lib/mix.ts) from lib/load.ts
 * (FAULT_CONCURRENCY keep-alive connections, each request's start, latency and outcome kept)
 * through these phases, FAULT_PHASE_SECONDS each, after an untimed warm-up:
 *
 *   1. normal
 *   2. memcached frozen (SIGSTOP)
 *   3. memcached resumed (SIGCONT)
 *   4. memcached killed (SIGKILL)
 *   5. memcached restarted (a new one on the same port)
 *   6. one worker killed (SIGKILL) at the start of the phase; the primary starts another
 *   7. normal again
 *
 * For each phase it prints the requests that started in it, those that failed and how (status or
 * socket error), p50/p99/max latency, the RSS of the primary and workers at its start and end, and
 * memcached's hits and sets; then what the daemon logged about memcached and its workers. Not part
 * of CI. Run with `npm run build && node --import tsx bench/fault.ts`.
 *
 * A request fails when its answer is not 2xx or it got no whole answer (a socket error, a reset,
 * a timeout). Requests in flight on the workers at the instant of the kill may fail and are
 * counted apart; any other failure, in any phase, makes the exit status 1.
 *
 * Environment knobs (all optional):
 *   FAULT_PHASE_SECONDS=10  length of each phase
 *   FAULT_WARMUP_SECONDS=20 untimed load before phase 1 (fills the RAM cache and memcached)
 *   FAULT_CONCURRENCY=16    requests in flight (one keep-alive connection each)
 *   FAULT_TIMEOUT_SECONDS=30  a request with no whole answer after this long fails as 'timeout'
 *   FAULT_WORKERS=2         --workers for the daemon (unset: its default, half the CPUs, at least 2)
 *   FAULT_OURS_ENV='MAX_IMAGE_CACHE_SIZE=20'   extra environment for the daemon
 *   FAULT_REPORT=file.md    also write the summary there
 *   FAULT_FAILURES=file.txt append every failed request there (start s, ms, outcome, path)
 */
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { benchImage } from './lib/image.ts';
import { startLoad, type RequestRecord } from './lib/load.ts';
import { daemonRss, formatRss, requestMix } from './lib/mix.ts';
import { cleanup, installCleanupHandlers, isInterrupted, registerTempDir, startProcess, type Proc } from './lib/procs.ts';
import { which } from '../test/helpers/daemon.ts';
import { canConnect, childPids, freePort, stopGroup, waitFor, waitUntilListening } from '../test/helpers/processes.ts';
import { nginxErrors, nginxSiteReplacements, renderExample, startNginx } from '../test/helpers/webservers.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const PHASE_SECONDS = Number(process.env.FAULT_PHASE_SECONDS ?? 10);
const WARMUP_SECONDS = Number(process.env.FAULT_WARMUP_SECONDS ?? 20);
const CONCURRENCY = Number(process.env.FAULT_CONCURRENCY ?? 16);
const TIMEOUT_SECONDS = Number(process.env.FAULT_TIMEOUT_SECONDS ?? 30);
const MB = 1024 * 1024;

const origin = performance.now();
const originWall = Date.now();
/** Seconds since the script started, for the log and the report. */
const at = (t = performance.now()) => ((t - origin) / 1000).toFixed(2);

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} [${at()} s] ${line}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** memcached's counters over its text protocol; null when it does not answer within timeoutMs. */
function memcachedStats(port: number, timeoutMs = 300): Promise<Record<string, number> | null> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    const done = (stats: Record<string, number> | null) => {
      socket.destroy();
      clearTimeout(timer);
      resolve(stats);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    socket.on('data', (d) => {
      text += d.toString();
      if (!text.includes('END\r\n')) return;
      const stats: Record<string, number> = {};
      for (const line of text.split('\r\n')) {
        const [, name, value] = line.split(' ');
        if (name && value !== undefined) stats[name] = Number(value);
      }
      done(stats);
    });
    socket.on('error', () => done(null));
    socket.write('stats\r\n');
  });
}

interface Phase {
  name: string;
  start: number;
  end: number;
  rssStart: Map<string, number>;
  rssEnd: Map<string, number>;
  memcachedStart: Record<string, number> | null;
  memcachedEnd: Record<string, number> | null;
}

interface KilledWorker {
  pid: number;
  at: number;
  /** The workers there were at the kill, the killed one among them. */
  before: number[];
  /** When a worker not among them was first seen, and its pid. */
  replacedAt: number | null;
  replacement: number | null;
}

const failed = (r: RequestRecord) => r.error !== null || r.status < 200 || r.status > 299;
const outcome = (r: RequestRecord) => (r.error ? (r.status ? `${r.status} ${r.error}` : r.error) : String(r.status));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** "3 × 502, 1 × ECONNRESET" */
function outcomes(records: RequestRecord[]): string {
  const counts = new Map<string, number>();
  for (const r of records) counts.set(outcome(r), (counts.get(outcome(r)) ?? 0) + 1);
  return [...counts].map(([what, n]) => `${n} × ${what}`).join(', ');
}

const ms = (v: number) => (Number.isNaN(v) ? '–' : v < 10 ? v.toFixed(1) : v.toFixed(0));
const mbs = (memory: Map<string, number>) => [...memory.values()].map((b) => (b / MB).toFixed(0)).join(' + ');

function startMemcached(binary: string, port: number): Proc {
  const args = ['-p', String(port), '-U', '0', '-l', '127.0.0.1', '-m', '256'];
  // memcached refuses to run as root unless told which user to be.
  if (process.getuid?.() === 0) args.push('-u', 'root');
  return startProcess('memcached', binary, args, { PATH: process.env.PATH });
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const memcachedBinary = which('memcached');
  if (!memcachedBinary) throw new Error('memcached not installed (apt-get install memcached)');
  const dir = path.join(os.tmpdir(), `iipsrv-fault-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  registerTempDir(dir);
  const image = benchImage(log);
  const memcachedPort = await freePort();
  const fastcgiPort = await freePort();
  const port = await freePort();

  let memcached = startMemcached(memcachedBinary, memcachedPort);
  await waitFor(() => canConnect({ port: memcachedPort }), 5000, 'memcached');
  const extra = Object.fromEntries(
    (process.env.FAULT_OURS_ENV ?? '')
      .split(/\s+/)
      .filter(Boolean)
      .map((pair) => pair.split('=', 2) as [string, string]),
  );
  const logFile = path.join(dir, 'iipsrv.log');
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    FILESYSTEM_PREFIX: image.dir,
    MEMCACHED_SERVERS: `127.0.0.1:${memcachedPort}`,
    LOGFILE: logFile,
    ...extra,
  };
  const args = ['--bind', `127.0.0.1:${fastcgiPort}`];
  if (process.env.FAULT_WORKERS) args.push('--workers', process.env.FAULT_WORKERS);
  const ours = startProcess('iipsrv-ts', path.join(ROOT, 'bin/iipsrv'), args, env);
  await waitUntilListening(ours, { port: fastcgiPort }, { what: 'iipsrv-ts', timeoutMs: 20_000 });
  const nginx = await startNginx({ dir, port, site: renderExample('nginx/iipsrv.conf', nginxSiteReplacements({ port, fastcgiPort })) });
  const primary = ours.child.pid!;
  await sleep(2000);
  const workersAtStart = childPids(primary);
  log(`memcached on 127.0.0.1:${memcachedPort}, iipsrv-ts (primary ${primary}, workers ${workersAtStart.join(' ')}) behind nginx on 127.0.0.1:${port}`);
  log(`${CONCURRENCY} keep-alive connections, phases of ${PHASE_SECONDS} s after ${WARMUP_SECONDS} s of warm-up`);

  const location = '/fcgi-bin/iipsrv.fcgi';
  const paths = requestMix(image.name).map((query) => `${location}?${query}`);
  const load = startLoad({ host: '127.0.0.1', port, paths, concurrency: CONCURRENCY, timeoutMs: TIMEOUT_SECONDS * 1000 });

  const phases: Phase[] = [];
  // Filled in by the worker-kill step (an object, so that TypeScript does not narrow it to null).
  const killed: { worker: KilledWorker | null } = { worker: null };
  const steps: Array<{ name: string; action: () => Promise<void> | void }> = [
    { name: 'normal', action: () => undefined },
    { name: 'memcached frozen (SIGSTOP)', action: () => void process.kill(memcached.pid, 'SIGSTOP') },
    { name: 'memcached resumed (SIGCONT)', action: () => void process.kill(memcached.pid, 'SIGCONT') },
    {
      name: 'memcached killed (SIGKILL)',
      action: async () => {
        process.kill(memcached.pid, 'SIGKILL');
        await memcached.exited;
      },
    },
    {
      name: 'memcached restarted',
      action: async () => {
        memcached = startMemcached(memcachedBinary, memcachedPort);
        await waitFor(() => canConnect({ port: memcachedPort }), 5000, 'memcached');
      },
    },
    {
      name: 'one worker killed (SIGKILL)',
      action: () => {
        const before = childPids(primary);
        const pid = before[0];
        if (pid === undefined) throw new Error('no worker to kill');
        process.kill(pid, 'SIGKILL');
        killed.worker = { pid, at: performance.now(), before, replacedAt: null, replacement: null };
      },
    },
    { name: 'normal again', action: () => undefined },
  ];

  let loadEnd = performance.now();
  try {
    await sleep(WARMUP_SECONDS * 1000);
    for (const step of steps) {
      if (isInterrupted()) break;
      const rssStart = daemonRss(primary);
      const start = performance.now();
      await step.action();
      log(`phase ${phases.length + 1}: ${step.name}`);
      // After the action: the counters of a restarted memcached start from zero (and a frozen
      // one keeps this waiting for the stats' timeout, hence the log line first).
      const memcachedStart = await memcachedStats(memcachedPort);
      const until = start + PHASE_SECONDS * 1000;
      while (performance.now() < until && !isInterrupted()) {
        await sleep(50);
        const worker = killed.worker;
        if (worker && worker.replacedAt === null) {
          const replacement = childPids(primary).find((pid) => !worker.before.includes(pid));
          if (replacement !== undefined) Object.assign(worker, { replacedAt: performance.now(), replacement });
        }
      }
      phases.push({
        name: step.name,
        start,
        end: performance.now(),
        rssStart,
        rssEnd: daemonRss(primary),
        memcachedStart,
        memcachedEnd: await memcachedStats(memcachedPort),
      });
    }
    loadEnd = performance.now();
    await load.stop();
  } finally {
    try {
      process.kill(memcached.pid, 'SIGCONT');
    } catch {
      // gone already
    }
    await nginx.stop();
    await stopGroup(ours);
  }
  const upstreamErrors = nginxErrors(nginx.errorLog());
  const daemonLog = readFileSync(logFile, 'utf8');
  await cleanup();

  // ------------------------------------------------------------------------------------------
  // The report.
  const lines: string[] = [];
  const say = (line = '') => {
    lines.push(line);
    process.stdout.write(line + '\n');
  };
  const records = load.records.filter((r) => r.start <= loadEnd);
  const kill = killed.worker;
  const inFlightAtKill = (r: RequestRecord) => kill !== null && r.start <= kill.at && r.start + r.ms >= kill.at;
  say();
  say(`| phase | requests | failed (how) | p50 / p99 / max ms | RSS MB at start → end (primary + workers) | memcached hits / sets |`);
  say(`|---|---|---|---|---|---|`);
  let userFailures = 0;
  const failuresByPhase: string[] = [];
  const flying = records.filter(inFlightAtKill);
  const flyingBad = flying.filter(failed);
  for (const [index, phase] of phases.entries()) {
    const mine = records.filter((r) => r.start >= phase.start && r.start < phase.end);
    // Requests in flight at the kill are counted in its phase, apart, whenever they started.
    const bad = mine.filter((r) => failed(r) && !inFlightAtKill(r));
    userFailures += bad.length;
    if (bad.length) failuresByPhase.push(`${bad.length} in phase ${index + 1}`);
    const killedHere = kill !== null && kill.at >= phase.start && kill.at < phase.end;
    const atKill = killedHere ? `; in flight at the kill: ${flyingBad.length} of ${flying.length}${flyingBad.length ? ` (${outcomes(flyingBad)})` : ''}` : '';
    const sorted = mine.map((r) => r.ms).sort((a, b) => a - b);
    const hits = (s: Record<string, number> | null, name: string) => s?.[name];
    const delta = (name: string) => {
      const [a, b] = [hits(phase.memcachedStart, name), hits(phase.memcachedEnd, name)];
      // A restarted memcached counts from zero.
      return a === undefined || b === undefined ? '–' : String(b >= a ? b - a : b);
    };
    say(
      `| ${index + 1}. ${phase.name} | ${mine.length} | ${bad.length}${bad.length ? ` (${outcomes(bad)})` : ''}${atKill} | ${ms(percentile(sorted, 50))} / ${ms(percentile(sorted, 99))} / ${ms(sorted.at(-1) ?? Number.NaN)} | ${mbs(phase.rssStart)} → ${mbs(phase.rssEnd)} | ${delta('get_hits')} / ${delta('cmd_set')} |`,
    );
  }
  // Requests that started in the warm-up and were still running into phase 1 are not in a phase;
  // a failure among them counts too.
  const beforePhases = records.filter((r) => phases.length > 0 && r.start < phases[0]!.start && failed(r));
  userFailures += beforePhases.length;
  say();
  if (beforePhases.length) say(`failed during the warm-up: ${beforePhases.length} (${outcomes(beforePhases)})`);
  if (kill) {
    say(
      `worker ${kill.pid} killed at ${at(kill.at)} s: ${flying.length} requests in flight, ${flyingBad.length} of them failed${flyingBad.length ? ` (${outcomes(flyingBad)})` : ''}`,
    );
    const after = records.filter((r) => r.start > kill.at && failed(r));
    const firstOk = records.find((r) => r.start > kill.at && !failed(r));
    say(
      `  requests sent after the kill that failed: ${after.length}${after.length ? ` (${outcomes(after)}, sent between +${((after[0]!.start - kill.at) / 1000).toFixed(2)} and +${((after.at(-1)!.start - kill.at) / 1000).toFixed(2)} s)` : ''}`,
    );
    say(
      `  replacement worker ${kill.replacement ?? '?'} seen ${kill.replacedAt ? `+${((kill.replacedAt - kill.at) / 1000).toFixed(2)} s` : 'never'} after the kill; first request sent after the kill that succeeded: ${firstOk ? `+${((firstOk.start - kill.at) / 1000).toFixed(2)} s, answered in ${ms(firstOk.ms)} ms` : 'none'}`,
    );
  }
  const memcachedLines = daemonLog
    .split('\n')
    .filter((line) => /memcached is|worker died/.test(line))
    .map((line) => {
      try {
        const entry = JSON.parse(line) as { time?: string; role?: string; msg?: string; reason?: string; worker?: number; signal?: string };
        const t = entry.time ? `${((Date.parse(entry.time) - originWall) / 1000).toFixed(2)} s` : '';
        const who = entry.role === 'worker' ? `worker ${entry.worker}` : (entry.role ?? '');
        return `${t} ${who}: ${entry.msg}${entry.reason ? ` (${entry.reason})` : ''}${entry.signal ? ` (${entry.signal})` : ''}`;
      } catch {
        return line;
      }
    });
  say(`the daemon's log about memcached and workers (${memcachedLines.length} lines):`);
  for (const line of memcachedLines.slice(0, 40)) say(`  ${line}`);
  // "... [error] 123#123: *456 connect() failed (111: Connection refused) while connecting to upstream, client: ..."
  const kinds = new Map<string, number>();
  for (const line of upstreamErrors) {
    const kind = /\[\w+\] [\d#]+: (?:\*\d+ )?(.*?)(?:, client:|$)/.exec(line)?.[1] ?? line;
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  }
  say(`nginx errors: ${upstreamErrors.length}${[...kinds].map(([kind, n]) => `\n  ${n} × ${kind}`).join('')}`);
  say(`RSS at the end of each phase: ${phases.map((p) => formatRss(p.rssEnd)).join(' | ')}`);
  say(
    userFailures === 0
      ? 'verdict: no request failed outside the instant of the worker kill'
      : `verdict: ${userFailures} requests failed outside the instant of the worker kill (${[...failuresByPhase, ...(beforePhases.length ? [`${beforePhases.length} in the warm-up`] : [])].join(', ')})`,
  );
  if (userFailures > 0 || phases.length < steps.length) process.exitCode = 1;
  if (process.env.FAULT_REPORT) writeFileSync(process.env.FAULT_REPORT, lines.join('\n') + '\n');
  const failures = records.filter(failed);
  if (failures.length && process.env.FAULT_FAILURES) {
    for (const r of failures) appendFileSync(process.env.FAULT_FAILURES, `${at(r.start)} ${ms(r.ms)} ${outcome(r)} ${r.path}\n`);
  }
}

await main();
