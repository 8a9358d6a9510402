/**
 * Child processes, for the tests and for the benchmark (bench/lib/procs.ts): each started in its
 * own process group and killed with its group when this process exits; waited for until it
 * listens; stopped with SIGTERM, a grace period, then SIGKILL to whatever is left of its group;
 * and what /proc says about processes (parent, group, state, command line, CPU time, RSS).
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Started {
  child: ChildProcess;
  /** What it wrote so far (the last `keepBytes` characters when startProgram was given that). */
  stdout: () => string;
  stderr: () => string;
  /** Resolves when it exits, or when it could not be started at all (code and signal null). */
  exited: Promise<Exit>;
  /** Started and not exited yet. */
  alive(): boolean;
  /** SIGTERM, then wait for the exit. */
  stop(): Promise<Exit>;
}

const running = new Set<Started>();
process.on('exit', () => {
  for (const started of running) {
    if (started.child.pid === undefined || !killGroup(started.child.pid, 'SIGKILL')) started.child.kill('SIGKILL');
  }
});

/** What startProgram started and has not exited yet. */
export function runningPrograms(): Started[] {
  return [...running];
}

/**
 * Spawns a program in its own process group (detached), so that it and its workers can be killed
 * together; stdout and stderr are kept (all of them, or the last keepBytes characters of each).
 */
export function startProgram(command: string, args: string[], options: SpawnOptions & { keepBytes?: number } = {}): Started {
  const { keepBytes, ...spawnOptions } = options;
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...spawnOptions });
  let out = '';
  let err = '';
  const keep = (text: string) => (keepBytes !== undefined && text.length > keepBytes ? text.slice(-keepBytes) : text);
  child.stdout?.on('data', (d: Buffer) => (out = keep(out + d.toString())));
  child.stderr?.on('data', (d: Buffer) => (err = keep(err + d.toString())));
  let done = false;
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
    // A program that cannot be started (not found, not executable) emits 'error' and no 'exit'.
    child.once('error', (error) => {
      err += `\nspawn error: ${error.message}`;
      done = true;
      resolve({ code: null, signal: null });
    });
  });
  const started: Started = {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    alive: () => !done,
    async stop() {
      if (!done) child.kill('SIGTERM');
      return exited;
    },
  };
  running.add(started);
  void exited.then(() => running.delete(started));
  return started;
}

/** A signal to a whole process group; false when the group is gone already. */
export function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops a process started with startProgram and everything in its process group: SIGTERM to the
 * process (a server stops what it started), up to graceMs for it to exit, then SIGKILL to what is
 * left of its group (a worker that did not follow, a child of a killed master).
 */
export async function stopGroup(started: Started, graceMs = 8000): Promise<void> {
  if (started.alive()) {
    started.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([started.exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs).unref()))]);
    clearTimeout(timer);
  }
  if (started.child.pid !== undefined) killGroup(started.child.pid, 'SIGKILL');
  await started.exited;
}

// ---------------------------------------------------------------------------------------------
// Ports.

export type ConnectTarget = { port: number; host?: string } | { path: string };

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

export function canConnect(target: ConnectTarget): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = 'path' in target ? net.connect({ path: target.path }) : net.connect(target.port, target.host ?? '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls check every 50 ms until it says true; a check that throws counts as false. */
export async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Resolves once the program's port (or socket) accepts connections. Rejects as soon as the
 * program exits, and at the timeout, with what it wrote and, if given, its log.
 */
export async function waitUntilListening(
  started: Started,
  target: ConnectTarget,
  options: { what: string; timeoutMs?: number; log?: () => string },
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  const output = () => [started.stdout(), started.stderr(), options.log?.() ?? ''].filter((text) => text.trim() !== '').join('\n');
  for (;;) {
    if (!started.alive()) throw new Error(`${options.what} exited at start-up:\n${output()}`);
    if (await canConnect(target)) return;
    if (Date.now() > deadline) {
      const where = 'path' in target ? target.path : `port ${target.port}`;
      throw new Error(`${options.what} does not listen on ${where} after ${timeoutMs} ms:\n${output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// /proc

export interface ProcStat {
  /** R, S, Z (zombie)... */
  state: string;
  ppid: number;
  pgid: number;
  /** utime + stime, seconds */
  cpu: number;
  /** cutime + cstime (reaped children), seconds */
  childCpu: number;
}

let clockTicks: number | undefined;
function clkTck(): number {
  if (clockTicks === undefined) {
    const n = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim());
    clockTicks = Number.isFinite(n) && n > 0 ? n : 100;
  }
  return clockTicks;
}

/** /proc/<pid>/stat, or null when the process is gone. */
export function procStat(pid: number): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After "pid (comm) ": f[0] = state (field 3), ppid, pgrp; utime = field 14 → f[11], stime f[12], cutime f[13], cstime f[14]
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return {
      state: f[0]!,
      ppid: Number(f[1]),
      pgid: Number(f[2]),
      cpu: (Number(f[11]) + Number(f[12])) / clkTck(),
      childCpu: (Number(f[13]) + Number(f[14])) / clkTck(),
    };
  } catch {
    return null;
  }
}

/** Every pid in /proc right now. */
export function allPids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
}

/** The live children of a process. */
export function childPids(parent: number): number[] {
  return allPids().filter((pid) => procStat(pid)?.ppid === parent);
}

/** The pid and all its live descendants. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const pid of allPids()) {
    const st = procStat(pid);
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(pid);
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  if (procStat(root)) walk(root);
  return out;
}

/** VmRSS in bytes, or 0 when the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  /** R, S, Z (zombie)... */
  state: string;
  cmdline: string;
  environ: string;
}

function readIfExists(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** One process from /proc with its command line and environment, or null when it does not exist. */
export function processInfo(pid: number): ProcessInfo | null {
  const st = procStat(pid);
  if (!st) return null;
  const cmdline = readIfExists(`/proc/${pid}/cmdline`).split('\0').join(' ').trim();
  const environ = readIfExists(`/proc/${pid}/environ`).split('\0').join('\n');
  return { pid, state: st.state, ppid: st.ppid, pgid: st.pgid, cmdline, environ };
}

export function listProcesses(): ProcessInfo[] {
  return allPids()
    .map(processInfo)
    .filter((p): p is ProcessInfo => p !== null);
}

/** Alive and not a zombie (a zombie has closed its sockets already). */
export function isRunning(pid: number): boolean {
  const st = procStat(pid);
  return st !== null && st.state !== 'Z';
}

/** The process exists, as a zombie too (as kill(pid, 0) sees it). */
export function processExists(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}
