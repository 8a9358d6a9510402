/**
 * Starts the real program (bin/iipsrv, built by `npm ci`/`npm run build`) the way users do, and
 * waits until it answers. Every process started here is killed when the test process exits.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/iipsrv');

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }
});

export function tempDir(prefix = 'iipsrv-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A port nobody listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function canConnect(target: { port: number; host?: string } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = 'path' in target ? net.connect({ path: target.path }) : net.connect(target.port, target.host ?? '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface Started {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns a program in its own process group so that it and its workers can be killed together. */
export function startProgram(command: string, args: string[], options: SpawnOptions = {}): Started {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...options });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** The environment our daemon gets in tests: no memcached unless a test asks for one. */
export function testEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, MEMCACHED_SERVERS: '', ...extra };
  return env;
}

/** bin/iipsrv with the given arguments; resolves once the TCP port (or socket) accepts. */
export async function startDaemon(
  args: string[],
  options: { env?: Record<string, string>; waitPort?: number; waitPath?: string } = {},
): Promise<Started> {
  const started = startProgram(BIN, args, { env: testEnv(options.env) });
  if (options.waitPort !== undefined || options.waitPath !== undefined) {
    const target = options.waitPath !== undefined ? { path: options.waitPath } : { port: options.waitPort! };
    await waitFor(
      async () => {
        if (started.child.exitCode !== null) throw new Error(`iipsrv exited early: ${started.stderr()}`);
        return canConnect(target);
      },
      20_000,
      `iipsrv on ${JSON.stringify(target)}`,
    );
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
