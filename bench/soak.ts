/**
 * Soak: does the daemon's memory stay flat over a long run? Starts ./bin/iipsrv (compiled dist/,
 * default workers, FastCGI on loopback) behind the nginx configuration of examples/nginx, drives
 * it with wrk over a mix of tiles, IIIF tiles, thumbnails and regions of the benchmark image for a
 * number of rounds, and samples the resident memory of the primary and of every worker after each
 * round. Not part of CI (it runs for minutes). Run with `npm run build && node --import tsx
 * bench/soak.ts`.
 *
 * Environment knobs (all optional):
 *   SOAK_MINUTES=10       total time under load
 *   SOAK_ROUND_SECONDS=30 one wrk run; memory is read between runs
 *   SOAK_CONNECTIONS=16   wrk connections (2 threads)
 *   SOAK_OURS_ENV='MAX_IMAGE_CACHE_SIZE=20'   extra environment for the daemon
 *
 * The verdict compares the last round with the second one (the first warms caches up, which is
 * growth by design, bounded by MAX_IMAGE_CACHE_SIZE): a process that grew by more than 10 % and
 * 8 MB is reported as growing, and the script exits with status 1.
 */
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchImage } from './lib/image.ts';
import { requestMix } from './lib/mix.ts';
import { cleanup, installCleanupHandlers, isInterrupted, registerTempDir, startProcess } from './lib/procs.ts';
import { runWrk, writeWrkScript } from './lib/wrk.ts';
import { childPids, freePort, rssBytes, stopGroup, waitUntilListening } from '../test/helpers/processes.ts';
import { nginxSiteReplacements, renderExample, startNginx } from '../test/helpers/webservers.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const MINUTES = Number(process.env.SOAK_MINUTES ?? 10);
const ROUND_SECONDS = Number(process.env.SOAK_ROUND_SECONDS ?? 30);
const CONNECTIONS = Number(process.env.SOAK_CONNECTIONS ?? 16);
const MB = 1024 * 1024;

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
}

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
  const rounds: Array<Map<string, number>> = [];
  const roundCount = Math.max(3, Math.round((MINUTES * 60) / ROUND_SECONDS));
  log(`soak: ${roundCount} rounds of ${ROUND_SECONDS} s, ${CONNECTIONS} connections, ${url}${location}`);
  try {
    for (let round = 1; round <= roundCount && !isInterrupted(); round++) {
      const result = await runWrk(params, url, script, location);
      const memory = new Map<string, number>([['primary', rssBytes(primary)]]);
      childPids(primary).forEach((pid, i) => memory.set(`worker ${i + 1} (${pid})`, rssBytes(pid)));
      rounds.push(memory);
      const total = [...memory.values()].reduce((a, b) => a + b, 0);
      const parts = [...memory].map(([name, bytes]) => `${name} ${(bytes / MB).toFixed(1)}`).join(', ');
      log(
        `round ${round}: ${result.requestsPerSecond.toFixed(0)} req/s, p99 ${result.p99ms} ms, non-2xx ${result.non2xx}; RSS MB: ${parts}; total ${(total / MB).toFixed(1)}`,
      );
    }
  } finally {
    await nginx.stop();
    await stopGroup(ours);
    await cleanup();
  }
  if (rounds.length < 3) {
    log('too few rounds for a verdict');
    process.exitCode = 1;
    return;
  }
  const [second, last] = [rounds[1]!, rounds[rounds.length - 1]!];
  let growing = false;
  for (const [name, bytes] of last) {
    const before = second.get(name);
    if (before === undefined) {
      log(`${name}: not there in round 2 (a worker was replaced?)`);
      growing = true;
      continue;
    }
    const grew = bytes - before;
    const flagged = grew > 8 * MB && grew > before * 0.1;
    growing ||= flagged;
    log(`${name}: ${(before / MB).toFixed(1)} -> ${(bytes / MB).toFixed(1)} MB${flagged ? '  GROWING' : ''}`);
  }
  log(growing ? 'verdict: memory grows' : 'verdict: memory flat after warm-up');
  if (growing) process.exitCode = 1;
}

await main();
