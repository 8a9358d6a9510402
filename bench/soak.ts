/**
 * Soak: does the daemon's memory stay flat over a long run? Starts ./bin/iipsrv (compiled dist/,
 * default workers, FastCGI on loopback) behind the nginx configuration of examples/nginx, drives
 * it with wrk over a mix of tiles, IIIF tiles, thumbnails and regions of the benchmark image (see
 * lib/mix.ts) round after round until SOAK_REQUESTS requests have been served or SOAK_MINUTES have
 * passed, whichever comes first, and samples the resident memory of the primary and of every
 * worker before the first round and after each one. Not part of CI (it runs for a long time). Run
 * with `npm run build && node --import tsx bench/soak.ts`.
 *
 * Environment knobs (all optional):
 *   SOAK_REQUESTS=1000000 stop once this many requests were served (answered, whatever the status)
 *   SOAK_MINUTES=120      ... or after this long under load
 *   SOAK_ROUND_SECONDS=30 one wrk run; memory is read between runs
 *   SOAK_CONNECTIONS=16   wrk connections (2 threads)
 *   SOAK_OURS_ENV='MAX_IMAGE_CACHE_SIZE=20'   extra environment for the daemon
 *   SOAK_REPORT=file.md   also write the summary there
 *
 * The verdict compares the last round with the second one (the first warms caches up, which is
 * growth by design, bounded by MAX_IMAGE_CACHE_SIZE; there are always 3 rounds at least): a
 * process that grew by more than 10 % and 8 MB is reported as growing. Each process's RSS is also
 * given as its anonymous part (heaps, buffers) and its file-backed part (code pages), to tell
 * which one grew. Exit status 1 when memory grows, when any request failed (a non-2xx
 * answer or a socket error, as wrk counts them), or when there were fewer than 3 rounds.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchImage } from './lib/image.ts';
import { daemonRss, daemonRssParts, formatRss, requestMix } from './lib/mix.ts';
import { cleanup, installCleanupHandlers, isInterrupted, registerTempDir, startProcess } from './lib/procs.ts';
import { runWrk, writeWrkScript } from './lib/wrk.ts';
import { freePort, stopGroup, waitUntilListening } from '../test/helpers/processes.ts';
import { nginxErrors, nginxSiteReplacements, renderExample, startNginx } from '../test/helpers/webservers.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const REQUESTS = Number(process.env.SOAK_REQUESTS ?? 1_000_000);
const MINUTES = Number(process.env.SOAK_MINUTES ?? 120);
const ROUND_SECONDS = Number(process.env.SOAK_ROUND_SECONDS ?? 30);
const CONNECTIONS = Number(process.env.SOAK_CONNECTIONS ?? 16);
const MB = 1024 * 1024;

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
}

const mb = (bytes: number | undefined) => (bytes === undefined ? '–' : (bytes / MB).toFixed(1));

async function main(): Promise<void> {
  installCleanupHandlers();
  const dir = path.join(os.tmpdir(), `iipsrv-soak-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  registerTempDir(dir);
  const image = benchImage(log);
  const fastcgiPort = await freePort();
  const port = await freePort();
  const extra = Object.fromEntries(
    (process.env.SOAK_OURS_ENV ?? '')
      .split(/\s+/)
      .filter(Boolean)
      .map((pair) => pair.split('=', 2) as [string, string]),
  );
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, FILESYSTEM_PREFIX: image.dir, MEMCACHED_SERVERS: '', ...extra };
  const ours = startProcess('iipsrv-ts', path.join(ROOT, 'bin/iipsrv'), ['--bind', `127.0.0.1:${fastcgiPort}`], env);
  await waitUntilListening(ours, { port: fastcgiPort }, { what: 'iipsrv-ts', timeoutMs: 20_000 });
  const nginx = await startNginx({ dir, port, site: renderExample('nginx/iipsrv.conf', nginxSiteReplacements({ port, fastcgiPort })) });
  const script = writeWrkScript(dir, 'soak', requestMix(image.name));
  const url = `http://127.0.0.1:${port}`;
  const location = '/fcgi-bin/iipsrv.fcgi';
  const params = { threads: 2, connections: CONNECTIONS, durationSeconds: ROUND_SECONDS, timeoutSeconds: 10 };

  const primary = ours.child.pid!;
  // The workers have started once the port answers, but may still be loading: give them a moment.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const atStart = daemonRss(primary);
  const partsAtStart = daemonRssParts(primary);
  log(`soak: until ${REQUESTS} requests or ${MINUTES} min, rounds of ${ROUND_SECONDS} s, ${CONNECTIONS} connections, ${url}${location}`);
  log(`before the first round: RSS MB: ${formatRss(atStart)}`);
  const rounds: Array<Map<string, number>> = [];
  const roundParts: Array<ReturnType<typeof daemonRssParts>> = [];
  let served = 0;
  let non2xx = 0;
  let socketErrors = 0;
  let endedBy = 'interrupted';
  const started = Date.now();
  const deadline = started + MINUTES * 60_000;
  try {
    for (let round = 1; !isInterrupted(); round++) {
      // The last round only as long as the requests still to serve take at the last round's rate.
      const elapsed = (Date.now() - started) / 1000;
      const byRequests = rounds.length > 0 ? (REQUESTS - served) / (served / elapsed) : ROUND_SECONDS;
      const left = Math.min(byRequests, (deadline - Date.now()) / 1000);
      const seconds = Math.max(2, Math.min(ROUND_SECONDS, Math.ceil(left)));
      // Each round starts elsewhere in the list, as a long run of one wrk would walk it.
      const result = await runWrk(params, url, script, location, seconds, served % 4000);
      served += result.requests;
      non2xx += result.non2xx;
      const sock = result.socketErrors;
      const errors = sock.connect + sock.read + sock.write + sock.timeout;
      socketErrors += errors;
      const memory = daemonRss(primary);
      rounds.push(memory);
      roundParts.push(daemonRssParts(primary));
      const total = [...memory.values()].reduce((a, b) => a + b, 0);
      log(
        `round ${round}: ${result.requests} requests, ${result.requestsPerSecond.toFixed(0)} req/s, p99 ${result.p99ms} ms, non-2xx ${result.non2xx}, socket errors ${errors}; served ${served}; RSS MB: ${formatRss(memory)}; total ${mb(total)}`,
      );
      // Three rounds at least: the verdict compares the last with the second.
      if (served >= REQUESTS && rounds.length >= 3) {
        endedBy = `${REQUESTS} requests served`;
        break;
      }
      if (Date.now() >= deadline - 1000) {
        endedBy = `the ${MINUTES} min cap`;
        break;
      }
    }
  } finally {
    await nginx.stop();
    await stopGroup(ours);
  }
  const upstreamErrors = nginxErrors(nginx.errorLog());
  await cleanup();
  const minutes = (Date.now() - started) / 60_000;

  const lines: string[] = [];
  const say = (line: string) => {
    lines.push(line);
    log(line);
  };
  say(`ended by: ${endedBy}, after ${minutes.toFixed(1)} min and ${rounds.length} rounds`);
  say(
    `requests served: ${served}; failed: ${non2xx + socketErrors} (non-2xx ${non2xx}, socket errors ${socketErrors}); nginx errors: ${upstreamErrors.length}`,
  );
  for (const line of upstreamErrors.slice(0, 5)) say(`  ${line}`);
  if (rounds.length < 3) {
    say('verdict: too few rounds for one');
    process.exitCode = 1;
    writeReport(lines);
    return;
  }
  const [second, last] = [rounds[1]!, rounds[rounds.length - 1]!];
  let growing = false;
  say('RSS MB at the start (idle) · after round 2 · at the end:');
  for (const [name, bytes] of last) {
    const before = second.get(name);
    if (before === undefined) {
      say(`  ${name}: ${mb(atStart.get(name))} · – · ${mb(bytes)}  not there in round 2 (a worker was replaced?)`);
      growing = true;
      continue;
    }
    const grew = bytes - before;
    const flagged = grew > 8 * MB && grew > before * 0.1;
    growing ||= flagged;
    const change = `${grew >= 0 ? '+' : ''}${mb(grew)} MB (${((grew / before) * 100).toFixed(1)} %)`;
    say(`  ${name}: ${mb(atStart.get(name))} · ${mb(before)} · ${mb(bytes)}  ${change}${flagged ? '  GROWING' : ''}`);
    // Anonymous memory (heaps, buffers) and file-backed pages (code) apart, to tell what grew.
    const parts = [partsAtStart, roundParts[1]!, roundParts[roundParts.length - 1]!].map((m) => m.get(name));
    say(`    anonymous ${parts.map((p) => mb(p?.anon)).join(' · ')}; file-backed ${parts.map((p) => mb(p?.file)).join(' · ')}`);
  }
  say(growing ? 'verdict: memory grows' : 'verdict: memory flat after warm-up (no process grew by more than 10 % and 8 MB after round 2)');
  if (growing || non2xx + socketErrors > 0) process.exitCode = 1;
  writeReport(lines);
}

function writeReport(lines: string[]): void {
  if (process.env.SOAK_REPORT) writeFileSync(process.env.SOAK_REPORT, lines.join('\n') + '\n');
}

await main();
