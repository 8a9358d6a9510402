/**
 * A real memcached for the tests that share a cache between processes, and its own counters
 * (`stats`), which say what was looked up and stored whatever the program under test reports.
 */
import net from 'node:net';
import { which } from './daemon.ts';
import { canConnect, freePort, startProgram, waitFor, type Started } from './processes.ts';

export const memcachedBinary = which('memcached');
/** For `describe(..., { skip })`: false when memcached is installed. */
export const memcachedMissing = memcachedBinary ? false : 'memcached not installed (apt-get install memcached)';

/** A memcached of 32 MB on a local port (a free one unless given: a test restarting it keeps its port), answering. */
export async function startMemcached(port?: number): Promise<{ port: number; process: Started }> {
  port ??= await freePort();
  const started = startProgram(memcachedBinary!, ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '32', '-u', 'root']);
  await waitFor(() => canConnect({ port }), 5000, 'memcached');
  return { port, process: started };
}

/** memcached's own counters, over its text protocol. */
export function memcachedStats(port: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d) => {
      text += d.toString();
      if (text.includes('END\r\n')) {
        socket.end();
        const stats: Record<string, number> = {};
        for (const line of text.split('\r\n')) {
          const [, name, value] = line.split(' ');
          if (name && value !== undefined) stats[name] = Number(value);
        }
        resolve(stats);
      }
    });
    socket.on('error', reject);
    socket.write('stats\r\n');
  });
}
