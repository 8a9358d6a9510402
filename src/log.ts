/**
 * Logging as iipsrv's users configure it: LOGFILE names the target (a file, `syslog`, or here also
 * `stderr`), VERBOSITY how much goes there. Level 0, or no LOGFILE, means no log at all.
 *   1: start-up banner with the configuration, errors, warnings
 *   2: one line per request with its timing
 *   3+: per-command detail
 * Lines are pino's JSON so that they can be searched and shipped; every process (the primary and
 * each worker) appends to the same file, which O_APPEND keeps line-atomic. Writing never blocks
 * a request: see log-destination.ts.
 */
import dgram from 'node:dgram';
import os from 'node:os';
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';
import type { LogTarget } from './config.js';
import { AsyncLogDestination } from './log-destination.js';

export interface Log {
  /** Is anything logged at this iipsrv verbosity level? Check before building costly messages. */
  enabled(verbosity: number): boolean;
  error(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  /** Verbosity 1. */
  info(fields: object, message: string): void;
  /** Verbosity 2: per-request lines. */
  request(fields: object, message: string): void;
  /** Verbosity 3 and up: detail. */
  detail(fields: object, message: string): void;
  /** Reopen the file after logrotate moved it. */
  reopen(): void;
  /** Resolves once what is buffered is written (bounded in time); await it before exiting. */
  flush(): Promise<void>;
}

const silent: Log = {
  enabled: () => false,
  error() {},
  warn() {},
  info() {},
  request() {},
  detail() {},
  reopen() {},
  flush: () => Promise.resolve(),
};

export const silentLog = silent;

function pinoLevel(verbosity: number): string {
  if (verbosity >= 3) return 'trace';
  if (verbosity === 2) return 'debug';
  return 'info';
}

/** RFC 3164 over UDP: Node has no unix datagram sockets, so /dev/log is out of reach. */
class SyslogDestination implements DestinationStream {
  private readonly socket = dgram.createSocket('udp4');
  private readonly hostname = os.hostname();

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {
    this.socket.unref();
    this.socket.on('error', () => {
      // A missing syslog daemon must not take the server down; the lines are lost, as with syslog(3).
    });
  }

  write(line: string): void {
    let severity = 6;
    try {
      const level = (JSON.parse(line) as { level?: number }).level ?? 30;
      severity = level >= 50 ? 3 : level >= 40 ? 4 : level >= 30 ? 6 : 7;
    } catch {
      // Not JSON: keep it as informational.
    }
    const facilityUser = 1;
    const stamp = syslogTimestamp(new Date());
    const message = `<${facilityUser * 8 + severity}>${stamp} ${this.hostname} iipsrv[${process.pid}]: ${line.trimEnd()}`;
    this.socket.send(message, this.port, this.host);
  }
}

function syslogTimestamp(date: Date): string {
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${months[date.getMonth()]} ${String(date.getDate()).padStart(2, ' ')} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export interface LogOptions {
  target: LogTarget;
  verbosity: number;
  /** Added to every line (the process role: primary, worker 2 ...). */
  base?: Record<string, unknown>;
  /** Where to report that the log file cannot be opened (stderr by default). */
  onOpenError?: (message: string) => void;
}

export function createLog(options: LogOptions): Log {
  const { target, verbosity } = options;
  if (verbosity <= 0 || target.kind === 'none') return silent;

  let destination: DestinationStream & { reopen?: () => void; flush?: () => Promise<void> };
  // The note about lost lines goes through the logger, made below.
  const onDropped = (lines: number) => logger.warn({ dropped: lines }, 'log lines dropped: the log target could not keep up');
  if (target.kind === 'file') {
    try {
      destination = AsyncLogDestination.appendTo(target.path, { onDropped });
    } catch (error) {
      const report = options.onOpenError ?? ((message: string) => process.stderr.write(message + '\n'));
      report(`iipsrv: cannot open LOGFILE ${target.path} (${(error as Error).message}); logging is off`);
      return silent;
    }
  } else if (target.kind === 'stderr') {
    destination = AsyncLogDestination.stderr({ onDropped });
  } else {
    destination = new SyslogDestination(target.host, target.port);
  }

  const logger: PinoLogger = pino(
    {
      level: pinoLevel(verbosity),
      base: { pid: process.pid, ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );

  return {
    enabled: (level) => level <= verbosity,
    error: (fields, message) => logger.error(fields, message),
    warn: (fields, message) => logger.warn(fields, message),
    info: (fields, message) => logger.info(fields, message),
    request: (fields, message) => logger.debug(fields, message),
    detail: (fields, message) => logger.trace(fields, message),
    reopen: () => destination.reopen?.(),
    flush: () => destination.flush?.() ?? Promise.resolve(),
  };
}
