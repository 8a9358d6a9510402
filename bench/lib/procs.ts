/**
 * Processes the benchmark starts (nginx, the servers): each in its own process group, all of them
 * stopped on exit, on error and on Ctrl-C; and what /proc says about them (CPU time, RSS).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  output(): string;
  exited: Promise<void>;
  alive(): boolean;
}

const started = new Set<Proc>();
const tempDirs = new Set<string>();
let cleaningUp: Promise<void> | null = null;
let interrupted = false;

/** Has a signal asked the benchmark to stop? (Then a failing wrk is expected, not an error.) */
export function isInterrupted(): boolean {
  return interrupted;
}

/** Spawns a program in its own process group (detached), stdout+stderr kept (last 64 KB). */
export function startProcess(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Proc {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env, cwd });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let done = false;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      done = true;
      resolve();
    });
    child.once('error', (error) => {
      out += `\nspawn error: ${error.message}`;
      done = true;
      resolve();
    });
  });
  if (child.pid === undefined) throw new Error(`cannot start ${command}`);
  const proc: Proc = { name, child, pid: child.pid, output: () => out, exited, alive: () => !done };
  started.add(proc);
  void exited.then(() => started.delete(proc));
  return proc;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}

/** SIGTERM to the process group, wait up to graceMs, then SIGKILL whatever is left of the group. */
export async function stopProcess(proc: Proc, graceMs = 5000): Promise<void> {
  if (proc.alive()) {
    killGroup(proc.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([proc.exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }
  // Workers of a primary that did not follow it, if any.
  killGroup(proc.pid, 'SIGKILL');
  if (proc.alive()) await proc.exited;
}

export function registerTempDir(dir: string): void {
  tempDirs.add(dir);
}

/** Stops everything started here and removes the temp dirs; safe to call more than once. */
export function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    await Promise.all([...started].map((p) => stopProcess(p)));
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  })();
  return cleaningUp;
}

/** Last-resort synchronous cleanup (process 'exit'): SIGKILL the groups, remove the dirs. */
function cleanupSync(): void {
  for (const p of started) killGroup(p.pid, 'SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

export function installCleanupHandlers(): void {
  process.on('exit', cleanupSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      interrupted = true;
      process.stderr.write(`\n${signal}: stopping everything the benchmark started...\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
}

// ---------------------------------------------------------------------------------------------

export { freePort } from '../../test/helpers/daemon.ts';

export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function waitForPort(proc: Proc, port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.alive()) throw new Error(`${proc.name} exited at start-up:\n${proc.output()}`);
    if (await canConnect(port)) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} does not listen on ${port} after ${timeoutMs} ms:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// /proc

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

interface Stat {
  ppid: number;
  /** utime + stime, seconds */
  cpu: number;
  /** cutime + cstime (reaped children), seconds */
  childCpu: number;
}

function readStat(pid: number): Stat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // f[0] = state (field 3); utime = field 14 → f[11], stime f[12], cutime f[13], cstime f[14]
    return {
      ppid: Number(f[1]),
      cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK,
      childCpu: (Number(f[13]) + Number(f[14])) / CLK_TCK,
    };
  } catch {
    return null;
  }
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

/** The pid and all its live descendants. */
export function processTree(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = readStat(Number(entry));
    if (!st) continue;
    const list = parents.get(st.ppid) ?? [];
    list.push(Number(entry));
    parents.set(st.ppid, list);
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    for (const c of parents.get(pid) ?? []) walk(c);
  };
  if (readStat(root)) walk(root);
  return out;
}

/**
 * CPU seconds consumed so far by a server: the roots' own time, plus the time of their reaped
 * children (a worker that died and was replaced), plus the live descendants (workers).
 */
export function treeCpuSeconds(roots: number[]): { seconds: number; pids: number[] } {
  let seconds = 0;
  const pids: number[] = [];
  for (const root of roots) {
    for (const pid of processTree(root)) {
      const st = readStat(pid);
      if (!st) continue;
      pids.push(pid);
      seconds += st.cpu + (pid === root ? st.childCpu : 0);
    }
  }
  return { seconds, pids };
}

/** Samples the summed RSS of process trees every intervalMs until stopped. */
export function sampleRss(roots: number[], intervalMs = 100): { stop(): { peakTotal: number; peakPerProcess: Map<number, number> } } {
  let peakTotal = 0;
  const peakPerProcess = new Map<number, number>();
  let pids = roots.flatMap((r) => processTree(r));
  let ticks = 0;
  const sample = () => {
    if (++ticks % 10 === 0) pids = roots.flatMap((r) => processTree(r));
    let total = 0;
    for (const pid of pids) {
      const rss = rssBytes(pid);
      total += rss;
      if (rss > (peakPerProcess.get(pid) ?? 0)) peakPerProcess.set(pid, rss);
    }
    if (total > peakTotal) peakTotal = total;
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { peakTotal, peakPerProcess };
    },
  };
}
