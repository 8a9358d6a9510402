/**
 * The Dockerfile, built and run for real with buildah (no Docker engine here): a minimal Debian of
 * this machine's release made by debootstrap, with this machine's Node.js and CA bundle, is
 * imported as the base image (localhost/iipsrv-test-base), the Dockerfile is built on it with
 * `--build-arg BASE_IMAGE=...`, and the image's own ENTRYPOINT and CMD run in a network namespace
 * of this test's, as the image's user, with a folder of images mounted at /images. Real requests
 * (HTTP and FastCGI, from inside that namespace) must get an info.json and tiles from the mounted
 * folder, the same bytes as this checkout's own server gives, also through nginx with
 * examples/compose/nginx.conf; the image's HEALTHCHECK must pass while it serves and fail once it
 * has stopped; SIGTERM must stop it with status 0.
 *
 * Run time: the first run takes some minutes (here 2 min 22 s: debootstrap 54 s, the image build
 * 61 s with apt-get and npm ci inside it); the debootstrap tree is kept in $TMPDIR (keyed by
 * release), the base image and the build's layers in buildah's storage (npm ci in a layer of its
 * own), so later runs take 40–50 s here with nothing changed, about 90 s after a change of the
 * sources, and only a change of package.json or the lock file runs npm ci again. Skips, saying why,
 * without root, buildah, debootstrap or ip; the nginx check skips without nginx.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ROOT, startDaemon, tempDir, which } from '../helpers/daemon.ts';
import { freePort, startProgram, waitFor, type Exit, type Started } from '../helpers/processes.ts';

const NODE_DIR = path.dirname(path.dirname(process.execPath)); // /usr for /usr/bin/node
const NPM_DIR = [path.join(NODE_DIR, 'lib/node_modules/npm'), '/usr/lib/node_modules/npm', '/usr/local/lib/node_modules/npm'].find((dir) =>
  existsSync(path.join(dir, 'bin/npm-cli.js')),
);
const CA_BUNDLE =
  process.env.NODE_EXTRA_CA_CERTS && existsSync(process.env.NODE_EXTRA_CA_CERTS) ? process.env.NODE_EXTRA_CA_CERTS : '/etc/ssl/certs/ca-certificates.crt';

function osRelease(): string | null {
  try {
    return /^VERSION_CODENAME=(\w+)$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}
const RELEASE = osRelease();

function skipReason(): string | false {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return 'needs root on Linux (buildah, debootstrap, ip netns)';
  for (const [program, pkg] of [
    ['buildah', 'buildah'],
    ['debootstrap', 'debootstrap'],
    ['ip', 'iproute2'],
  ]) {
    if (!which(program!)) return `${program} not installed (apt-get install ${pkg})`;
  }
  if (!RELEASE) return 'no VERSION_CODENAME in /etc/os-release: cannot tell which Debian release to debootstrap';
  if (!NPM_DIR) return 'npm is not installed beside node: the base image needs both';
  if (!existsSync(CA_BUNDLE)) return `no CA bundle at ${CA_BUNDLE}`;
  return false;
}

/** Runs a command to its end, its output kept; throws with the output's tail when it fails. */
function run(
  command: string,
  args: string[],
  options: { timeoutMs?: number; allowFail?: boolean; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0 && !options.allowFail) {
        reject(new Error(`${command} ${args.join(' ').slice(0, 300)} exited ${code}:\n${(stdout + stderr).slice(-4000)}`));
      } else resolve({ code, stdout, stderr });
    });
  });
}

/** The Debian mirror apt uses here (debootstrap and the images' apt-get need the same). */
function debianMirror(): string {
  const files = ['/etc/apt/sources.list'];
  try {
    files.push(...readdirSync('/etc/apt/sources.list.d').map((name) => path.join('/etc/apt/sources.list.d', name)));
  } catch {
    // no such folder
  }
  for (const file of files) {
    try {
      const found = /(https?:\/\/[^\s]+\/debian)\/?(?=\s)/.exec(readFileSync(file, 'utf8'));
      if (found) return found[1]!;
    } catch {
      // unreadable
    }
  }
  return 'http://deb.debian.org/debian';
}

async function imageExists(name: string): Promise<boolean> {
  return (await run('buildah', ['inspect', '--type', 'image', name], { allowFail: true })).code === 0;
}

/**
 * localhost/iipsrv-test-base:<release>-node<version>-<CA digest>: debootstrap's minimal Debian (kept
 * in $TMPDIR between runs), this machine's node and npm in /usr/local, its CA bundle for npm's
 * HTTPS (NODE_EXTRA_CA_CERTS: only the test's base has it, never the Dockerfile).
 */
async function ensureBaseImage(): Promise<{ name: string; made: string }> {
  const ca = readFileSync(CA_BUNDLE);
  const name = `localhost/iipsrv-test-base:${RELEASE}-node${process.versions.node}-${createHash('sha256').update(ca).digest('hex').slice(0, 8)}`;
  if (await imageExists(name)) return { name, made: 'cached' };
  const mirror = debianMirror();
  const rootfs = path.join(os.tmpdir(), `iipsrv-test-debootstrap-${RELEASE}`);
  const complete = path.join(os.tmpdir(), `iipsrv-test-debootstrap-${RELEASE}.complete`);
  let made = 'debootstrap tree cached';
  if (!existsSync(complete)) {
    rmSync(rootfs, { recursive: true, force: true });
    await run('debootstrap', ['--variant=minbase', RELEASE!, rootfs, mirror], { timeoutMs: 15 * 60_000 });
    writeFileSync(complete, `${mirror}\n`);
    made = 'debootstrap run';
  }
  const container = (await run('buildah', ['from', 'scratch'])).stdout.trim();
  try {
    const mount = (await run('buildah', ['mount', container])).stdout.trim();
    await run('cp', ['-a', `${rootfs}/.`, `${mount}/`], { timeoutMs: 5 * 60_000 });
    rmSync(path.join(mount, 'var/cache/apt/archives'), { recursive: true, force: true });
    mkdirSync(path.join(mount, 'var/cache/apt/archives/partial'), { recursive: true });
    const suite = (s: string) => `deb ${mirror} ${s} main\n`;
    writeFileSync(
      path.join(mount, 'etc/apt/sources.list'),
      suite(RELEASE!) + suite(`${RELEASE}-updates`) + `deb ${mirror}-security ${RELEASE}-security main\n`,
    );
    copyFileSync(process.execPath, path.join(mount, 'usr/local/bin/node'));
    mkdirSync(path.join(mount, 'usr/local/lib/node_modules'), { recursive: true });
    await run('cp', ['-a', NPM_DIR!, path.join(mount, 'usr/local/lib/node_modules/')]);
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(mount, 'usr/local/bin/npm'));
    symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', path.join(mount, 'usr/local/bin/npx'));
    mkdirSync(path.join(mount, 'usr/local/share/iipsrv-test-ca'), { recursive: true });
    writeFileSync(path.join(mount, 'usr/local/share/iipsrv-test-ca/ca-certificates.crt'), ca);
    await run('buildah', ['umount', container]);
    await run('buildah', [
      'config',
      '--env',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--env',
      'NODE_EXTRA_CA_CERTS=/usr/local/share/iipsrv-test-ca/ca-certificates.crt',
      '--cmd',
      'node',
      container,
    ]);
    await run('buildah', ['commit', '--quiet', container, name], { timeoutMs: 5 * 60_000 });
  } finally {
    await run('buildah', ['rm', container], { allowFail: true });
  }
  return { name, made };
}

interface DockerConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  ExposedPorts?: Record<string, unknown>;
  Healthcheck?: { Test?: string[] };
}

const NETNS = `iipsrv-ct-${process.pid}`;
const CONTAINER = `iipsrv-ct-${process.pid}`;
/**
 * A second container of the image for the healthcheck, in the same network namespace, as Docker
 * runs it beside the server: a second `buildah run` in the server's own container unmounts its
 * root when it ends, under the server's feet (buildah 1.28 then panics when the server exits).
 */
const CHECKER = `iipsrv-ct-check-${process.pid}`;
const IMAGE = 'localhost/iipsrv-ts-test:latest';

/** A node script run inside the test's network namespace (where the container's ports are). */
async function inNamespace(script: string, args: string[]): Promise<string> {
  return (
    await run('ip', ['netns', 'exec', NETNS, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script, ...args], {
      timeoutMs: 60_000,
      cwd: ROOT,
    })
  ).stdout;
}

const HTTP_GET = `
const response = await fetch(process.argv[1]);
const body = Buffer.from(await response.arrayBuffer());
process.stdout.write(JSON.stringify({ status: response.status, type: response.headers.get('content-type'), body: body.toString('base64') }));`;

async function httpGet(url: string): Promise<{ status: number; type: string | null; body: Buffer }> {
  const out = JSON.parse(await inNamespace(HTTP_GET, [url])) as { status: number; type: string | null; body: string };
  return { ...out, body: Buffer.from(out.body, 'base64') };
}

const FASTCGI_GET = `
const { FastCgiTestClient, fullRequest, parseCgiResponse } = await import(${JSON.stringify(path.join(ROOT, 'test/helpers/fastcgi-client.ts'))});
const [port, query] = [Number(process.argv[1]), process.argv[2]];
const client = await FastCgiTestClient.connect({ port });
client.socket.write(fullRequest(1, { params: { REQUEST_METHOD: 'GET', QUERY_STRING: query, REQUEST_URI: '/fcgi-bin/iipsrv.fcgi?' + query, SCRIPT_NAME: '/fcgi-bin/iipsrv.fcgi', SERVER_NAME: 'localhost', SERVER_PORT: '80' } }));
const reply = await client.waitForEnd(1);
const cgi = parseCgiResponse(reply.stdout);
process.stdout.write(JSON.stringify({ status: cgi.status, body: cgi.body.toString('base64') }));
client.socket.destroy();`;

async function fastcgiGet(port: number, query: string): Promise<{ status: string; body: Buffer }> {
  const out = JSON.parse(await inNamespace(FASTCGI_GET, [String(port), query])) as { status: string; body: string };
  return { ...out, body: Buffer.from(out.body, 'base64') };
}

/** Processes in the test's network namespace: the container's, and nothing else. */
function namespacePids(): number[] {
  const listed = spawnSync('ip', ['netns', 'pids', NETNS], { encoding: 'utf8' });
  return listed.stdout.split(/\s+/).filter(Boolean).map(Number);
}

function procField(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return '';
  }
}

/** The server's primary process: a node in the namespace whose parent is not a node. */
function serverPrimary(): number | undefined {
  return namespacePids().find((pid) => {
    if (procField(pid, 'comm').trim() !== 'node') return false;
    const parent = Number(/^PPid:\s+(\d+)$/m.exec(procField(pid, 'status'))?.[1]);
    return procField(parent, 'comm').trim() !== 'node';
  });
}

describe('the container image (Dockerfile, built and run with buildah)', { skip: skipReason(), timeout: 40 * 60_000 }, () => {
  let config: DockerConfig;
  let server: Started;
  let host: Started;
  let hostPort: number;
  let imagesDir: string;
  let stopped: Exit | null = null;
  const timings: string[] = [];
  const healthcheck = async (): Promise<number | null> => {
    const test = config.Healthcheck!.Test!;
    assert.equal(test[0], 'CMD');
    return (
      await run('ip', ['netns', 'exec', NETNS, 'buildah', 'run', '--isolation', 'chroot', CHECKER, '--', ...test.slice(1)], {
        allowFail: true,
        timeoutMs: 60_000,
      })
    ).code;
  };

  before(
    async () => {
      let t = performance.now();
      const lap = (what: string) => {
        timings.push(`${what} ${((performance.now() - t) / 1000).toFixed(1)} s`);
        t = performance.now();
      };
      const base = await ensureBaseImage();
      lap(`base image (${base.made})`);
      const imageId = async () => (await run('buildah', ['images', '--quiet', '--no-trunc', IMAGE], { allowFail: true })).stdout.trim();
      const previous = await imageId();
      await run(
        'buildah',
        [
          'build',
          '--isolation',
          'chroot',
          '--format',
          'docker',
          '--layers',
          '--build-arg',
          `BASE_IMAGE=${base.name}`,
          '-t',
          IMAGE,
          '-f',
          path.join(ROOT, 'Dockerfile'),
          ROOT,
        ],
        { timeoutMs: 30 * 60_000 },
      );
      lap('buildah build');
      // The image this one replaces, left untagged, is dropped (the build's layer cache is kept;
      // `buildah rmi --prune` clears that too).
      if (previous && previous !== (await imageId())) await run('buildah', ['rmi', previous], { allowFail: true });
      const inspected = JSON.parse((await run('buildah', ['inspect', '--type', 'image', IMAGE])).stdout) as { Docker: { config: DockerConfig } };
      config = inspected.Docker.config;

      // Images that exist only in this folder, mounted where the image says images go.
      imagesDir = tempDir('iipsrv-container-images-');
      chmodSync(imagesDir, 0o755);
      for (const [from, to] of [
        ['example.tif', 'mounted-only.tif'],
        ['example.jp2', 'mounted-only.jp2'],
      ]) {
        copyFileSync(path.join(ROOT, 'examples/images', from!), path.join(imagesDir, to!));
        chmodSync(path.join(imagesDir, to!), 0o644);
      }

      await run('ip', ['netns', 'add', NETNS]);
      await run('ip', ['netns', 'exec', NETNS, 'ip', 'link', 'set', 'lo', 'up']);
      await run('buildah', ['from', '--name', CONTAINER, IMAGE]);
      await run('buildah', ['from', '--name', CHECKER, IMAGE]);
      server = startProgram(
        'ip',
        [
          'netns',
          'exec',
          NETNS,
          'buildah',
          'run',
          '--isolation',
          'chroot',
          '--volume',
          `${imagesDir}:/images:ro`,
          CONTAINER,
          '--',
          ...config.Entrypoint!,
          ...(config.Cmd ?? []),
        ],
        {},
      );
      await waitFor(async () => !server.alive() || server.stderr().includes('"msg":"ready"'), 60_000, 'the container to log "ready"');
      assert.ok(server.alive(), `the container exited:\n${server.stderr().slice(-3000)}`);
      lap('container start');

      // This checkout's own server on the host, on the same files: the reference for the bytes.
      hostPort = await freePort();
      host = await startDaemon(['--http', `127.0.0.1:${hostPort}`, '--workers', '1'], { env: { FILESYSTEM_PREFIX: `${imagesDir}/` }, waitPort: hostPort });
    },
    { timeout: 40 * 60_000 },
  );

  after(async () => {
    if (timings.length) process.stderr.write(`container test: ${timings.join(', ')}\n`);
    await host?.stop();
    const primary = server?.alive() ? serverPrimary() : undefined;
    if (primary) process.kill(primary, 'SIGTERM');
    if (server?.alive()) await Promise.race([server.exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    for (const pid of namespacePids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await run('buildah', ['rm', CONTAINER, CHECKER], { allowFail: true });
    await run('ip', ['netns', 'del', NETNS], { allowFail: true });
  });

  it('is configured as documented: non-root, iipsrv on the PATH, both ports, /images, a healthcheck', () => {
    assert.equal(config.User, '10001:10001');
    assert.deepEqual(config.Entrypoint, ['iipsrv']);
    assert.deepEqual(config.Cmd, ['--bind', '0.0.0.0:9000', '--http', '0.0.0.0:8080']);
    assert.deepEqual(Object.keys(config.ExposedPorts ?? {}).sort(), ['8080/tcp', '9000/tcp']);
    assert.ok(config.Env?.includes('FILESYSTEM_PREFIX=/images/'), `${config.Env}`);
    assert.ok(config.Healthcheck?.Test?.length, 'no HEALTHCHECK');
    // The running server (primary and workers) is the image's user, not root.
    const nodes = namespacePids().filter((pid) => procField(pid, 'comm').trim() === 'node');
    assert.ok(nodes.length >= 2, `expected a primary and a worker, found ${nodes.length}`);
    for (const pid of nodes) assert.match(procField(pid, 'status'), /^Uid:\s+10001\s+10001\s/m);
  });

  it('serves info.json of an image that is only in the mounted folder, over HTTP', async () => {
    const info = await httpGet('http://127.0.0.1:8080/?IIIF=mounted-only.tif/info.json');
    assert.equal(info.status, 200, info.body.toString());
    const json = JSON.parse(info.body.toString()) as { width: number; height: number; type: string; id: string };
    assert.equal(json.type, 'ImageService3');
    assert.deepEqual([json.width, json.height], [1200, 800]);
    assert.equal(json.id, 'http://127.0.0.1:8080/?IIIF=mounted-only.tif');
    const missing = await httpGet('http://127.0.0.1:8080/?IIIF=example.tif/info.json');
    assert.equal(missing.status, 404, 'an image that is not in the mounted folder');
  });

  it('serves tiles from TIFF and JPEG2000 (helper) byte for byte as this checkout does, and writes JPEG2000', async () => {
    for (const query of [
      'IIIF=mounted-only.tif/256,256,256,256/256,/0/default.jpg',
      'IIIF=mounted-only.jp2/0,0,512,512/256,/0/default.jpg',
      'IIIF=mounted-only.tif/0,0,256,256/256,/0/default.jp2',
      'FIF=mounted-only.tif&JTL=2,3',
    ]) {
      const tile = await httpGet(`http://127.0.0.1:8080/?${query}`);
      assert.equal(tile.status, 200, `${query}: ${tile.body.toString().slice(0, 300)}`);
      const reference = Buffer.from(await (await fetch(`http://127.0.0.1:${hostPort}/?${query}`)).arrayBuffer());
      assert.ok(tile.body.length > 500, `${query}: ${tile.body.length} bytes`);
      assert.ok(tile.body.equals(reference), `${query}: ${tile.body.length} bytes from the container, ${reference.length} from the host`);
    }
    const jpeg = await httpGet('http://127.0.0.1:8080/?IIIF=mounted-only.jp2/0,0,512,512/256,/0/default.jpg');
    assert.equal(jpeg.type, 'image/jpeg');
    const meta = await sharp(jpeg.body).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 256, 256]);
    const jp2 = await httpGet('http://127.0.0.1:8080/?IIIF=mounted-only.tif/0,0,256,256/256,/0/default.jp2');
    assert.ok(jp2.body.subarray(0, 12).equals(Buffer.from('0000000c6a5020200d0a870a', 'hex')), 'a JP2 signature box');
  });

  it('answers FastCGI on its port as nginx would ask', async () => {
    const obj = await fastcgiGet(9000, 'FIF=mounted-only.tif&OBJ=Max-size');
    assert.match(obj.status, /^200/);
    assert.match(obj.body.toString(), /Max-size:1200 800/);
    const tile = await fastcgiGet(9000, 'IIIF=mounted-only.tif/256,256,256,256/256,/0/default.jpg');
    const reference = Buffer.from(await (await fetch(`http://127.0.0.1:${hostPort}/?IIIF=mounted-only.tif/256,256,256,256/256,/0/default.jpg`)).arrayBuffer());
    assert.ok(tile.body.equals(reference), 'the same tile over FastCGI');
  });

  it(
    "serves through nginx with examples/compose/nginx.conf (upstream pointed at it), as compose's front end",
    { skip: which('nginx') ? false : 'nginx not installed (apt-get install nginx)' },
    async () => {
      // The compose file's nginx.conf with its three upstream servers all this container, its
      // listener on the namespace's loopback, and the fastcgi params file beside it.
      const dir = tempDir('iipsrv-container-nginx-');
      chmodSync(dir, 0o755);
      mkdirSync(path.join(dir, 'tmp'));
      copyFileSync(path.join(ROOT, 'examples/nginx/iipsrv_fastcgi_params'), path.join(dir, 'iipsrv_fastcgi_params'));
      let site = readFileSync(path.join(ROOT, 'examples/compose/nginx.conf'), 'utf8');
      assert.ok(site.includes('listen 80;'));
      site = site.replace('listen 80;', 'listen 127.0.0.1:8088;').replace(/server iipsrv\d+:9000;/g, 'server 127.0.0.1:9000;');
      writeFileSync(path.join(dir, 'site.conf'), site);
      const temp = (name: string) => `${name}_temp_path ${path.join(dir, 'tmp', name)};`;
      const errorLog = path.join(dir, 'error.log');
      writeFileSync(
        path.join(dir, 'nginx.conf'),
        `daemon off;\nworker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${errorLog} info;\nevents { worker_connections 64; }\n` +
          `http {\n  access_log off;\n  ${temp('client_body')} ${temp('fastcgi')} ${temp('proxy')} ${temp('uwsgi')} ${temp('scgi')}\n  include ${dir}/site.conf;\n}\n`,
      );
      const nginx = startProgram('ip', ['netns', 'exec', NETNS, which('nginx')!, '-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', errorLog]);
      try {
        await waitFor(
          async () => !nginx.alive() || (await httpGet('http://127.0.0.1:8088/fcgi-bin/iipsrv.fcgi?OBJ=IIP,1.0')).status === 200,
          20_000,
          'nginx in the namespace',
        );
        assert.ok(nginx.alive(), nginx.stderr());
        const info = await httpGet('http://127.0.0.1:8088/fcgi-bin/iipsrv.fcgi?IIIF=mounted-only.tif/info.json');
        assert.equal(info.status, 200, info.body.toString());
        assert.equal((JSON.parse(info.body.toString()) as { id: string }).id, 'http://127.0.0.1:8088/fcgi-bin/iipsrv.fcgi?IIIF=mounted-only.tif');
        const query = 'IIIF=mounted-only.tif/256,256,256,256/256,/0/default.jpg';
        const tile = await httpGet(`http://127.0.0.1:8088/fcgi-bin/iipsrv.fcgi?${query}`);
        const reference = Buffer.from(await (await fetch(`http://127.0.0.1:${hostPort}/?${query}`)).arrayBuffer());
        assert.equal(tile.status, 200);
        assert.ok(tile.body.equals(reference), 'the same tile through nginx');
      } finally {
        await nginx.stop();
      }
    },
  );

  it('passes its HEALTHCHECK while serving, and SIGTERM stops it with status 0; the check then fails', async () => {
    assert.equal(await healthcheck(), 0);
    const primary = serverPrimary();
    assert.ok(primary, 'the server process in the namespace');
    process.kill(primary, 'SIGTERM');
    stopped = await Promise.race([server.exited, new Promise<Exit>((resolve) => setTimeout(() => resolve({ code: null, signal: null }), 20_000))]);
    assert.deepEqual(stopped, { code: 0, signal: null }, server.stderr().slice(-2000));
    assert.notEqual(await healthcheck(), 0, 'the healthcheck must fail with nothing listening');
  });
});

describe('examples/compose (not run here: no container engine)', () => {
  it("nginx.conf is examples/nginx/iipsrv-keepalive.conf's server block, its upstream the compose file's iipsrv services", () => {
    const serverBlock = (file: string) => /^server \{[\s\S]*^\}$/m.exec(readFileSync(path.join(ROOT, file), 'utf8'))?.[0];
    const tested = serverBlock('examples/nginx/iipsrv-keepalive.conf');
    assert.ok(tested, 'no server block in the tested configuration');
    assert.equal(serverBlock('examples/compose/nginx.conf'), tested);
    const compose = readFileSync(path.join(ROOT, 'examples/compose/compose.yaml'), 'utf8');
    const services = [...compose.matchAll(/^ {2}(iipsrv\d+): \*iipsrv$/gm)].map((m) => `${m[1]}:9000`);
    const upstream = /^upstream iipsrv \{([\s\S]*?)^\}$/m.exec(readFileSync(path.join(ROOT, 'examples/compose/nginx.conf'), 'utf8'))?.[1] ?? '';
    assert.deepEqual(
      [...upstream.matchAll(/^\s+server (\S+);$/gm)].map((m) => m[1]),
      services,
    );
    assert.ok(services.length >= 2);
    // The same ports, mount and healthcheck port as the tested image.
    assert.match(compose, /"--bind", "0\.0\.0\.0:9000", "--http", "0\.0\.0\.0:8080"/);
    assert.match(compose, /:\/images:ro$/m);
    assert.match(compose, /MEMCACHED_SERVERS: memcached:11211/);
  });
});
