/**
 * A steady load that keeps every request: a fixed number of lanes, each sending one GET after the
 * other over its own keep-alive connection, walking a list of paths (lane k starts at k * 7919 in
 * it, as the wrk script does), and recording for each request when it started, how long it took
 * and how it ended (the HTTP status, or the socket error). For bench/fault.ts, which needs to know
 * what happened to the requests sent while something was broken, which wrk's summary cannot say.
 */
import http from 'node:http';

export interface RequestRecord {
  /** performance.now() when the request was sent. */
  start: number;
  ms: number;
  /** The HTTP status, or 0 when there was none (see error). */
  status: number;
  /** A socket error (ECONNRESET...), 'timeout', or 'aborted' (the body was cut short); null when the answer came whole. */
  error: string | null;
  /** The path asked for. */
  path: string;
}

export interface LoadOptions {
  host: string;
  port: number;
  paths: string[];
  concurrency: number;
  /** A request that has no complete answer after this long is given up as 'timeout'. */
  timeoutMs: number;
}

export interface Load {
  readonly records: RequestRecord[];
  /** Requests sent and not finished. */
  inFlight(): number;
  /** Sends no more requests and resolves once those in flight have ended. */
  stop(): Promise<void>;
}

function once(agent: http.Agent, options: LoadOptions, path: string): Promise<RequestRecord> {
  const start = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (status: number, error: string | null) => {
      if (done) return;
      done = true;
      resolve({ start, ms: performance.now() - start, status, error, path });
    };
    const request = http.get({ host: options.host, port: options.port, path, agent }, (response) => {
      response.on('data', () => undefined);
      response.on('end', () => finish(response.statusCode ?? 0, null));
      response.on('error', (error: NodeJS.ErrnoException) => finish(response.statusCode ?? 0, error.code ?? error.message));
      response.on('close', () => {
        if (!response.complete) finish(response.statusCode ?? 0, 'aborted');
      });
    });
    request.setTimeout(options.timeoutMs, () => {
      finish(0, 'timeout');
      request.destroy();
    });
    request.on('error', (error: NodeJS.ErrnoException) => finish(0, error.code ?? error.message));
  });
}

export function startLoad(options: LoadOptions): Load {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  const records: RequestRecord[] = [];
  let stopped = false;
  let inFlight = 0;
  const lane = async (k: number) => {
    let i = (k * 7919) % options.paths.length;
    while (!stopped) {
      inFlight++;
      const record = await once(agent, options, options.paths[i]!);
      inFlight--;
      records.push(record);
      i = (i + 1) % options.paths.length;
    }
  };
  const lanes = Array.from({ length: options.concurrency }, (_, k) => lane(k));
  return {
    records,
    inFlight: () => inFlight,
    async stop() {
      stopped = true;
      await Promise.all(lanes);
      agent.destroy();
    },
  };
}
