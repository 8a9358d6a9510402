/**
 * Connections on a listening socket inherited from a web server (fd 0: Apache mod_fcgid,
 * lighttpd bin-path, spawn-fcgi) are accepted by the primary alone and handed to the workers in
 * turn. The socket must die with the primary: a web server that finds it still answering after
 * it reaped iipsrv (workers not yet gone) takes it for another iipsrv and never starts a new one
 * (lighttpd does exactly that). Node's own round-robin cluster mode would do the handing over,
 * but it listens on an fd with a fixed backlog of 511, ignoring --backlog.
 */
import type { Worker } from 'node:cluster';
import net from 'node:net';

/** The message a worker gets with each connection (the socket travels as the message's handle). */
export const HANDOFF_MESSAGE = 'fastcgi-connection';

/** Connections accepted while no worker is ready wait here; beyond this many they are closed. */
const MAX_WAITING = 1024;

export interface ConnectionHandoff {
  /** A worker that can take connections now. */
  addWorker(worker: Worker): void;
  removeWorker(worker: Worker): void;
  /** Stop accepting and close the socket (at once: connections already handed over live on). */
  close(): void;
}

export function startConnectionHandoff(fd: number, backlog: number, onError: (error: Error) => void): Promise<ConnectionHandoff> {
  const workers: Worker[] = [];
  const waiting: net.Socket[] = [];
  let next = 0;

  const handOver = (socket: net.Socket): void => {
    const worker = workers[next++ % workers.length];
    if (!worker) {
      if (waiting.length < MAX_WAITING) waiting.push(socket);
      else socket.destroy();
      return;
    }
    // The handle is passed with the message and our copy closed once it is sent.
    worker.send(HANDOFF_MESSAGE, socket, (error) => {
      if (error) socket.destroy();
    });
  };

  // Paused: the bytes are for the worker to read.
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    handOver(socket);
  });
  server.on('error', onError);

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // Node 20 ignores `backlog` in an options object with `fd`; the positional one is honoured.
    server.listen({ fd }, backlog, () => {
      server.off('error', reject);
      resolve({
        addWorker(worker) {
          workers.push(worker);
          for (const socket of waiting.splice(0)) handOver(socket);
        },
        removeWorker(worker) {
          const index = workers.indexOf(worker);
          if (index >= 0) workers.splice(index, 1);
        },
        close() {
          for (const socket of waiting.splice(0)) socket.destroy();
          server.close();
        },
      });
    });
  });
}
