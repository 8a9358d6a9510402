/**
 * Real web servers in front of iipsrv, started on loopback in a temporary directory with the
 * configurations users copy from examples/ (rendered with the test's ports and paths): nginx,
 * Apache with mod_fcgid, lighttpd, and iipsrv under spawn-fcgi. Nothing here touches the system's
 * own web-server configuration, logs or services.
 *
 *   const dir = webTempDir();
 *   const site = renderExample('nginx/iipsrv.conf', nginxSiteReplacements({ port, fastcgi: ... }));
 *   const nginx = await startNginx({ dir, port, site });
 *   ... await nginx.stop();
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { BIN, ROOT, tempDir, testEnv, which } from './daemon.ts';
import {
  freePort,
  listProcesses,
  processExists,
  processInfo,
  startProgram,
  stopGroup,
  waitFor,
  waitUntilListening,
  type ProcessInfo,
  type Started,
} from './processes.ts';

export const EXAMPLES = path.join(ROOT, 'examples');
export const EXAMPLE_IMAGES = path.join(EXAMPLES, 'images');

/** The values the example files use, which the tests replace with their own. */
export const EXAMPLE_DEFAULTS = {
  /** `npm install -g` puts the command here. */
  program: '/usr/local/bin/iipsrv',
  fastcgiTcp: '127.0.0.1:9000',
  unixSocket: '/run/iipsrv/iipsrv.sock',
  lighttpdSocket: '/run/lighttpd/iipsrv.sock',
  images: '/var/www/images/',
  logFile: '/var/log/iipsrv/iipsrv.log',
  memcached: 'localhost:11211',
  nginxListen: 'listen 80;',
  uriMap: 'iiif=>IIIF iip=>IIP',
} as const;

export type Replacements = Array<[from: string, to: string]>;

/**
 * An example file with some literal strings replaced. Every string to replace must occur in the
 * file, so that an edited example cannot silently drift away from what the tests run.
 */
export function renderExample(relativePath: string, replacements: Replacements): string {
  const file = path.join(EXAMPLES, relativePath);
  let text = readFileSync(file, 'utf8');
  for (const [from, to] of replacements) {
    if (!text.includes(from)) throw new Error(`${relativePath} no longer contains "${from}"; update the test templates`);
    text = text.split(from).join(to);
  }
  return text;
}

/** A temporary directory others (Apache's www-data, nginx's nobody) can enter; removed at exit. */
export function webTempDir(prefix = 'iipsrv-web-'): string {
  const dir = tempDir(prefix);
  chmodSync(dir, 0o755);
  return dir;
}

/** A copy of the example image in `<dir>/images/`, so that FILESYSTEM_PREFIX names this test only. */
export function copyExampleImages(dir: string): { images: string; mtime: Date } {
  const images = path.join(dir, 'images') + '/';
  mkdirSync(images, { recursive: true });
  chmodSync(images, 0o755);
  copyFileSync(path.join(EXAMPLE_IMAGES, 'example.tif'), path.join(images, 'example.tif'));
  chmodSync(path.join(images, 'example.tif'), 0o644);
  return { images, mtime: statSync(path.join(images, 'example.tif')).mtime };
}

/** An HTTP date of a file time, as Last-Modified carries it (whole seconds). */
export function httpDate(date: Date): string {
  return new Date(Math.floor(date.getTime() / 1000) * 1000).toUTCString();
}

// ---------------------------------------------------------------------------------------------
// Which web servers are here.

export interface Availability {
  /** The program's path, or null. */
  path: string | null;
  /** Why a test must skip, naming the Debian package; null when everything is there. */
  skip: string | null;
}

export function nginxAvailability(): Availability {
  const found = which('nginx');
  return { path: found, skip: found ? null : 'nginx not installed (apt-get install nginx)' };
}

export const APACHE_MODULES = '/usr/lib/apache2/modules';

export function apacheAvailability(): Availability {
  const found = which('apache2');
  if (!found) return { path: null, skip: 'apache2 not installed (apt-get install apache2 libapache2-mod-fcgid)' };
  if (!existsSync(path.join(APACHE_MODULES, 'mod_fcgid.so'))) {
    return { path: found, skip: 'mod_fcgid not installed (apt-get install libapache2-mod-fcgid)' };
  }
  return { path: found, skip: null };
}

export function lighttpdAvailability(): Availability {
  const found = which('lighttpd');
  return { path: found, skip: found ? null : 'lighttpd not installed (apt-get install lighttpd)' };
}

export function spawnFcgiAvailability(): Availability {
  const found = which('spawn-fcgi');
  return { path: found, skip: found ? null : 'spawn-fcgi not installed (apt-get install spawn-fcgi)' };
}

/** The unprivileged user Apache switches to when started as root. */
export function apacheUser(): { user: string; group: string } | null {
  if (process.getuid?.() !== 0) return null;
  const passwd = readFileSync('/etc/passwd', 'utf8');
  const groups = readFileSync('/etc/group', 'utf8');
  const has = (db: string, name: string) => db.split('\n').some((line) => line.startsWith(`${name}:`));
  if (has(passwd, 'www-data')) return { user: 'www-data', group: has(groups, 'www-data') ? 'www-data' : 'nogroup' };
  return { user: 'nobody', group: has(groups, 'nogroup') ? 'nogroup' : 'nobody' };
}

/**
 * mod_fcgid starts iipsrv as Apache's user: can that user run node and read the checkout?
 * Returns a reason to skip, or null.
 */
export function apacheUserCannotRunUs(): string | null {
  const account = apacheUser();
  if (account === null) return null;
  const runuser = which('runuser');
  if (!runuser) return null;
  const result = spawnSync(runuser, ['-u', account.user, '--', process.execPath, BIN, '--version'], {
    encoding: 'utf8',
    timeout: 15_000,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  if (result.status === 0) return null;
  return (
    `Apache's user ${account.user} cannot run ${BIN} (${(result.stderr || result.error?.message || '').trim()}); ` +
    `make ${ROOT} and its parent directories readable and searchable by others (chmod o+rx)`
  );
}

// ---------------------------------------------------------------------------------------------
// Running web servers.

export interface WebServer {
  name: 'nginx' | 'apache' | 'lighttpd';
  port: number;
  dir: string;
  process: Started;
  errorLogPath: string;
  errorLog(): string;
  /** SIGTERM, wait for the exit (the server stops what it started), then SIGKILL what is left of its group. */
  stop(): Promise<void>;
}

function readIfExists(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function webServer(name: WebServer['name'], dir: string, port: number, started: Started, errorLogPath: string): WebServer {
  return {
    name,
    port,
    dir,
    process: started,
    errorLogPath,
    errorLog: () => readIfExists(errorLogPath),
    stop: () => stopGroup(started),
  };
}

export interface NginxOptions {
  dir: string;
  port: number;
  /** A rendered server block (and upstream) from examples/nginx/. */
  site: string;
  workerProcesses?: number;
}

/** Replacements that turn an examples/nginx file into one for this test. */
export function nginxSiteReplacements(options: { port: number; fastcgiPort?: number; unixSocket?: string }): Replacements {
  const list: Replacements = [[EXAMPLE_DEFAULTS.nginxListen, `listen 127.0.0.1:${options.port};`]];
  if (options.fastcgiPort !== undefined) list.push([EXAMPLE_DEFAULTS.fastcgiTcp, `127.0.0.1:${options.fastcgiPort}`]);
  if (options.unixSocket !== undefined) list.push([EXAMPLE_DEFAULTS.unixSocket, options.unixSocket]);
  return list;
}

/**
 * nginx in the foreground (daemon off, its own prefix, pid, logs and temp paths in dir), with the
 * site file and examples/nginx/iipsrv_fastcgi_params next to its nginx.conf.
 */
export async function startNginx(options: NginxOptions): Promise<WebServer> {
  const nginx = which('nginx');
  if (!nginx) throw new Error('nginx not installed (apt-get install nginx)');
  const dir = path.join(options.dir, 'nginx');
  mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  chmodSync(dir, 0o755);
  const errorLog = path.join(dir, 'error.log');
  copyFileSync(path.join(EXAMPLES, 'nginx/iipsrv_fastcgi_params'), path.join(dir, 'iipsrv_fastcgi_params'));
  writeFileSync(path.join(dir, 'site.conf'), options.site);
  const temp = (name: string) => `${name}_temp_path ${path.join(dir, 'tmp', name)};`;
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    [
      'daemon off;',
      'master_process on;',
      `worker_processes ${options.workerProcesses ?? 1};`,
      `pid ${path.join(dir, 'nginx.pid')};`,
      `error_log ${errorLog} info;`,
      'events { worker_connections 512; }',
      'http {',
      `    access_log ${path.join(dir, 'access.log')};`,
      `    ${temp('client_body')} ${temp('fastcgi')} ${temp('proxy')} ${temp('uwsgi')} ${temp('scgi')}`,
      `    include ${path.join(dir, 'site.conf')};`,
      '}',
      '',
    ].join('\n'),
  );
  const started = startProgram(nginx, ['-p', dir + '/', '-c', path.join(dir, 'nginx.conf'), '-e', errorLog], {
    env: testEnv(),
  });
  const server = webServer('nginx', dir, options.port, started, errorLog);
  try {
    await waitUntilListening(started, { port: options.port }, { what: 'nginx', log: server.errorLog });
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

/** Lines of an nginx error log at level error or worse (upstream failures, FastCGI stderr...). */
export function nginxErrors(log: string): string[] {
  return log.split('\n').filter((line) => /\[(error|crit|alert|emerg)\]/.test(line));
}

export interface ApacheOptions {
  dir: string;
  port: number;
  /** A rendered examples/apache/iipsrv.conf. */
  site: string;
}

/** Replacements that turn examples/apache/iipsrv.conf into one for this test. */
export function apacheSiteReplacements(options: { images: string; logFile: string; workers?: number; memcached?: string }): Replacements {
  return [
    [`"${EXAMPLE_DEFAULTS.program} --workers 1"`, `"${BIN} --workers ${options.workers ?? 1}"`],
    [EXAMPLE_DEFAULTS.program, BIN],
    [EXAMPLE_DEFAULTS.images, options.images],
    [EXAMPLE_DEFAULTS.logFile, options.logFile],
    [EXAMPLE_DEFAULTS.memcached, options.memcached ?? ''],
  ];
}

/**
 * apache2 in the foreground with its own ServerRoot, pid file, logs, runtime dir and mod_fcgid
 * IPC directory in dir; the site file is included last. Started as root, Apache runs its children
 * (and so iipsrv) as www-data (or nobody).
 */
export async function startApache(options: ApacheOptions): Promise<WebServer> {
  const apache = which('apache2');
  if (!apache) throw new Error('apache2 not installed (apt-get install apache2 libapache2-mod-fcgid)');
  const dir = path.join(options.dir, 'apache');
  for (const sub of ['run', 'logs', 'htdocs']) mkdirSync(path.join(dir, sub), { recursive: true });
  chmodSync(dir, 0o755);
  const errorLog = path.join(dir, 'logs/error.log');
  const account = apacheUser();
  const module = (name: string, file: string) => `LoadModule ${name}_module ${path.join(APACHE_MODULES, file)}`;
  writeFileSync(path.join(dir, 'site.conf'), options.site);
  writeFileSync(
    path.join(dir, 'httpd.conf'),
    [
      `ServerRoot "${dir}"`,
      'ServerName 127.0.0.1',
      `Listen 127.0.0.1:${options.port}`,
      `PidFile "${path.join(dir, 'run/apache2.pid')}"`,
      `DefaultRuntimeDir "${path.join(dir, 'run')}"`,
      `ErrorLog "${errorLog}"`,
      'LogLevel warn fcgid:info',
      'LogFormat "%h %l %u %t \\"%r\\" %>s %b" common',
      `CustomLog "${path.join(dir, 'logs/access.log')}" common`,
      module('mpm_event', 'mod_mpm_event.so'),
      module('authz_core', 'mod_authz_core.so'),
      module('alias', 'mod_alias.so'),
      module('fcgid', 'mod_fcgid.so'),
      ...(account ? [`User ${account.user}`, `Group ${account.group}`] : []),
      'StartServers 1',
      'ServerLimit 2',
      'ThreadsPerChild 25',
      'MaxRequestWorkers 50',
      `DocumentRoot "${path.join(dir, 'htdocs')}"`,
      `FcgidIPCDir "${path.join(dir, 'run/fcgid')}"`,
      `FcgidProcessTableFile "${path.join(dir, 'run/fcgid_shm')}"`,
      `Include "${path.join(dir, 'site.conf')}"`,
      '',
    ].join('\n'),
  );
  const started = startProgram(apache, ['-f', path.join(dir, 'httpd.conf'), '-DFOREGROUND'], { env: testEnv() });
  const server = webServer('apache', dir, options.port, started, errorLog);
  try {
    await waitUntilListening(started, { port: options.port }, { what: 'apache2', log: server.errorLog });
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

export interface LighttpdOptions {
  dir: string;
  port: number;
  /** A rendered examples/lighttpd/iipsrv.conf. */
  site: string;
}

/** Replacements that turn examples/lighttpd/iipsrv.conf into one for this test. */
export function lighttpdSiteReplacements(options: { images: string; logFile: string; socket: string; workers?: number; memcached?: string }): Replacements {
  return [
    [`"bin-path" => "${EXAMPLE_DEFAULTS.program}"`, `"bin-path" => "${BIN} --workers ${options.workers ?? 1}"`],
    [EXAMPLE_DEFAULTS.lighttpdSocket, options.socket],
    [EXAMPLE_DEFAULTS.images, options.images],
    [EXAMPLE_DEFAULTS.logFile, options.logFile],
    [EXAMPLE_DEFAULTS.memcached, options.memcached ?? ''],
  ];
}

/** lighttpd in the foreground (-D) with its own pid file and logs in dir; the site file included last. */
export async function startLighttpd(options: LighttpdOptions): Promise<WebServer> {
  const lighttpd = which('lighttpd');
  if (!lighttpd) throw new Error('lighttpd not installed (apt-get install lighttpd)');
  const dir = path.join(options.dir, 'lighttpd');
  for (const sub of ['logs', 'htdocs']) mkdirSync(path.join(dir, sub), { recursive: true });
  chmodSync(dir, 0o755);
  const errorLog = path.join(dir, 'logs/error.log');
  writeFileSync(path.join(dir, 'site.conf'), options.site);
  writeFileSync(
    path.join(dir, 'lighttpd.conf'),
    [
      `server.document-root = "${path.join(dir, 'htdocs')}"`,
      'server.bind = "127.0.0.1"',
      `server.port = ${options.port}`,
      `server.pid-file = "${path.join(dir, 'lighttpd.pid')}"`,
      `server.errorlog = "${errorLog}"`,
      `include "${path.join(dir, 'site.conf')}"`,
      '',
    ].join('\n'),
  );
  const check = spawnSync(lighttpd, ['-tt', '-f', path.join(dir, 'lighttpd.conf')], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`lighttpd rejects the configuration:\n${check.stdout}${check.stderr}`);
  const started = startProgram(lighttpd, ['-D', '-f', path.join(dir, 'lighttpd.conf')], { env: testEnv() });
  const server = webServer('lighttpd', dir, options.port, started, errorLog);
  try {
    await waitUntilListening(started, { port: options.port }, { what: 'lighttpd', log: server.errorLog });
  } catch (error) {
    await server.stop();
    throw error;
  }
  return server;
}

/** Replacements that turn examples/spawn-fcgi/iipsrv-spawn-fcgi.sh into one for this test. */
export function spawnFcgiReplacements(options: { port: number; images: string; logFile: string; workers?: number; memcached?: string }): Replacements {
  return [
    [`-- ${EXAMPLE_DEFAULTS.program}`, `-- ${BIN} --workers ${options.workers ?? 1}`],
    [`-p ${EXAMPLE_DEFAULTS.fastcgiTcp.split(':')[1]}`, `-p ${options.port}`],
    [EXAMPLE_DEFAULTS.images, options.images],
    [EXAMPLE_DEFAULTS.logFile, options.logFile],
    [EXAMPLE_DEFAULTS.memcached, options.memcached ?? ''],
  ];
}

/**
 * Runs a rendered examples/spawn-fcgi script: spawn-fcgi -n binds the port and becomes iipsrv
 * (same pid), so the returned process is iipsrv's primary. Resolves once the port accepts.
 */
export async function startSpawnFcgi(options: { dir: string; port: number; script: string }): Promise<Started> {
  const file = path.join(options.dir, 'iipsrv-spawn-fcgi.sh');
  writeFileSync(file, options.script, { mode: 0o755 });
  const started = startProgram('/bin/sh', [file], { env: testEnv() });
  try {
    await waitUntilListening(started, { port: options.port }, { what: 'spawn-fcgi' });
  } catch (error) {
    await stopGroup(started);
    throw error;
  }
  return started;
}

// ---------------------------------------------------------------------------------------------
// iipsrv processes, from /proc.

/**
 * iipsrv processes (primaries and workers) of one test: their command line runs bin/iipsrv and
 * their command line or environment mentions the marker (the test's temporary directory, which
 * FILESYSTEM_PREFIX and the socket paths contain).
 */
export function iipsrvProcesses(marker: string): ProcessInfo[] {
  return listProcesses().filter((p) => p.pid !== process.pid && p.cmdline.includes('bin/iipsrv') && (p.cmdline.includes(marker) || p.environ.includes(marker)));
}

/** The primaries among them: those whose parent is not itself one of them. */
export function iipsrvPrimaries(marker: string): ProcessInfo[] {
  const all = iipsrvProcesses(marker);
  const pids = new Set(all.map((p) => p.pid));
  return all.filter((p) => !pids.has(p.ppid));
}

/**
 * Waits until none of the given pids exists any more (not even as a zombie) and no iipsrv process
 * of the marker is left; throws with what is still there.
 */
export async function expectNoIipsrvLeft(marker: string, knownPids: Iterable<number>, timeoutMs = 8000): Promise<void> {
  const pids = [...knownPids];
  const leftovers = () => {
    const byPid = pids
      .filter(processExists)
      .map(processInfo)
      .filter((p): p is ProcessInfo => p !== null);
    const byMarker = iipsrvProcesses(marker);
    const all = new Map<number, ProcessInfo>();
    for (const p of [...byPid, ...byMarker]) all.set(p.pid, p);
    return [...all.values()];
  };
  try {
    await waitFor(async () => leftovers().length === 0, timeoutMs, 'iipsrv processes to go away');
  } catch {
    const left = leftovers();
    if (left.length === 0) return;
    throw new Error(
      'iipsrv processes left behind: ' + left.map((p) => `pid ${p.pid} (ppid ${p.ppid}, state ${p.state}) ${p.cmdline || '<no cmdline>'}`).join('; '),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export function request(
  port: number,
  pathAndQuery: string,
  options: { method?: string; headers?: Record<string, string>; agent?: http.Agent | false; timeoutMs?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: pathAndQuery, method: options.method ?? 'GET', headers: options.headers, agent: options.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.setTimeout(options.timeoutMs ?? 10_000, () => req.destroy(new Error(`request ${pathAndQuery} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * TCP connections from this machine to a local port, by state, from /proc/net/tcp{,6}: the
 * client side, which has the server's port as its remote end. `established` is how many FastCGI
 * connections a front end holds open to iipsrv; `closeWait` how many iipsrv closed and the front
 * end has not let go of yet.
 */
export function connectionsTo(port: number): { established: number; closeWait: number } {
  const counts = { established: 0, closeWait: 0 };
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readIfExists(table).split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4 || !fields[2]!.endsWith(`:${hexPort}`)) continue;
      // 01 = ESTABLISHED, 08 = CLOSE_WAIT.
      if (fields[3] === '01') counts.established++;
      else if (fields[3] === '08') counts.closeWait++;
    }
  }
  return counts;
}

export function establishedConnectionsTo(port: number): number {
  return connectionsTo(port).established;
}

/** Removes a directory now (tempDir removes it at exit too). */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export const IS_LINUX = os.platform() === 'linux';

/**
 * nginx serving the files under `root` as they are (Range, If-Match and ETag are nginx's own), on
 * a port of its own: the web-server origin of the object-store tests. `directives` go into the
 * server block (e.g. `max_ranges 0;` for a server that ignores Range).
 */
export async function startStaticNginx(options: { dir: string; root: string; directives?: string }): Promise<WebServer> {
  const port = await freePort();
  const site = [`server {`, `    listen 127.0.0.1:${port};`, `    root ${options.root};`, `    ${options.directives ?? ''}`, `}`, ''].join('\n');
  return startNginx({ dir: options.dir, port, site });
}
