/**
 * The command line, as iipsrv's users start it:
 *   iipsrv --bind HOST:PORT [--backlog N]     standalone FastCGI on TCP
 *   iipsrv --bind /path/to.sock               standalone FastCGI on a unix socket
 *   iipsrv                                    FastCGI on the listening socket inherited as fd 0
 *                                             (Apache mod_fcgid, lighttpd bin-path, spawn-fcgi)
 *   iipsrv --http HOST:PORT                   plain HTTP, for trying it out
 * and the cache tools, configured by the same environment:
 *   iipsrv warm IMAGE [--levels LIST] [--concurrency N]
 *   iipsrv purge IMAGE
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

/** Resolutions as iipsrv numbers them (0 = the smallest): `from` up to `to`, or up to the largest when `to` is null. */
export interface ResolutionRange {
  from: number;
  to: number | null;
}

export type CacheTool = 'warm' | 'purge';

export type CliCommand =
  | { kind: 'run'; options: CliOptions }
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'usage-error'; message: string }
  /** `iipsrv warm IMAGE`; `resolutions` null = all of them. */
  | { kind: 'warm'; image: string; resolutions: ResolutionRange[] | null; concurrency: number }
  | { kind: 'purge'; image: string }
  | { kind: 'tool-help'; tool: CacheTool }
  | { kind: 'tool-usage-error'; tool: CacheTool; message: string };

export const USAGE = `Usage: iipsrv [--bind HOST:PORT | --bind /path/to.sock] [--backlog N]
              [--http HOST:PORT] [--workers N] [--shutdown-timeout SECONDS]
              [--http-idle-timeout SECONDS] [--http-read-timeout SECONDS] [--http-max-connections N]
       iipsrv warm IMAGE [--levels LIST] [--concurrency N]
       iipsrv purge IMAGE
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
warm and purge fill and empty the caches for one image: iipsrv warm --help, iipsrv purge --help.
`;

export const TOOL_USAGE: Readonly<Record<CacheTool, string>> = {
  warm: `Usage: iipsrv warm IMAGE [--levels LIST] [--concurrency N]

Renders the tiles of IMAGE that viewers ask for (IIP JTL, IIIF, DeepZoom and Zoomify tiles of
the default quality) and stores them in memcached; builds the pyramid of an image without one
when PYRAMID_CACHE_DIR is set. Configured by the server's environment variables.

  IMAGE              the image as requests name it (FIF=, the IIIF identifier), unencoded:
                     its path under FILESYSTEM_PREFIX, without FILESYSTEM_SUFFIX
  --levels LIST      resolutions to warm, numbered as IIP's JTL does (0 = the smallest):
                     N, N-M, or N- (N and up), separated by commas; default: all
  --concurrency N    tiles rendered at once (default 2)

Exit status: 0 warmed; 1 the image, memcached or a tile failed; 2 a usage error.
`,
  purge: `Usage: iipsrv purge IMAGE

Makes everything cached of IMAGE unreachable (its tiles and regions in memcached, for every
protocol, and in running servers' memory within CACHE_GENERATION_CHECK seconds), and deletes
the pyramid built for it in PYRAMID_CACHE_DIR. Configured by the server's environment variables.

  IMAGE              the image as requests name it (FIF=, the IIIF identifier), unencoded

Exit status: 0 purged; 1 the image does not exist or memcached did not confirm; 2 a usage error.
`,
};

const DEFAULT_BACKLOG = 2048;
/** Tiles `iipsrv warm` renders at once: it shares the machine with the server. */
const DEFAULT_WARM_CONCURRENCY = 2;

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

/**
 * `--levels`: comma-separated `N`, `N-M` or `N-` of iipsrv resolution numbers (0 = the smallest).
 * @throws Error for anything else
 */
export function parseResolutions(spec: string): ResolutionRange[] {
  return spec.split(',').map((part) => {
    const match = /^(\d{1,3})(?:(-)(\d{1,3})?)?$/.exec(part.trim());
    const from = Number(match?.[1]);
    const to = match?.[3] === undefined ? (match?.[2] ? null : from) : Number(match[3]);
    if (!match || (to !== null && to < from)) {
      throw new Error(`--levels expects resolutions such as 2, 0-3, 4- or 0,2,5 (0 = the smallest), got "${spec}"`);
    }
    return { from, to };
  });
}

/** The resolutions of an image with `count` of them that the ranges select, ascending. */
export function selectResolutions(ranges: readonly ResolutionRange[] | null, count: number): number[] {
  const all = Array.from({ length: count }, (_, resolution) => resolution);
  if (ranges === null) return all;
  return all.filter((resolution) => ranges.some((range) => resolution >= range.from && (range.to === null || resolution <= range.to)));
}

function parseToolArguments(tool: CacheTool, argv: string[]): CliCommand {
  let image: string | null = null;
  let resolutions: ResolutionRange[] | null = null;
  let concurrency = DEFAULT_WARM_CONCURRENCY;
  try {
    for (const { arg, value, next } of commandLine(argv)) {
      if (arg === '--help' || arg === '-h') return { kind: 'tool-help', tool };
      if (tool === 'warm' && arg === '--levels') resolutions = parseResolutions(value());
      else if (tool === 'warm' && arg === '--concurrency') concurrency = Math.min(64, positiveInteger(value(), arg));
      else if (arg === '--') image = takeImage(image, next());
      else if (arg.startsWith('-')) throw new Error(`unknown option "${arg}"`);
      else image = takeImage(image, arg);
    }
    if (image === null) throw new Error('which image? give its name as requests name it');
  } catch (error) {
    return { kind: 'tool-usage-error', tool, message: (error as Error).message };
  }
  return tool === 'warm' ? { kind: 'warm', image, resolutions, concurrency } : { kind: 'purge', image };
}

function takeImage(taken: string | null, name: string | undefined): string {
  if (name === undefined || name === '') throw new Error('which image? give its name as requests name it');
  if (taken !== null) throw new Error(`one image at a time: "${taken}" and "${name}"`);
  return name;
}

/**
 * The arguments one by one, `--flag=value` split into the flag and its value; `value()` is the
 * flag's value (given with `=`, else the next argument, which is then consumed), `next()` the next
 * argument as it is.
 */
function* commandLine(argv: string[]): Generator<{ arg: string; value: () => string; next: () => string | undefined }> {
  for (let i = 0; i < argv.length; i++) {
    const given = argv[i]!;
    const equals = given.indexOf('=');
    const split = given.startsWith('--') && equals > 0;
    const arg = split ? given.slice(0, equals) : given;
    const inline = split ? given.slice(equals + 1) : undefined;
    yield {
      arg,
      value: () => {
        const following = inline ?? argv[++i];
        if (following === undefined || following === '') throw new Error(`${arg} needs a value`);
        return following;
      },
      next: () => argv[++i],
    };
  }
}

export function parseArguments(argv: string[], stdinSocket: boolean = stdinIsSocket()): CliCommand {
  const first = argv[0];
  if (first === 'warm' || first === 'purge') return parseToolArguments(first, argv.slice(1));
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
    for (const { arg, value } of commandLine(argv)) {
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
