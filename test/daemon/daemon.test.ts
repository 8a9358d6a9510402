/**
 * The real program, started the way users start it: flags, start-up errors, HTTP mode, worker
 * processes, signals and logging.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { closeSync, constants, existsSync, openSync, readFileSync, readSync, renameSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { FastCgiTestClient, fullRequest, parseCgiResponse } from '../helpers/fastcgi-client.ts';
import { BIN, ROOT, startDaemon, tempDir, testEnv, which } from '../helpers/daemon.ts';
import { canConnect, childPids, freePort, processExists, startProgram, stopGroup, waitFor, waitUntilListening, type Started } from '../helpers/processes.ts';
import { decodePixels, psnr } from '../helpers/images.ts';
import type { JsonObject } from '../helpers/json.ts';

const run = promisify(execFile);
const IMAGES = path.join(ROOT, 'examples/images') + '/';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export function get(port: number, pathAndQuery: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: pathAndQuery, method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('command line', () => {
  it('--version prints the version and exits 0', async () => {
    const { stdout } = await run(BIN, ['--version']);
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(stdout, `iipsrv-ts ${version}\n`);
  });
  it('--help prints the usage and exits 0', async () => {
    const { stdout } = await run(BIN, ['--help']);
    assert.match(stdout, /--bind HOST:PORT/);
    assert.match(stdout, /--workers N/);
  });
  it('from a shell with nothing to serve: usage on stderr, exit 1', async () => {
    const started = startProgram(BIN, [], { env: testEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const { code } = await started.exited;
    assert.equal(code, 1);
    assert.match(started.stderr(), /nothing to serve/);
    assert.match(started.stderr(), /Usage: iipsrv/);
  });
  it('an invalid environment variable stops the start with its name', async () => {
    const port = await freePort();
    const started = startProgram(BIN, ['--http', `127.0.0.1:${port}`], { env: testEnv({ JPEG_QUALITY: 'best' }) });
    const { code } = await started.exited;
    assert.equal(code, 1);
    assert.match(started.stderr(), /invalid configuration: JPEG_QUALITY: expected a whole number, got "best"/);
  });
  it('a port already in use is reported and the process exits non-zero', async () => {
    const port = await freePort();
    const blocker = http.createServer().listen(port, '127.0.0.1');
    try {
      const started = startProgram(BIN, ['--http', `127.0.0.1:${port}`, '--workers', '1'], { env: testEnv() });
      const { code } = await started.exited;
      assert.equal(code, 1);
      assert.match(started.stderr(), /EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });
});

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('HTTP mode with workers', () => {
  let port: number;
  let daemon: Started;
  let dir: string;
  before(async () => {
    dir = tempDir();
    port = await freePort();
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '2'], {
      env: { FILESYSTEM_PREFIX: IMAGES, LOGFILE: path.join(dir, 'iipsrv.log'), VERBOSITY: '2', CORS: '*' },
      waitPort: port,
    });
  });
  after(async () => {
    await daemon.stop();
  });

  it('serves OBJ=IIP,1.0 on the example image with the headers a web server would send', async () => {
    const reply = await get(port, '/?FIF=example.tif&OBJ=IIP,1.0');
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString('latin1'), 'IIP:1.0\r\n');
    assert.equal(reply.headers['content-type'], 'application/vnd.netfpx');
    assert.equal(reply.headers['content-length'], '9');
    assert.equal(reply.headers['access-control-allow-origin'], '*');
    const { mtimeMs } = (await import('node:fs')).statSync(path.join(IMAGES, 'example.tif'));
    assert.equal(reply.headers['last-modified'], new Date(Math.floor(mtimeMs / 1000) * 1000).toUTCString());
  });
  it('HEAD has the GET headers and no body', async () => {
    const reply = await get(port, '/?FIF=example.tif&OBJ=IIP,1.0', { method: 'HEAD' });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-length'], '9');
    assert.equal(reply.body.length, 0);
  });
  it('answers 304 to a matching If-Modified-Since', async () => {
    const first = await get(port, '/?FIF=example.tif&OBJ=IIP,1.0');
    const reply = await get(port, '/?FIF=example.tif&OBJ=IIP,1.0', { headers: { 'If-Modified-Since': String(first.headers['last-modified']) } });
    assert.equal(reply.status, 304);
    assert.equal(reply.body.length, 0);
  });
  it('serves both bundled example images, TIFF and JPEG2000, as the same picture', async () => {
    // At full resolution: the smaller levels differ more, a wavelet low-pass against a box filter.
    const tiff = await get(port, '/?FIF=example.tif&CVT=png');
    const jp2 = await get(port, '/?FIF=example.jp2&CVT=png');
    assert.equal(tiff.status, 200);
    assert.equal(jp2.status, 200, jp2.body.toString('latin1'));
    const [a, b] = await Promise.all([decodePixels(tiff.body), decodePixels(jp2.body)]);
    assert.deepEqual([b.width, b.height], [a.width, a.height]);
    // The JPEG2000 copy is lossy (15:1 at best, half its layers by default): close, not equal.
    assert.ok(psnr(a, b) > 38, `PSNR ${psnr(a, b)}`);
  });
  it('runs the number of workers asked for, and replaces one that dies', async () => {
    const workers = childPids(daemon.child.pid!);
    assert.equal(workers.length, 2, `workers: ${workers.join(',')}`);
    process.kill(workers[0]!, 'SIGKILL');
    await waitFor(
      async () => {
        const now = childPids(daemon.child.pid!);
        return now.length === 2 && !now.includes(workers[0]!);
      },
      20_000,
      'a replacement worker',
    );
    // Requests still succeed, whichever worker takes them.
    for (let i = 0; i < 20; i++) assert.equal((await get(port, '/?OBJ=IIP,1.0')).status, 200);
    // The primary's log is written asynchronously: give the line a moment to reach the file.
    await waitFor(async () => /worker died; starting a new one/.test(readFileSync(path.join(dir, 'iipsrv.log'), 'utf8')), 5000, 'the worker-died log line');
  });
  it('SIGHUP keeps serving', async () => {
    const before = childPids(daemon.child.pid!).sort();
    process.kill(daemon.child.pid!, 'SIGHUP');
    await waitFor(async () => /caught SIGHUP/.test(readFileSync(path.join(dir, 'iipsrv.log'), 'utf8')), 5000, 'the SIGHUP log line');
    assert.equal((await get(port, '/?OBJ=IIP,1.0')).status, 200);
    assert.deepEqual(childPids(daemon.child.pid!).sort(), before, 'same workers: nothing restarted');
  });
  it('an absolute-form target (RFC 9112 3.2.2) gives its path and query; the Host header still names the host', async () => {
    // Raw bytes: Node's client always sends the origin form.
    const raw = (target: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.write(`GET ${target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`));
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
        socket.on('error', reject);
      });
    const redirect = await raw('http://evil.example/?IIIF=example.tif');
    assert.match(redirect, /^HTTP\/1\.1 303 /);
    assert.match(redirect, /\r\nLocation: http:\/\/a\/\?IIIF=example\.tif\/info\.json\r\n/i);
    const deeper = await raw('HTTPS://evil.example:8443/fcgi-bin/iipsrv.fcgi?IIIF=example.tif');
    assert.match(deeper, /\r\nLocation: http:\/\/a\/fcgi-bin\/iipsrv\.fcgi\?IIIF=example\.tif\/info\.json\r\n/i);
    // No path at all is the root.
    assert.match(await raw('http://evil.example?FIF=example.tif&OBJ=IIP,1.0'), /^HTTP\/1\.1 200 [^]*\r\n\r\nIIP:1\.0\r\n$/);
  });
  it('logs one line per request at VERBOSITY 2, with its time', async () => {
    await get(port, '/?FIF=example.tif&OBJ=IIP,1.0&MARKER=1');
    await waitFor(async () => readFileSync(path.join(dir, 'iipsrv.log'), 'utf8').includes('MARKER=1'), 5000, 'the request line');
    const line = readFileSync(path.join(dir, 'iipsrv.log'), 'utf8')
      .split('\n')
      .find((l) => l.includes('MARKER=1'))!;
    const entry = JSON.parse(line) as Record<string, unknown>;
    assert.equal(entry.status, 400);
    assert.equal(typeof entry.micros, 'number');
  });
});

describe('graceful stop', () => {
  it('SIGTERM stops accepting, and the process exits 0', async () => {
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '2'], { waitPort: port });
    // A kept-alive idle connection must not hold the stop up.
    const agent = new http.Agent({ keepAlive: true });
    await new Promise<void>((resolve) => http.get({ port, host: '127.0.0.1', path: '/?OBJ=IIP,1.0', agent }, (res) => res.resume().on('end', resolve)));
    const workers = childPids(daemon.child.pid!);
    assert.equal(workers.length, 2);
    const started = Date.now();
    const { code } = await daemon.stop();
    assert.equal(code, 0);
    assert.ok(Date.now() - started < 5000, 'idle connections are closed, not waited for');
    await waitFor(async () => workers.every((pid) => !processExists(pid)), 3000, 'workers to exit');
    assert.equal(await canConnect({ port }), false, 'nothing listens any more');
    agent.destroy();
  });
});

describe('logging', () => {
  it('VERBOSITY 1: a start-up banner with the version and the configuration, no request lines', async () => {
    const dir = tempDir();
    const logfile = path.join(dir, 'iipsrv.log');
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { LOGFILE: logfile, VERBOSITY: '1', JPEG_QUALITY: '150' },
      waitPort: port,
    });
    await get(port, '/?OBJ=IIP,1.0');
    await daemon.stop();
    const lines = readFileSync(logfile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as JsonObject);
    const banner = lines.find((l) => l.msg === 'iipsrv-ts starting');
    assert.ok(banner, 'banner line');
    assert.match(String(banner.version), /^\d+\.\d+\.\d+$/);
    const config = lines.find((l) => l.msg === 'configuration');
    assert.equal(config?.config?.jpegQuality, 100);
    assert.ok(
      lines.some((l) => /JPEG_QUALITY=150/.test(String(l.msg))),
      'the fallback is logged',
    );
    assert.ok(!lines.some((l) => l.msg === 'request'), 'no request lines at verbosity 1');
    assert.ok(lines.some((l) => l.msg === 'stopped'));
  });
  it('VERBOSITY 0 or no LOGFILE: nothing is written', async () => {
    const dir = tempDir();
    const logfile = path.join(dir, 'quiet.log');
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], { env: { LOGFILE: logfile, VERBOSITY: '0' }, waitPort: port });
    await get(port, '/?OBJ=IIP,1.0');
    await daemon.stop();
    assert.equal(existsSync(logfile), false);
  });
  it('SIGHUP reopens the log file after logrotate moved it', async () => {
    const dir = tempDir();
    const logfile = path.join(dir, 'rotate.log');
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], { env: { LOGFILE: logfile, VERBOSITY: '2' }, waitPort: port });
    renameSync(logfile, logfile + '.1');
    process.kill(daemon.child.pid!, 'SIGHUP');
    await waitFor(async () => existsSync(logfile), 5000, 'a new log file');
    await get(port, '/?OBJ=IIP,1.0&AFTER=rotate');
    await waitFor(async () => readFileSync(logfile, 'utf8').includes('AFTER=rotate'), 5000, 'request line in the new file');
    await daemon.stop();
  });
  it('a log target that stops reading (a full pipe) stalls no request; the lines lost are counted once it reads again', async () => {
    const dir = tempDir();
    const fifo = path.join(dir, 'stderr.fifo');
    await run('mkfifo', [fifo]);
    // We hold the reading end and read nothing until the flood is over.
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, 'w');
    const port = await freePort();
    const daemon = startProgram(BIN, ['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: testEnv({ FILESYSTEM_PREFIX: IMAGES, LOGFILE: 'stderr', VERBOSITY: '2' }),
      stdio: ['ignore', 'ignore', writer],
    });
    closeSync(writer);
    const drain = () => {
      const chunks: Buffer[] = [];
      const buffer = Buffer.alloc(65536);
      for (;;) {
        let n = 0;
        try {
          n = readSync(reader, buffer);
        } catch {
          break; // EAGAIN: nothing more for now
        }
        if (n === 0) break;
        chunks.push(Buffer.from(buffer.subarray(0, n)));
      }
      return Buffer.concat(chunks).toString('utf8');
    };
    try {
      await waitUntilListening(daemon, { port }, { what: 'iipsrv' });
      // About 2.3 KB of log per request: 1200 of them are 40 times the pipe's 64 KB and more than
      // the log's own buffer, so some lines must go.
      const padding = 'x'.repeat(2000);
      for (let i = 0; i < 1200; i += 8) {
        await Promise.all(
          Array.from({ length: 8 }, async (_, j) => {
            const reply = await withTimeout(get(port, `/${i + j}/${padding}?OBJ=IIP,1.0`), 5000, `request ${i + j}`);
            assert.equal(reply.status, 200);
          }),
        );
      }
      let text = '';
      await waitFor(
        async () => {
          text += drain();
          return text.includes('log lines dropped');
        },
        10_000,
        'the note about dropped lines',
      );
      const note = JSON.parse(text.split('\n').find((line) => line.includes('log lines dropped'))!) as { dropped: number; level: number };
      assert.ok(note.dropped > 0 && note.dropped < 1200, `dropped ${note.dropped}`);
      assert.equal(note.level, 40);
    } finally {
      await stopGroup(daemon);
      closeSync(reader);
    }
  });
  it('LOGFILE=syslog sends RFC 3164 datagrams', async () => {
    const socket = dgram.createSocket('udp4');
    const received: string[] = [];
    socket.on('message', (m) => received.push(m.toString()));
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const syslogPort = (socket.address() as { port: number }).port;
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { LOGFILE: `syslog://127.0.0.1:${syslogPort}`, VERBOSITY: '1' },
      waitPort: port,
    });
    await waitFor(async () => received.some((m) => m.includes('iipsrv-ts starting')), 5000, 'the banner datagram');
    await daemon.stop();
    socket.close();
    const banner = received.find((m) => m.includes('iipsrv-ts starting'))!;
    // facility user (1) * 8 + informational (6)
    assert.match(banner, /^<14>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ iipsrv\[\d+\]: \{/);
  });
});

describe('listen backlog as the kernel has it', { skip: which('ss') ? false : 'ss not installed (apt-get install iproute2)' }, () => {
  const backlogOf = async (filter: string[]): Promise<number> => {
    const { stdout } = await promisify(execFile)('ss', ['-l', '-H', ...filter]);
    // State Recv-Q Send-Q ...: for a listening socket Send-Q is the backlog.
    const fields = stdout.trim().split(/\s+/);
    return Number(fields[fields[0] === 'u_str' ? 3 : 2]);
  };
  it('--bind HOST:PORT --backlog N', async () => {
    const port = await freePort();
    const daemon = await startDaemon(['--bind', `127.0.0.1:${port}`, '--backlog', '300', '--workers', '1'], { waitPort: port });
    try {
      assert.equal(await backlogOf(['-t', `sport = :${port}`]), 300);
    } finally {
      await daemon.stop();
    }
  });
  it(
    'a socket inherited on fd 0: backlog 2048 (not the 511 of Node), held by the primary alone, connections served by every worker',
    { skip: which('spawn-fcgi') ? false : 'spawn-fcgi not installed (apt-get install spawn-fcgi)' },
    async () => {
      const dir = tempDir();
      const socket = path.join(dir, 'fd0.sock');
      const logfile = path.join(dir, 'iipsrv.log');
      const started = startProgram(which('spawn-fcgi')!, ['-n', '-s', socket, '--', BIN, '--workers', '2'], {
        env: testEnv({ VERBOSITY: '2', LOGFILE: logfile }),
      });
      try {
        await waitFor(async () => (await backlogOf(['-x', `src = ${socket}`]).catch(() => 0)) === 2048, 10_000, 'backlog 2048 on the inherited socket');
        const primary = started.child.pid!;
        await waitFor(async () => childPids(primary).length === 2, 10_000, 'two workers');
        await waitFor(
          async () =>
            readFileSync(logfile, 'utf8')
              .split('\n')
              .filter((l) => l.includes('"msg":"ready"')).length >= 1,
          10_000,
          'ready',
        );
        // Which processes have the listening socket open: the primary only, so that it goes with it.
        const { stdout } = await promisify(execFile)('ss', ['-x', '-l', '-H', '-p', `src = ${socket}`]);
        const holders = [...stdout.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
        assert.deepEqual([...new Set(holders)], [primary], `holders ${stdout.trim()}`);
        // Connections are handed to the workers in turn: both answer (the second worker may still be
        // starting at first, so ask until both have, within a bound).
        const servedBy = () =>
          new Set(
            readFileSync(logfile, 'utf8')
              .split('\n')
              .filter((l) => l.includes('"msg":"request"'))
              .map((l) => (JSON.parse(l) as { pid: number }).pid),
          );
        let workers = servedBy();
        for (let i = 0; i < 200 && workers.size < 2; i++) {
          const client = await FastCgiTestClient.connect({ path: socket });
          client.send(fullRequest(1, { params: { QUERY_STRING: `OBJ=IIP,1.0&ICC=${i}`, REQUEST_METHOD: 'GET' } }));
          assert.match(parseCgiResponse((await client.waitForEnd(1)).stdout).body.toString(), /IIP:1\.0/);
          client.destroy();
          await waitFor(async () => readFileSync(logfile, 'utf8').includes(`ICC=${i}"`), 5000, 'the request line');
          workers = servedBy();
        }
        assert.equal(workers.size, 2, `requests served by ${[...workers].join(', ')}`);
      } finally {
        await started.stop();
      }
    },
  );
});
