/**
 * The access log (ACCESS_LOG): one JSON line per request the router answers, written through pino
 * to a destination of its own, whatever LOGFILE and VERBOSITY say. Operators ask it what was
 * served to whom, how fast, and from which cache tier; it is not the diagnostic log. Writing never
 * blocks a request (see log-destination.ts); SIGHUP reopens the file, as it does LOGFILE.
 *
 * No request header is logged but the User-Agent: credentials (Authorization, Cookie) must never
 * reach a log file that is shipped and kept.
 */
import { pino, type Logger } from 'pino';
import type { AccessLogTarget } from './config.js';
import type { CacheTier } from './engine/engine.js';
import { AsyncLogDestination } from './log-destination.js';

/** Longest path and query logged: a client's 100 KB query must not make a 100 KB line. */
export const MAX_LOGGED_URL_PART = 1024;
const MAX_LOGGED_AGENT = 256;

export interface AccessEntry {
  method: string;
  /** As the client sent them, not URL-decoded; cut short past MAX_LOGGED_URL_PART. */
  path: string;
  query: string;
  /** From the metrics' classification: iip, iiif, deepzoom, zoomify, or server for the server's own answers. */
  protocol: string;
  /** tile, region, image, info, health, metrics or other. */
  kind: string;
  status: number;
  /** Body bytes sent: what the client receives after the headers (0 for HEAD). */
  bytes: number;
  /** From the request reaching the router to its response being ready. */
  ms: number;
  /** Which cache tier answered the tile or region; `none` for answers without one (documents, errors). */
  tier: CacheTier | 'none';
  /** The client as the transport saw it (the web server's REMOTE_ADDR behind FastCGI). */
  remote: string;
  agent: string | undefined;
}

export interface AccessLog {
  write(entry: AccessEntry): void;
  /** After logrotate moved the file: later lines go to a new file of the same name. */
  reopen(): void;
  /** Resolves once the lines queued are written (bounded in time); await it before exiting. */
  flush(): Promise<void>;
}

export interface AccessLogOptions {
  /** On every line: the worker that answered. */
  worker: number | undefined;
  /** The file cannot be opened (the access log is off then). */
  onOpenError: (message: string) => void;
  /** Lines lost because the target could not keep up (reported in the ordinary log). */
  onDropped: (lines: number) => void;
}

/** Null when ACCESS_LOG is not set, or its file cannot be opened (reported through onOpenError). */
export function openAccessLog(target: AccessLogTarget, options: AccessLogOptions): AccessLog | null {
  if (target.kind === 'none') return null;
  const { onDropped } = options;
  let destination: AsyncLogDestination;
  if (target.kind === 'stdout') destination = AsyncLogDestination.stdout({ onDropped });
  else if (target.kind === 'stderr') destination = AsyncLogDestination.stderr({ onDropped });
  else {
    try {
      destination = AsyncLogDestination.appendTo(target.path, { onDropped });
    } catch (error) {
      options.onOpenError(`iipsrv: cannot open ACCESS_LOG ${target.path} (${(error as Error).message}); the access log is off`);
      return null;
    }
  }
  const logger: Logger = pino(
    {
      base: { worker: options.worker },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Every line is a request: a level would say nothing, while a type tells the lines apart
      // from the ordinary log's where both go to stderr.
      formatters: { level: () => ({ type: 'access' }) },
    },
    destination,
  );
  return {
    write: (entry) =>
      logger.info({
        ...entry,
        path: cut(entry.path, MAX_LOGGED_URL_PART),
        query: cut(entry.query, MAX_LOGGED_URL_PART),
        agent: entry.agent === undefined ? undefined : cut(entry.agent, MAX_LOGGED_AGENT),
      }),
    reopen: () => destination.reopen(),
    flush: () => destination.flush(),
  };
}

function cut(text: string, max: number): string {
  return text.length > max ? text.slice(0, max) + '…' : text;
}
