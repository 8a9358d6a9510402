/**
 * The command line, as iipsrv's users start it:
 *   iipsrv --bind HOST:PORT [--backlog N]     standalone FastCGI on TCP
 *   iipsrv --bind /path/to.sock               standalone FastCGI on a unix socket
 *   iipsrv                                    FastCGI on the listening socket inherited as fd 0
 *                                             (Apache mod_fcgid, lighttpd bin-path, spawn-fcgi)
 *   iipsrv --http HOST:PORT                   plain HTTP, for trying it out
 */
import { fstatSync } from 'node:fs';
import os from 'node:os';
import { VERSION } from './version.js';

export type ListenTarget =
  { kind: 'tcp'; host: string; port: number; backlog: number } | { kind: 'unix'; path: string; backlog: number } | { kind: 'fd'; fd: number; backlog: number };

/**
 * What one worker's HTTP listener tolerates. Flags rather than environment variables: only the
 * command line starts an HTTP listener (`--http`), and no web server passes it an environment.
 */
export interface HttpLimits {
  /** Keep-alive: a connection with no request in progress is closed after this; 0: never. */
  idleTimeoutMs: number;
  /** The request must arrive within this, and a response unread for this long is dropped; 0: no limit. */
  readTimeoutMs: number;
  /** Connections open at once; one more is closed as soon as it is accepted. */
  maxConnections: number;
}

/** Browsers reuse a kept connection within seconds; Node's own keep-alive default is 5 s too. */
export const HTTP_LIMIT_DEFAULTS: Readonly<HttpLimits> = { idleTimeoutMs: 5000, readTimeoutMs: 30_000, maxConnections: 1024 };

export interface CliOptions {
  fastcgi: ListenTarget | null;
  http: { host: string; port: number } | null;
  httpLimits: HttpLimits;
  workers: number;
  shutdownGraceMs: number;
}

export type CliCommand = { kind: 'run'; options: CliOptions } | { kind: 'help' } | { kind: 'version' } | { kind: 'usage-error'; message: string };

export const USAGE = `Usage: iipsrv [--bind HOST:PORT | --bind /path/to.sock] [--backlog N]
              [--http HOST:PORT] [--workers N] [--shutdown-timeout SECONDS]
              [--http-idle-timeout SECONDS] [--http-read-timeout SECONDS] [--http-max-connections N]
       iipsrv --version | --help

iipsrv-ts ${VERSION}: an IIPImage-compatible image server (IIP, IIIF, DeepZoom, Zoomify).

  --bind HOST:PORT   serve FastCGI on a TCP port (HOST empty or * = all interfaces)
  --bind PATH        serve FastCGI on a unix socket
  --backlog N        listen backlog for --bind (default 2048)
  --http HOST:PORT   also (or only) serve plain HTTP, e.g. --http 127.0.0.1:8080
  --http-idle-timeout SECONDS
                     close a kept-alive HTTP connection idle this long (default 5; 0 never)
  --http-read-timeout SECONDS
                     a request must arrive within this, and a response the client stops
                     reading is dropped after this (default 30; 0 no limit)
  --http-max-connections N
                     HTTP connections open at once per worker (default 1024)
  --workers N        worker processes sharing the socket (default: half the CPUs, at least 2)
  --shutdown-timeout SECONDS
                     on SIGTERM, how long requests in flight may take (default 10)
  --version          print the version
  --help             print this text

Without --bind or --http, iipsrv serves FastCGI on the listening socket it was given as
standard input, as Apache mod_fcgid, lighttpd and spawn-fcgi start it.
Configuration comes from the same environment variables as iipsrv (see README.md).
`;

const DEFAULT_BACKLOG = 2048;

export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  // [v6]:port, host:port, :port, *:port, port
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value) ?? /^()()(\d+)$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${flag} expects HOST:PORT, got "${value}"`);
  }
  let host = match[1] ?? match[2] ?? '';
  if (host === '' || host === '*') host = '0.0.0.0';
  return { host, port };
}

function secondsFlag(value: string | undefined, flag: string): number {
  if (value === undefined || !/^\d+(\.\d+)?$/.test(value)) {
    throw new Error(`${flag} expects a number of seconds (0 for none), got "${value ?? ''}"`);
  }
  return Math.round(Number(value) * 1000);
}

function positiveInteger(value: string | undefined, flag: string): number {
  if (value === undefined || !/^\d+$/.test(value) || Number(value) < 1) {
    throw new Error(`${flag} expects a whole number of at least 1, got "${value ?? ''}"`);
  }
  return Number(value);
}

/** Is fd 0 a socket? Then a web server or spawn-fcgi handed us the listening socket. */
export function stdinIsSocket(): boolean {
  try {
    return fstatSync(0).isSocket();
  } catch {
    return false;
  }
}

export function parseArguments(argv: string[], stdinSocket: boolean = stdinIsSocket()): CliCommand {
  let bind: string | null = null;
  let backlog = DEFAULT_BACKLOG;
  let http: CliOptions['http'] = null;
  // One worker per two cores: each worker's decodes, encodes and region pipelines already run on
  // libuv's thread pool (a single worker kept both cores of the benchmark machine busy), and the
  // web server in front needs CPU too. More workers than that only add memory (about 110 MB each).
  // But never one alone: Node's cluster closes the shared listening socket when its last worker
  // exits, so a crash of a lone worker refuses connections until its replacement listens (0.4-0.5 s
  // in bench/fault.ts); with two, the other one goes on accepting.
  let workers = defaultWorkers();
  let shutdownGraceMs = 10_000;
  const httpLimits: HttpLimits = { ...HTTP_LIMIT_DEFAULTS };
  try {
    for (let i = 0; i < argv.length; i++) {
      let arg = argv[i]!;
      let inline: string | undefined;
      const equals = arg.indexOf('=');
      if (arg.startsWith('--') && equals > 0) {
        inline = arg.slice(equals + 1);
        arg = arg.slice(0, equals);
      }
      const value = (): string => {
        const next = inline ?? argv[++i];
        if (next === undefined || next === '') throw new Error(`${arg} needs a value`);
        return next;
      };
      switch (arg) {
        case '--help':
        case '-h':
          return { kind: 'help' };
        case '--version':
        case '-v':
          return { kind: 'version' };
        case '--bind':
          bind = value();
          break;
        case '--backlog':
          backlog = positiveInteger(value(), '--backlog');
          break;
        case '--http':
          http = parseHostPort(value(), '--http');
          break;
        case '--http-idle-timeout':
          httpLimits.idleTimeoutMs = secondsFlag(value(), arg);
          break;
        case '--http-read-timeout':
          httpLimits.readTimeoutMs = secondsFlag(value(), arg);
          break;
        case '--http-max-connections':
          httpLimits.maxConnections = positiveInteger(value(), arg);
          break;
        case '--workers':
          workers = positiveInteger(value(), '--workers');
          break;
        case '--shutdown-timeout':
          shutdownGraceMs = positiveInteger(value(), '--shutdown-timeout') * 1000;
          break;
        default:
          throw new Error(`unknown argument "${arg}"`);
      }
    }
  } catch (error) {
    return { kind: 'usage-error', message: (error as Error).message };
  }

  let fastcgi: ListenTarget | null = null;
  if (bind !== null) {
    // As libfcgi: a value with :PORT is TCP, anything else a unix socket path.
    if (/:\d+$/.test(bind)) {
      try {
        fastcgi = { kind: 'tcp', ...parseHostPort(bind, '--bind'), backlog };
      } catch (error) {
        return { kind: 'usage-error', message: (error as Error).message };
      }
    } else {
      fastcgi = { kind: 'unix', path: bind, backlog };
    }
  } else if (stdinSocket) {
    fastcgi = { kind: 'fd', fd: 0, backlog };
  }
  if (fastcgi === null && http === null) {
    return { kind: 'usage-error', message: 'nothing to serve: give --bind or --http, or start iipsrv from a web server' };
  }
  return { kind: 'run', options: { fastcgi, http, httpLimits, workers, shutdownGraceMs } };
}

export function defaultWorkers(cpus = os.availableParallelism()): number {
  return Math.max(2, Math.floor(cpus / 2));
}
