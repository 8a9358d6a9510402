/**
 * The FastCGI listener: a net.Server whose connections speak the responder role through our own
 * record layer (see records.ts and connection.ts; dependency-notes.md section 3 says why not
 * node-fastcgi). It listens on TCP, on a unix socket, or on a listening socket inherited as a file
 * descriptor (spawn-fcgi, systemd-style supervisors).
 */
import { lstat, unlink } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { FASTCGI_LIMIT_DEFAULTS } from '../../config.js';
import type { RequestHandler } from '../../request.js';
import { FastCgiConnection, type ConnectionOptions, type FastCgiLog, type FastCgiStats } from './connection.js';
import { FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS } from './records.js';

export type { FastCgiLog, FastCgiStats } from './connection.js';

export interface FastCgiServerOptions {
  /** Protocol errors and handler failures go to `warn`; connection noise to `debug`/`detail`. */
  log?: FastCgiLog;
  /**
   * FCGI_WEB_SERVER_ADDRS: when not empty, TCP connections from any other address are closed
   * at once, as libfcgi does. Unix-socket and inherited-fd peers are not checked.
   */
  allowedPeers?: readonly string[];
  /**
   * Connections open at once; one more is closed as soon as it is accepted. Answered for
   * FCGI_MAX_CONNS. Default 1024.
   */
  maxConnections?: number;
  /** FCGI_MPXS_CONNS: accept several request ids at once on one connection. Default true. */
  multiplex?: boolean;
  /**
   * Requests in flight on one connection; more get END_REQUEST with OVERLOADED. Answered for
   * FCGI_MAX_REQS. Default 100.
   */
  maxRequestsPerConnection?: number;
  /** Bytes of PARAMS one request may send; more is answered 431. Default 1 MiB. */
  maxParamsBytes?: number;
  /**
   * Bytes of input held for requests still arriving (PARAMS not yet ended, records received in
   * part) over all connections; beyond, the connections holding the most are answered 503 and
   * closed. Default 8 MiB, raised to what one request of maxParamsBytes needs.
   */
  maxHeldInputBytes?: number;
  /** Closes a connection with no request in progress, or whose peer stops reading, after this. Default 120 s; 0: never. */
  idleTimeoutMs?: number;
  /** A request's input (and any record begun) must arrive within this, or it gets a 408 and the connection closes. Default 30 s; 0: no limit. */
  readTimeoutMs?: number;
}

/** A whole record of the largest size, header and padding included: a partial one is held whole at worst. */
const LARGEST_RECORD = 8 + 0xffff + 0xff;

/** Refused connections are logged at most this often (a flood must not flood the log too). */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export type FastCgiListenTarget = { host: string; port: number; backlog?: number } | { path: string; backlog?: number } | { fd: number; backlog?: number };

export interface FastCgiServer {
  readonly server: net.Server;
  listen(target: FastCgiListenTarget): Promise<void>;
  /** Serve a connection accepted elsewhere (by the primary, on a socket only it listens on). */
  adopt(socket: net.Socket): void;
  address(): AddressInfo | string | null;
  /**
   * Stop accepting; let requests in flight finish and close each connection once it has none;
   * after graceMs destroy what is left. Resolves when every connection is closed.
   */
  close(graceMs: number): Promise<void>;
  /** A snapshot of the counters. */
  stats(): FastCgiStats;
}

const noop = () => undefined;
const silentLog: FastCgiLog = { warn: noop, debug: noop };

/** `::ffff:10.0.0.1` is how a dual-stack socket reports an IPv4 peer. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * A unix socket file left by a killed server makes listen() fail with EADDRINUSE. Remove it only
 * when it is a socket and nothing answers on it: a live server keeps its socket.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const stats = await lstat(path).catch(() => null);
  if (stats === null || !stats.isSocket()) return;
  const refused = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
  if (refused) await unlink(path).catch(noop);
}

export function createFastCgiServer(handler: RequestHandler, options: FastCgiServerOptions = {}): FastCgiServer {
  const log = options.log ?? silentLog;
  const allowed = options.allowedPeers && options.allowedPeers.length > 0 ? new Set(options.allowedPeers.map(plainAddress)) : null;
  const multiplex = options.multiplex ?? true;
  const maxConnections = options.maxConnections ?? FASTCGI_LIMIT_DEFAULTS.maxConnections;
  const maxRequestsPerConnection = options.maxRequestsPerConnection ?? FASTCGI_LIMIT_DEFAULTS.maxRequestsPerConnection;
  const maxParamsBytes = options.maxParamsBytes ?? FASTCGI_LIMIT_DEFAULTS.maxParamsBytes;
  // Below this, a request of the largest allowed params could never be received.
  const maxHeldInputBytes = Math.max(options.maxHeldInputBytes ?? FASTCGI_LIMIT_DEFAULTS.maxHeldInputBytes, maxParamsBytes + LARGEST_RECORD);
  const values = new Map<string, string>([
    [FCGI_MAX_CONNS, String(maxConnections)],
    [FCGI_MAX_REQS, String(maxRequestsPerConnection)],
    [FCGI_MPXS_CONNS, multiplex ? '1' : '0'],
  ]);
  const stats: FastCgiStats = {
    connections: 0,
    requestsInFlight: 0,
    requestsTotal: 0,
    socketWrites: 0,
    protocolErrors: 0,
    heldInputBytes: 0,
    connectionsRefused: 0,
    timeouts: 0,
    connectionsShed: 0,
  };
  const connections = new Set<FastCgiConnection>();
  let closing = false;
  let refusalsUnlogged = 0;
  let lastRefusalLog = Number.NEGATIVE_INFINITY;

  const connectionOptions: ConnectionOptions = {
    handler,
    log,
    stats,
    multiplex,
    maxRequestsPerConnection,
    maxParamsBytes,
    idleTimeoutMs: options.idleTimeoutMs ?? FASTCGI_LIMIT_DEFAULTS.idleTimeoutMs,
    readTimeoutMs: options.readTimeoutMs ?? FASTCGI_LIMIT_DEFAULTS.readTimeoutMs,
    values,
    reserve(requester, bytes) {
      // Honest requests arrive whole and are held for microseconds; what piles up is input that
      // stalls. The connection holding the most is the likeliest culprit, and the cheapest to drop.
      while (stats.heldInputBytes + bytes > maxHeldInputBytes) {
        let victim = requester;
        let most = requester.heldBytes + bytes;
        for (const connection of connections) {
          if (connection.heldBytes > most) {
            victim = connection;
            most = connection.heldBytes;
          }
        }
        victim.shed();
        if (victim === requester) return false;
      }
      return true;
    },
    onClose(connection: FastCgiConnection) {
      connections.delete(connection);
      stats.connections--;
      if (connections.size === 0) for (const resolve of idleWaiters.splice(0)) resolve();
    },
  };
  const idleWaiters: Array<() => void> = [];

  const server = net.createServer((socket) => {
    try {
      if (allowed !== null && socket.remoteAddress !== undefined && !allowed.has(plainAddress(socket.remoteAddress))) {
        log.warn({ remoteAddress: socket.remoteAddress }, 'FastCGI connection from an address not in FCGI_WEB_SERVER_ADDRS; closed');
        socket.on('error', noop);
        socket.destroy();
        return;
      }
      if (connections.size >= maxConnections) {
        // Closed before anything is read: the connections in progress keep their share.
        stats.connectionsRefused++;
        refusalsUnlogged++;
        const at = performance.now();
        if (at - lastRefusalLog >= REFUSAL_LOG_INTERVAL_MS) {
          log.warn({ maxConnections, refused: refusalsUnlogged }, 'FastCGI connections over FCGI_MAX_CONNS closed');
          lastRefusalLog = at;
          refusalsUnlogged = 0;
        }
        socket.on('error', noop);
        socket.destroy();
        return;
      }
      const connection = new FastCgiConnection(socket, connectionOptions);
      connections.add(connection);
      stats.connections++;
      // Accepted in the moment close() ran: it has nothing in flight yet.
      if (closing) connection.shutdownWhenIdle();
    } catch (error) {
      log.warn({ err: error }, 'cannot set up a FastCGI connection');
      socket.destroy();
    }
  });
  // accept() errors (EMFILE, ...) arrive here; without a listener they would kill the process.
  const onServerError = (error: Error) => log.warn({ err: error }, 'FastCGI listener error');

  return {
    server,

    async listen(target) {
      if ('path' in target) await removeStaleSocket(target.path);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const listening = () => {
          server.off('error', reject);
          server.on('error', onServerError);
          resolve();
        };
        // An explicit backlog matters for fd 0: Node re-listens on an inherited socket and would
        // otherwise replace spawn-fcgi's backlog with its default of 511. Node 20 ignores
        // `backlog` in an options object with `fd` (it reads only the positional argument there).
        if ('fd' in target) server.listen({ fd: target.fd, backlog: target.backlog }, target.backlog, listening);
        else if ('path' in target) server.listen({ path: target.path, backlog: target.backlog }, listening);
        else server.listen({ host: target.host, port: target.port, backlog: target.backlog }, listening);
      });
    },

    address: () => server.address(),

    adopt(socket) {
      server.emit('connection', socket);
    },

    close(graceMs) {
      closing = true;
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          for (const connection of connections) connection.destroy();
        }, graceMs);
        force.unref();
        // Adopted connections are not the listener's to count: wait for our own set to empty.
        const listenerClosed = new Promise<void>((done) => (server.listening ? server.close(() => done()) : done()));
        const idle = new Promise<void>((done) => (connections.size === 0 ? done() : idleWaiters.push(done)));
        void Promise.all([listenerClosed, idle]).then(() => {
          clearTimeout(force);
          resolve();
        });
        for (const connection of connections) connection.shutdownWhenIdle();
      });
    },

    stats: () => ({ ...stats }),
  };
}
