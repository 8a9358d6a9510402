/**
 * What bench/soak.ts and bench/fault.ts ask of the benchmark image, and how they read the memory
 * of the daemon: a seeded mix that touches every path that keeps memory (tile cache, stored tiles
 * sent as they are, re-encodes, IIIF tiles and thumbnails, regions), and the resident memory of
 * the primary and of each of its workers.
 */
import { IMAGE_HEIGHT, IMAGE_WIDTH, TILE } from './image.ts';
import { seededRandom } from '../../test/helpers/random.ts';
import { readFileSync } from 'node:fs';
import { childPids, rssBytes } from '../../test/helpers/processes.ts';

/**
 * 4000 query strings for the image `name`: 50 % JTL tiles at any level, 20 % IIIF tiles at full
 * resolution, 10 % IIIF thumbnails 100-300 px wide, 10 % re-encoded (QLT) tiles of the largest
 * level, 10 % CVT regions of a fifth of the image at 400-800 px wide. The same list every time.
 */
export function requestMix(name: string): string[] {
  const random = seededRandom(20261207);
  const pick = (n: number) => Math.floor(random() * n);
  const queries: string[] = [];
  const levels: Array<[number, number]> = [];
  for (let w = IMAGE_WIDTH, h = IMAGE_HEIGHT; ; w = Math.ceil(w / 2), h = Math.ceil(h / 2)) {
    levels.unshift([w, h]);
    if (w <= TILE && h <= TILE) break;
  }
  for (let i = 0; i < 4000; i++) {
    const kind = i % 10;
    if (kind < 5) {
      const resolution = pick(levels.length);
      const [w, h] = levels[resolution]!;
      const tiles = Math.ceil(w / TILE) * Math.ceil(h / TILE);
      queries.push(`FIF=${name}&JTL=${resolution},${pick(tiles)}`);
    } else if (kind < 7) {
      const x = pick(Math.floor(IMAGE_WIDTH / TILE)) * TILE;
      const y = pick(Math.floor(IMAGE_HEIGHT / TILE)) * TILE;
      queries.push(`IIIF=${name}/${x},${y},${TILE},${TILE}/${TILE},/0/default.jpg`);
    } else if (kind < 8) {
      queries.push(`IIIF=${name}/full/${100 + pick(200)},/0/default.jpg`);
    } else if (kind < 9) {
      queries.push(`FIF=${name}&QLT=${60 + pick(30)}&JTL=${levels.length - 1},${pick(1000)}`);
    } else {
      const x = (pick(80) / 100).toFixed(2);
      const y = (pick(80) / 100).toFixed(2);
      queries.push(`FIF=${name}&RGN=${x},${y},0.2,0.2&WID=${400 + pick(400)}&CVT=jpeg`);
    }
  }
  return queries;
}

/** RSS in bytes of the primary ('primary') and of each live worker ('worker <pid>'), in that order. */
export function daemonRss(primary: number): Map<string, number> {
  const memory = new Map<string, number>([['primary', rssBytes(primary)]]);
  for (const pid of childPids(primary)) memory.set(`worker ${pid}`, rssBytes(pid));
  return memory;
}

/**
 * The two parts of a process's RSS, from /proc/<pid>/status: anonymous memory (the JavaScript heap,
 * native allocations, buffers) and file-backed pages (code of node and of the libraries, as they
 * get touched); zeros when the process is gone.
 */
export function rssParts(pid: number): { anon: number; file: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    return { anon: kb('RssAnon'), file: kb('RssFile') };
  } catch {
    return { anon: 0, file: 0 };
  }
}

/** rssParts of the primary and each live worker, named as daemonRss names them. */
export function daemonRssParts(primary: number): Map<string, { anon: number; file: number }> {
  const parts = new Map([['primary', rssParts(primary)]]);
  for (const pid of childPids(primary)) parts.set(`worker ${pid}`, rssParts(pid));
  return parts;
}

const MB = 1024 * 1024;

/** "primary 49.1, worker 1234 131.0" (MB). */
export function formatRss(memory: Map<string, number>): string {
  return [...memory].map(([name, bytes]) => `${name} ${(bytes / MB).toFixed(1)}`).join(', ');
}
