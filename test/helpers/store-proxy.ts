/**
 * An HTTP proxy in front of an image store (s3rver, nginx) that counts what passes (requests,
 * ranges, bytes) and can add a delay to each request, as a store across a network would: the
 * object-storage tests check what reaches the store, the benchmark how many round trips a screen
 * of tiles costs.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxiedRequest {
  method: string;
  path: string;
  range: string | null;
  status: number;
  bytes: number;
}

export interface StoreProxy {
  url: string;
  port: number;
  requests: ProxiedRequest[];
  /** Milliseconds added before each request is passed on. */
  delayMs: number;
  /** Answer every request with this status instead of passing it on (null: pass on). */
  failWith: number | null;
  reset(): void;
  stop(): Promise<void>;
}

export async function startStoreProxy(target: { host: string; port: number }, delayMs = 0): Promise<StoreProxy> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const proxy: StoreProxy = {
    url: '',
    port: 0,
    requests: [],
    delayMs,
    failWith: null,
    reset() {
      proxy.requests = [];
    },
    stop: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const record: ProxiedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', range: req.headers.range ?? null, status: 0, bytes: 0 };
    proxy.requests.push(record);
    const forward = () => {
      if (proxy.failWith !== null) {
        record.status = proxy.failWith;
        res.writeHead(proxy.failWith, { 'Content-Length': '0' }).end();
        return;
      }
      const upstream = http.request(
        { host: target.host, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: `${target.host}:${target.port}` }, agent },
        (answer) => {
          record.status = answer.statusCode ?? 0;
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.on('data', (chunk: Buffer) => (record.bytes += chunk.length));
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if (proxy.delayMs > 0) setTimeout(forward, proxy.delayMs);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = (server.address() as AddressInfo).port;
  proxy.url = `http://127.0.0.1:${proxy.port}`;
  return proxy;
}
