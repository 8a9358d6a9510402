/**
 * iipsrv behind real web servers, configured with the files in examples/ (rendered with free
 * loopback ports and a temporary directory): nginx → --bind TCP, nginx with a keep-alive
 * upstream, nginx → unix socket, Apache mod_fcgid, lighttpd bin-path, spawn-fcgi behind nginx.
 * Each suite skips, naming the Debian package, when its web server is not installed.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon } from '../helpers/daemon.ts';
import { freePort, isRunning, processExists, stopGroup, waitFor, type Started } from '../helpers/processes.ts';
import {
  EXAMPLE_DEFAULTS,
  apacheAvailability,
  apacheSiteReplacements,
  apacheUserCannotRunUs,
  copyExampleImages,
  connectionsTo,
  establishedConnectionsTo,
  expectNoIipsrvLeft,
  httpDate,
  iipsrvPrimaries,
  iipsrvProcesses,
  lighttpdAvailability,
  lighttpdSiteReplacements,
  nginxAvailability,
  nginxErrors,
  nginxSiteReplacements,
  removeDir,
  renderExample,
  request,
  spawnFcgiAvailability,
  spawnFcgiReplacements,
  startApache,
  startLighttpd,
  startNginx,
  startSpawnFcgi,
  webTempDir,
  type Replacements,
  type WebServer,
} from '../helpers/webservers.ts';

const SCRIPT = '/fcgi-bin/iipsrv.fcgi';
const IIP_BODY = Buffer.from('IIP:1.0\r\n');
const NETFPX = 'application/vnd.netfpx';

/** One front end with iipsrv behind it, as a suite sees it. */
interface Setup {
  dir: string;
  images: string;
  mtime: Date;
  port: number;
  front: WebServer;
  /** iipsrv when the test started it itself (--bind, spawn-fcgi); null when the web server does. */
  daemon: Started | null;
  /** nginx's upstream port, for counting kept connections. */
  fastcgiPort?: number;
}

/** Every iipsrv pid seen during a suite, to check afterwards that none is left (not even a zombie). */
function track(seen: Set<number>, marker: string): void {
  for (const p of iipsrvProcesses(marker)) seen.add(p.pid);
}

/** The checks every front end must pass. */
function commonChecks(get: () => Setup, seen: Set<number>, options: { serverHeader: boolean }): void {
  it('OBJ=IIP,1.0 gives the IIP:1.0 body and the netfpx type', async () => {
    const { port, dir } = get();
    for (const query of ['?FIF=example.tif&OBJ=IIP,1.0', '?OBJ=IIP,1.0']) {
      const reply = await request(port, SCRIPT + query);
      assert.equal(reply.status, 200, `${query}: ${reply.body.toString()}`);
      assert.deepEqual(reply.body, IIP_BODY, query);
      assert.equal(reply.headers['content-type'], NETFPX, query);
      if (options.serverHeader) assert.match(String(reply.headers.server), /^iipsrv-ts\//);
    }
    track(seen, dir);
  });

  it('Last-Modified is the image mtime and If-Modified-Since gives 304', async () => {
    const { port, mtime } = get();
    const url = `${SCRIPT}?FIF=example.tif&OBJ=IIP,1.0`;
    const first = await request(port, url);
    assert.equal(first.status, 200);
    assert.equal(first.headers['last-modified'], httpDate(mtime));

    const same = await request(port, url, { headers: { 'If-Modified-Since': httpDate(mtime) } });
    assert.equal(same.status, 304);
    assert.equal(same.body.length, 0);

    const older = new Date(mtime.getTime() - 86_400_000);
    const changed = await request(port, url, { headers: { 'If-Modified-Since': httpDate(older) } });
    assert.equal(changed.status, 200);
    assert.deepEqual(changed.body, IIP_BODY);
  });

  it('an unknown command gives 400 with the IIP error line', async () => {
    const reply = await request(get().port, `${SCRIPT}?FOO=bar`);
    assert.equal(reply.status, 400);
    assert.equal(reply.body.toString('latin1'), 'Error/7:2 2 FOO\r\n');
  });

  it('a missing image gives 404 without revealing FILESYSTEM_PREFIX', async () => {
    const { port, images } = get();
    const reply = await request(port, `${SCRIPT}?FIF=missing.tif&OBJ=IIP,1.0`);
    assert.equal(reply.status, 404);
    const body = reply.body.toString('latin1');
    assert.ok(!body.includes(images), `404 body reveals the prefix: ${body}`);
    assert.ok(!body.includes(get().dir), `404 body reveals the directory: ${body}`);
  });

  it('URI_MAP path style (/iip/example.tif) reaches iipsrv through the front end', async () => {
    const { port, mtime } = get();
    const reply = await request(port, '/iip/example.tif?OBJ=IIP,1.0');
    assert.equal(reply.status, 200, reply.body.toString());
    assert.deepEqual(reply.body, IIP_BODY);
    // Only a request with the image (FIF) has a Last-Modified: proof that the path became FIF.
    assert.equal(reply.headers['last-modified'], httpDate(mtime));
  });

  it('12 requests at once, each with 5 KB of cookies and 20 more headers, all succeed with the default limits', async () => {
    const { port } = get();
    // Large for a browser, within every front end's own defaults (lighttpd: 8 KB of headers).
    const headers: Record<string, string> = { Cookie: Array.from({ length: 50 }, (_, i) => `c${i}=${'v'.repeat(95)}`).join('; ') };
    for (let i = 0; i < 20; i++) headers[`X-Extra-${i}`] = 'x'.repeat(40);
    const replies = await Promise.all(Array.from({ length: 12 }, () => request(port, `${SCRIPT}?FIF=example.tif&OBJ=IIP,1.0`, { headers })));
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.status, 200, `request ${i}: ${reply.body.toString()}`);
      assert.deepEqual(reply.body, IIP_BODY);
    }
  });

  it('HEAD gives the headers only, with the Content-Length of GET', async () => {
    const { port } = get();
    const url = `${SCRIPT}?FIF=example.tif&OBJ=IIP,1.0`;
    const got = await request(port, url);
    const head = await request(port, url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(got.headers['content-length'], String(IIP_BODY.length));
    assert.equal(head.headers['content-length'], got.headers['content-length']);
    assert.equal(head.headers['content-type'], NETFPX);
    assert.equal(head.headers['last-modified'], got.headers['last-modified']);
  });
}

/** Stops everything of a suite; the last test checks nothing is left. */
async function teardown(setup: Setup | undefined): Promise<void> {
  if (!setup) return;
  await Promise.allSettled([setup.front.stop(), setup.daemon ? stopGroup(setup.daemon) : Promise.resolve()]);
}

function cleanShutdownCheck(get: () => Setup, seen: Set<number>, extra?: () => void): void {
  it('stops cleanly: no iipsrv process (or zombie) left behind', async () => {
    const setup = get();
    track(seen, setup.dir);
    assert.ok(seen.size > 0, 'no iipsrv process was ever seen for this front end');
    extra?.();
    await teardown(setup);
    await expectNoIipsrvLeft(setup.dir, seen);
    removeDir(setup.dir);
  });
}

interface FrontEnd {
  /** Starts the front end (and iipsrv, if the test starts it) in dir, which holds the example image. */
  start(place: { dir: string; images: string; mtime: Date }): Promise<Setup>;
  /** Runs once the suite holds the setup, so that a failing wait still tears it down. */
  ready?(setup: Setup, seen: Set<number>): Promise<void>;
  /** Declares the suite's tests. */
  checks(get: () => Setup, seen: Set<number>): void;
}

/** One front end's suite: set up before its tests in a fresh web temp dir, everything stopped after. */
function frontEndSuite(title: string, skip: string | null, { start, ready, checks }: FrontEnd): void {
  describe(title, { skip: skip ?? false }, () => {
    let setup: Setup | undefined;
    const seen = new Set<number>();
    const get = () => {
      assert.ok(setup, 'set-up failed');
      return setup;
    };
    before(async () => {
      const dir = webTempDir();
      setup = await start({ dir, ...copyExampleImages(dir) });
      await ready?.(setup, seen);
    });
    after(() => teardown(setup));
    checks(get, seen);
  });
}

/** nginx + iipsrv --bind, for the three nginx examples; `env` adds to iipsrv's environment. */
function nginxSuite(
  title: string,
  example: string,
  transport: 'tcp' | 'unix',
  more?: (get: () => Setup, seen: Set<number>) => void,
  extraEnv: Record<string, string> = {},
): void {
  frontEndSuite(title, nginxAvailability().skip, {
    async start({ dir, images, mtime }) {
      const port = await freePort();
      const env = { FILESYSTEM_PREFIX: images, URI_MAP: EXAMPLE_DEFAULTS.uriMap, VERBOSITY: '1', LOGFILE: path.join(dir, 'iipsrv.log'), ...extraEnv };
      let daemon: Started;
      let fastcgiPort: number | undefined;
      let replacements: Replacements;
      if (transport === 'tcp') {
        fastcgiPort = await freePort();
        daemon = await startDaemon(['--bind', `127.0.0.1:${fastcgiPort}`, '--workers', '2'], { env, waitPort: fastcgiPort });
        replacements = nginxSiteReplacements({ port, fastcgiPort });
      } else {
        const socket = path.join(dir, 'iipsrv.sock');
        daemon = await startDaemon(['--bind', socket, '--workers', '1'], { env, waitPath: socket });
        replacements = nginxSiteReplacements({ port, unixSocket: socket });
      }
      try {
        const front = await startNginx({ dir, port, site: renderExample(example, replacements) });
        return { dir, images, mtime, port, front, daemon, fastcgiPort };
      } catch (error) {
        await stopGroup(daemon);
        throw error;
      }
    },
    async ready(setup, seen) {
      track(seen, setup.dir);
    },
    checks(get, seen) {
      commonChecks(get, seen, { serverHeader: true });
      more?.(get, seen);
      cleanShutdownCheck(get, seen, () => {
        const errors = nginxErrors(get().front.errorLog());
        assert.deepEqual(errors, [], `nginx logged errors:\n${errors.join('\n')}`);
      });
    },
  });
}

nginxSuite('nginx → iipsrv --bind 127.0.0.1:PORT (examples/nginx/iipsrv.conf)', 'nginx/iipsrv.conf', 'tcp');

nginxSuite('nginx keep-alive upstream (examples/nginx/iipsrv-keepalive.conf)', 'nginx/iipsrv-keepalive.conf', 'tcp', (get) => {
  it('200 sequential and 20 concurrent requests all succeed over kept connections', async () => {
    const { port, fastcgiPort } = get();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
    try {
      for (let i = 0; i < 200; i++) {
        const reply = await request(port, `${SCRIPT}?FIF=example.tif&OBJ=IIP,1.0`, { agent });
        assert.equal(reply.status, 200, `request ${i}: ${reply.body.toString()}`);
        assert.deepEqual(reply.body, IIP_BODY, `request ${i}`);
      }
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) => request(port, i % 2 ? `${SCRIPT}?FIF=example.tif&OBJ=IIP,1.0` : `/iip/example.tif?OBJ=IIP,1.0`, { agent })),
      );
      for (const [i, reply] of replies.entries()) {
        assert.equal(reply.status, 200, `concurrent request ${i}`);
        assert.deepEqual(reply.body, IIP_BODY, `concurrent request ${i}`);
      }
    } finally {
      agent.destroy();
    }
    // nginx keeps idle FastCGI connections open to iipsrv (and iipsrv does not close them):
    // without fastcgi_keep_conn, or if iipsrv closed after each request, there would be none.
    await new Promise((r) => setTimeout(r, 300));
    const kept = establishedConnectionsTo(fastcgiPort!);
    assert.ok(kept >= 1 && kept <= 16 * 2, `expected kept FastCGI connections, found ${kept}`);
    const errors = nginxErrors(get().front.errorLog());
    assert.deepEqual(errors, [], `nginx logged errors:\n${errors.join('\n')}`);
  });
});

/*
 * iipsrv closing the idle connections of nginx's keep-alive pool (FCGI_IDLE_TIMEOUT, here 2 s
 * against nginx's 60 s keepalive_timeout): nginx watches the connections in its pool for a read
 * event, finds our FIN and closes its end; requests after that open new connections.
 */
nginxSuite(
  'nginx keep-alive upstream across iipsrv idle timeouts (FCGI_IDLE_TIMEOUT=2)',
  'nginx/iipsrv-keepalive.conf',
  'tcp',
  (get) => {
    it('requests succeed before and after each expiry; nginx lets go of every connection iipsrv closed', async () => {
      const { port, fastcgiPort } = get();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
      try {
        for (let round = 0; round < 3; round++) {
          for (let i = 0; i < 20; i++) {
            const reply = await request(port, `${SCRIPT}?FIF=example.tif&OBJ=IIP,1.0`, { agent });
            assert.equal(reply.status, 200, `round ${round}, request ${i}: ${reply.body.toString()}`);
          }
          const replies = await Promise.all(Array.from({ length: 8 }, () => request(port, `/iip/example.tif?OBJ=IIP,1.0`, { agent })));
          assert.deepEqual(
            replies.map((r) => r.status),
            Array(8).fill(200),
            `round ${round}`,
          );
          assert.ok(connectionsTo(fastcgiPort!).established >= 1, `round ${round}: nginx keeps connections`);
          // Past the timeout: iipsrv closed them all, and nginx closed its ends (no CLOSE_WAIT left).
          await waitFor(
            async () => {
              const { established, closeWait } = connectionsTo(fastcgiPort!);
              return established === 0 && closeWait === 0;
            },
            15_000,
            `round ${round}: the idle FastCGI connections to be gone on both sides`,
          );
        }
      } finally {
        agent.destroy();
      }
      const errors = nginxErrors(get().front.errorLog());
      assert.deepEqual(errors, [], `nginx logged errors:\n${errors.join('\n')}`);
    });
  },
  { FCGI_IDLE_TIMEOUT: '2' },
);

nginxSuite('nginx → iipsrv --bind unix socket (examples/nginx/iipsrv-unix-socket.conf)', 'nginx/iipsrv-unix-socket.conf', 'unix');

/*
 * lighttpd restarts a dead bin-path process the moment it reaps it, but first probes the socket:
 * if it still answers (workers that held it and have not noticed yet), lighttpd decides "the
 * socket is already used; won't spawn" and never tries again. On an inherited socket only the
 * primary holds it (server/connection-handoff.ts); the restart checks below prove it.
 */

/** After a kill: the web server serves again, from new iipsrv processes. */
async function expectRestarted(port: number, dir: string, before: number[], seen: Set<number>, front?: WebServer | null): Promise<void> {
  const url = `${SCRIPT}?FIF=example.tif&OBJ=IIP,1.0`;
  // Both start a new process at once (lighttpd) or on the next request (mod_fcgid): seconds at most.
  try {
    await waitFor(async () => (await request(port, url)).status === 200, 8000, 'iipsrv to be started again');
  } catch (error) {
    const log = front?.errorLog().split('\n').slice(-30).join('\n') ?? '';
    throw new Error(`${(error as Error).message}; the web server's log ends:\n${log}`);
  }
  const after = iipsrvProcesses(dir);
  assert.ok(after.length > 0, 'no iipsrv process after the restart');
  assert.ok(
    after.every((p) => !before.includes(p.pid)),
    'the old processes are still serving',
  );
  track(seen, dir);
  const reply = await request(port, url);
  assert.deepEqual(reply.body, IIP_BODY);
}

/**
 * For web servers that start iipsrv themselves (fd 0): kill iipsrv, and the web server must start
 * a new one on the next requests, leaving no orphan behind.
 */
function restartChecks(get: () => Setup, seen: Set<number>, options: { primaryOnlyTodo?: string } = {}): void {
  it('the whole iipsrv process tree killed with SIGKILL: the web server starts a new one', async () => {
    const { port, dir } = get();
    assert.equal((await request(port, `${SCRIPT}?OBJ=IIP,1.0`)).status, 200);
    const before = iipsrvProcesses(dir);
    before.forEach((p) => seen.add(p.pid));
    const primaries = iipsrvPrimaries(dir);
    assert.ok(primaries.length >= 1, 'no iipsrv primary found');
    // Freeze the primaries (no replacement workers), kill the workers, then the primaries.
    const primaryPids = new Set(primaries.map((p) => p.pid));
    for (const pid of primaryPids) process.kill(pid, 'SIGSTOP');
    // Listed again now that the primaries cannot fork: a worker being replaced a moment ago
    // would otherwise survive, holding the socket.
    const workers = iipsrvProcesses(dir).filter((p) => !primaryPids.has(p.pid));
    workers.forEach((p) => seen.add(p.pid));
    for (const p of workers) process.kill(p.pid, 'SIGKILL');
    await waitFor(async () => workers.every((p) => !isRunning(p.pid)), 5000, 'the workers to die');
    for (const pid of primaryPids) process.kill(pid, 'SIGKILL');
    await waitFor(async () => before.every((p) => !isRunning(p.pid)), 5000, 'the primaries to die');
    await expectRestarted(
      port,
      dir,
      before.map((p) => p.pid),
      seen,
      get().front,
    );
  });

  it(
    'the primary alone killed with SIGKILL: its workers exit by themselves, the web server starts a new iipsrv',
    { todo: options.primaryOnlyTodo ?? false },
    async () => {
      const { port, dir } = get();
      assert.equal((await request(port, `${SCRIPT}?OBJ=IIP,1.0`)).status, 200);
      const before = iipsrvProcesses(dir);
      before.forEach((p) => seen.add(p.pid));
      const primaries = iipsrvPrimaries(dir);
      assert.ok(primaries.length >= 1, 'no iipsrv primary found');
      for (const p of primaries) process.kill(p.pid, 'SIGKILL');
      // The orphaned workers notice that the primary is gone and exit (no orphans).
      await waitFor(async () => before.every((p) => !isRunning(p.pid)), 10_000, 'the orphaned workers to exit');
      await expectRestarted(
        port,
        dir,
        before.map((p) => p.pid),
        seen,
        get().front,
      );
    },
  );
}

frontEndSuite('Apache 2.4 + mod_fcgid starting iipsrv on fd 0 (examples/apache/iipsrv.conf)', apacheAvailability().skip ?? apacheUserCannotRunUs(), {
  async start({ dir, images, mtime }) {
    const logs = path.join(dir, 'logs');
    // iipsrv runs as www-data under Apache: its log directory must be writable by it.
    mkdirSync(logs);
    chmodSync(logs, 0o777);
    const port = await freePort();
    const site = renderExample('apache/iipsrv.conf', apacheSiteReplacements({ images, logFile: path.join(logs, 'iipsrv.log') }));
    const front = await startApache({ dir, port, site });
    return { dir, images, mtime, port, front, daemon: null };
  },
  checks(get, seen) {
    commonChecks(get, seen, { serverHeader: false });
    it('iipsrv runs with the FcgidWrapper arguments and the FcgidInitialEnv environment', () => {
      const { dir, images } = get();
      const processes = iipsrvProcesses(dir);
      assert.ok(processes.length > 0);
      for (const p of processes) {
        assert.match(p.cmdline, /--workers 1\b/);
        assert.ok(p.environ.split('\n').includes(`FILESYSTEM_PREFIX=${images}`));
        assert.ok(p.environ.split('\n').includes('MEMCACHED_SERVERS='));
      }
      // One primary per mod_fcgid process, each with a single worker.
      const primaries = iipsrvPrimaries(dir);
      assert.equal(processes.length, primaries.length * 2);
    });
    restartChecks(get, seen);
    cleanShutdownCheck(get, seen);
  },
});

frontEndSuite('lighttpd starting iipsrv with bin-path (examples/lighttpd/iipsrv.conf)', lighttpdAvailability().skip, {
  async start({ dir, images, mtime }) {
    const port = await freePort();
    const site = renderExample(
      'lighttpd/iipsrv.conf',
      lighttpdSiteReplacements({ images, logFile: path.join(dir, 'iipsrv.log'), socket: path.join(dir, 'iipsrv.sock') }),
    );
    // Its backend decisions (spawns, probes) in the error log, for a failing restart check.
    const front = await startLighttpd({ dir, port, site: `${site}\nfastcgi.debug = 1\n` });
    return { dir, images, mtime, port, front, daemon: null };
  },
  async ready({ dir }, seen) {
    // lighttpd starts its bin-path programs at start-up: one iipsrv for the three prefixes.
    await waitFor(async () => iipsrvPrimaries(dir).length === 1, 10_000, 'lighttpd to start iipsrv');
    track(seen, dir);
  },
  checks(get, seen) {
    commonChecks(get, seen, { serverHeader: true });
    it('one iipsrv serves every prefix (max-procs 1, shared socket)', () => {
      assert.equal(iipsrvPrimaries(get().dir).length, 1);
    });
    restartChecks(get, seen);
    cleanShutdownCheck(get, seen);
  },
});

frontEndSuite('spawn-fcgi -n starting iipsrv on fd 0, nginx in front (examples/spawn-fcgi/)', spawnFcgiAvailability().skip ?? nginxAvailability().skip, {
  async start({ dir, images, mtime }) {
    const [port, fastcgiPort] = [await freePort(), await freePort()];
    const script = renderExample(
      'spawn-fcgi/iipsrv-spawn-fcgi.sh',
      spawnFcgiReplacements({ port: fastcgiPort, images, logFile: path.join(dir, 'iipsrv.log') }),
    );
    const daemon = await startSpawnFcgi({ dir, port: fastcgiPort, script });
    try {
      const front = await startNginx({ dir, port, site: renderExample('nginx/iipsrv.conf', nginxSiteReplacements({ port, fastcgiPort })) });
      return { dir, images, mtime, port, front, daemon, fastcgiPort };
    } catch (error) {
      await stopGroup(daemon);
      throw error;
    }
  },
  checks(get, seen) {
    commonChecks(get, seen, { serverHeader: true });
    it('spawn-fcgi became iipsrv (same pid) and iipsrv serves the socket it was given', () => {
      const { dir, daemon } = get();
      const primaries = iipsrvPrimaries(dir);
      assert.deepEqual(
        primaries.map((p) => p.pid),
        [daemon!.child.pid],
      );
      assert.match(primaries[0]!.cmdline, /bin\/iipsrv --workers 1$/);
    });
    it('iipsrv killed with SIGKILL: its workers exit too (nothing restarts it under spawn-fcgi -n)', async () => {
      const { dir, daemon, port } = get();
      const before = iipsrvProcesses(dir);
      before.forEach((p) => seen.add(p.pid));
      assert.ok(before.length >= 2, 'expected a primary and a worker');
      process.kill(daemon!.child.pid!, 'SIGKILL');
      const { signal } = await daemon!.exited;
      assert.equal(signal, 'SIGKILL');
      await waitFor(async () => before.every((p) => !processExists(p.pid)), 10_000, 'the workers to exit');
      // nginx now has nobody to talk to.
      assert.equal((await request(port, `${SCRIPT}?OBJ=IIP,1.0`)).status, 502);
    });
    cleanShutdownCheck(get, seen);
  },
});
