/**
 * Processes the benchmark starts (nginx, the servers, wrk), with test/helpers/processes.ts (own
 * process group, killed when the benchmark exits, waiting for a port, stopping, /proc): their
 * output kept (last 64 KB), everything stopped and the temp dirs removed on error and on Ctrl-C
 * too; and what /proc says about a server's process tree (CPU time, RSS).
 */
import { rmSync } from 'node:fs';
import { procStat, processTree, rssBytes, runningPrograms, startProgram, stopGroup, type Started } from '../../test/helpers/processes.ts';

export interface Proc extends Started {
  name: string;
  pid: number;
  /** stdout then stderr, the last 64 KB of each. */
  output(): string;
}

const tempDirs = new Set<string>();
let cleaningUp: Promise<void> | null = null;
let interrupted = false;

/** Has a signal asked the benchmark to stop? (Then a failing wrk is expected, not an error.) */
export function isInterrupted(): boolean {
  return interrupted;
}

/** Spawns a program in its own process group (detached), stdout and stderr kept (last 64 KB of each). */
export function startProcess(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Proc {
  const started = startProgram(command, args, { env, cwd, keepBytes: 65536 });
  if (started.child.pid === undefined) throw new Error(`cannot start ${command}`);
  return { ...started, name, pid: started.child.pid, output: () => started.stdout() + started.stderr() };
}

export function registerTempDir(dir: string): void {
  tempDirs.add(dir);
}

/** Stops everything started here and removes the temp dirs; safe to call more than once. */
export function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    await Promise.all(runningPrograms().map((p) => stopGroup(p)));
    removeTempDirs();
  })();
  return cleaningUp;
}

function removeTempDirs(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

/** Ctrl-C and other signals stop everything first; at exit the temp dirs go (processes.ts kills the groups). */
export function installCleanupHandlers(): void {
  process.on('exit', removeTempDirs);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      interrupted = true;
      process.stderr.write(`\n${signal}: stopping everything the benchmark started...\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
}

// ---------------------------------------------------------------------------------------------
// /proc

/**
 * CPU seconds consumed so far by a server: the roots' own time, plus the time of their reaped
 * children (a worker that died and was replaced), plus the live descendants (workers).
 */
export function treeCpuSeconds(roots: number[]): { seconds: number; pids: number[] } {
  let seconds = 0;
  const pids: number[] = [];
  for (const root of roots) {
    for (const pid of processTree(root)) {
      const st = procStat(pid);
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
