/**
 * The two object-store clients against real servers: s3rver for S3, nginx for a web-server origin,
 * and small loopback servers for the faults (503s, silence, an endless body). Bytes read are
 * compared with the file they came from.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpStore } from '../../src/engine/files/store/http-store.ts';
import { createObjectStore } from '../../src/engine/files/store/index.ts';
import { StoreError, type ObjectStore, type StoreErrorKind, type StoreTimeouts } from '../../src/engine/files/store/object-store.ts';
import { S3Store } from '../../src/engine/files/store/s3-store.ts';
import { tempDir } from '../helpers/daemon.ts';
import {
  s3Env,
  startEndlessRangeServer,
  startFlakyFront,
  startS3,
  startSilentServer,
  withEnv,
  type FaultServer,
  type S3Server,
} from '../helpers/object-stores.ts';
import { freePort, waitFor } from '../helpers/processes.ts';
import { EXAMPLE_IMAGES, nginxAvailability, startStaticNginx, webTempDir, type WebServer } from '../helpers/webservers.ts';

const EXAMPLE = path.join(EXAMPLE_IMAGES, 'example.tif');
const EXAMPLE_BYTES = readFileSync(EXAMPLE);
const TIMEOUTS: StoreTimeouts = { requestTimeoutMs: 5000, attempts: 3, backoffMs: 20 };
/** For the failures that must end by the deadline: short attempts. */
const SHORT: StoreTimeouts = { requestTimeoutMs: 400, attempts: 3, backoffMs: 20 };
/** The longest a call with SHORT may take: every attempt to its deadline, every pause at its longest, and slack for a loaded machine. */
const SHORT_BOUND_MS = SHORT.attempts * SHORT.requestTimeoutMs + SHORT.backoffMs * (2 ** (SHORT.attempts - 1) - 1) + 3000;

/**
 * Ranges at the start, across the middle, at the very end, and single bytes. Not bytes 0-0:
 * s3rver answers that one with the whole object (which the stores rightly call 'invalid').
 */
const RANGES: Array<[number, number]> = [
  [0, 8],
  [1, 2],
  [1000, 70_000],
  [EXAMPLE_BYTES.length - 1, EXAMPLE_BYTES.length],
  [EXAMPLE_BYTES.length - 5000, EXAMPLE_BYTES.length],
];

async function failure(work: Promise<unknown>): Promise<StoreError> {
  try {
    await work;
  } catch (error) {
    assert.ok(error instanceof StoreError, `expected a StoreError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to fail');
}

async function expectKind(work: Promise<unknown>, kind: StoreErrorKind, message?: RegExp): Promise<StoreError> {
  const error = await failure(work);
  assert.equal(error.kind, kind, error.message);
  if (message) assert.match(error.message, message);
  return error;
}

/** A failure that must come within SHORT_BOUND_MS, after exactly one connection per attempt. */
async function expectUnavailableInTime(work: () => Promise<unknown>, fault?: FaultServer): Promise<void> {
  const started = Date.now();
  await expectKind(work(), 'unavailable', /3 attempts/);
  const took = Date.now() - started;
  assert.ok(took < SHORT_BOUND_MS, `took ${took} ms, more than the bound of ${SHORT_BOUND_MS} ms`);
  if (fault) assert.equal(fault.count(), SHORT.attempts);
}

/** The checks both kinds of store pass on the same file. */
function commonChecks(store: () => ObjectStore, key: string, dir: () => string): void {
  it('head gives the size, an ETag and the modification time; a missing object is null', async () => {
    const info = await store().head(key);
    assert.ok(info);
    assert.equal(info.size, EXAMPLE_BYTES.length);
    assert.ok(info.etag && info.etag.length > 2, `etag ${info.etag}`);
    assert.ok(info.lastModifiedMs > Date.UTC(2020, 0, 1), `lastModifiedMs ${info.lastModifiedMs}`);
    assert.equal(await store().head(key.replace('example', 'no-such')), null);
  });

  it('read gives exactly the bytes of each range, with and without the ETag', async () => {
    const { etag } = (await store().head(key))!;
    for (const [start, end] of RANGES) {
      for (const version of [null, etag]) {
        const bytes = await store().read(key, start, end, version);
        assert.equal(bytes.length, end - start);
        assert.ok(bytes.equals(EXAMPLE_BYTES.subarray(start, end)), `bytes ${start}-${end} differ`);
      }
    }
    assert.equal((await store().read(key, 10, 10, null)).length, 0);
  });

  it("read of a missing object is 'missing'; past the end, or a reversed range, 'invalid'", async () => {
    await expectKind(store().read(key.replace('example', 'no-such'), 0, 10, null), 'missing');
    await expectKind(store().read(key, EXAMPLE_BYTES.length - 10, EXAMPLE_BYTES.length + 10, null), 'invalid');
    await expectKind(store().read(key, 10, 5, null), 'invalid');
  });

  it("keys with '..' segments are refused", async () => {
    await expectKind(store().read(key.replace('example.tif', '../example.tif'), 0, 8, null), 'invalid');
    await expectKind(store().head('..'), 'invalid');
  });

  it('download writes the whole object and says what it wrote; a missing object leaves no file', async () => {
    const target = path.join(dir(), 'downloaded.tif');
    writeFileSync(target, 'x'.repeat(500_000));
    const info = await store().download(key, target, null);
    assert.ok(readFileSync(target).equals(EXAMPLE_BYTES));
    assert.deepEqual(info, await store().head(key));
    const missing = path.join(dir(), 'missing.tif');
    await expectKind(store().download(key.replace('example', 'no-such'), missing, null), 'missing');
    assert.equal(existsSync(missing), false);
  });
}

/** A store of the suite's kind whose endpoint is this loopback port, for the time of `work`. */
type StoreAt = (port: number, timeouts: StoreTimeouts, work: (store: ObjectStore) => Promise<void>) => Promise<void>;

/** How both kinds of store meet a server that is down, silent, or briefly overloaded. */
function faultChecks(storeAt: StoreAt, key: string, serverPort: () => number): void {
  it("a closed port, and a server that never answers, are 'unavailable' after the attempts, in bounded time", async () => {
    const closed = await freePort();
    const silent = await startSilentServer();
    try {
      for (const [port, fault] of [
        [closed, undefined],
        [silent.port, silent],
      ] as const) {
        await storeAt(port, SHORT, (store) => expectUnavailableInTime(() => store.read(key, 0, 10, null), fault));
      }
    } finally {
      await silent.stop();
    }
  });

  it("the caller's abort ends a call at once, with the caller's reason, and is not retried", async () => {
    const silent = await startSilentServer();
    try {
      await storeAt(silent.port, TIMEOUTS, async (store) => {
        const controller = new AbortController();
        const reason = new Error('the client went away');
        setTimeout(() => controller.abort(reason), 100);
        await assert.rejects(store.read(key, 0, 10, null, controller.signal), (error) => error === reason);
        assert.equal(silent.count(), 1);
      });
    } finally {
      await silent.stop();
    }
  });

  it('503 (SlowDown) is retried until it passes; a 404 is not retried', async () => {
    const flaky = await startFlakyFront(serverPort(), 2);
    try {
      await storeAt(flaky.port, TIMEOUTS, async (store) => {
        assert.ok((await store.read(key, 100, 200, null)).equals(EXAMPLE_BYTES.subarray(100, 200)));
        assert.equal(flaky.count(), 3);
        await expectKind(store.read(key.replace('example', 'no-such'), 0, 10, null), 'missing');
        assert.equal(flaky.count(), 4);
      });
    } finally {
      await flaky.stop();
    }
  });
}

describe('S3Store against s3rver', () => {
  let s3: S3Server;
  let store: S3Store;
  let dir: string;
  const saved = { ...process.env };
  const key = 'collection/example.tif';

  before(async () => {
    dir = tempDir('iipsrv-stores-');
    s3 = await startS3();
    await s3.put(key, { file: EXAMPLE });
    await s3.put('collection/notes.txt', Buffer.from('not an image'));
    await s3.put('collection/', Buffer.alloc(0));
    await s3.put('collection/deeper/inside.tif', Buffer.from('x'));
    await s3.put('collectionless.tif', Buffer.from('x'));
    // The SDK takes its endpoint, credentials and region from the environment, as in the daemon.
    Object.assign(process.env, s3Env(s3));
    store = new S3Store({ bucket: s3.bucket, timeouts: TIMEOUTS, forcePathStyle: true });
  });

  after(async () => {
    await store?.close();
    await s3?.stop();
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  });

  commonChecks(
    () => store,
    key,
    () => dir,
  );

  faultChecks(
    (port, timeouts, work) =>
      withEnv({ AWS_ENDPOINT_URL: `http://127.0.0.1:${port}` }, async () => {
        const store = new S3Store({ bucket: s3.bucket, timeouts, forcePathStyle: true });
        try {
          await work(store);
        } finally {
          await store.close();
        }
      }),
    key,
    () => s3.port,
  );

  it('list gives the keys right under the prefix: no deeper keys, no directory marker, at most limit', async () => {
    assert.deepEqual((await store.list('collection/', 100)).sort(), ['collection/example.tif', 'collection/notes.txt']);
    assert.deepEqual(await store.list('nothing-here/', 100), []);
  });

  it('list follows continuation tokens: the first page of one key is the directory marker, the key comes on the second', async () => {
    const counting = await startFlakyFront(s3.port, 0);
    try {
      await withEnv({ AWS_ENDPOINT_URL: `http://127.0.0.1:${counting.port}` }, async () => {
        const paged = new S3Store({ bucket: s3.bucket, timeouts: TIMEOUTS, forcePathStyle: true });
        try {
          assert.deepEqual(await paged.list('collection/', 1), ['collection/example.tif']);
          assert.equal(counting.count(), 2);
        } finally {
          await paged.close();
        }
      });
    } finally {
      await counting.stop();
    }
  });

  it("an object replaced since its ETag was taken is 'changed' for read and download", async () => {
    const replaced = 'collection/replaced.tif';
    await s3.put(replaced, { file: EXAMPLE });
    const old = (await store.head(replaced))!;
    await s3.put(replaced, Buffer.concat([EXAMPLE_BYTES.subarray(0, 1000), Buffer.from('new'), EXAMPLE_BYTES.subarray(1003)]));
    await expectKind(store.read(replaced, 0, 100, old.etag), 'changed');
    const target = path.join(dir, 'replaced.tif');
    await expectKind(store.download(replaced, target, old.etag), 'changed');
    assert.equal(existsSync(target), false);
    const now = (await store.head(replaced))!;
    assert.notEqual(now.etag, old.etag);
    assert.equal((await store.read(replaced, 1000, 1003, now.etag)).toString(), 'new');
  });

  it("wrong credentials are 'denied', and the message names neither the key id nor the secret", async () => {
    const wrong = { AWS_ACCESS_KEY_ID: 'AKIAWRONGKEYID123456', AWS_SECRET_ACCESS_KEY: 'wrong-secret-value-0123456789' };
    await withEnv(s3Env(s3, wrong), async () => {
      const denied = new S3Store({ bucket: s3.bucket, timeouts: TIMEOUTS, forcePathStyle: true });
      try {
        for (const error of [await failure(denied.head(key)), await failure(denied.read(key, 0, 10, null)), await failure(denied.list('collection/', 10))]) {
          assert.equal(error.kind, 'denied', error.message);
          assert.ok(error.message.startsWith(`s3://${s3.bucket}/`), error.message);
          assert.ok(!error.message.includes(wrong.AWS_ACCESS_KEY_ID) && !error.message.includes(wrong.AWS_SECRET_ACCESS_KEY), error.message);
        }
      } finally {
        await denied.close();
      }
    });
  });

  it("a bucket that does not exist is 'unavailable' with a message saying so", async () => {
    const nowhere = new S3Store({ bucket: 'no-such-bucket', timeouts: TIMEOUTS, forcePathStyle: true });
    try {
      await expectKind(nowhere.read(key, 0, 10, null), 'unavailable', /bucket does not exist/);
    } finally {
      await nowhere.close();
    }
  });

  it('AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL, and the region defaults to us-east-1', async () => {
    const closed = await freePort();
    await withEnv({ AWS_ENDPOINT_URL: `http://127.0.0.1:${closed}`, AWS_ENDPOINT_URL_S3: s3.endpoint }, async () => {
      delete process.env.AWS_REGION;
      const other = new S3Store({ bucket: s3.bucket, timeouts: TIMEOUTS, forcePathStyle: true });
      try {
        assert.ok((await other.read(key, 0, 8, null)).equals(EXAMPLE_BYTES.subarray(0, 8)));
      } finally {
        await other.close();
        process.env.AWS_REGION = s3Env(s3).AWS_REGION;
      }
    });
  });

  it('createObjectStore makes an S3 store for an s3 location', async () => {
    const made = createObjectStore({ kind: 's3', bucket: s3.bucket, forcePathStyle: true }, TIMEOUTS);
    try {
      assert.equal(made.description, `s3://${s3.bucket}/`);
      assert.equal((await made.head(key))?.size, EXAMPLE_BYTES.length);
    } finally {
      await made.close();
    }
  });
});

describe('HttpStore against nginx', { skip: nginxAvailability().skip ?? false }, () => {
  let web: string;
  let root: string;
  let nginx: WebServer;
  let store: HttpStore;
  const key = 'collection/example.tif';

  before(async () => {
    web = webTempDir('iipsrv-stores-web-');
    root = path.join(web, 'root');
    mkdirSync(path.join(root, 'collection', 'odd names'), { recursive: true });
    mkdirSync(path.join(root, 'private'), { recursive: true });
    copyFileSync(EXAMPLE, path.join(root, key));
    copyFileSync(EXAMPLE, path.join(root, 'collection', 'odd names', 'a #1?.tif'));
    copyFileSync(EXAMPLE, path.join(root, 'private', 'example.tif'));
    nginx = await startStaticNginx({ dir: path.join(web, 'main'), root, directives: 'location /private/ { deny all; }' });
    store = new HttpStore({ baseUrl: `http://127.0.0.1:${nginx.port}/`, timeouts: TIMEOUTS });
  });

  after(async () => {
    await store?.close();
    await nginx?.stop();
  });

  commonChecks(
    () => store,
    key,
    () => web,
  );

  faultChecks(
    async (port, timeouts, work) => {
      const store = new HttpStore({ baseUrl: `http://127.0.0.1:${port}/`, timeouts });
      try {
        await work(store);
      } finally {
        await store.close();
      }
    },
    key,
    () => nginx.port,
  );

  it('keys are percent-encoded segment by segment under the base path', async () => {
    const under = new HttpStore({ baseUrl: `http://127.0.0.1:${nginx.port}/collection`, timeouts: TIMEOUTS });
    try {
      assert.ok((await under.read('odd names/a #1?.tif', 0, 100, null)).equals(EXAMPLE_BYTES.subarray(0, 100)));
      assert.equal((await under.head('example.tif'))?.size, EXAMPLE_BYTES.length);
    } finally {
      await under.close();
    }
  });

  it("list is 'invalid' over HTTP", async () => {
    await expectKind(store.list('collection/', 10), 'invalid', /listing is not possible over HTTP/);
  });

  it("403 is 'denied'", async () => {
    await expectKind(store.read('private/example.tif', 0, 10, null), 'denied');
    await expectKind(store.head('private/example.tif'), 'denied');
  });

  it("a file replaced since its ETag was taken is 'changed' (nginx answers If-Match with 412)", async () => {
    const replaced = 'collection/replaced.tif';
    const file = path.join(root, replaced);
    copyFileSync(EXAMPLE, file);
    utimesSync(file, new Date('2024-01-01'), new Date('2024-01-01'));
    const old = (await store.head(replaced))!;
    writeFileSync(file, Buffer.concat([EXAMPLE_BYTES, Buffer.from('more')]));
    await expectKind(store.read(replaced, 0, 100, old.etag), 'changed');
    await expectKind(store.download(replaced, path.join(web, 'replaced.tif'), old.etag), 'changed');
    const now = (await store.head(replaced))!;
    assert.equal(now.size, EXAMPLE_BYTES.length + 4);
    assert.equal((await store.read(replaced, EXAMPLE_BYTES.length, EXAMPLE_BYTES.length + 4, now.etag)).toString(), 'more');
  });

  it("a server that ignores Range is 'invalid' at once, without the whole body being sent", async () => {
    const big = path.join(root, 'big.bin');
    writeFileSync(big, '');
    truncateSync(big, 256 * 1024 * 1024);
    const noRanges = await startStaticNginx({ dir: path.join(web, 'no-ranges'), root, directives: 'max_ranges 0;' });
    const plain = new HttpStore({ baseUrl: `http://127.0.0.1:${noRanges.port}/`, timeouts: TIMEOUTS });
    try {
      await expectKind(plain.read('big.bin', 0, 100, null), 'invalid', /does not honour Range requests/);
      // nginx logs the request once the client has hung up: $body_bytes_sent is the tenth field.
      const log = path.join(noRanges.dir, 'access.log');
      await waitFor(async () => readFileSync(log, 'utf8').includes('/big.bin'), 10_000, 'the access log line');
      const line = readFileSync(log, 'utf8')
        .split('\n')
        .find((l) => l.includes('/big.bin'))!;
      const sent = Number(line.split(' ')[9]);
      assert.ok(sent < 64 * 1024 * 1024, `nginx sent ${sent} bytes: ${line}`);
    } finally {
      await plain.close();
      await noRanges.stop();
    }
  });

  it('an origin that sends more than was asked is cut off: the read fails and the origin stops', async () => {
    const endless = await startEndlessRangeServer();
    const hostile = new HttpStore({ baseUrl: `http://127.0.0.1:${endless.port}/`, timeouts: TIMEOUTS });
    try {
      await expectKind(hostile.read('x.tif', 0, 100_000, null), 'invalid', /more than the 100000 bytes/);
      await waitFor(async () => {
        const before = endless.sent();
        await new Promise((resolve) => setTimeout(resolve, 200));
        return endless.sent() === before;
      });
      assert.ok(endless.sent() < 64 * 1024 * 1024, `the origin pushed ${endless.sent()} bytes`);
      assert.equal(endless.count(), 1);
    } finally {
      await hostile.close();
      await endless.stop();
    }
  });

  it('a download slower in all than the timeout, but never silent that long, completes', async () => {
    // 16 chunks 100 ms apart: 1.5 s in all, against a 1 s timeout that only silence may use up.
    const chunks = 16;
    const chunk = EXAMPLE_BYTES.length / chunks;
    const slow = http.createServer((_request, response) => {
      response.writeHead(200, { 'content-length': String(EXAMPLE_BYTES.length) });
      let sent = 0;
      const timer = setInterval(() => {
        response.write(EXAMPLE_BYTES.subarray(sent * chunk, ++sent * chunk));
        if (sent === chunks) {
          clearInterval(timer);
          response.end();
        }
      }, 100);
      response.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const port = (slow.address() as AddressInfo).port;
    const patient = new HttpStore({ baseUrl: `http://127.0.0.1:${port}/`, timeouts: { requestTimeoutMs: 1000, attempts: 1, backoffMs: 20 } });
    try {
      const target = path.join(web, 'slow.tif');
      assert.equal((await patient.download('slow.tif', target, null)).size, EXAMPLE_BYTES.length);
      assert.ok(readFileSync(target).equals(EXAMPLE_BYTES));
    } finally {
      await patient.close();
      slow.closeAllConnections();
      await new Promise((resolve) => slow.close(resolve));
    }
  });

  it('createObjectStore makes a web-server store for an http location; a download leaves no temporary files', async () => {
    const made = createObjectStore({ kind: 'http', baseUrl: `http://127.0.0.1:${nginx.port}/collection/` }, TIMEOUTS);
    const target = tempDir('iipsrv-stores-dl-');
    try {
      assert.equal(made.description, `http://127.0.0.1:${nginx.port}/collection/`);
      await made.download('example.tif', path.join(target, 'copy.tif'), null);
      assert.deepEqual(readdirSync(target), ['copy.tif']);
    } finally {
      await made.close();
    }
  });
});
