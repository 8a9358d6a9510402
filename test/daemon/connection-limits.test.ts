/**
 * Timeouts and limits of the real program's listeners, set through its configuration
 * (FCGI_* variables, --http-* flags) and probed over raw sockets: idle, half-sent and trickled
 * connections, too many connections, oversized headers, and the memory a worker keeps under a
 * flood of unfinished PARAMS.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HTTP_LIMIT_DEFAULTS, type HttpLimits } from '../../src/cli.ts';
import type { RequestHandler } from '../../src/request.ts';
import { createHttpListener, type HttpListener } from '../../src/server/http.ts';
import { FCGI, FastCgiTestClient, beginRequest, nameValuePairs, parseCgiResponse, record } from '../helpers/fastcgi-client.ts';
import { ROOT, startDaemon } from '../helpers/daemon.ts';
import { childPids, freePort, rssBytes, waitFor, type Started } from '../helpers/processes.ts';

const IMAGES = path.join(ROOT, 'examples/images') + '/';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw TCP connection that collects what it receives and notes when it closes. */
async function rawConnection(port: number): Promise<{ socket: net.Socket; received: () => string; closed: Promise<number> }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  const opened = performance.now();
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(performance.now() - opened)));
  return { socket, received: () => text, closed };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, sleep(ms).then(() => Promise.reject(new Error(`timed out waiting for ${what}`)))]);
}

describe('FastCGI limits from the environment', () => {
  let daemon: Started;
  let port: number;
  const clients: FastCgiTestClient[] = [];
  const connect = async () => {
    const client = await FastCgiTestClient.connect({ port });
    clients.push(client);
    return client;
  };
  before(async () => {
    port = await freePort();
    daemon = await startDaemon(['--bind', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { FILESYSTEM_PREFIX: IMAGES, FCGI_IDLE_TIMEOUT: '1', FCGI_READ_TIMEOUT: '1', FCGI_MAX_CONNS: '6', FCGI_MAX_REQS: '3' },
      waitPort: port,
    });
  });
  after(async () => {
    for (const client of clients) client.destroy();
    await daemon.stop();
  });

  // What FCGI_MAX_CONNS does is tested on the listener itself (fastcgi.test.ts); here, that it gets there.
  it('answers GET_VALUES with FCGI_MAX_CONNS and FCGI_MAX_REQS', async () => {
    const client = await connect();
    client.send(
      record(
        FCGI.GET_VALUES,
        0,
        nameValuePairs([
          ['FCGI_MAX_CONNS', ''],
          ['FCGI_MAX_REQS', ''],
        ]),
      ),
    );
    const result = await client.waitForRecord(FCGI.GET_VALUES_RESULT);
    assert.deepEqual(result.content, nameValuePairs({ FCGI_MAX_CONNS: '6', FCGI_MAX_REQS: '3' }));
  });

  it('FCGI_IDLE_TIMEOUT closes a kept connection after its last request', async () => {
    const client = await connect();
    const response = await client.request(1, { keepConn: true, params: { REQUEST_METHOD: 'GET', QUERY_STRING: 'FIF=example.tif&OBJ=IIP,1.0' } });
    assert.equal(response.status, '200 OK');
    const answered = performance.now();
    await client.waitForClose(10_000);
    assert.ok(performance.now() - answered >= 900, 'not before FCGI_IDLE_TIMEOUT');
  });

  it('FCGI_READ_TIMEOUT answers unfinished PARAMS with a 408 and closes', async () => {
    const client = await connect();
    client.send(Buffer.concat([beginRequest(1, { keepConn: true }), record(FCGI.PARAMS, 1, nameValuePairs({ QUERY_STRING: 'OBJ=IIP,1.0' }))]));
    const reply = await client.waitForEnd(1, 10_000);
    assert.equal(parseCgiResponse(reply.stdout).status, '408 Request Timeout');
    await client.waitForClose();
  });

  it('FCGI_MAX_REQS refuses a fourth request begun on one connection with OVERLOADED', async () => {
    const client = await connect();
    client.send(Buffer.concat([1, 2, 3, 4].map((id) => beginRequest(id, { keepConn: true }))));
    assert.deepEqual((await client.waitForEnd(4)).end, { appStatus: 0, protocolStatus: FCGI.OVERLOADED });
    client.destroy();
  });
});

describe('a worker under a flood of unfinished PARAMS, with the default limits', () => {
  let daemon: Started;
  let port: number;
  before(async () => {
    port = await freePort();
    daemon = await startDaemon(['--bind', `127.0.0.1:${port}`, '--workers', '1'], { env: { FILESYSTEM_PREFIX: IMAGES }, waitPort: port });
  });
  after(() => daemon.stop());

  it('4 connections x 100 requests x ~1 MiB of PARAMS that never end: the worker grows by tens of MB, not hundreds', async (t) => {
    let worker = 0;
    await waitFor(async () => (worker = childPids(daemon.child.pid!)[0] ?? 0) !== 0, 20_000, 'the worker');
    // Warm: one request through the router before the baseline.
    const warm = await FastCgiTestClient.connect({ port });
    assert.equal((await warm.request(1, { keepConn: true, params: { QUERY_STRING: 'FIF=example.tif&OBJ=IIP,1.0' } })).status, '200 OK');
    const baseline = rssBytes(worker);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(worker))), 20);
    const chunk = Buffer.alloc(65_000, 0x41);
    const attackers = await Promise.all([0, 1, 2, 3].map(() => FastCgiTestClient.connect({ port })));
    try {
      await Promise.all(
        attackers.map(async (client) => {
          for (let id = 1; id <= 100 && !client.closed; id++) {
            // BEGIN_REQUEST and 16 x 65000 bytes of PARAMS, never the empty record that ends them.
            const bytes = Buffer.concat([beginRequest(id, { keepConn: true }), ...Array.from({ length: 16 }, () => record(FCGI.PARAMS, id, chunk))]);
            if (!client.socket.write(bytes)) {
              await new Promise<void>((resolve) => {
                const done = () => {
                  client.socket.off('drain', done);
                  client.socket.off('close', done);
                  resolve();
                };
                client.socket.on('drain', done);
                client.socket.on('close', done);
              });
            }
          }
        }),
      );
      await sleep(1000);
    } finally {
      clearInterval(sampler);
    }
    const grown = (peak - baseline) / 1024 / 1024;
    t.diagnostic(`worker RSS ${(baseline / 1024 / 1024).toFixed(0)} MB before, ${(peak / 1024 / 1024).toFixed(0)} MB at its peak`);
    // Before the bound: 67 -> 491 MB. With it: the 8 MiB held, plus the garbage of reading it.
    assert.ok(grown < 150, `the worker grew by ${grown.toFixed(0)} MB (from ${(baseline / 1024 / 1024).toFixed(0)} MB)`);
    assert.ok(
      attackers.every((client) => client.closed),
      'the connections holding the most were closed',
    );
    for (const client of attackers) client.destroy();
    assert.equal((await warm.request(2, { keepConn: true, params: { QUERY_STRING: 'FIF=example.tif&OBJ=IIP,1.0' } })).status, '200 OK');
    warm.destroy();
  });
});

describe('HTTP limits from the command line', () => {
  let daemon: Started;
  let port: number;
  before(async () => {
    port = await freePort();
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1', '--http-idle-timeout', '1', '--http-read-timeout', '1'], {
      env: { FILESYSTEM_PREFIX: IMAGES },
      waitPort: port,
    });
  });
  after(() => daemon.stop());

  it('--http-read-timeout: a connection that sends nothing, or half its headers, gets a 408 and is closed', async () => {
    const silent = await rawConnection(port);
    const half = await rawConnection(port);
    half.socket.write('GET /?FIF=example.tif&OBJ=IIP,1.0 HTTP/1.1\r\nHost: x\r\n');
    const [silentAfter, halfAfter] = await within(Promise.all([silent.closed, half.closed]), 10_000, 'both to close');
    for (const [connection, elapsed] of [
      [silent, silentAfter],
      [half, halfAfter],
    ] as const) {
      assert.ok(elapsed >= 900, `closed after ${elapsed} ms`);
      assert.match(connection.received(), /^HTTP\/1\.1 408 Request Timeout\r\n/);
      assert.match(connection.received(), /did not arrive in time/);
    }
  });

  it('--http-idle-timeout closes a kept-alive connection after its last response', async () => {
    const connection = await rawConnection(port);
    connection.socket.write('GET /?FIF=example.tif&OBJ=IIP,1.0 HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(async () => connection.received().includes('IIP:1.0'), 10_000, 'the response');
    const answered = performance.now();
    await within(connection.closed, 10_000, 'the idle close');
    assert.ok(performance.now() - answered >= 900);
    assert.match(connection.received(), /^HTTP\/1\.1 200 OK\r\n/);
  });

  it('answers headers over 16 KiB with a 431 that says why', async () => {
    const connection = await rawConnection(port);
    connection.socket.write(`GET /?OBJ=IIP,1.0 HTTP/1.1\r\nHost: x\r\nCookie: ${'c'.repeat(17 * 1024)}\r\n\r\n`);
    await within(connection.closed, 10_000, 'the close');
    assert.match(connection.received(), /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.match(connection.received(), /longer than the server accepts \(16384 bytes\)/);
  });
});

describe('HTTP listener', () => {
  async function listen(handler: RequestHandler, limits: HttpLimits): Promise<{ port: number; listener: HttpListener }> {
    const listener = createHttpListener(handler, limits);
    await new Promise<void>((resolve) => listener.server.listen(0, '127.0.0.1', resolve));
    return { port: (listener.server.address() as net.AddressInfo).port, listener };
  }

  it('drops a connection whose client stops reading a response, after the read timeout', async () => {
    const body = Buffer.alloc(32 * 1024 * 1024, 1);
    const { port, listener } = await listen(async () => ({ status: 200, headers: [['Content-Type', 'application/octet-stream']], body }), {
      idleTimeoutMs: 5000,
      readTimeoutMs: 500,
      maxConnections: 10,
    });
    // Seen from the server: a paused client would not notice its socket closing.
    let serverClosed: number | null = null;
    listener.server.on('connection', (socket: net.Socket) => socket.on('close', () => (serverClosed = performance.now())));
    try {
      const connection = await rawConnection(port);
      connection.socket.pause();
      const sent = performance.now();
      connection.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      // Nothing read: the 32 MB cannot all be in the kernel's buffers.
      await waitFor(async () => serverClosed !== null, 10_000, 'the stalled connection to be dropped');
      assert.ok(serverClosed! - sent >= 490);
      connection.socket.destroy();
    } finally {
      await listener.close(0);
    }
  });

  it('closes connections beyond maxConnections as they come and serves the others', async () => {
    const { port, listener } = await listen(async () => ({ status: 200, headers: [['Content-Length', '2']], body: Buffer.from('ok') }), {
      ...HTTP_LIMIT_DEFAULTS,
      maxConnections: 4,
    });
    const open = await Promise.all(Array.from({ length: 4 }, () => rawConnection(port)));
    try {
      for (const connection of open) connection.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(async () => open.every((c) => c.received().endsWith('ok')), 10_000, 'four answers');
      const extra = await rawConnection(port);
      extra.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await within(extra.closed, 10_000, 'the extra connection to be closed');
      assert.equal(extra.received(), '', 'never answered');
      // The four kept connections serve on.
      open[0]!.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(async () => open[0]!.received().split('200 OK').length === 3, 10_000, 'a second answer');
    } finally {
      for (const connection of open) connection.socket.destroy();
      await listener.close(0);
    }
  });
});
