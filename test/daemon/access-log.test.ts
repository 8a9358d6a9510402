/**
 * ACCESS_LOG on the real daemon: one JSON line per request with what the client got (status, body
 * bytes), how long it took and which cache tier answered; no credentials in it; rotated by
 * `mv` and SIGHUP with every worker moving to the new file and no line lost or cut; off unless
 * asked for.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, renameSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, ROOT, startDaemon, tempDir, testEnv } from '../helpers/daemon.ts';
import { makePyramidTiff } from '../helpers/images.ts';
import { childPids, freePort, startProgram, waitFor, waitUntilListening, type Started } from '../helpers/processes.ts';
import { memcachedMissing, startMemcached } from '../helpers/memcached.ts';

/** Its tiles are stored JPEG: sent as they are (CODEC_PASSTHROUGH's default). */
const JPEG_IMAGES = path.join(ROOT, 'examples/images') + '/';

interface Reply {
  status: number;
  body: Buffer;
}

function request(port: number, url: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    http
      .request({ host: '127.0.0.1', port, path: url, method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }));
      })
      .on('error', reject)
      .end();
  });
}

interface AccessLine {
  type: string;
  time: string;
  worker: number;
  method: string;
  path: string;
  query: string;
  protocol: string;
  kind: string;
  status: number;
  bytes: number;
  ms: number;
  tier: string;
  remote: string;
  agent?: string;
}

/** Every line of the file, each of which must be a whole JSON object. */
function readLines(file: string): AccessLine[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), 'the file ends with a whole line');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as AccessLine);
}

/** The lines of the requests that carried `marker` in their URL, once there are `count` of them. */
async function linesOf(file: string, marker: string, count = 1): Promise<AccessLine[]> {
  let found: AccessLine[] = [];
  await waitFor(
    async () => {
      found = readLines(file).filter((line) => `${line.path}?${line.query}`.includes(marker));
      return found.length >= count;
    },
    5000,
    `${count} access line(s) for ${marker}`,
  );
  return found;
}

/** The worker processes have the file open, and none of them another of the same folder (the moved one). */
function workersWriteTo(primary: number, file: string, workers: number): boolean {
  const pids = childPids(primary);
  if (pids.length !== workers) return false;
  return pids.every((pid) => {
    const open = readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    return open.includes(file) && !open.some((target) => target.startsWith(file + '.'));
  });
}

/** logrotate's way: move the file, then SIGHUP; resolves once every worker writes to the new file. */
async function rotate(daemon: Started, file: string, workers: number): Promise<void> {
  renameSync(file, file + '.1');
  process.kill(daemon.child.pid!, 'SIGHUP');
  await waitFor(async () => workersWriteTo(daemon.child.pid!, file, workers), 5000, 'every worker writing to the new file');
}

describe('ACCESS_LOG: a JSON line per request', () => {
  let dir: string;
  let file: string;
  let port: number;
  let daemon: Started;

  before(async () => {
    dir = tempDir();
    // Deflate tiles: no stored JPEG to pass through, every first tile is rendered.
    await makePyramidTiff(path.join(dir, 'ramp.tif'), { width: 1500, height: 1000, compression: 'deflate' });
    file = path.join(dir, 'logs', 'access.log');
    port = await freePort();
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { FILESYSTEM_PREFIX: dir + '/', URI_MAP: 'iiif=>IIIF', ACCESS_LOG: file, VERBOSITY: '0' },
      waitPort: port,
    });
  });
  after(async () => {
    await daemon.stop();
  });

  it('a tile asked for twice: rendered, then from RAM; the bytes are the body the client got', async () => {
    const url = '/iiif/ramp.tif/256,0,256,256/256,/0/default.jpg?twice';
    const first = await request(port, url, { headers: { 'User-Agent': 'access-log-test/1' } });
    const second = await request(port, url);
    assert.equal(first.status, 200);
    assert.deepEqual(second.body, first.body);
    const [a, b] = await linesOf(file, 'twice', 2);
    assert.equal(a!.tier, 'computed');
    assert.equal(b!.tier, 'ram');
    for (const line of [a!, b!]) {
      assert.equal(line.type, 'access');
      assert.equal(line.method, 'GET');
      assert.equal(line.path, '/iiif/ramp.tif/256,0,256,256/256,/0/default.jpg');
      assert.equal(line.query, 'twice');
      assert.equal(line.protocol, 'iiif');
      assert.equal(line.status, 200);
      assert.equal(line.bytes, first.body.length);
      assert.equal(typeof line.ms, 'number');
      assert.ok(line.ms >= 0);
      assert.equal(line.remote, '127.0.0.1');
      assert.equal(line.worker, 1);
      assert.ok(!Number.isNaN(Date.parse(line.time)) && line.time.endsWith('Z'), line.time);
    }
    assert.equal(a!.agent, 'access-log-test/1');
  });

  it('documents and errors: tier none, their status and body length', async () => {
    const info = await request(port, '/iiif/ramp.tif/info.json?doc');
    const missing = await request(port, '/?FIF=missing.tif&JTL=0,0&nofile');
    assert.equal(missing.status, 404);
    const [infoLine] = await linesOf(file, 'doc');
    const [missingLine] = await linesOf(file, 'nofile');
    assert.deepEqual(
      { status: infoLine!.status, bytes: infoLine!.bytes, tier: infoLine!.tier, kind: infoLine!.kind },
      { status: 200, bytes: info.body.length, tier: 'none', kind: 'info' },
    );
    assert.ok(missing.body.length > 0);
    assert.deepEqual(
      { status: missingLine!.status, bytes: missingLine!.bytes, tier: missingLine!.tier, protocol: missingLine!.protocol },
      { status: 404, bytes: missing.body.length, tier: 'none', protocol: 'iip' },
    );
  });

  it('HEAD sends no body: 0 bytes', async () => {
    await request(port, '/iiif/ramp.tif/0,0,256,256/256,/0/default.jpg?head', { method: 'HEAD' });
    const [line] = await linesOf(file, 'head');
    assert.equal(line!.method, 'HEAD');
    assert.equal(line!.bytes, 0);
  });

  it('no credentials, and a bounded line for a huge query', async () => {
    const huge = 'x'.repeat(6000);
    await request(port, `/?FIF=ramp.tif&OBJ=IIP,1.0&secrets&${huge}`, {
      headers: { Authorization: 'Basic c2VjcmV0LWF1dGg=', Cookie: 'session=secret-cookie' },
    });
    const [line] = await linesOf(file, 'secrets');
    const text = readFileSync(file, 'utf8');
    assert.ok(!text.includes('c2VjcmV0LWF1dGg') && !text.includes('secret-cookie'), 'no Authorization or Cookie value');
    assert.ok(line!.query.length <= 1025, `query of ${line!.query.length} characters`);
    assert.ok(line!.query.endsWith('…'));
  });

  it('identical tiles at once: rendered once, the others wait for it or find it in RAM', async () => {
    const url = '/iiif/ramp.tif/full/1500,/0/default.png?together';
    const replies = await Promise.all(Array.from({ length: 6 }, () => request(port, url)));
    for (const reply of replies) assert.deepEqual(reply.body, replies[0]!.body);
    const tiers = (await linesOf(file, 'together', 6)).map((line) => line.tier);
    assert.equal(tiers.filter((tier) => tier === 'computed').length, 1, tiers.join(' '));
    assert.ok(
      tiers.every((tier) => tier === 'computed' || tier === 'coalesced' || tier === 'ram'),
      tiers.join(' '),
    );
  });

  it('stored JPEG tiles sent unchanged: passthrough', async () => {
    const jpegPort = await freePort();
    const jpegLog = path.join(dir, 'jpeg-access.log');
    const jpeg = await startDaemon(['--http', `127.0.0.1:${jpegPort}`, '--workers', '1'], {
      env: { FILESYSTEM_PREFIX: JPEG_IMAGES, ACCESS_LOG: jpegLog, VERBOSITY: '0' },
      waitPort: jpegPort,
    });
    try {
      const reply = await request(jpegPort, '/?FIF=example.tif&JTL=2,0&stored');
      assert.equal(reply.status, 200);
      const [line] = await linesOf(jpegLog, 'stored');
      assert.equal(line!.tier, 'passthrough');
      assert.equal(line!.bytes, reply.body.length);
    } finally {
      await jpeg.stop();
    }
  });
});

describe('ACCESS_LOG rotation: mv, then SIGHUP', () => {
  it('every worker moves to the new file; no line lost, cut or written twice, even mid-traffic', async () => {
    const dir = tempDir();
    await makePyramidTiff(path.join(dir, 'ramp.tif'), { width: 800, height: 600, compression: 'deflate' });
    const file = path.join(dir, 'access.log');
    const port = await freePort();
    const workers = 2;
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', String(workers)], {
      env: { FILESYSTEM_PREFIX: dir + '/', ACCESS_LOG: file, VERBOSITY: '0' },
      waitPort: port,
    });
    try {
      for (let i = 0; i < 20; i++) await request(port, `/?FIF=ramp.tif&JTL=1,0&before=${i}`);
      await linesOf(file, 'before=', 20);

      // Requests keep coming while the file is moved and the workers reopen it.
      let sent = 0;
      let traffic = true;
      const clients = Array.from({ length: 4 }, async () => {
        while (traffic) {
          const n = sent++;
          const reply = await request(port, `/?FIF=ramp.tif&JTL=2,${n % 4}&during=${n}.`);
          assert.equal(reply.status, 200);
        }
      });
      await waitFor(async () => sent > 40, 10_000, 'traffic');
      await rotate(daemon, file, workers);
      await waitFor(async () => sent > 80, 10_000, 'traffic after the rotation');
      traffic = false;
      await Promise.all(clients);

      for (let i = 0; i < 20; i++) await request(port, `/?FIF=ramp.tif&JTL=1,0&after=${i}`);
      await linesOf(file, 'after=', 20);
      // A line of the traffic may still be queued in the other worker: let the counts settle.
      await waitFor(async () => [...readLines(file + '.1'), ...readLines(file)].filter((l) => l.query.includes('during=')).length === sent, 5000, 'every line');

      const old = readLines(file + '.1');
      const current = readLines(file);
      const queries = (lines: AccessLine[], marker: string) => lines.filter((l) => l.query.includes(marker)).map((l) => l.query);
      assert.equal(queries(old, 'before=').length, 20, 'the earlier lines stay in the old file');
      assert.equal(queries(current, 'before=').length, 0);
      assert.equal(queries(current, 'after=').length, 20, 'the following lines go to the new file');
      assert.equal(queries(old, 'after=').length, 0);
      const during = [...queries(old, 'during='), ...queries(current, 'during=')];
      assert.equal(new Set(during).size, sent, 'each request of the traffic once');
      assert.equal(during.length, sent);
      assert.ok(queries(old, 'during=').length > 0 && queries(current, 'during=').length > 0, 'traffic on both sides of the rotation');
    } finally {
      await daemon.stop();
    }
  });
});

describe('ACCESS_LOG with memcached', { skip: memcachedMissing }, () => {
  it('after SIGHUP empties the RAM tier, a tile comes from memcached', async () => {
    const dir = tempDir();
    await makePyramidTiff(path.join(dir, 'ramp.tif'), { width: 800, height: 600, compression: 'deflate' });
    const { port: memcachedPort, process: memcached } = await startMemcached();
    const file = path.join(dir, 'access.log');
    const port = await freePort();
    let daemon: Started | null = null;
    try {
      daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
        env: { FILESYSTEM_PREFIX: dir + '/', ACCESS_LOG: file, VERBOSITY: '0', MEMCACHED_SERVERS: `127.0.0.1:${memcachedPort}` },
        waitPort: port,
      });
      const url = '/?FIF=ramp.tif&JTL=2,1&shared';
      const first = await request(port, url);
      await request(port, url);
      await rotate(daemon, file, 1);
      const third = await request(port, url);
      assert.deepEqual(third.body, first.body);
      const tiers = [...(await linesOf(file + '.1', 'shared', 2)), ...(await linesOf(file, 'shared'))].map((line) => line.tier);
      assert.deepEqual(tiers, ['computed', 'ram', 'memcached']);
    } finally {
      await daemon?.stop();
      await memcached.stop();
    }
  });
});

describe('ACCESS_LOG targets', () => {
  it('off by default: no file, no line anywhere', async () => {
    const dir = tempDir();
    const port = await freePort();
    const daemon = startProgram(BIN, ['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: testEnv({ FILESYSTEM_PREFIX: JPEG_IMAGES }),
      cwd: dir,
    });
    try {
      await waitUntilListening(daemon, { port }, { what: 'iipsrv' });
      assert.equal((await request(port, '/?FIF=example.tif&JTL=0,0')).status, 200);
    } finally {
      await daemon.stop();
    }
    assert.deepEqual(readdirSync(dir), []);
    assert.ok(!daemon.stdout().includes('"type":"access"') && !daemon.stderr().includes('"type":"access"'));
  });

  it('stdout: whole lines from every worker', async () => {
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '2'], {
      env: { FILESYSTEM_PREFIX: JPEG_IMAGES, ACCESS_LOG: 'stdout', VERBOSITY: '0' },
      waitPort: port,
    });
    const count = 60;
    try {
      await Promise.all(Array.from({ length: count }, (_, i) => request(port, `/?FIF=example.tif&JTL=1,0&${'pad'.repeat(300)}&n=${i}`)));
      await waitFor(
        async () =>
          daemon
            .stdout()
            .split('\n')
            .filter((l) => l.includes('"type":"access"')).length >= count,
        5000,
        'the lines on stdout',
      );
    } finally {
      await daemon.stop();
    }
    const lines = daemon
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"type":"access"'))
      .map((l) => JSON.parse(l) as AccessLine);
    assert.equal(lines.length, count);
    assert.equal(new Set(lines.map((l) => l.query)).size, count);
  });
});
