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

export interface CliOptions {
  fastcgi: ListenTarget | null;
  http: { host: string; port: number } | null;
  workers: number;
  shutdownGraceMs: number;
}

export type CliCommand = { kind: 'run'; options: CliOptions } | { kind: 'help' } | { kind: 'version' } | { kind: 'usage-error'; message: string };

export const USAGE = `Usage: iipsrv [--bind HOST:PORT | --bind /path/to.sock] [--backlog N]
              [--http HOST:PORT] [--workers N] [--shutdown-timeout SECONDS]
       iipsrv --version | --help

iipsrv-ts ${VERSION}: an IIPImage-compatible image server (IIP, IIIF, DeepZoom, Zoomify).

  --bind HOST:PORT   serve FastCGI on a TCP port (HOST empty or * = all interfaces)
  --bind PATH        serve FastCGI on a unix socket
  --backlog N        listen backlog for --bind (default 2048)
  --http HOST:PORT   also (or only) serve plain HTTP, e.g. --http 127.0.0.1:8080
  --workers N        worker processes sharing the socket (default: half the CPUs, at least 1)
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
  let workers = defaultWorkers();
  let shutdownGraceMs = 10_000;
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
  return { kind: 'run', options: { fastcgi, http, workers, shutdownGraceMs } };
}

export function defaultWorkers(cpus = os.availableParallelism()): number {
  return Math.max(1, Math.floor(cpus / 2));
}
