/**
 * Starts the real program (bin/iipsrv, built by `npm ci`/`npm run build`) the way users do, and
 * waits until it answers; the checkout's paths, temporary folders removed at exit, installed
 * programs and the shared fixtures. Starting, stopping and watching processes is processes.ts.
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProgram, waitUntilListening, type Started } from './processes.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/iipsrv');

/** Removed when the test process exits: one exit listener for them all (a test may make dozens). */
const tempDirs = new Set<string>();

export function tempDir(prefix = 'iipsrv-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  if (tempDirs.size === 0) process.on('exit', () => tempDirs.forEach((made) => rmSync(made, { recursive: true, force: true })));
  tempDirs.add(dir);
  return dir;
}

/** The environment our daemon gets in tests: no memcached unless a test asks for one. */
export function testEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, MEMCACHED_SERVERS: '', ...extra };
  return env;
}

/** bin/iipsrv with the given arguments; resolves once the TCP port (or socket) accepts. */
export async function startDaemon(args: string[], options: { env?: Record<string, string>; waitPort?: number; waitPath?: string } = {}): Promise<Started> {
  const started = startProgram(BIN, args, { env: testEnv(options.env) });
  if (options.waitPort !== undefined || options.waitPath !== undefined) {
    const target = options.waitPath !== undefined ? { path: options.waitPath } : { port: options.waitPort! };
    await waitUntilListening(started, target, { what: 'iipsrv', timeoutMs: 20_000 });
  }
  return started;
}

/** Is a program installed? Tests that need it skip with the package name otherwise. */
export function which(program: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin'])) {
    const candidate = path.join(dir, program);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * A folder of the shared third-party fixtures: `../shared/fixtures/` beside the checkout (as on
 * the developers' machines and in CI), else the workplace's copy.
 */
export function fixtureDir(name: string): string {
  const beside = path.resolve(ROOT, '..', 'shared', 'fixtures', name);
  if (existsSync(beside)) return beside;
  return path.join('/work/shared/fixtures', name);
}
