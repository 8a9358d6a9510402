/**
 * Object stores for tests: s3rver (an S3-protocol server from npm, in a process of its own:
 * s3rver-process.mjs) on loopback with a bucket of its own in a temporary directory, and the environment that points the AWS SDK (ours or the
 * daemon's) at it. Objects are put and removed over the S3 protocol itself. The web-server origin
 * is nginx (webservers.ts: startStaticNginx). And the faults a store must survive: a front that
 * answers 503 a few times before passing requests on, a server that accepts and never answers.
 *
 *   const s3 = await startS3();
 *   await s3.put('images/example.tif', EXAMPLE_TIF_PATH);
 *   const daemon = await startDaemon([...], { env: { ...s3Env(s3), FILESYSTEM_PREFIX: `s3://${s3.bucket}/images/` } });
 *   ... await s3.stop();
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ROOT, tempDir, testEnv } from './daemon.ts';
import { startProgram, stopGroup, waitFor } from './processes.ts';

const S3RVER_PROCESS = path.join(ROOT, 'test/helpers/s3rver-process.mjs');

/** s3rver's one account. */
export const S3RVER_KEY = 'S3RVER';
export const S3RVER_SECRET = 'S3RVER';
export const S3_REGION = 'us-east-1';

export interface S3Server {
  /** http://127.0.0.1:port */
  endpoint: string;
  port: number;
  bucket: string;
  /** Where s3rver keeps the objects. */
  directory: string;
  /** Puts an object: bytes, or the contents of a file. */
  put(key: string, data: Buffer | { file: string }): Promise<void>;
  remove(key: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3(options: { bucket?: string } = {}): Promise<S3Server> {
  // The SDK's documented switch for its Node 20 notice, which would otherwise clutter test output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const bucket = options.bucket ?? 'images';
  const directory = tempDir('iipsrv-s3-');
  const started = startProgram(process.execPath, ['--openssl-legacy-provider', S3RVER_PROCESS, directory, bucket], {
    env: testEnv({ ...(process.env.S3RVER_LOG ? { S3RVER_LOG: '1' } : {}) }),
  });
  let port = 0;
  try {
    await waitFor(
      async () => {
        if (!started.alive()) throw new Error(`s3rver exited: ${started.stderr()}`);
        port = Number(/listening (\d+)/.exec(started.stdout())?.[1] ?? 0);
        return port > 0;
      },
      15_000,
      's3rver to listen',
    );
  } catch (error) {
    await stopGroup(started);
    throw error;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    endpoint,
    region: S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET },
  });
  return {
    endpoint,
    port,
    bucket,
    directory,
    async put(key, data) {
      const body = Buffer.isBuffer(data) ? data : readFileSync(data.file);
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    async remove(key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
    async stop() {
      client.destroy();
      await stopGroup(started);
    },
  };
}

/**
 * The environment for the AWS SDK to reach the server: the variables an operator of MinIO or Ceph
 * sets. `overrides` replace some (wrong credentials...).
 */
export function s3Env(server: Pick<S3Server, 'endpoint'>, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: server.endpoint,
    AWS_ACCESS_KEY_ID: S3RVER_KEY,
    AWS_SECRET_ACCESS_KEY: S3RVER_SECRET,
    AWS_REGION: S3_REGION,
    AWS_S3_FORCE_PATH_STYLE: '1',
    // Nothing from the machine's own AWS set-up may leak in.
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    AWS_EC2_METADATA_DISABLED: 'true',
    ...overrides,
  };
}

/**
 * Runs `work` with these variables in this process's environment, then puts the old values back:
 * for the in-process store tests, where the SDK reads its configuration from process.env.
 */
export async function withEnv<T>(vars: Record<string, string>, work: () => Promise<T>): Promise<T> {
  const saved = new Map(Object.keys(vars).map((name) => [name, process.env[name]]));
  Object.assign(process.env, vars);
  try {
    return await work();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

/** A loopback server of the fault helpers, with what it saw. */
export interface FaultServer {
  port: number;
  /** Requests (or, for the silent server, connections) so far. */
  count(): number;
  stop(): Promise<void>;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function closeServer(server: net.Server, sockets: Set<net.Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

function trackSockets(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return sockets;
}

/**
 * A front on loopback that answers the first `failures` requests 503 (with S3's SlowDown body, which
 * a web-server client ignores) and passes the others on to the target port unchanged.
 */
export async function startFlakyFront(targetPort: number, failures: number): Promise<FaultServer> {
  let requests = 0;
  const server = http.createServer((request, response) => {
    requests++;
    if (requests <= failures) {
      response.writeHead(503, { 'content-type': 'application/xml' });
      response.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
      return;
    }
    const onward = http.request({ host: '127.0.0.1', port: targetPort, method: request.method, path: request.url, headers: request.headers }, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(response);
    });
    onward.on('error', () => response.destroy());
    request.pipe(onward);
  });
  const sockets = trackSockets(server);
  const port = await listen(server);
  return { port, count: () => requests, stop: () => closeServer(server, sockets) };
}

/** A server that accepts connections and reads them, and never says a word. */
export async function startSilentServer(): Promise<FaultServer> {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.resume();
    socket.on('error', () => {});
  });
  const sockets = trackSockets(server);
  const port = await listen(server);
  return { port, count: () => connections, stop: () => closeServer(server, sockets) };
}

/**
 * A web server whose every GET answers 206 with the Content-Range asked for, and then a chunked
 * body that does not stop (the hostile origin): `sent()` tells how much it managed to push out
 * before the client hung up.
 */
export async function startEndlessRangeServer(): Promise<FaultServer & { sent(): number }> {
  let requests = 0;
  let sent = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  const server = http.createServer((request, response) => {
    requests++;
    const [first, last] = /bytes=(\d+)-(\d+)/
      .exec(request.headers.range ?? '')
      ?.slice(1)
      .map(Number) ?? [0, 0];
    response.writeHead(206, { 'content-range': `bytes ${first}-${last}/${1 << 30}`, 'transfer-encoding': 'chunked' });
    const push = () => {
      while (!response.destroyed && sent < 1 << 30) {
        sent += chunk.length;
        if (!response.write(chunk)) return void response.once('drain', push);
      }
      response.end();
    };
    response.on('error', () => {});
    push();
  });
  const sockets = trackSockets(server);
  const port = await listen(server);
  return { port, count: () => requests, sent: () => sent, stop: () => closeServer(server, sockets) };
}
