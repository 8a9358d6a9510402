/**
 * The FastCGI record layer, spoken to over real sockets with a hand-written client
 * (test/helpers/fastcgi-client.ts) that builds and parses records without the server's code.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import type { PlainRequest, PlainResponse, RequestHandler } from '../../src/request.ts';
import { encodeNameValuePairs, encodeStreamRecords, forEachNameValuePair, readNameValuePairs, FastCgiProtocolError } from '../../src/server/fastcgi/records.ts';
import { createFastCgiServer, type FastCgiServer, type FastCgiServerOptions } from '../../src/server/fastcgi/server.ts';
import {
  DEFAULT_PARAMS,
  FCGI,
  FastCgiTestClient,
  beginRequest,
  fullRequest,
  nameValuePairs,
  paramsRecords,
  parseCgiResponse,
  record,
  stdinRecords,
  type RawRecord,
} from '../helpers/fastcgi-client.ts';

// ---- harness ----

interface Started {
  fcgi: FastCgiServer;
  port: number;
  warnings: Array<{ fields: Record<string, unknown>; message: string }>;
  requests: PlainRequest[];
}

const running: FastCgiServer[] = [];
const clients: FastCgiTestClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await Promise.all(running.splice(0).map((fcgi) => fcgi.close(0)));
});

function text(status: number, body: string, extra: Array<[string, string]> = []): PlainResponse {
  const bytes = Buffer.from(body, 'latin1');
  return {
    status,
    headers: [['Content-Type', 'text/plain'], ['Content-Length', String(bytes.length)], ...extra],
    body: bytes,
  };
}

/** Answers with a description of the request it got. */
const echo: RequestHandler = async (request) => {
  const { signal: _signal, ...rest } = request;
  return text(200, JSON.stringify(rest));
};

async function start(handler: RequestHandler = echo, options: FastCgiServerOptions = {}): Promise<Started> {
  const warnings: Started['warnings'] = [];
  const requests: PlainRequest[] = [];
  const fcgi = createFastCgiServer(
    (request) => {
      requests.push(request);
      return handler(request);
    },
    {
      log: { warn: (fields, message) => warnings.push({ fields: fields as Record<string, unknown>, message }), debug: () => undefined },
      ...options,
    },
  );
  running.push(fcgi);
  await fcgi.listen({ host: '127.0.0.1', port: 0 });
  return { fcgi, port: (fcgi.address() as net.AddressInfo).port, warnings, requests };
}

async function connect(target: { port: number } | { path: string }): Promise<FastCgiTestClient> {
  const client = await FastCgiTestClient.connect(target);
  clients.push(client);
  return client;
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Every record is 8-byte aligned with zeroed padding and fits the 16-bit length. */
function assertWellFormed(records: RawRecord[]): void {
  for (const r of records) {
    assert.equal(r.version, 1);
    assert.ok(r.content.length <= 65535);
    assert.equal((8 + r.content.length + r.paddingLength) % 8, 0, `record of type ${r.type} is not 8-byte aligned`);
    assert.ok(
      r.padding.every((byte) => byte === 0),
      'padding bytes are zero',
    );
  }
}

function echoed(body: Buffer): Omit<PlainRequest, 'signal'> {
  return JSON.parse(body.toString('latin1')) as Omit<PlainRequest, 'signal'>;
}

// ---- tests ----

describe('FastCGI records', () => {
  it('encodes and decodes name-value pairs with 1- and 4-byte lengths, byte for byte', () => {
    const long = 'v'.repeat(200);
    const bytes = Buffer.from([0x00, 0x7f, 0x80, 0xe9, 0xff]).toString('latin1');
    const pairs: Array<[string, string]> = [
      ['A', ''],
      ['N'.repeat(127), 'x'],
      ['N'.repeat(128), long],
      ['RAW', bytes],
    ];
    const encoded = encodeNameValuePairs(pairs);
    // Independent encoder agrees.
    assert.deepEqual(encoded, nameValuePairs(pairs));
    assert.equal(encoded[encoded.indexOf('A') - 2], 1); // 1-byte name length
    const fourByte = encoded.indexOf('N'.repeat(128)) - 8;
    assert.equal(encoded.readUInt32BE(fourByte), (0x80000000 | 128) >>> 0);
    assert.equal(encoded.readUInt32BE(fourByte + 4), (0x80000000 | 200) >>> 0);
    assert.deepEqual(readNameValuePairs(encoded), pairs);
    assert.deepEqual(Buffer.from(readNameValuePairs(encoded)[3]![1], 'latin1'), Buffer.from([0x00, 0x7f, 0x80, 0xe9, 0xff]));
  });

  it('rejects truncated name-value pairs', () => {
    const encoded = encodeNameValuePairs([['NAME', 'value'.repeat(40)]]);
    for (const cut of [1, 3, 5, 8, encoded.length - 1]) {
      assert.throws(() => forEachNameValuePair(encoded.subarray(0, cut), () => undefined), FastCgiProtocolError, `cut at ${cut}`);
    }
  });

  it('cuts stream data into aligned records of at most 65535 bytes', () => {
    const data = Buffer.alloc(200_001, 7);
    const out = encodeStreamRecords(FCGI.STDOUT, 513, data, true);
    let offset = 0;
    const parts: Buffer[] = [];
    let last = -1;
    while (offset < out.length) {
      assert.equal(out[0], 1);
      assert.equal(out.readUInt16BE(offset + 2), 513);
      const length = out.readUInt16BE(offset + 4);
      const padding = out[offset + 6]!;
      assert.ok(length <= 65535);
      assert.equal((8 + length + padding) % 8, 0);
      assert.ok(out.subarray(offset + 8 + length, offset + 8 + length + padding).every((b) => b === 0));
      parts.push(out.subarray(offset + 8, offset + 8 + length));
      last = length;
      offset += 8 + length + padding;
    }
    assert.equal(last, 0, 'ends with the empty record');
    assert.deepEqual(Buffer.concat(parts), data);
  });
});

describe('FastCGI responder', () => {
  it('answers a RESPONDER request: Status line, headers, body, empty STDOUT, END_REQUEST', async () => {
    const { port } = await start(async () =>
      text(200, 'hello', [
        ['X-Extra', 'one'],
        ['X-Extra', 'two'],
      ]),
    );
    const client = await connect({ port });
    const response = await client.request(1);
    assert.equal(response.status, '200 OK');
    assert.deepEqual(response.headers, [
      ['Content-Type', 'text/plain'],
      ['Content-Length', '5'],
      ['X-Extra', 'one'],
      ['X-Extra', 'two'],
    ]);
    assert.equal(response.body.toString(), 'hello');
    assert.equal(
      response.reply.stdout.toString('latin1'),
      'Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Extra: one\r\nX-Extra: two\r\n\r\nhello',
    );
    const types = response.reply.records.map((r) => [r.type, r.content.length > 0]);
    assert.deepEqual(types.slice(-2), [
      [FCGI.STDOUT, false],
      [FCGI.END_REQUEST, true],
    ]);
    assert.ok(types.slice(0, -2).every(([type, nonEmpty]) => type === FCGI.STDOUT && nonEmpty));
    assert.deepEqual(response.reply.end, { appStatus: 0, protocolStatus: FCGI.REQUEST_COMPLETE });
    assert.equal(response.reply.stderr.length, 0);
    assertWellFormed(client.received);
    assert.equal(client.parseError, null);
  });

  it('builds the PlainRequest from the CGI params', async () => {
    const started = await start();
    const client = await connect({ port: started.port });
    const response = await client.request(7, {
      keepConn: true,
      params: {
        REQUEST_METHOD: 'get',
        REQUEST_URI: '/iiif/x.tif/info.json?a=1?b',
        QUERY_STRING: 'IIIF=/x.tif/info.json',
        SCRIPT_NAME: '/iiif',
        PATH_INFO: '/ignored',
        HTTPS: 'ON',
        REMOTE_ADDR: '198.51.100.4',
        HTTP_IF_MODIFIED_SINCE: 'Wed, 21 Oct 2015 07:28:00 GMT',
        HTTP_HOST: 'images.example.org',
        HTTP_X_FORWARDED_PROTO: 'https',
        CONTENT_TYPE: '',
        CONTENT_LENGTH: '',
        SERVER_SOFTWARE: 'nginx',
      },
    });
    assert.deepEqual(echoed(response.body), {
      method: 'GET',
      query: 'IIIF=/x.tif/info.json',
      path: '/iiif/x.tif/info.json',
      headers: {
        'if-modified-since': 'Wed, 21 Oct 2015 07:28:00 GMT',
        host: 'images.example.org',
        'x-forwarded-proto': 'https',
      },
      scriptName: '/iiif',
      https: true,
      remoteAddress: '198.51.100.4',
    });
    const request = started.requests[0]!;
    assert.ok(request.signal instanceof AbortSignal);
    assert.equal(request.signal.aborted, false);

    // Without REQUEST_URI and REQUEST_METHOD; with a body's CONTENT_* and HTTPS off.
    const second = await client.request(8, {
      keepConn: true,
      params: {
        SCRIPT_NAME: '/fcgi-bin/iipsrv.fcgi',
        PATH_INFO: '/extra',
        HTTPS: 'off',
        CONTENT_TYPE: 'text/plain',
        CONTENT_LENGTH: '3',
        HTTP_CONSTRUCTOR: 'x',
      },
      stdin: Buffer.from('abc'),
    });
    const got = echoed(second.body);
    assert.equal(got.method, 'GET');
    assert.equal(got.path, '/fcgi-bin/iipsrv.fcgi/extra');
    assert.equal(got.query, '');
    assert.equal(got.https, false);
    assert.equal(got.remoteAddress, '127.0.0.1', 'the socket address stands in for a missing REMOTE_ADDR');
    assert.deepEqual(got.headers, { 'content-type': 'text/plain', 'content-length': '3', constructor: 'x' });
    for (const value of ['1', 'on', 'On']) {
      const r = await client.request(9, { keepConn: true, params: { HTTPS: value } });
      assert.equal(echoed(r.body).https, true, value);
    }
    // The front end's own IIIF_ID (no HTTP_ prefix: no client header becomes it); a client's
    // X-IIIF-ID stays a header, for the protocols to trust or not.
    const imposed = echoed(
      (await client.request(10, { keepConn: true, params: { IIIF_ID: 'https://cdn.example.org/a', HTTP_X_IIIF_ID: 'https://evil.example/' } })).body,
    );
    assert.equal(imposed.iiifId, 'https://cdn.example.org/a');
    assert.equal(imposed.headers['x-iiif-id'], 'https://evil.example/');
    assert.equal(echoed(second.body).iiifId, undefined);
    assert.equal(started.requests[started.requests.length - 1]!.signal === request.signal, false, 'one signal per request');
  });

  it('refuses AUTHORIZER, FILTER and unknown roles with UNKNOWN_ROLE and nothing else', async () => {
    const started = await start();
    const client = await connect({ port: started.port });
    for (const [id, role] of [
      [1, FCGI.AUTHORIZER],
      [2, FCGI.FILTER],
      [3, 99],
    ] as const) {
      // As a web server would: params and stdin right behind BEGIN_REQUEST.
      client.send(fullRequest(id, { role, keepConn: true }));
      const reply = await client.waitForEnd(id);
      assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: FCGI.UNKNOWN_ROLE });
      assert.equal(reply.records.length, 1, 'only END_REQUEST');
    }
    // The late PARAMS/STDIN of the refused ids were swallowed: the connection is still in sync.
    const ok = await client.request(4, { keepConn: true });
    assert.equal(ok.status, '200 OK');
    assert.equal(started.requests.length, 1);
    assert.equal(started.warnings.length, 0);
    assert.equal(client.closed, false);

    // Without KEEP_CONN the refusal ends the connection, like any END_REQUEST.
    const other = await connect({ port: started.port });
    other.send(beginRequest(1, { role: FCGI.AUTHORIZER }));
    assert.deepEqual((await other.waitForEnd(1)).end, { appStatus: 0, protocolStatus: FCGI.UNKNOWN_ROLE });
    await other.waitForClose();
  });

  it('reassembles PARAMS split across records, even inside a name-value pair, without losing bytes', async () => {
    const started = await start();
    const raw = Buffer.from([0x2f, 0x61, 0xe9, 0xff, 0x80, 0x00, 0x3f, 0x71]); // "/a" é 0xff 0x80 NUL "?q"
    const params = nameValuePairs([
      ['REQUEST_URI', raw],
      ['QUERY_STRING', 'x'.repeat(300)],
      ['HTTP_X_LONG_' + 'N'.repeat(150), 'y'.repeat(70_000)],
    ]);
    const client = await connect({ port: started.port });
    // Cut points inside the 4-byte lengths, the name and the value; then one byte per record.
    const cuts = [1, 13, 14, 15, 16, 17, 40, 330, 340, 500, params.length - 1];
    let id = 1;
    for (const pieces of [
      cuts.map((cut, i): Buffer => params.subarray(i === 0 ? 0 : cuts[i - 1], cut)).concat(params.subarray(cuts[cuts.length - 1])),
      Array.from(params.subarray(0, 400), (byte): Buffer => Buffer.from([byte])).concat(params.subarray(400)),
    ]) {
      assert.deepEqual(Buffer.concat(pieces), params);
      const records = pieces.flatMap((piece) => {
        const out: Buffer[] = [];
        for (let at = 0; at < piece.length; at += 65535) out.push(record(FCGI.PARAMS, id, piece.subarray(at, at + 65535)));
        return out;
      });
      client.send(Buffer.concat([beginRequest(id, { keepConn: true }), ...records, record(FCGI.PARAMS, id), stdinRecords(id)]));
      const reply = await client.waitForEnd(id);
      const got = echoed(parseCgiResponse(reply.stdout).body);
      assert.deepEqual(Buffer.from(got.path, 'latin1'), raw.subarray(0, 6), 'path bytes kept, cut at ?');
      assert.equal(got.query, 'x'.repeat(300));
      assert.equal(got.headers['x-long-' + 'n'.repeat(150)], 'y'.repeat(70_000));
      id++;
    }
  });

  it('parses records split across TCP chunks and many records in one chunk', async () => {
    const started = await start();
    let dataEvents = 0;
    started.fcgi.server.prependListener('connection', (socket: net.Socket) => socket.on('data', () => dataEvents++));
    const client = await connect({ port: started.port });
    const stream = Buffer.concat([fullRequest(1, { keepConn: true }), fullRequest(2, { keepConn: true })]);
    // Odd-sized pieces with pauses between them, so that they arrive as separate 'data' events.
    for (let at = 0; at < stream.length; at += 5) {
      client.send(stream.subarray(at, at + 5));
      await sleep(0);
    }
    await client.waitForEnd(1);
    await client.waitForEnd(2);
    assert.ok(dataEvents > 30, `the pieces arrived in only ${dataEvents} chunks`);
    // And many requests in one write.
    client.send(Buffer.concat(Array.from({ length: 20 }, (_, i) => fullRequest(10 + i, { keepConn: true }))));
    for (let i = 0; i < 20; i++) assert.equal(parseCgiResponse((await client.waitForEnd(10 + i)).stdout).status, '200 OK');
    assert.equal(started.requests.length, 22);
  });

  it('answers 431 to params over the bound, drops the rest of that request and keeps the connection', async () => {
    const started = await start(echo, { maxParamsBytes: 4096 });
    const client = await connect({ port: started.port });
    assert.equal((await client.request(1, { keepConn: true, params: { QUERY_STRING: 'q'.repeat(3000) } })).status, '200 OK');

    client.send(beginRequest(2, { keepConn: true }));
    for (let i = 0; i < 5; i++) client.send(record(FCGI.PARAMS, 2, Buffer.alloc(1000, 0x41)));
    const reply = await client.waitForEnd(2);
    const response = parseCgiResponse(reply.stdout);
    assert.equal(response.status, '431 Request Header Fields Too Large');
    assert.match(response.body.toString(), /larger than the server accepts \(4096 bytes\)/);
    assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: FCGI.REQUEST_COMPLETE });
    // The rest of its PARAMS and its STDIN still come, and are dropped without being kept.
    for (let i = 0; i < 50; i++) client.send(record(FCGI.PARAMS, 2, Buffer.alloc(1000, 0x41)));
    client.send(Buffer.concat([record(FCGI.PARAMS, 2), stdinRecords(2)]));
    assert.equal((await client.request(3, { keepConn: true })).status, '200 OK', 'the connection stays in sync');
    assert.equal((await client.request(2, { keepConn: true })).status, '200 OK', 'the id is free again');
    assert.equal(client.closed, false);
    assert.equal(started.requests.length, 3, 'the handler never saw the refused request');
    assert.equal(started.fcgi.stats().protocolErrors, 0);
    assert.equal(started.fcgi.stats().heldInputBytes, 0);
  });

  it('drains STDIN up to its empty record before calling the handler', async () => {
    const started = await start();
    const client = await connect({ port: started.port });
    client.send(Buffer.concat([beginRequest(1, { keepConn: true }), paramsRecords(1, DEFAULT_PARAMS)]));
    await sleep(30);
    assert.equal(started.requests.length, 0, 'not before STDIN ends');
    const body = Buffer.alloc(3 * 1024 * 1024, 1);
    for (let at = 0; at < body.length; at += 65535) client.send(record(FCGI.STDIN, 1, body.subarray(at, at + 65535)));
    await sleep(50);
    assert.equal(started.requests.length, 0, 'not while STDIN has data');
    client.send(record(FCGI.STDIN, 1));
    assert.equal(parseCgiResponse((await client.waitForEnd(1)).stdout).status, '200 OK');
    assert.equal(started.requests.length, 1);
    // STDIN may also end before PARAMS: the handler waits for both.
    client.send(Buffer.concat([beginRequest(2, { keepConn: true }), record(FCGI.STDIN, 2), record(FCGI.PARAMS, 2, nameValuePairs(DEFAULT_PARAMS))]));
    await sleep(30);
    assert.equal(started.requests.length, 1);
    client.send(record(FCGI.PARAMS, 2));
    await client.waitForEnd(2);
    assert.equal(started.requests.length, 2);
  });

  it('ABORT_REQUEST aborts the signal, ends the request and drops the late result', async () => {
    const release = deferred<void>();
    const started = await start(async (request) => {
      if (request.query === 'slow') await release.promise;
      return text(200, 'late');
    });
    const client = await connect({ port: started.port });
    client.send(fullRequest(1, { keepConn: true, params: { QUERY_STRING: 'slow' } }));
    await until(() => started.requests.length === 1, 'the handler to start');
    const signal = started.requests[0]!.signal;
    client.send(record(FCGI.ABORT_REQUEST, 1));
    const reply = await client.waitForEnd(1);
    assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: FCGI.REQUEST_COMPLETE });
    assert.equal(reply.records.length, 1, 'END_REQUEST only');
    assert.equal(signal.aborted, true);
    release.resolve();
    // The late result must not come out; the id is free again and the connection in sync.
    await sleep(30);
    assert.equal(client.reply(1).records.length, 1);
    assert.equal((await client.request(1, { keepConn: true })).status, '200 OK');
    assert.equal(client.parseError, null);
    // An ABORT_REQUEST for an id that is no longer in flight is a harmless race: ignored.
    client.send(record(FCGI.ABORT_REQUEST, 1));
    client.send(record(FCGI.ABORT_REQUEST, 300));
    assert.equal((await client.request(2, { keepConn: true })).status, '200 OK');
    assert.equal(client.reply(300).records.length, 0);
    assert.equal(started.warnings.length, 0);
  });

  it('a closed connection aborts every request in flight on it', async () => {
    const started = await start((request) => new Promise<PlainResponse>((resolve) => request.signal.addEventListener('abort', () => resolve(text(200, 'x')))));
    const client = await connect({ port: started.port });
    client.send(Buffer.concat([fullRequest(1, { keepConn: true }), fullRequest(2, { keepConn: true })]));
    await until(() => started.requests.length === 2, 'both handlers to start');
    client.destroy();
    await until(() => started.requests.every((r) => r.signal.aborted), 'both signals to abort');
    await until(() => started.fcgi.stats().requestsInFlight === 0, 'requests to leave the table');
  });

  it('keeps the connection open across requests with KEEP_CONN', async () => {
    const started = await start();
    const client = await connect({ port: started.port });
    for (let i = 1; i <= 50; i++) assert.equal((await client.request((i % 3) + 1, { keepConn: true })).status, '200 OK');
    await sleep(20);
    assert.equal(client.closed, false);
    assert.equal(started.fcgi.stats().connections, 1);
  });

  it('closes the connection after END_REQUEST without KEEP_CONN', async () => {
    const started = await start();
    const client = await connect({ port: started.port });
    const response = await client.request(1);
    assert.equal(response.status, '200 OK');
    await client.waitForClose();
    await until(() => started.fcgi.stats().connections === 0, 'the server to forget the connection');
  });

  it('answers multiplexed requests in the order their handlers finish', async () => {
    const gates = new Map<string, ReturnType<typeof deferred<void>>>([
      ['a', deferred<void>()],
      ['b', deferred<void>()],
      ['c', deferred<void>()],
    ]);
    const started = await start(async (request) => {
      await gates.get(request.query)!.promise;
      return text(200, `answer ${request.query}`);
    });
    const client = await connect({ port: started.port });
    client.send(
      Buffer.concat([
        fullRequest(1, { keepConn: true, params: { QUERY_STRING: 'a' } }),
        fullRequest(2, { keepConn: true, params: { QUERY_STRING: 'b' } }),
        fullRequest(3, { keepConn: true, params: { QUERY_STRING: 'c' } }),
      ]),
    );
    await until(() => started.requests.length === 3, 'all three handlers');
    gates.get('c')!.resolve();
    await client.waitForEnd(3);
    assert.equal(client.reply(1).records.length, 0);
    gates.get('a')!.resolve();
    await client.waitForEnd(1);
    assert.equal(client.reply(2).records.length, 0);
    gates.get('b')!.resolve();
    await client.waitForEnd(2);
    const order = client.received.filter((r) => r.type === FCGI.END_REQUEST).map((r) => r.requestId);
    assert.deepEqual(order, [3, 1, 2]);
    for (const [id, q] of [
      [1, 'a'],
      [2, 'b'],
      [3, 'c'],
    ] as const) {
      assert.equal(parseCgiResponse(client.reply(id).stdout).body.toString(), `answer ${q}`);
    }
    assert.equal(client.parseError, null);
  });

  it('answers GET_VALUES with only the values asked for', async () => {
    const started = await start(echo, { maxConnections: 7, maxRequestsPerConnection: 9 });
    const client = await connect({ port: started.port });
    client.send(
      record(
        FCGI.GET_VALUES,
        0,
        nameValuePairs([
          ['FCGI_MAX_CONNS', ''],
          ['FCGI_MPXS_CONNS', ''],
          ['FCGI_NOT_A_THING', ''],
        ]),
      ),
    );
    const result = await client.waitForRecord(FCGI.GET_VALUES_RESULT);
    assert.equal(result.requestId, 0);
    assert.deepEqual(readNameValuePairs(result.content), [
      ['FCGI_MAX_CONNS', '7'],
      ['FCGI_MPXS_CONNS', '1'],
    ]);

    const defaults = await start(echo, { multiplex: false });
    const other = await connect({ port: defaults.port });
    other.send(
      record(
        FCGI.GET_VALUES,
        0,
        nameValuePairs([
          ['FCGI_MAX_REQS', ''],
          ['FCGI_MAX_CONNS', ''],
          ['FCGI_MPXS_CONNS', ''],
        ]),
      ),
    );
    // The limits in force: connections per worker, requests per connection.
    assert.deepEqual(readNameValuePairs((await other.waitForRecord(FCGI.GET_VALUES_RESULT)).content), [
      ['FCGI_MAX_REQS', '100'],
      ['FCGI_MAX_CONNS', '1024'],
      ['FCGI_MPXS_CONNS', '0'],
    ]);
    assert.equal((await other.request(1, { keepConn: true })).status, '200 OK');
  });

  it('answers an unknown record type with UNKNOWN_TYPE and stays usable', async () => {
    const started = await start();
    const client = await connect({ port: started.port });
    client.send(record(42, 1, Buffer.from('whatever')));
    client.send(record(FCGI.STDOUT, 1, Buffer.from('not from a web server')));
    client.send(record(200, 0)); // an unknown management record
    await client.waitUntil(() => client.received.filter((r) => r.type === FCGI.UNKNOWN_TYPE).length === 3, 'three UNKNOWN_TYPE replies');
    const replies = client.received.filter((r) => r.type === FCGI.UNKNOWN_TYPE);
    assert.deepEqual(
      replies.map((r) => [r.requestId, r.content[0], r.content.length]),
      [
        [0, 42, 8],
        [0, FCGI.STDOUT, 8],
        [0, 200, 8],
      ],
    );
    assert.equal((await client.request(1, { keepConn: true })).status, '200 OK');
    assert.equal(started.warnings.length, 0);
  });

  it("sends headers only for HEAD, with the handler's Content-Length", async () => {
    const started = await start(async () => text(200, 'x'.repeat(100_000)));
    const client = await connect({ port: started.port });
    const response = await client.request(1, { keepConn: true, params: { ...DEFAULT_PARAMS, REQUEST_METHOD: 'HEAD' } });
    assert.equal(response.status, '200 OK');
    assert.equal(response.body.length, 0);
    assert.deepEqual(response.headers, [
      ['Content-Type', 'text/plain'],
      ['Content-Length', '100000'],
    ]);
    assert.equal((await client.request(2, { keepConn: true })).body.length, 100_000);
  });

  it('sends a 5 MB body byte-exact in records of at most 65535 bytes', async () => {
    const body = Buffer.allocUnsafe(5 * 1024 * 1024 + 3);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7919) >>> 5;
    const started = await start(async () => ({ status: 200, headers: [['Content-Type', 'application/octet-stream']], body }));
    const client = await connect({ port: started.port });
    // Twice at once on one connection: two big responses interleave record by record.
    client.send(Buffer.concat([fullRequest(1, { keepConn: true }), fullRequest(2, { keepConn: true })]));
    for (const id of [1, 2]) {
      const reply = await client.waitForEnd(id);
      const response = parseCgiResponse(reply.stdout);
      assert.equal(response.body.length, body.length);
      assert.ok(response.body.equals(body), 'body byte-exact');
      assertWellFormed(reply.records);
      assert.deepEqual(reply.end, { appStatus: 0, protocolStatus: FCGI.REQUEST_COMPLETE });
    }
    assert.equal(client.parseError, null);
  });

  it('writes a small response with one socket.write, a tile in place in one corked writev, and sets TCP_NODELAY', async () => {
    const small = Buffer.alloc(2_000, 0x5a);
    const tile = Buffer.alloc(20_000, 0x6b);
    const bodies: Record<string, Buffer> = { small, tile, big: Buffer.alloc(300_000, 1) };
    const started = await start(async (request) => {
      const body = bodies[request.query]!;
      return { status: 200, headers: [['Content-Length', String(body.length)]], body };
    });
    const writes: Array<{ chunk: Buffer; corked: boolean }> = [];
    let noDelay: boolean | undefined;
    // Runs before the server's own listener: spies on the real socket calls.
    started.fcgi.server.prependListener('connection', (socket: net.Socket) => {
      const write = socket.write.bind(socket) as (chunk: Buffer, ...rest: unknown[]) => boolean;
      socket.write = ((chunk: Buffer, ...rest: unknown[]) => {
        // The chunk itself (not a copy): the tile's body must be the handler's own buffer.
        writes.push({ chunk, corked: socket.writableCorked > 0 });
        return write(chunk, ...rest);
      }) as typeof socket.write;
      const setNoDelay = socket.setNoDelay.bind(socket);
      socket.setNoDelay = (value?: boolean) => {
        noDelay = value ?? true;
        return setNoDelay(value);
      };
    });
    const client = await connect({ port: started.port });
    const recordBytes = (records: Array<{ content: Buffer; paddingLength: number }>) =>
      records.reduce((sum, r) => sum + 8 + r.content.length + r.paddingLength, 0);

    // A small answer: one write holds every record, END_REQUEST last.
    const before = started.fcgi.stats().socketWrites;
    const response = await client.request(1, { keepConn: true, params: { QUERY_STRING: 'small' } });
    assert.equal(noDelay, true);
    assert.ok(response.body.equals(small));
    assert.equal(writes.length, 1, 'one socket.write for the whole response');
    assert.equal(started.fcgi.stats().socketWrites - before, 1);
    const only = writes[0]!.chunk;
    assert.equal(only[only.length - 16 + 1], FCGI.END_REQUEST);
    assert.equal(only.length, recordBytes(response.reply.records));

    // A tile: the records before it, the body in place, the records after it, all while corked
    // (one writev system call), END_REQUEST last.
    writes.length = 0;
    const tiled = await client.request(3, { keepConn: true, params: { QUERY_STRING: 'tile' } });
    assert.ok(tiled.body.equals(tile));
    assert.equal(writes.length, 3);
    assert.ok(
      writes.every((w) => w.corked),
      'every piece written while corked',
    );
    assert.equal(writes[1]!.chunk, tile, 'the body is written as it is, not copied');
    const last = writes[2]!.chunk;
    assert.equal(last[last.length - 16 + 1], FCGI.END_REQUEST);
    assert.equal(
      writes.reduce((sum, w) => sum + w.chunk.length, 0),
      recordBytes(tiled.reply.records),
    );

    writes.length = 0;
    const big = await client.request(2, { keepConn: true, params: { QUERY_STRING: 'big' } });
    assert.equal(big.body.length, 300_000);
    assert.ok(writes.length > 1, 'a large body is not copied into one buffer');
  });

  it('honours backpressure: a client that stops reading does not make the server buffer the body', async () => {
    const body = Buffer.alloc(32 * 1024 * 1024, 3);
    body[body.length - 1] = 4;
    const started = await start(async () => ({ status: 200, headers: [], body }));
    let serverSocket: net.Socket | undefined;
    started.fcgi.server.prependListener('connection', (socket: net.Socket) => (serverSocket = socket));
    const client = await connect({ port: started.port });
    client.socket.pause();
    client.send(fullRequest(1, { keepConn: true }));
    await until(() => started.requests.length === 1, 'the handler');
    await sleep(300);
    assert.ok(serverSocket);
    assert.ok(serverSocket.writableLength <= 256 * 1024, `server buffered ${serverSocket.writableLength} bytes in user space`);
    assert.equal(client.reply(1).end, null);
    client.socket.resume();
    const reply = await client.waitForEnd(1, 10_000);
    const received = parseCgiResponse(reply.stdout).body;
    assert.equal(received.length, body.length);
    assert.ok(received.equals(body));
  });

  it('turns a handler that throws or rejects into a short plain-text 500', async () => {
    const started = await start((request) => {
      if (request.query === 'sync') throw new Error('boom sync');
      if (request.query === 'bad') return Promise.resolve({ status: 200, headers: null } as unknown as PlainResponse);
      return Promise.reject(new Error('boom async'));
    });
    const client = await connect({ port: started.port });
    for (const [id, query] of [
      [1, 'sync'],
      [2, 'async'],
      [3, 'bad'],
    ] as const) {
      const response = await client.request(id, { keepConn: true, params: { QUERY_STRING: query } });
      assert.equal(response.status, '500 Internal Server Error');
      assert.ok(response.headers.some(([name, value]) => name === 'Content-Type' && value.startsWith('text/plain')));
      assert.ok(response.body.length < 100);
      assert.doesNotMatch(response.body.toString(), /boom|at /);
    }
    assert.equal(started.warnings.filter((w) => w.message === 'request handler failed').length, 3);
  });

  it('refuses requests over the per-connection cap with OVERLOADED, and CANT_MPX_CONN without multiplexing', async () => {
    const gate = deferred<void>();
    const handler: RequestHandler = async () => {
      await gate.promise;
      return text(200, 'ok');
    };
    const capped = await start(handler, { maxRequestsPerConnection: 2 });
    const client = await connect({ port: capped.port });
    client.send(Buffer.concat([1, 2, 3].map((id) => fullRequest(id, { keepConn: true }))));
    assert.deepEqual((await client.waitForEnd(3)).end, { appStatus: 0, protocolStatus: FCGI.OVERLOADED });
    assert.equal(client.reply(3).records.length, 1);

    const single = await start(handler, { multiplex: false });
    const other = await connect({ port: single.port });
    other.send(Buffer.concat([1, 2].map((id) => fullRequest(id, { keepConn: true }))));
    assert.deepEqual((await other.waitForEnd(2)).end, { appStatus: 0, protocolStatus: FCGI.CANT_MPX_CONN });

    gate.resolve();
    assert.equal(parseCgiResponse((await client.waitForEnd(1)).stdout).status, '200 OK');
    assert.equal(parseCgiResponse((await client.waitForEnd(2)).stdout).status, '200 OK');
    assert.equal(parseCgiResponse((await other.waitForEnd(1)).stdout).status, '200 OK');
    // Below the cap again: accepted.
    assert.equal((await client.request(3, { keepConn: true })).status, '200 OK');
    assert.equal((await other.request(2, { keepConn: true })).status, '200 OK');
  });
});

describe('FastCGI robustness', () => {
  const hostile: Array<[string, (id: number) => Buffer, RegExp]> = [
    ['version 2', () => record(FCGI.BEGIN_REQUEST, 1, Buffer.alloc(8), 0, 2), /version 2/],
    ['a record for an unknown request id', () => record(FCGI.PARAMS, 5, nameValuePairs({ A: 'b' })), /unknown request id 5/],
    ['STDIN for an unknown request id', () => record(FCGI.STDIN, 6), /unknown request id 6/],
    ['BEGIN_REQUEST for an id in use', () => Buffer.concat([beginRequest(1, { keepConn: true }), beginRequest(1, { keepConn: true })]), /in use/],
    ['a short BEGIN_REQUEST body', () => record(FCGI.BEGIN_REQUEST, 1, Buffer.alloc(3)), /BEGIN_REQUEST body/],
    [
      'truncated name-value pairs',
      () => Buffer.concat([beginRequest(1), record(FCGI.PARAMS, 1, Buffer.from([5, 1, 0x41])), record(FCGI.PARAMS, 1), stdinRecords(1)]),
      /name-value/,
    ],
    ['garbage', () => Buffer.from('GET / HTTP/1.1\r\nHost: example.org\r\n\r\n'), /version 71/],
  ];

  for (const [name, bytes, reason] of hostile) {
    it(`closes only the offending connection on ${name}`, async () => {
      const started = await start();
      const good = await connect({ port: started.port });
      const bad = await connect({ port: started.port });
      good.send(Buffer.concat([beginRequest(1, { keepConn: true }), paramsRecords(1, DEFAULT_PARAMS)]));
      bad.send(bytes(1));
      await bad.waitForClose();
      assert.equal(bad.received.length, 0);
      assert.match(String(started.warnings[0]?.fields.reason), reason);
      assert.equal(started.fcgi.stats().protocolErrors, 1);
      // The good connection, mid-request when the bad one failed, goes on.
      good.send(stdinRecords(1));
      assert.equal(parseCgiResponse((await good.waitForEnd(1)).stdout).status, '200 OK');
      assert.equal((await good.request(2, { keepConn: true })).status, '200 OK');
    });
  }

  it('survives a few hundred random byte strings, each on its own connection', async () => {
    const started = await start();
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const valid = Buffer.concat([fullRequest(1, { keepConn: true }), fullRequest(2, { keepConn: true })]);
    const cases: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      if (i % 3 === 0) {
        cases.push(Buffer.from(Array.from({ length: 1 + Math.floor(random() * 300) }, () => Math.floor(random() * 256))));
      } else {
        // Mostly-valid streams with a few bytes changed: these get past the version check.
        const mutated = Buffer.from(valid.subarray(0, 1 + Math.floor(random() * valid.length)));
        for (let k = 0; k < 1 + Math.floor(random() * 4); k++) mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
        cases.push(mutated);
      }
    }
    for (let batch = 0; batch < cases.length; batch += 50) {
      await Promise.all(
        cases.slice(batch, batch + 50).map(async (bytes) => {
          const client = await connect({ port: started.port });
          client.send(bytes);
          client.socket.end(); // Whatever the server is waiting for never comes.
          await client.waitForClose();
          client.destroy();
        }),
      );
    }
    assert.ok(started.fcgi.stats().protocolErrors > 50, `only ${started.fcgi.stats().protocolErrors} protocol errors`);
    await until(() => started.fcgi.stats().connections === 0, 'every fuzz connection to be gone');
    const client = await connect({ port: started.port });
    assert.equal((await client.request(1)).status, '200 OK');
  });
});

describe('FastCGI listening and closing', () => {
  it('serves over a unix socket, replacing a stale socket file', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fcgi-test-'));
    try {
      const socketPath = path.join(dir, 'iipsrv.sock');
      // A server killed without cleaning up leaves its socket file behind.
      const child = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.exit(0))`]);
      assert.equal(child.status, 0);
      assert.ok(existsSync(socketPath));
      const fcgi = createFastCgiServer(echo);
      running.push(fcgi);
      await fcgi.listen({ path: socketPath, backlog: 64 });
      assert.equal(fcgi.address(), socketPath);
      const client = await connect({ path: socketPath });
      const response = await client.request(1, { keepConn: true });
      assert.equal(response.status, '200 OK');
      assert.equal(echoed(response.body).remoteAddress, '192.0.2.7');

      // A live server's socket is left alone: the second listen fails instead of stealing it.
      const second = createFastCgiServer(echo);
      await assert.rejects(second.listen({ path: socketPath }), /EADDRINUSE/);
      assert.equal((await client.request(2, { keepConn: true })).status, '200 OK');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('close(): requests in flight finish, new connections are refused, idle connections close', async () => {
    const release = deferred<void>();
    const started = await start(async (request) => {
      if (request.query === 'slow') await release.promise;
      return text(200, request.query);
    });
    const idle = await connect({ port: started.port });
    assert.equal((await idle.request(1, { keepConn: true })).status, '200 OK');
    const busy = await connect({ port: started.port });
    busy.send(fullRequest(1, { keepConn: true, params: { QUERY_STRING: 'slow' } }));
    await until(() => started.requests.length === 2, 'the slow handler');

    let closed = false;
    const closing = started.fcgi.close(5000).then(() => (closed = true));
    await idle.waitForClose(1000);
    await assert.rejects(FastCgiTestClient.connect({ port: started.port }), /ECONNREFUSED/);
    // A kept connection with a request in flight may still get more before it closes.
    busy.send(fullRequest(2, { keepConn: true, params: { QUERY_STRING: 'quick' } }));
    assert.equal(parseCgiResponse((await busy.waitForEnd(2)).stdout).body.toString(), 'quick');
    assert.equal(busy.closed, false);
    assert.equal(closed, false);
    release.resolve();
    const reply = await busy.waitForEnd(1);
    assert.equal(parseCgiResponse(reply.stdout).body.toString(), 'slow');
    await busy.waitForClose(1000);
    const t0 = Date.now();
    await closing;
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(started.requests[1]!.signal.aborted, false);
  });

  it('close(graceMs): destroys what is left after the grace period', async () => {
    const started = await start((request) => new Promise<PlainResponse>((resolve) => request.signal.addEventListener('abort', () => resolve(text(200, 'x')))));
    const client = await connect({ port: started.port });
    client.send(fullRequest(1, { keepConn: true }));
    await until(() => started.requests.length === 1, 'the handler');
    const t0 = Date.now();
    await started.fcgi.close(150);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 140 && elapsed < 2000, `closed after ${elapsed} ms`);
    assert.equal(started.requests[0]!.signal.aborted, true);
    await client.waitForClose(1000);
    assert.equal(client.reply(1).records.length, 0);
  });

  it('closes TCP connections from addresses not in allowedPeers', async () => {
    const refusing = await start(echo, { allowedPeers: ['192.0.2.1'] });
    const client = await connect({ port: refusing.port });
    client.send(fullRequest(1));
    await client.waitForClose();
    assert.equal(client.received.length, 0);
    assert.equal(refusing.requests.length, 0);
    assert.match(refusing.warnings[0]!.message, /FCGI_WEB_SERVER_ADDRS/);

    const allowing = await start(echo, { allowedPeers: ['192.0.2.1', '127.0.0.1'] });
    assert.equal((await (await connect({ port: allowing.port })).request(1)).status, '200 OK');
  });
});

describe('FastCGI timeouts and limits', () => {
  /** The server side of the next connection, and when it closed (performance.now()). */
  function watchServerSocket(started: Started): { socket: () => net.Socket | undefined; closedAt: () => number | null } {
    let socket: net.Socket | undefined;
    let closedAt: number | null = null;
    started.fcgi.server.prependListener('connection', (s: net.Socket) => {
      socket ??= s;
      if (s === socket) s.on('close', () => (closedAt = performance.now()));
    });
    return { socket: () => socket, closedAt: () => closedAt };
  }

  it('closes a connection that sends nothing, and a kept one after its last request, once the idle timeout passes', async () => {
    const started = await start(echo, { idleTimeoutMs: 300 });
    const silent = await connect({ port: started.port });
    const opened = performance.now();
    await silent.waitForClose(10_000);
    assert.ok(performance.now() - opened >= 290, 'not before the idle timeout');
    assert.equal(silent.received.length, 0);

    const kept = await connect({ port: started.port });
    for (let i = 1; i <= 3; i++) assert.equal((await kept.request(i, { keepConn: true })).status, '200 OK');
    const answered = performance.now();
    await kept.waitForClose(10_000);
    assert.ok(performance.now() - answered >= 290, 'not before the idle timeout');
    // A FIN after the last END_REQUEST, nothing else: what a web server's pool sees.
    assert.equal(kept.received.filter((r) => r.type === FCGI.END_REQUEST).length, 3);
    assert.equal(kept.parseError, null);
    assert.equal(started.fcgi.stats().timeouts, 2);
    assert.equal(started.warnings.length, 0, 'an idle close is routine, not a warning');
  });

  it('does not count a request in progress as idle', async () => {
    const started = await start(
      async () => {
        await sleep(900);
        return text(200, 'slow');
      },
      { idleTimeoutMs: 300 },
    );
    const client = await connect({ port: started.port });
    const response = await client.request(1, { keepConn: true });
    assert.equal(response.body.toString(), 'slow');
    assert.equal(started.fcgi.stats().timeouts, 0);
    // Idle from now on.
    await client.waitForClose(10_000);
  });

  it('closes a connection whose record header stops half-way, after the read timeout', async () => {
    const started = await start(echo, { readTimeoutMs: 300, idleTimeoutMs: 60_000 });
    const client = await connect({ port: started.port });
    const sent = performance.now();
    client.send(beginRequest(1, { keepConn: true }).subarray(0, 5));
    await client.waitForClose(10_000);
    assert.ok(performance.now() - sent >= 290);
    assert.equal(client.received.length, 0, 'no request to answer yet');
    assert.equal(started.fcgi.stats().timeouts, 1);
  });

  for (const [what, bytes] of [
    ['unfinished PARAMS', Buffer.concat([beginRequest(1, { keepConn: true }), record(FCGI.PARAMS, 1, nameValuePairs(DEFAULT_PARAMS))])],
    ['unfinished STDIN', Buffer.concat([beginRequest(1, { keepConn: true }), paramsRecords(1, DEFAULT_PARAMS), record(FCGI.STDIN, 1, Buffer.alloc(100))])],
    ['a record cut short', Buffer.concat([beginRequest(1, { keepConn: true }), record(FCGI.PARAMS, 1, Buffer.alloc(4000)).subarray(0, 2000)])],
  ] as const) {
    it(`answers 408 and closes after the read timeout on ${what}`, async () => {
      const started = await start(echo, { readTimeoutMs: 300, idleTimeoutMs: 60_000 });
      const client = await connect({ port: started.port });
      const sent = performance.now();
      client.send(bytes);
      const reply = await client.waitForEnd(1, 10_000);
      assert.ok(performance.now() - sent >= 290);
      const response = parseCgiResponse(reply.stdout);
      assert.equal(response.status, '408 Request Timeout');
      assert.match(response.body.toString(), /did not arrive in time/);
      await client.waitForClose();
      assert.equal(started.requests.length, 0);
      assert.equal(started.fcgi.stats().heldInputBytes, 0);
      assert.equal(started.fcgi.stats().requestsInFlight, 0);
    });
  }

  it('times the whole input of a request: trickling it in a byte at a time does not keep it alive', async () => {
    const started = await start(echo, { readTimeoutMs: 500, idleTimeoutMs: 60_000 });
    const client = await connect({ port: started.port });
    const bytes = Buffer.concat([beginRequest(1, { keepConn: true }), record(FCGI.PARAMS, 1, Buffer.alloc(60_000))]);
    const sent = performance.now();
    let at = 0;
    const trickle = setInterval(() => client.send(bytes.subarray(at, ++at)), 20);
    try {
      await client.waitForClose(10_000);
    } finally {
      clearInterval(trickle);
    }
    assert.ok(performance.now() - sent >= 490);
    assert.equal(parseCgiResponse(client.reply(1).stdout).status, '408 Request Timeout');
  });

  it('never times out a connection that keeps sending whole requests, however long it goes on', async () => {
    // Each request alone arrives well within the timeouts; all of them together take longer.
    const started = await start(echo, { readTimeoutMs: 1000, idleTimeoutMs: 1000 });
    const client = await connect({ port: started.port });
    const until = performance.now() + 3000;
    let id = 0;
    while (performance.now() < until) {
      // Each request split over two writes, so that input is always half-way somewhere.
      const bytes = fullRequest(++id, { keepConn: true });
      client.send(bytes.subarray(0, 30));
      await sleep(10);
      client.forget(id);
      client.send(bytes.subarray(30));
      await client.waitForEnd(id);
    }
    assert.equal(client.closed, false);
    assert.equal(started.fcgi.stats().timeouts, 0);
  });

  it('drops a connection whose peer stops reading a response, after the idle timeout', async () => {
    const body = Buffer.alloc(16 * 1024 * 1024, 7);
    const started = await start(async () => ({ status: 200, headers: [], body }), { idleTimeoutMs: 400 });
    const server = watchServerSocket(started);
    const client = await connect({ port: started.port });
    client.socket.pause();
    client.send(fullRequest(1, { keepConn: true }));
    await until(() => started.requests.length === 1, 'the handler');
    await until(() => server.closedAt() !== null, 'the server to drop the stalled connection', 10_000);
    assert.equal(started.fcgi.stats().timeouts, 1);
    assert.equal(started.fcgi.stats().connections, 0);
  });

  it('keeps a slow reader that makes progress', async () => {
    const body = Buffer.alloc(8 * 1024 * 1024, 7);
    const started = await start(async () => ({ status: 200, headers: [], body }), { idleTimeoutMs: 2000 });
    const client = await connect({ port: started.port });
    client.socket.pause();
    client.send(fullRequest(1, { keepConn: true }));
    await until(() => started.requests.length === 1, 'the handler');
    // Reads a little every 100 ms: slower than the server writes, never idle for long.
    const reader = setInterval(() => {
      client.socket.resume();
      setTimeout(() => client.socket.pause(), 5);
    }, 100);
    try {
      client.socket.resume();
      const reply = await client.waitForEnd(1, 30_000);
      assert.equal(parseCgiResponse(reply.stdout).body.length, body.length);
    } finally {
      clearInterval(reader);
      client.socket.resume();
    }
    assert.equal(started.fcgi.stats().timeouts, 0);
  });

  it('closes connections over maxConnections at once and keeps serving the others', async () => {
    const started = await start(echo, { maxConnections: 3 });
    const open = [await connect({ port: started.port }), await connect({ port: started.port }), await connect({ port: started.port })];
    await until(() => started.fcgi.stats().connections === 3, 'three connections');
    const extra = await connect({ port: started.port });
    extra.send(fullRequest(1, { keepConn: true }));
    await extra.waitForClose();
    assert.equal(extra.received.length, 0);
    assert.equal(started.fcgi.stats().connectionsRefused, 1);
    assert.equal(started.requests.length, 0);
    for (const [i, client] of open.entries()) assert.equal((await client.request(1, { keepConn: true })).status, '200 OK', `connection ${i}`);
    assert.match(started.warnings[0]!.message, /FCGI_MAX_CONNS/);
    // A place freed is a place to take.
    open[0]!.destroy();
    await until(() => started.fcgi.stats().connections === 2, 'the closed connection to go');
    const next = await connect({ port: started.port });
    assert.equal((await next.request(1, { keepConn: true })).status, '200 OK');
  });

  it('refuses requests beyond maxRequestsPerConnection while their input is still arriving', async () => {
    const started = await start(echo, { maxRequestsPerConnection: 3 });
    const client = await connect({ port: started.port });
    // Three requests begun, none finished: all three count.
    client.send(
      Buffer.concat([1, 2, 3].map((id) => Buffer.concat([beginRequest(id, { keepConn: true }), record(FCGI.PARAMS, id, nameValuePairs(DEFAULT_PARAMS))]))),
    );
    client.send(fullRequest(4, { keepConn: true }));
    assert.deepEqual((await client.waitForEnd(4)).end, { appStatus: 0, protocolStatus: FCGI.OVERLOADED });
    client.send(Buffer.concat([1, 2, 3].map((id) => Buffer.concat([record(FCGI.PARAMS, id), stdinRecords(id)]))));
    for (const id of [1, 2, 3]) assert.equal(parseCgiResponse((await client.waitForEnd(id)).stdout).status, '200 OK');
  });

  it('holds at most maxHeldInputBytes of unfinished PARAMS: the connections holding the most get a 503 and close', async () => {
    const budget = 4 * 1024 * 1024;
    const started = await start(echo, { maxParamsBytes: 256 * 1024, maxHeldInputBytes: budget, readTimeoutMs: 60_000 });
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, started.fcgi.stats().heldInputBytes)), 1);
    const attackers = await Promise.all([0, 1, 2, 3].map(() => connect({ port: started.port })));
    try {
      // 4 connections x 100 requests x ~192 KiB of PARAMS that never end: 75 MiB if all were kept.
      const chunk = Buffer.alloc(64_000, 0x41);
      for (const client of attackers) {
        for (let id = 1; id <= 100 && !client.closed; id++) {
          client.send(Buffer.concat([beginRequest(id, { keepConn: true }), ...[0, 1, 2].map(() => record(FCGI.PARAMS, id, chunk))]));
          await sleep(0);
        }
      }
      await until(() => attackers.every((c) => c.closed), 'every attacking connection to be shed', 20_000);
      // Meanwhile and afterwards, an ordinary request goes through.
      const honest = await connect({ port: started.port });
      assert.equal((await honest.request(1, { keepConn: true })).status, '200 OK');
    } finally {
      clearInterval(sampler);
    }
    most = Math.max(most, started.fcgi.stats().heldInputBytes);
    assert.ok(most <= budget, `held ${most} bytes`);
    assert.ok(started.fcgi.stats().connectionsShed >= 4);
    // Each shed connection answered the requests it had waiting with a 503.
    const answered = attackers.flatMap((c) => [...Array(100).keys()].map((i) => c.reply(i + 1)).filter((r) => r.end !== null));
    assert.ok(answered.length > 0);
    for (const reply of answered) assert.equal(parseCgiResponse(reply.stdout).status, '503 Service Unavailable');
    await until(() => started.fcgi.stats().heldInputBytes === 0, 'everything held to be released');
  });

  it('never stores STDIN: a 20 MB body is held one record at a time', async () => {
    const started = await start(echo);
    const client = await connect({ port: started.port });
    client.send(Buffer.concat([beginRequest(1, { keepConn: true }), paramsRecords(1, { ...DEFAULT_PARAMS, REQUEST_METHOD: 'POST' })]));
    let most = 0;
    const body = Buffer.alloc(65535, 1);
    for (let i = 0; i < 320; i++) {
      if (!client.socket.write(record(FCGI.STDIN, 1, body))) await new Promise((resolve) => client.socket.once('drain', resolve));
      most = Math.max(most, started.fcgi.stats().heldInputBytes);
    }
    client.send(record(FCGI.STDIN, 1));
    assert.equal(parseCgiResponse((await client.waitForEnd(1)).stdout).status, '200 OK');
    assert.ok(most < 256 * 1024, `held ${most} bytes`);
  });
});
