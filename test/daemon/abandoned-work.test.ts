/**
 * Work nobody waits for: expensive exports whose clients have gone are dropped from the queue,
 * and cheap requests never wait behind expensive ones (issue 13). Timings are compared with the
 * same server's own figure for one expensive export, measured first, never with a fixed time.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon, tempDir } from '../helpers/daemon.ts';
import { makePyramidTiff } from '../helpers/images.ts';
import { freePort, waitFor, type Started } from '../helpers/processes.ts';

const EXPENSIVE = '/?FIF=big.tif&WID=4000&CVT=webp';
const CHEAP = '/?FIF=big.tif&WID=100&CVT=jpeg';

function timedGet(port: number, pathAndQuery: string): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: pathAndQuery, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
      })
      .on('error', reject);
  });
}

/** Sends the request and hangs up before any answer, as a viewer does when the user moves on. */
function abandonedGet(port: number, pathAndQuery: string, afterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathAndQuery, agent: false });
    req.on('error', () => resolve());
    setTimeout(() => {
      req.destroy();
      resolve();
    }, afterMs);
  });
}

interface LogLine {
  query?: string;
  status?: number;
  msg?: string;
}

describe('abandoned and expensive work', () => {
  let port: number;
  let daemon: Started;
  let logFile: string;
  const logged = (): LogLine[] =>
    readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine);

  before(async () => {
    const dir = tempDir();
    await makePyramidTiff(path.join(dir, 'big.tif'), { width: 6000, height: 4500 });
    logFile = path.join(dir, 'iipsrv.log');
    port = await freePort();
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { FILESYSTEM_PREFIX: dir + '/', LOGFILE: logFile, VERBOSITY: '2', MAX_IMAGE_CACHE_SIZE: '0' },
      waitPort: port,
    });
  });
  after(async () => {
    await daemon.stop();
  });

  it('drops queued exports of clients that left, and answers a thumbnail while exports run', async () => {
    const alone = await timedGet(port, EXPENSIVE);
    assert.equal(alone.status, 200);

    // Four exports (two run at once in a worker on this machine, at least two more queue), each
    // abandoned shortly after it was sent.
    await Promise.all([0, 1, 2, 3].map(() => abandonedGet(port, EXPENSIVE, 150)));
    const cheap = await timedGet(port, CHEAP);
    assert.equal(cheap.status, 200);
    assert.ok(cheap.ms < alone.ms / 2, `a 100 px CVT took ${cheap.ms.toFixed(0)} ms while exports ran; one export alone takes ${alone.ms.toFixed(0)} ms`);

    // The queued ones end as aborted at once, not after running to the end.
    await waitFor(
      async () => logged().filter((l) => l.query?.includes('CVT=webp') && l.status === 503).length >= 2,
      alone.ms,
      'the queued exports to be dropped',
    );
  });
});
