/**
 * Side-by-side benchmark: iipsrv-ts (./bin/iipsrv, compiled dist/) against Debian's iipsrv 1.1
 * and, when IIPSRV_MASTER names one, an iipsrv master build, all behind ONE nginx on loopback,
 * driven by wrk. Run with `npm run bench` (which builds
 * first) or `node --import tsx bench/run.ts`. Writes bench/results.md. See "Benchmarks" in README.md.
 *
 * Environment knobs (all optional):
 *   BENCH_DURATION=10   seconds of each timed wrk run
 *   BENCH_WARMUP=2      seconds of the untimed wrk run before each timed one (on the other half of the request list)
 *   BENCH_THREADS=2 BENCH_CONNECTIONS=16
 *   BENCH_ONLY=a,b      run only these workloads (h, i, j: the pixel-type images, k: the JP2, p: the HTJ2K .jph,
 *                       made on first use; l-o: IIIF 3 and 2 thumbnails and full-resolution regions)
 *   IIPSRV11=/usr/lib/iipimage-server/iipsrv.fcgi
 *   IIPSRV_MASTER=/path/to/iipsrv/src/iipsrv.fcgi   also run an iipsrv master FastCGI binary, started as
 *                       1.1 is (same nginx, own locations and ports, same images and environment, its
 *                       own defaults otherwise). Build it yourself from the public ruven/iipsrv
 *                       repository by its own README; this repository has no recipe for it.
 *                       Unset: the benchmark runs ours and 1.1 only.
 *   BENCH_OURS_ENV='MALLOC_ARENA_MAX=2 UV_THREADPOOL_SIZE=2'   extra environment for our server only
 *   BENCH_OURS_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof'   node flags for our server (workers inherit them)
 */
import { readFileSync, statSync, writeFileSync, copyFileSync, mkdtempSync, chmodSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import {
  benchHtj2k,
  benchImage,
  benchJp2,
  expectedLevels,
  HTJ2K_RECIPE,
  IMAGE_HEIGHT,
  IMAGE_WIDTH,
  JP2_RECIPE,
  pixelTypeImages,
  TILE,
  TYPED_SIZE,
} from './lib/image.ts';
import { cleanup, installCleanupHandlers, isInterrupted, registerTempDir, sampleRss, startProcess, treeCpuSeconds, type Proc } from './lib/procs.ts';
import { runWrk, threadStart, writeWrkScript, type WrkParams, type WrkResult } from './lib/wrk.ts';
import { freePort, stopGroup, waitUntilListening } from '../test/helpers/processes.ts';
import { seededRandom } from '../test/helpers/random.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OURS_BIN = path.join(ROOT, 'bin/iipsrv');
const IIPSRV11 = process.env.IIPSRV11 ?? '/usr/lib/iipimage-server/iipsrv.fcgi';
const IIPSRV_MASTER = process.env.IIPSRV_MASTER ? path.resolve(process.env.IIPSRV_MASTER) : null;
const FASTCGI_PARAMS = path.join(ROOT, 'examples/nginx/iipsrv_fastcgi_params');
const RESULTS = path.join(ROOT, 'bench/results.md');

const NGINX_WORKERS = 1;
const WRK: WrkParams = {
  threads: Number(process.env.BENCH_THREADS ?? 2),
  connections: Number(process.env.BENCH_CONNECTIONS ?? 16),
  durationSeconds: Number(process.env.BENCH_DURATION ?? 10),
  timeoutSeconds: 10,
};
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP ?? 2);
const LIST_LENGTH = 20_000;
const HOT_TILES = 20;
/** l, n: how many names of the image the thumbnails are asked for (see iiifWorkloads) */
const THUMBNAIL_NAMES = 64;
const SEED = 20261201;

const log = (line = '') => process.stdout.write(line + '\n');
/** Where the warm-up run's threads start in a workload's list, relative to the timed run's. */
const warmupOffset = (w: { queries: string[] }) => Math.floor(w.queries.length / 2);
const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Backends

interface ServerSpec {
  key: string;
  kind: 'ours' | 'iipsrv11' | 'master';
  ports: number[];
  args: (port: number) => string[];
  env: NodeJS.ProcessEnv;
  procs: Proc[];
}

interface Backend {
  key: string;
  label: string;
  /** nginx location */
  location: string;
  server: ServerSpec;
  /** worker (or iipsrv) processes that do the work */
  processes: number;
}

async function startServer(spec: ServerSpec, extraEnv: Record<string, string> = {}): Promise<void> {
  spec.procs = [];
  for (const port of spec.ports) {
    const nodeArgs = process.env.BENCH_OURS_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
    let command = OURS_BIN;
    let args = spec.args(port);
    if (spec.kind === 'iipsrv11') command = IIPSRV11;
    else if (spec.kind === 'master') command = IIPSRV_MASTER!;
    else if (nodeArgs.length > 0) [command, args] = [process.execPath, [...nodeArgs, OURS_BIN, ...args]];
    const proc = startProcess(`${spec.key}:${port}`, command, args, { ...spec.env, ...extraEnv }, ROOT);
    spec.procs.push(proc);
    await waitUntilListening(proc, { port }, { what: proc.name, timeoutMs: 20_000 });
  }
  if (spec.kind === 'ours') {
    // Wait until the workers are up (the primary may bind before they are forked).
    await new Promise((r) => setTimeout(r, 300));
  }
}

function serverAlive(spec: ServerSpec): boolean {
  return spec.procs.every((p) => p.alive());
}

// ---------------------------------------------------------------------------------------------
// nginx

function nginxConfig(dir: string, port: number, servers: ServerSpec[], backends: Backend[]): string {
  const upstreams: string[] = [];
  const locations: string[] = [];
  for (const s of servers) {
    upstreams.push(
      `    upstream ${s.key}_ka {\n${s.ports.map((p) => `        server 127.0.0.1:${p};`).join('\n')}\n        keepalive 16;\n    }`,
      `    upstream ${s.key}_plain {\n${s.ports.map((p) => `        server 127.0.0.1:${p};`).join('\n')}\n    }`,
    );
  }
  for (const b of backends) {
    const keep = b.location.endsWith('-ka');
    locations.push(
      `        location = ${b.location} {\n` +
        `            fastcgi_pass ${b.server.key}_${keep ? 'ka' : 'plain'};\n` +
        (keep ? '            fastcgi_keep_conn on;\n' : '') +
        `            include ${path.join(dir, 'iipsrv_fastcgi_params')};\n` +
        `        }`,
    );
  }
  const temp = (name: string) => `    ${name}_temp_path ${path.join(dir, 'tmp', name)};`;
  return [
    'daemon off;',
    'master_process on;',
    `worker_processes ${NGINX_WORKERS};`,
    `pid ${path.join(dir, 'nginx.pid')};`,
    `error_log ${path.join(dir, 'error.log')} warn;`,
    'events { worker_connections 2048; }',
    'http {',
    '    access_log off;',
    '    keepalive_requests 1000000;',
    // Keep whole responses (tiles up to ~70 KB, CVT up to ~150 KB) in memory, never in temp files.
    '    fastcgi_buffer_size 32k;',
    '    fastcgi_buffers 16 32k;',
    ...['client_body', 'fastcgi', 'proxy', 'uwsgi', 'scgi'].map(temp),
    ...upstreams,
    '    server {',
    `        listen 127.0.0.1:${port};`,
    '        server_name localhost;',
    ...locations,
    '    }',
    '}',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// HTTP sample requests

interface Reply {
  status: number;
  type: string;
  body: Buffer;
  headers?: http.IncomingHttpHeaders;
}

function get(port: number, pathAndQuery: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathAndQuery, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks), headers: res.headers }),
      );
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`timeout: ${pathAndQuery}`)));
    req.on('error', reject);
  });
}

function isJpeg(body: Buffer): boolean {
  return body.length > 4 && body[0] === 0xff && body[1] === 0xd8 && body[body.length - 2] === 0xff && body[body.length - 1] === 0xd9;
}

// ---------------------------------------------------------------------------------------------
// Workloads

interface Workload {
  id: string;
  title: string;
  queries: string[];
  /** samples checked on every backend before timing */
  samples: string[];
  kind: 'obj' | 'jpeg';
  script?: string;
  /** environment every server is (re)started with for this workload, on top of its own */
  env?: Record<string, string>;
  /**
   * An iipsrv (1.1 or master) that refuses every sample (4xx/5xx) does not support the requests:
   * it is left out of the timed runs and its cells say n/a. Elsewhere a refusal is a failed check.
   */
  mayBeUnsupported?: boolean;
  /** per query, what a response cache would key the answer on (its output): to count repeats */
  outputKeys?: string[];
  /**
   * Pixels by which the servers' output sizes may differ (they round IIIF sizes differently): a
   * difference within it is noted, not a failed check.
   */
  sizeTolerance?: number;
}

function levelsFromAnswer(text: string): Array<[number, number]> {
  const m = /Resolutions:([\d ,]+)/.exec(text);
  if (!m) throw new Error(`no Resolutions line in ${JSON.stringify(text)}`);
  return m[1]!
    .trim()
    .split(',')
    .map((pair) => pair.trim().split(/\s+/).map(Number) as [number, number]);
}

/** Random tiles of every level of a TYPED_SIZE square image, with a processing prefix. */
function typedTiles(image: string, prefix: string): { queries: string[]; samples: string[] } {
  const pairs: Array<[number, number]> = [];
  expectedLevels(TYPED_SIZE, TYPED_SIZE, TILE)
    .reverse()
    .forEach(([w, h], res) => {
      for (let t = 0; t < Math.ceil(w / TILE) * Math.ceil(h / TILE); t++) pairs.push([res, t]);
    });
  const rnd = seededRandom(SEED + 1);
  const queries = Array.from({ length: LIST_LENGTH }, () => {
    const [r, t] = pairs[Math.floor(rnd() * pairs.length)]!;
    return `FIF=${image}&${prefix}JTL=${r},${t}`;
  });
  return { queries, samples: queries.slice(0, 5) };
}

function buildWorkloads(
  image: string,
  levelsSmallestFirst: Array<[number, number]>,
  tile: [number, number],
  typed: { rgb16: string; float: string; lab: string } | null,
): Workload[] {
  const pairs: Array<[number, number]> = [];
  levelsSmallestFirst.forEach(([w, h], res) => {
    const n = Math.ceil(w / tile[0]) * Math.ceil(h / tile[1]);
    for (let t = 0; t < n; t++) pairs.push([res, t]);
  });
  // Deterministic: every backend gets exactly the same request sequence.
  const rnd = seededRandom(SEED);
  const pick = () => pairs[Math.floor(rnd() * pairs.length)]!;
  const randomPairs = Array.from({ length: LIST_LENGTH }, pick);
  const hotSet = Array.from({ length: HOT_TILES }, pick);
  const hotPairs = Array.from({ length: LIST_LENGTH }, () => hotSet[Math.floor(rnd() * hotSet.length)]!);
  const f = (x: number) => x.toFixed(4);
  const regions = Array.from({ length: LIST_LENGTH }, () => {
    const x = rnd() * 0.7;
    const y = rnd() * 0.7;
    const w = 0.1 + rnd() * 0.2;
    const h = 0.1 + rnd() * 0.2;
    return `FIF=${image}&RGN=${f(x)},${f(y)},${f(w)},${f(h)}&WID=800&CVT=jpeg`;
  });
  const jtl = ([r, t]: [number, number]) => `FIF=${image}&JTL=${r},${t}`;
  const jtlQ = ([r, t]: [number, number]) => `FIF=${image}&QLT=75&JTL=${r},${t}`;
  // The same tiles as IIIF 3 viewers (OpenSeadragon) ask for them: region from the scale factor,
  // size the tile's own (edge tiles cropped).
  const [fullW, fullH] = levelsSmallestFirst[levelsSmallestFirst.length - 1]!;
  const iiifTile = ([r, t]: [number, number]) => {
    const [w, h] = levelsSmallestFirst[r]!;
    const factor = Math.round(fullW / w);
    const across = Math.ceil(w / tile[0]);
    const col = t % across;
    const row = Math.floor(t / across);
    const x = col * tile[0] * factor;
    const y = row * tile[1] * factor;
    const region = `${x},${y},${Math.min(tile[0] * factor, fullW - x)},${Math.min(tile[1] * factor, fullH - y)}`;
    return `IIIF=${image}/${region}/${Math.min(tile[0], w - col * tile[0])},${Math.min(tile[1], h - row * tile[1])}/0/default.jpg`;
  };
  // DeepZoom's level for IIP resolution r: its top level is the full size, each below halves.
  const topDeepZoom = Math.ceil(Math.log2(Math.max(fullW, fullH)));
  const deepZoomTile = ([r, t]: [number, number]) => {
    const across = Math.ceil(levelsSmallestFirst[r]![0] / tile[0]);
    return `DeepZoom=${image}_files/${topDeepZoom - (levelsSmallestFirst.length - 1 - r)}/${t % across}_${Math.floor(t / across)}.jpg`;
  };
  const top = levelsSmallestFirst.length - 1;
  // A full-resolution inner tile and an edge tile, checked on every backend along with the first queries.
  const [fw] = levelsSmallestFirst[top]!;
  const across = Math.ceil(fw / tile[0]);
  const extra: Array<[number, number]> = [
    [top, across + 1],
    [top, across - 1],
    [0, 0],
  ];
  log(
    `tile grid: ${levelsSmallestFirst.map(([w, h], r) => `r${r} ${w}x${h}=${Math.ceil(w / tile[0])}x${Math.ceil(h / tile[1])}`).join(', ')}; ${pairs.length} (res,tile) pairs`,
  );
  return [
    { id: 'a', title: 'OBJ=IIP,1.0 (no image)', queries: ['OBJ=IIP,1.0'], samples: ['OBJ=IIP,1.0'], kind: 'obj' },
    { id: 'b', title: 'random tiles, all levels (JTL)', queries: randomPairs.map(jtl), samples: [...randomPairs.slice(0, 4), ...extra].map(jtl), kind: 'jpeg' },
    { id: 'c', title: `hot tiles (${HOT_TILES} tiles over and over)`, queries: hotPairs.map(jtl), samples: hotSet.slice(0, 5).map(jtl), kind: 'jpeg' },
    { id: 'd', title: 'CVT random region -> 800 px wide', queries: regions, samples: regions.slice(0, 5), kind: 'jpeg' },
    {
      id: 'e',
      title: 'random tiles, forced re-encode (QLT=75)',
      queries: randomPairs.map(jtlQ),
      samples: [...randomPairs.slice(0, 4), ...extra].map(jtlQ),
      kind: 'jpeg',
    },
    {
      id: 'f',
      title: 'the random tiles of b through IIIF 3',
      queries: randomPairs.map(iiifTile),
      samples: [...randomPairs.slice(0, 4), ...extra].map(iiifTile),
      kind: 'jpeg',
    },
    {
      id: 'g',
      title: 'the random tiles of b through DeepZoom',
      queries: randomPairs.map(deepZoomTile),
      samples: [...randomPairs.slice(0, 4), ...extra].map(deepZoomTile),
      kind: 'jpeg',
    },
    ...(typed
      ? ([
          { id: 'h', title: `16-bit RGB tiles with CNT=1.5&GAM=0.8 (${TYPED_SIZE}² deflate)`, ...typedTiles(typed.rgb16, 'CNT=1.5&GAM=0.8&'), kind: 'jpeg' },
          { id: 'i', title: `32-bit float grey tiles with CMP=jet (${TYPED_SIZE}² deflate)`, ...typedTiles(typed.float, 'CMP=jet&'), kind: 'jpeg' },
          { id: 'j', title: `8-bit CIELAB tiles (${TYPED_SIZE}² deflate)`, ...typedTiles(typed.lab, ''), kind: 'jpeg' },
        ] as const)
      : []),
  ];
}

/**
 * l-o: IIIF requests that are not tiles, in both IIIF versions: thumbnails of the whole image
 * (made from a small pyramid level) and full-resolution 2000x2000 regions at random places.
 *
 * A response cache keys a thumbnail on the image and its output size, and a tile cache holds the
 * few small levels thumbnails are made from: thumbnails of one image would soon all come from
 * caches. So each thumbnail asks for one of THUMBNAIL_NAMES names of the image (symbolic links in
 * `thumbnailDir`, which the servers get as FILESYSTEM_PREFIX for l and n: a gallery of as many
 * images), at a size drawn from 64-1024 px wide in three request forms. Each query's image and
 * output size are kept to count how many requests of a run ask again for one
 * (RunResult.repeatShare).
 *
 * IIIF 2 runs every server with IIIF_VERSION=2 (ours refuses `full` as a size under IIIF 3);
 * iipsrv 1.1 speaks IIIF 2 only, but the IIIF 3 requests here are valid 2.1 requests too.
 */
function iiifWorkloads(image: string, fullW: number, fullH: number, thumbnailDir: string, thumbnailNames: string[]): Workload[] {
  const int = (rnd: () => number, lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const fit = (scale: number) => `${Math.round(fullW * scale)}x${Math.round(fullH * scale)}`;
  const thumbnails = (seed: number) => {
    const rnd = seededRandom(seed);
    const minW = 64;
    const maxW = 1024;
    const forms: Array<() => [string, string]> = [
      () => {
        const w = int(rnd, minW, maxW);
        return [`${w},`, `${w}x${Math.round((w * fullH) / fullW)}`];
      },
      () => {
        const h = int(rnd, Math.round((minW * fullH) / fullW), Math.round((maxW * fullH) / fullW));
        return [`,${h}`, `${Math.round((h * fullW) / fullH)}x${h}`];
      },
      () => {
        const w = int(rnd, minW, maxW);
        const h = int(rnd, minW, maxW);
        return [`!${w},${h}`, fit(Math.min(w / fullW, h / fullH))];
      },
    ];
    const picked = Array.from({ length: LIST_LENGTH }, () => [
      thumbnailNames[Math.floor(rnd() * thumbnailNames.length)]!,
      ...forms[Math.floor(rnd() * forms.length)]!(),
    ]);
    const query = (name: string, size: string) => `IIIF=${name}/full/${size}/0/default.jpg`;
    return {
      queries: picked.map(([name, size]) => query(name!, size!)),
      outputKeys: picked.map(([name, , output]) => `${name} ${output}`),
      samples: [
        ...[',120', '200,', '!256,256'].map((size, i) => query(thumbnailNames[i % thumbnailNames.length]!, size)),
        ...picked.slice(0, 3).map(([name, size]) => query(name!, size!)),
      ],
      sizeTolerance: 1,
    };
  };
  const regions = (seed: number, size: string) => {
    const rnd = seededRandom(seed);
    const side = 2000;
    const query = (x: number, y: number) => `IIIF=${image}/${x},${y},${side},${side}/${size}/0/default.jpg`;
    const queries = Array.from({ length: LIST_LENGTH }, () => query(int(rnd, 0, fullW - side), int(rnd, 0, fullH - side)));
    return { queries, samples: [query(0, 0), query(fullW - side, fullH - side), ...queries.slice(0, 3)] };
  };
  const v2 = { IIIF_VERSION: '2' };
  const gallery = { FILESYSTEM_PREFIX: thumbnailDir + '/' };
  const thumbTitle = `thumbnails of ${thumbnailNames.length} images, 64-1024 px wide (full/w, ,h !w,h)`;
  return [
    { id: 'l', title: `IIIF 3 ${thumbTitle}`, ...thumbnails(SEED + 11), kind: 'jpeg', env: gallery, mayBeUnsupported: true },
    { id: 'm', title: 'IIIF 3 full-resolution 2000x2000 regions (x,y,2000,2000/max)', ...regions(SEED + 12, 'max'), kind: 'jpeg', mayBeUnsupported: true },
    {
      id: 'n',
      title: `IIIF 2 ${thumbTitle}, IIIF_VERSION=2`,
      ...thumbnails(SEED + 13),
      kind: 'jpeg',
      env: { ...gallery, ...v2 },
      mayBeUnsupported: true,
    },
    {
      id: 'o',
      title: 'IIIF 2 full-resolution 2000x2000 regions (x,y,2000,2000/full, IIIF_VERSION=2)',
      ...regions(SEED + 14, 'full'),
      kind: 'jpeg',
      env: v2,
      mayBeUnsupported: true,
    },
  ];
}

/**
 * k: random JTL tiles of a 10000x7000 lossy JP2 (bench/lib/image.ts), at every resolution. The
 * servers' own level sizes are used for their tile counts (iipsrv 1.1 floor-halves, ours uses the
 * codec's ceil sizes: the counts agree here); the samples checked are inner tiles, whose size
 * does not depend on that. `master` is iipsrv master's location, when it runs.
 */
async function jp2Workload(
  nginxPort: number,
  iipLocation: string,
  oursLocation: string,
  master: string | null,
  kind: 'jp2' | 'htj2k' = 'jp2',
): Promise<Workload> {
  const jp2 = kind === 'jp2' ? benchJp2(log) : benchHtj2k(log);
  const recipe = kind === 'jp2' ? `opj_compress ${JP2_RECIPE.join(' ')}` : `ojph_compress ${HTJ2K_RECIPE.join(' ')}`;
  log(
    `${kind === 'jp2' ? 'JPEG2000' : 'HTJ2K'} image: ${jp2.file} (${(statSync(jp2.file).size / MB).toFixed(1)} MB${jp2.generated ? ', new' : ', cached'}; ${recipe})`,
  );
  const levelsOf = async (location: string) => {
    const r = await get(nginxPort, `${location}?FIF=${jp2.name}&OBJ=Resolutions`);
    if (r.status !== 200) throw new Error(`${location}: OBJ=Resolutions on the JP2 answered ${r.status}: ${r.body.toString().slice(0, 300)}`);
    return levelsFromAnswer(r.body.toString());
  };
  const iipLevels = await levelsOf(iipLocation);
  const ourLevels = await levelsOf(oursLocation);
  const masterLevels = master ? await levelsOf(master) : null;
  const sizes = (levels: Array<[number, number]>) => levels.map(([w, h]) => `${w}x${h}`).join(' ');
  log(`JP2 OBJ=Resolutions: iipsrv 1.1 ${sizes(iipLevels)}; ours ${sizes(ourLevels)}${masterLevels ? `; iipsrv master ${sizes(masterLevels)}` : ''}`);
  const count = ([w, h]: [number, number]) => Math.ceil(w / TILE) * Math.ceil(h / TILE);
  for (const [name, levels] of [
    ['ours', ourLevels],
    ['iipsrv master', masterLevels],
  ] as const) {
    if (levels && (iipLevels.length !== levels.length || iipLevels.some((l, i) => count(l) !== count(levels[i]!)))) {
      throw new Error(`the JP2 tile grids of ${name} and iipsrv 1.1 differ: the same JTL list would not ask for the same tiles`);
    }
  }
  const pairs: Array<[number, number]> = [];
  const inner: Array<[number, number]> = [];
  iipLevels.forEach(([w, h], res) => {
    const across = Math.ceil(w / TILE);
    const down = Math.ceil(h / TILE);
    for (let t = 0; t < across * down; t++) {
      pairs.push([res, t]);
      if (t % across < across - 1 && Math.floor(t / across) < down - 1) inner.push([res, t]);
    }
  });
  const rnd = seededRandom(SEED + 7);
  const queries = Array.from({ length: LIST_LENGTH }, () => pairs[Math.floor(rnd() * pairs.length)]!).map(([r, t]) => `FIF=${jp2.name}&JTL=${r},${t}`);
  const samples = [inner[0]!, inner[Math.floor(inner.length / 2)]!, inner[inner.length - 1]!].map(([r, t]) => `FIF=${jp2.name}&JTL=${r},${t}`);
  if (kind === 'htj2k') {
    // iipsrv 1.1 decodes HT code-blocks with OpenJPEG, which gives flat grey tiles below a
    // codestream tile: only ours is timed (the plan below).
    return { id: 'p', title: 'random HTJ2K tiles, all levels (JTL; the same image as b and k)', queries, samples, kind: 'jpeg' };
  }
  return { id: 'k', title: 'random JPEG2000 tiles, all levels (JTL)', queries, samples, kind: 'jpeg' };
}

// ---------------------------------------------------------------------------------------------
// Runs

interface RunResult {
  workload: Workload;
  backend: Backend;
  wrk: WrkResult;
  cpuSeconds: number;
  nginxCpuSeconds: number;
  peakRssTotal: number;
  /** largest peak RSS of one worker process (ours: a worker; iipsrv: a process) */
  peakRssWorker: number;
  /** ours: the primary's peak RSS */
  peakRssPrimary: number;
  upstreamErrors: string[];
  /** share of the whole machine's CPU time that was busy during the run, % */
  boxBusy: number;
  /** workloads with output keys: share of the timed requests that asked again for an output (see repeatShare) */
  repeatShare: number | null;
  flags: string[];
}

/**
 * The share of a run's timed requests whose output (Workload.outputKeys) had been asked for
 * before, in the run or its warm-up: the most that a response cache, however large, could answer.
 * wrk's threads walk the list from their start offsets (wrk.ts); each is taken to have made an
 * equal share of the requests.
 */
function repeatShare(w: Workload, warmupRequests: number, timedRequests: number): number | null {
  const keys = w.outputKeys;
  if (!keys || timedRequests === 0) return null;
  const walk = (offset: number, requests: number) => {
    const walked: string[] = [];
    const perThread = Math.ceil(requests / WRK.threads);
    for (let t = 0; t < WRK.threads; t++) {
      const start = threadStart(t, offset, keys.length);
      for (let k = 0; k < perThread; k++) walked.push(keys[(start + k) % keys.length]!);
    }
    return walked;
  };
  const asked = new Set(walk(warmupOffset(w), warmupRequests));
  const timed = walk(0, timedRequests);
  let firstTimes = 0;
  for (const key of timed) {
    if (asked.has(key)) continue;
    asked.add(key);
    firstTimes++;
  }
  return 1 - firstTimes / timed.length;
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
function boxCpu(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const fmtMs = (n: number) => (!Number.isFinite(n) ? 'n/a' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0));

function newLines(file: string, offset: number): { lines: string[]; size: number } {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { lines: [], size: offset };
  }
  return {
    lines: text
      .slice(offset)
      .split('\n')
      .filter((l) => l.trim() !== ''),
    size: text.length,
  };
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const startedAt = Date.now();
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();

  // ---- preconditions
  for (const [what, file] of [
    ['the compiled server (run npm run build)', path.join(ROOT, 'dist/main.js')],
    ['iipsrv 1.1 (apt-get install iipimage-server)', IIPSRV11],
    ...(IIPSRV_MASTER ? ([['the iipsrv master binary named by IIPSRV_MASTER', IIPSRV_MASTER]] as const) : []),
  ] as const) {
    try {
      statSync(file);
    } catch {
      throw new Error(`missing ${what}: ${file}`);
    }
  }
  for (const program of ['nginx', 'wrk', 'vips']) {
    const r = spawnSync('sh', ['-c', `command -v ${program} || test -x /usr/sbin/${program}`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${program} is not installed (apt-get install ${program === 'vips' ? 'libvips-tools' : program})`);
  }
  const distTime = statSync(path.join(ROOT, 'dist/main.js')).mtimeMs;
  const newerSources: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && statSync(p).mtimeMs > distTime + 1000) newerSources.push(path.relative(ROOT, p));
    }
  };
  walk(path.join(ROOT, 'src'));
  if (newerSources.length > 0)
    log(`WARNING: dist/ is older than ${newerSources.slice(0, 3).join(', ')}${newerSources.length > 3 ? ' ...' : ''}: npm run build`);

  // ---- image
  const image = benchImage(log);
  log(`image: ${image.file} (${(statSync(image.file).size / MB).toFixed(1)} MB${image.generated ? ', new' : ', cached'})`);

  // ---- temp prefix for nginx and the wrk scripts
  const dir = mkdtempSync(path.join(os.tmpdir(), 'iipsrv-bench-'));
  registerTempDir(dir);
  chmodSync(dir, 0o755);

  // ---- servers
  // MAX_LAYERS=-1: iipsrv 1.1 decodes every JPEG2000 layer whatever it says; ours then does the same work (k).
  const common = { PATH: process.env.PATH, HOME: process.env.HOME, FILESYSTEM_PREFIX: image.dir, JPEG_QUALITY: '75', VERBOSITY: '0', MAX_LAYERS: '-1' };
  const iipEnv = { ...common, MAX_IMAGE_CACHE_SIZE: '10', MEMCACHED_SERVERS: '127.0.0.1:1' };
  const oursEnv: NodeJS.ProcessEnv = { ...common, MAX_IMAGE_CACHE_SIZE: '10', MEMCACHED_SERVERS: '' };
  for (const pair of (process.env.BENCH_OURS_ENV ?? '').split(/\s+/).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq > 0) oursEnv[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const iipArgs = (port: number) => ['--bind', `127.0.0.1:${port}`, '--backlog', '1024'];
  const oursArgs = (workers: number) => (port: number) => ['--bind', `127.0.0.1:${port}`, '--backlog', '1024', '--workers', String(workers)];
  const servers: ServerSpec[] = [
    { key: 'iip1', kind: 'iipsrv11', ports: [await freePort()], args: iipArgs, env: iipEnv, procs: [] },
    { key: 'iip2', kind: 'iipsrv11', ports: [await freePort(), await freePort()], args: iipArgs, env: iipEnv, procs: [] },
    { key: 'ours1', kind: 'ours', ports: [await freePort()], args: oursArgs(1), env: oursEnv, procs: [] },
    { key: 'ours2', kind: 'ours', ports: [await freePort()], args: oursArgs(2), env: oursEnv, procs: [] },
    { key: 'ours1nc', kind: 'ours', ports: [await freePort()], args: oursArgs(1), env: { ...oursEnv, MAX_IMAGE_CACHE_SIZE: '0' }, procs: [] },
    // For the pixel-type workloads, whose few hundred tiles would otherwise all come from the caches.
    { key: 'iip1nc', kind: 'iipsrv11', ports: [await freePort()], args: iipArgs, env: { ...iipEnv, MAX_IMAGE_CACHE_SIZE: '0' }, procs: [] },
  ];
  // iipsrv master: started as 1.1 is, in 1.1's environment (the variables both know mean the same
  // thing in both), its own defaults otherwise.
  if (IIPSRV_MASTER) {
    servers.push(
      { key: 'mas1', kind: 'master', ports: [await freePort()], args: iipArgs, env: iipEnv, procs: [] },
      { key: 'mas2', kind: 'master', ports: [await freePort(), await freePort()], args: iipArgs, env: iipEnv, procs: [] },
      { key: 'mas1nc', kind: 'master', ports: [await freePort()], args: iipArgs, env: { ...iipEnv, MAX_IMAGE_CACHE_SIZE: '0' }, procs: [] },
    );
  }
  const byKey = (k: string) => servers.find((s) => s.key === k)!;
  const B = {
    iip1: { key: 'iip1', label: 'iipsrv 1.1 x1', location: '/iip11', server: byKey('iip1'), processes: 1 },
    iip2: { key: 'iip2', label: 'iipsrv 1.1 x2 processes', location: '/iip11x2', server: byKey('iip2'), processes: 2 },
    ours1: { key: 'ours1', label: 'ours w1, conn/request', location: '/ours1', server: byKey('ours1'), processes: 1 },
    ours1ka: { key: 'ours1ka', label: 'ours w1, keep-alive', location: '/ours1-ka', server: byKey('ours1'), processes: 1 },
    ours2ka: { key: 'ours2ka', label: 'ours w2, keep-alive', location: '/ours2-ka', server: byKey('ours2'), processes: 2 },
    ours1nc: { key: 'ours1nc', label: 'ours w1, keep-alive, MAX_IMAGE_CACHE_SIZE=0', location: '/ours1nc-ka', server: byKey('ours1nc'), processes: 1 },
    ours1ncp: { key: 'ours1ncp', label: 'ours w1, conn/request, MAX_IMAGE_CACHE_SIZE=0', location: '/ours1nc', server: byKey('ours1nc'), processes: 1 },
    iip1nc: { key: 'iip1nc', label: 'iipsrv 1.1 x1, MAX_IMAGE_CACHE_SIZE=0', location: '/iip11nc', server: byKey('iip1nc'), processes: 1 },
  } satisfies Record<string, Backend>;
  const masterBackends: Backend[] = IIPSRV_MASTER
    ? [
        { key: 'mas1', label: 'iipsrv master x1', location: '/master', server: byKey('mas1'), processes: 1 },
        { key: 'mas2', label: 'iipsrv master x2 processes', location: '/masterx2', server: byKey('mas2'), processes: 2 },
        { key: 'mas1nc', label: 'iipsrv master x1, MAX_IMAGE_CACHE_SIZE=0', location: '/masternc', server: byKey('mas1nc'), processes: 1 },
      ]
    : [];
  const backends: Backend[] = [...Object.values(B), ...masterBackends];
  /** iipsrv master's backend run in the same way as a 1.1 backend (iip1 -> mas1), if master runs. */
  const masterFor = (iip: Backend) => masterBackends.find((m) => m.key === iip.key.replace(/^iip/, 'mas'));

  log(
    `starting iipsrv 1.1 (3 processes), ours (3 instances: w1, w2, w1 without response cache)${IIPSRV_MASTER ? `, iipsrv master (3 processes: ${IIPSRV_MASTER})` : ''}...`,
  );
  for (const s of servers) await startServer(s);

  const nginxPort = await freePort();
  const nginxDir = path.join(dir, 'nginx');
  mkdirSync(path.join(nginxDir, 'tmp'), { recursive: true });
  copyFileSync(FASTCGI_PARAMS, path.join(nginxDir, 'iipsrv_fastcgi_params'));
  writeFileSync(path.join(nginxDir, 'nginx.conf'), nginxConfig(nginxDir, nginxPort, servers, backends));
  for (const sub of ['client_body', 'fastcgi', 'proxy', 'uwsgi', 'scgi']) mkdirSync(path.join(nginxDir, 'tmp', sub), { recursive: true });
  const errorLog = path.join(nginxDir, 'error.log');
  const nginx = startProcess('nginx', 'nginx', ['-p', nginxDir + '/', '-c', path.join(nginxDir, 'nginx.conf'), '-e', errorLog], { PATH: process.env.PATH });
  await waitUntilListening(nginx, { port: nginxPort }, { what: nginx.name, timeoutMs: 20_000 });
  log(
    `nginx on 127.0.0.1:${nginxPort} (worker_processes ${NGINX_WORKERS}); wrk -t${WRK.threads} -c${WRK.connections} -d${WRK.durationSeconds}s --latency --timeout ${WRK.timeoutSeconds}s (+${WARMUP_SECONDS}s untimed warm-up per run)`,
  );

  // ---- geometry from the servers
  const expected = expectedLevels(IMAGE_WIDTH, IMAGE_HEIGHT, TILE).reverse();
  const geometry = new Map<string, { levels: Array<[number, number]>; tile: [number, number] }>();
  let masterServerHeader = '';
  for (const b of [B.ours1, B.iip1, ...masterBackends.slice(0, 1)]) {
    const r = await get(nginxPort, `${b.location}?FIF=${image.name}&OBJ=Resolutions`);
    const t = await get(nginxPort, `${b.location}?FIF=${image.name}&OBJ=Tile-size`);
    if (r.status !== 200) throw new Error(`${b.label}: OBJ=Resolutions answered ${r.status}: ${r.body.toString().slice(0, 300)}`);
    const tm = /Tile-size:(\d+) (\d+)/.exec(t.body.toString());
    if (!tm) throw new Error(`${b.label}: no Tile-size in ${JSON.stringify(t.body.toString().slice(0, 300))}`);
    geometry.set(b.key, { levels: levelsFromAnswer(r.body.toString()), tile: [Number(tm[1]), Number(tm[2])] });
    if (b.server.kind === 'master') masterServerHeader = String(r.headers?.server ?? 'no Server header');
  }
  const gOurs = geometry.get('ours1')!;
  const gIip = geometry.get('iip1')!;
  const warnings: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!same(gOurs, gIip)) warnings.push(`ours and iipsrv 1.1 disagree on the geometry: ours ${JSON.stringify(gOurs)}, iipsrv ${JSON.stringify(gIip)}`);
  const gMaster = geometry.get('mas1');
  if (gMaster && !same(gMaster, gIip))
    warnings.push(`iipsrv master and 1.1 disagree on the geometry: master ${JSON.stringify(gMaster)}, 1.1 ${JSON.stringify(gIip)}`);
  if (!same(gIip.levels, expected))
    warnings.push(`iipsrv 1.1's Resolutions ${JSON.stringify(gIip.levels)} differ from the floor-halved ${JSON.stringify(expected)}`);
  log(
    `OBJ=Resolutions (${IIPSRV_MASTER ? 'all three servers' : 'both servers'}): ${gIip.levels.map(([w, h]) => `${w}x${h}`).join(' ')}${same(gIip.levels, expected) ? ' = floor-halving' : ''}; Tile-size ${gIip.tile.join('x')}`,
  );

  // ---- workloads
  const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : null;
  const typed = !only || ['h', 'i', 'j'].some((id) => only.has(id)) ? pixelTypeImages(log, image.file) : null;
  const workloads = buildWorkloads(image.name, gIip.levels, gIip.tile, typed).filter((w) => !only || only.has(w.id));
  if (!only || only.has('k')) workloads.push(await jp2Workload(nginxPort, B.iip1.location, B.ours1.location, masterBackends[0]?.location ?? null));
  if (!only || only.has('p')) workloads.push(await jp2Workload(nginxPort, B.iip1.location, B.ours1.location, masterBackends[0]?.location ?? null, 'htj2k'));
  // l, n: a gallery of THUMBNAIL_NAMES images, all of them links to the benchmark image.
  const thumbnailDir = path.join(dir, 'gallery');
  mkdirSync(thumbnailDir);
  const thumbnailNames = Array.from({ length: THUMBNAIL_NAMES }, (_, i) => `image-${String(i).padStart(2, '0')}.tif`);
  for (const name of thumbnailNames) symlinkSync(image.file, path.join(thumbnailDir, name));
  workloads.push(...iiifWorkloads(image.name, IMAGE_WIDTH, IMAGE_HEIGHT, thumbnailDir, thumbnailNames).filter((w) => !only || only.has(w.id)));
  for (const w of workloads) w.script = writeWrkScript(dir, `workload-${w.id}`, w.queries);
  const plan: Array<[Workload, Backend]> = [];
  const byId = (id: string) => workloads.find((w) => w.id === id);
  // iipsrv master, when it runs, is run right before each 1.1 backend, in the same way.
  const add = (id: string, list: Backend[]) => {
    const w = byId(id);
    if (!w) return;
    for (const b of list) {
      const m = b.server.kind === 'iipsrv11' ? masterFor(b) : undefined;
      if (m) plan.push([w, m]);
      plan.push([w, b]);
    }
  };
  // Ours both ways: one FastCGI connection per request (nginx's stock fastcgi_pass, all iipsrv
  // can do) and fastcgi_keep_conn (the -ka locations).
  add('a', [B.ours1, B.ours1ka, B.iip1]);
  add('b', [B.ours1, B.ours1ka, B.ours2ka, B.ours1nc, B.iip1, B.iip2]);
  // Right after b, so that the three are compared in the same state of the machine.
  add('f', [B.ours1, B.ours1ka, B.iip1]);
  add('g', [B.ours1, B.ours1ka, B.iip1]);
  add('c', [B.ours1, B.ours1ka, B.ours2ka, B.iip1, B.iip2]);
  add('d', [B.ours1, B.ours1ka, B.ours2ka, B.iip1, B.iip2]);
  add('e', [B.ours1, B.ours1ka, B.ours2ka, B.ours1nc, B.iip1, B.iip2]);
  for (const id of ['h', 'i', 'j']) add(id, [B.ours1ncp, B.ours1nc, B.iip1nc]);
  add('k', [B.ours1, B.ours1ka, B.ours2ka, B.iip1, B.iip2]);
  add('p', [B.ours1, B.ours1ka, B.ours2ka]);
  for (const id of ['l', 'n']) add(id, [B.ours1, B.ours1ka, B.ours2ka, B.ours1nc, B.iip1, B.iip2]);
  for (const id of ['m', 'o']) add(id, [B.ours1, B.ours1ka, B.ours2ka, B.iip1, B.iip2]);

  // ---- sample checks: 200 + a JPEG (or the IIP line) on every backend, same dimensions everywhere
  log('\nchecking sample requests on every backend...');
  const checkFailures: string[] = [];
  const notRun: Array<{ workload: string; backend: string; reason: string }> = [];
  // Servers run with a workload's own environment (IIIF_VERSION=2 for n and o) while it is checked and timed.
  let serverEnv: Record<string, string> = {};
  const restartServers = async (env: Record<string, string>) => {
    await Promise.all(servers.flatMap((s) => s.procs.map((p) => stopGroup(p))));
    for (const s of servers) await startServer(s, env);
    serverEnv = env;
  };
  const envText = (env: Record<string, string> | undefined) =>
    Object.entries(env ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
  for (const w of workloads) {
    if (!same(w.env ?? {}, serverEnv)) await restartServers(w.env ?? {});
    const dims = new Map<string, string>();
    const seen = new Set<string>();
    for (const [pw, b] of plan) {
      if (pw !== w || seen.has(b.key)) continue;
      seen.add(b.key);
      const failures: string[] = [];
      let refused = 0;
      let refusal = '';
      for (const q of w.samples) {
        const r: Reply = await get(nginxPort, `${b.location}?${q}`).catch((e: Error) => ({ status: 0, type: e.message, body: Buffer.alloc(0) }));
        if (r.status !== 200) {
          failures.push(`${w.id} ${b.label}: ${q} -> status ${r.status} ${r.type} ${r.body.toString('latin1').slice(0, 200)}`);
          if (r.status >= 400 && r.status < 600) {
            refused++;
            refusal ||= `${r.status} ${JSON.stringify(r.body.toString('latin1').trim().slice(0, 120))} for ${q}`;
          }
          continue;
        }
        if (w.kind === 'obj') {
          // iipsrv 1.1 and ours answer with an IIP:1.0 line, iipsrv master (1.3) with IIP:1.3. (Without
          // FIF, 1.1 and master end the HTTP headers early, on an empty Last-Modified line, so their
          // Content-Type line comes in the body too; with FIF, master puts its IIP line among the headers.)
          const body = r.body.toString();
          if (body.includes('IIP:1.') || (b.server.kind === 'master' && r.headers?.iip)) continue;
          checkFailures.push(`${w.id} ${b.label}: ${q} -> no IIP line: ${JSON.stringify(body.slice(0, 100))}`);
          continue;
        }
        if (!r.type.startsWith('image/jpeg') || !isJpeg(r.body)) {
          failures.push(`${w.id} ${b.label}: ${q} -> ${r.type}, ${r.body.length} bytes, not a complete JPEG`);
          continue;
        }
        const meta = await sharp(r.body)
          .metadata()
          .catch(() => null);
        const d = meta ? `${meta.width}x${meta.height}x${meta.channels}` : 'undecodable';
        if (!meta) failures.push(`${w.id} ${b.label}: ${q} -> JPEG does not decode`);
        const prev = dims.get(q);
        if (prev === undefined) dims.set(q, d);
        else if (prev !== d) {
          const [pw, ph, pc] = prev.split('x').map(Number);
          const near =
            meta && pc === meta.channels && Math.abs(pw! - meta.width!) <= (w.sizeTolerance ?? 0) && Math.abs(ph! - meta.height!) <= (w.sizeTolerance ?? 0);
          const text = `${w.id} ${b.label}: ${q} -> ${d}, another backend gave ${prev}`;
          if (near) warnings.push(`${text} (within ${w.sizeTolerance} px: rounded differently)`);
          else failures.push(text);
        }
      }
      if (w.mayBeUnsupported && b.server.kind !== 'ours' && refused === w.samples.length) {
        notRun.push({ workload: w.id, backend: b.key, reason: `${b.label} refuses these requests: ${refusal}` });
        log(`  ${w.id}. ${b.label}: n/a, it refuses every sample (${refusal})`);
      } else checkFailures.push(...failures);
    }
    log(
      `  ${w.id}. ${w.title}${w.env ? ` (servers with ${envText(w.env)})` : ''}: ${[...seen].length} backends x ${w.samples.length} samples checked${w.kind === 'jpeg' ? ` (e.g. ${[...dims.values()].slice(0, 3).join(', ')})` : ''}`,
    );
  }
  // Backends that do not support a workload's requests are not timed on it.
  const timedPlan = plan.filter(([w, b]) => !notRun.some((n) => n.workload === w.id && n.backend === b.key));
  // ours must really re-encode for QLT=75 (e) and pass through the stored tile otherwise (b)
  const eW = byId('e');
  const bW = byId('b');
  if (eW && bW) {
    const stored = await get(nginxPort, `${B.ours1ka.location}?${bW.samples[0]}`);
    const reenc = await get(nginxPort, `${B.ours1ka.location}?${eW.samples[0]}`);
    const iip = await get(nginxPort, `${B.iip1.location}?${eW.samples[0]}`);
    const master = masterBackends[0];
    const mas = master ? [await get(nginxPort, `${master.location}?${bW.samples[0]}`), await get(nginxPort, `${master.location}?${eW.samples[0]}`)] : null;
    log(
      `  ours ${bW.samples[0]}: ${stored.body.length} bytes (stored q90 tile); with QLT=75: ${reenc.body.length} bytes; iipsrv 1.1: ${iip.body.length} bytes` +
        (mas ? `; iipsrv master: ${mas[0]!.body.length} bytes, with QLT=75 ${mas[1]!.body.length} bytes` : ''),
    );
    if (stored.body.equals(reenc.body)) checkFailures.push('ours answers QLT=75 with the stored tile bytes: workload e would not re-encode');
    if (mas && mas[0]!.body.equals(mas[1]!.body))
      warnings.push(
        `iipsrv master answered ${eW.samples[0]} with the stored tile it had just sent for ${bW.samples[0]}: its tile cache does not tell the qualities apart ` +
          '(e restarts the servers first and asks for QLT=75 tiles only, so its e rows are re-encoded tiles)',
      );
  }
  if (checkFailures.length > 0) {
    log('\n!!!!!!!! SAMPLE CHECKS FAILED !!!!!!!!');
    for (const f of checkFailures) log(`  ${f}`);
    log('(the timed runs go on, but their numbers are suspect)');
  }

  // ---- timed runs
  log(`\n${timedPlan.length} runs, about ${Math.round(((timedPlan.length * (WRK.durationSeconds + WARMUP_SECONDS + 0.5)) / 60) * 10) / 10} min\n`);
  const results: RunResult[] = [];
  let errorLogOffset = newLines(errorLog, 0).size;
  let current: Workload | null = null;
  /** servers that have served a timed run of the current workload */
  const served = new Set<string>();
  for (const [w, b] of timedPlan) {
    const flags: string[] = [];
    if (w !== current) {
      // Fresh server processes for every workload: RSS and caches belong to this workload only.
      current = w;
      await restartServers(w.env ?? {});
      served.clear();
      log(`-- ${w.id}. ${w.title} (servers restarted${w.env ? ` with ${envText(w.env)}` : ''})`);
    } else if (served.has(b.server.key)) {
      // A server reached through two locations (ours w1 with and without keep-alive) starts each
      // run fresh too: the second run must not find the first one's responses in the caches.
      for (const p of b.server.procs) await stopGroup(p);
      await startServer(b.server, serverEnv);
    }
    served.add(b.server.key);
    if (!serverAlive(b.server)) {
      flags.push(`${b.server.key} had died before this run (restarted)`);
      for (const p of b.server.procs) await stopGroup(p);
      await startServer(b.server, serverEnv);
    }
    if (!nginx.alive()) throw new Error(`nginx died:\n${nginx.output()}`);
    const url = `http://127.0.0.1:${nginxPort}`;
    // The warm-up starts half the list further on: it must not put the timed run's first
    // responses into the caches (a random workload would then begin with cache hits).
    const warmup = WARMUP_SECONDS > 0 ? await runWrk(WRK, url, w.script!, b.location, WARMUP_SECONDS, warmupOffset(w)) : null;
    errorLogOffset = newLines(errorLog, errorLogOffset).size;
    const roots = b.server.procs.map((p) => p.pid);
    const workersBefore = treeCpuSeconds(roots).pids.join(',');
    const cpu0 = treeCpuSeconds(roots).seconds;
    const ngx0 = treeCpuSeconds([nginx.pid]).seconds;
    const box0 = boxCpu();
    const sampler = sampleRss(roots);
    const result = await runWrk(WRK, url, w.script!, b.location);
    const rss = sampler.stop();
    const box1 = boxCpu();
    const cpu1 = treeCpuSeconds(roots);
    const ngx1 = treeCpuSeconds([nginx.pid]).seconds;
    const errs = newLines(errorLog, errorLogOffset);
    errorLogOffset = errs.size;
    if (cpu1.pids.join(',') !== workersBefore) flags.push(`server processes changed during the run (${workersBefore} -> ${cpu1.pids.join(',')})`);
    if (!serverAlive(b.server)) flags.push(`${b.server.key} DIED during the run`);
    if (result.non2xx > 0) flags.push(`${result.non2xx} non-2xx/3xx responses`);
    const se = result.socketErrors;
    if (se.connect + se.read + se.write + se.timeout > 0)
      flags.push(`socket errors: connect ${se.connect}, read ${se.read}, write ${se.write}, timeout ${se.timeout}`);
    const upstreamErrors = errs.lines.filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
    if (upstreamErrors.length > 0) flags.push(`${upstreamErrors.length} nginx error-log lines, e.g. ${upstreamErrors[0]!.slice(0, 200)}`);
    const rootSet = new Set(roots);
    let peakWorker = 0;
    let peakPrimary = 0;
    for (const [pid, bytes] of rss.peakPerProcess) {
      if (b.server.kind === 'ours' && rootSet.has(pid)) peakPrimary = Math.max(peakPrimary, bytes);
      else peakWorker = Math.max(peakWorker, bytes);
    }
    const run: RunResult = {
      workload: w,
      backend: b,
      wrk: result,
      cpuSeconds: cpu1.seconds - cpu0,
      nginxCpuSeconds: ngx1 - ngx0,
      peakRssTotal: rss.peakTotal,
      peakRssWorker: peakWorker,
      peakRssPrimary: peakPrimary,
      upstreamErrors,
      boxBusy: (100 * (box1.busy - box0.busy)) / Math.max(1, box1.total - box0.total),
      repeatShare: repeatShare(w, warmup?.requests ?? 0, result.requests),
      flags,
    };
    results.push(run);
    log(
      `${w.id}. ${b.label.padEnd(44)} ${fmt(result.requestsPerSecond).padStart(6)} req/s  p50 ${fmtMs(result.p50ms).padStart(5)} ms  p99 ${fmtMs(result.p99ms).padStart(5)} ms  ` +
        `CPU ${fmtMs((run.cpuSeconds * 1000) / result.requests).padStart(5)} ms/req (nginx ${fmtMs((run.nginxCpuSeconds * 1000) / result.requests)})  ` +
        `RSS ${fmt(run.peakRssTotal / MB)} MB (per worker ${fmt(peakWorker / MB)})  ${fmt(result.bytesRead / result.requests / 1024, 1)} KB/resp  box ${fmt(run.boxBusy)}% busy` +
        (run.repeatShare !== null ? `  outputs asked again ${fmt(100 * run.repeatShare)}%` : '') +
        (flags.length ? `\n   !!! ${flags.join('\n   !!! ')}` : ''),
    );
  }

  // ---- report
  const loadAfter = readFileSync('/proc/loadavg', 'utf8').trim();
  const md = report(results, {
    warnings,
    checkFailures,
    loadBefore,
    loadAfter,
    image: `${image.name} (${IMAGE_WIDTH}x${IMAGE_HEIGHT}, ${gIip.levels.length} levels, ${(statSync(image.file).size / MB).toFixed(0)} MB, JPEG Q90 256x256 tiles, vips ${vipsVersion()})`,
    minutes: (Date.now() - startedAt) / 60_000,
    master: IIPSRV_MASTER ? describeMaster(IIPSRV_MASTER, masterServerHeader) : null,
    notRun,
    extra: [
      process.env.BENCH_OURS_ENV ? `BENCH_OURS_ENV=${process.env.BENCH_OURS_ENV}` : '',
      process.env.BENCH_OURS_NODE_ARGS ? `BENCH_OURS_NODE_ARGS=${process.env.BENCH_OURS_NODE_ARGS}` : '',
    ]
      .filter(Boolean)
      .join(', '),
  });
  writeFileSync(RESULTS, md);
  log('\n' + md);
  log(`written to ${path.relative(process.cwd(), RESULTS) || RESULTS}`);
  const bad = results.filter((r) => r.flags.length > 0);
  if (bad.length > 0 || checkFailures.length > 0) {
    log(
      `\n!!!!!!!! ${bad.length} RUN(S) WITH ERRORS${checkFailures.length ? ` AND ${checkFailures.length} FAILED SAMPLE CHECKS` : ''} — see the flags above !!!!!!!!`,
    );
    return 1;
  }
  return 0;
}

/** The commit the server was built from, and whether src/ had uncommitted changes. */
function gitState(): string {
  const head = spawnSync('git', ['-C', ROOT, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' });
  const dirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8' });
  if (head.status !== 0) return 'unknown commit';
  const subject = head.stdout.trim();
  const changed = dirty.stdout.trim().split('\n').filter(Boolean).length;
  return `\`${subject.length > 90 ? subject.slice(0, 87) + '...' : subject}\`${changed ? ` + ${changed} uncommitted file(s) in src/` : ''}`;
}

/** The iipsrv master binary: its path, the commit of the git checkout it sits in, its Server header, OpenMP or not. */
function describeMaster(bin: string, serverHeader: string): string {
  const git = (args: string[]) => spawnSync('git', ['-C', path.dirname(bin), ...args], { encoding: 'utf8' });
  const head = git(['log', '-1', '--format=%H (%cs)']);
  const dirty = git(['status', '--porcelain', '--untracked-files=no']);
  const checkout = head.status === 0 ? `, built from commit ${head.stdout.trim()}${dirty.stdout.trim() ? ' with local changes' : ''} of its checkout` : '';
  const openmp = /libgomp/.test(spawnSync('ldd', [bin], { encoding: 'utf8' }).stdout ?? '');
  return `\`${bin}\`${checkout}, answering \`Server: ${serverHeader}\`${openmp ? ', linked with OpenMP (libgomp: one process may use both cores)' : ''}`;
}

function vipsVersion(): string {
  const r = spawnSync('vips', ['--version'], { encoding: 'utf8' });
  return (r.stdout ?? '').trim().replace(/^vips-/, '');
}

/** Workloads f and g against b: the same tiles through IIIF, DeepZoom and IIP JTL, all ours (target: within 10 %). */
function iiifAgainstJtl(find: (w: string, b: string) => RunResult | undefined): string[] {
  const viaJtl = find('b', 'ours1ka');
  if (!viaJtl) return [];
  const cpu = (r: RunResult) => (r.cpuSeconds * 1000) / r.wrk.requests;
  const lines: string[] = [];
  for (const [id, name] of [
    ['f', 'IIIF'],
    ['g', 'DeepZoom'],
  ] as const) {
    const other = find(id, 'ours1ka');
    if (!other) continue;
    const ratio = other.wrk.requestsPerSecond / viaJtl.wrk.requestsPerSecond;
    lines.push(
      `${name} tiles against IIP JTL on the same tiles (ours, 1 worker, keep-alive): ${fmt(other.wrk.requestsPerSecond)} against ${fmt(viaJtl.wrk.requestsPerSecond)} req/s, ` +
        `**${ratio.toFixed(2)}×** ${ratio >= 0.9 ? '✓' : '✗'} (target ≥ 0.9×); CPU ${fmtMs(cpu(other))} against ${fmtMs(cpu(viaJtl))} ms/req.`,
      '',
    );
  }
  return lines;
}

/**
 * The goals against iipsrv master (one process, a FastCGI connection per request), each with what
 * this run measured: ours is the default process set on this machine (1 worker with 2 CPUs).
 */
function masterGoals(find: (w: string, b: string) => RunResult | undefined): string[] {
  const cpu = (r: RunResult) => (r.cpuSeconds * 1000) / r.wrk.requests;
  const ok = (r: RunResult | undefined): r is RunResult => r !== undefined && r.wrk.non2xx === 0;
  const lines: string[] = [];
  const check = (goal: string, measured: Array<[string, number]>, met: (x: number) => boolean) => {
    if (measured.length === 0) return;
    const all = measured.every(([, x]) => met(x));
    lines.push(`- ${goal}: ${measured.map(([w, x]) => `${w} ${x.toFixed(2)}${met(x) ? '' : ' ✗'}`).join(', ')} ${all ? '✓' : '✗'}`);
  };
  const ratios = (ids: string[], key: string, f: (ours: RunResult, master: RunResult) => number): Array<[string, number]> =>
    ids.flatMap((w) => {
      const ours = find(w, key);
      const master = find(w, 'mas1');
      return ok(ours) && ok(master) ? [[w, f(ours, master)] as [string, number]] : [];
    });
  const tiles = ['b', 'c', 'f', 'g'];
  check(
    'stock nginx, tiles: req/s ≥ 1.3× master',
    ratios(tiles, 'ours1', (o, m) => o.wrk.requestsPerSecond / m.wrk.requestsPerSecond),
    (x) => x >= 1.3,
  );
  check(
    'stock nginx, tiles: CPU per tile ≤ 0.8× master',
    ratios(tiles, 'ours1', (o, m) => cpu(o) / cpu(m)),
    (x) => x <= 0.8,
  );
  check(
    'stock nginx, tiles: p99 ≤ 1.5× master',
    ratios(tiles, 'ours1', (o, m) => o.wrk.p99ms / m.wrk.p99ms),
    (x) => x <= 1.5,
  );
  check(
    'keep-alive, tiles: req/s ≥ 2× master',
    ratios(tiles, 'ours1ka', (o, m) => o.wrk.requestsPerSecond / m.wrk.requestsPerSecond),
    (x) => x >= 2,
  );
  check(
    'CVT and IIIF regions (keep-alive): req/s ≥ 1.3× master',
    ratios(['d', 'm', 'o'], 'ours1ka', (o, m) => o.wrk.requestsPerSecond / m.wrk.requestsPerSecond),
    (x) => x >= 1.3,
  );
  check(
    'thumbnails: CPU per thumbnail < master',
    ratios(['l', 'n'], 'ours1', (o, m) => cpu(o) / cpu(m)),
    (x) => x < 1,
  );
  const ours = ['ours1', 'ours1ka'].flatMap((key) => ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'k', 'l', 'm', 'n', 'o'].map((w) => find(w, key))).filter(ok);
  if (ours.length > 0) {
    const total = Math.max(...ours.map((r) => r.peakRssTotal)) / MB;
    const worker = Math.max(...ours.map((r) => r.peakRssWorker)) / MB;
    lines.push(
      `- memory under load, 1 worker + primary (the default here): peak ${fmt(total)} MB in all ${total <= 150 ? '✓' : '✗'} (goal ≤ 150), worker ${fmt(worker)} MB ${worker <= 80 ? '✓' : '✗'} (goal ≤ 80)`,
    );
  }
  return lines.length ? ['Goals against iipsrv master (ratios ours/master; stock nginx is ours w1 with a connection per request):', '', ...lines, ''] : [];
}

function report(
  results: RunResult[],
  info: {
    warnings: string[];
    checkFailures: string[];
    loadBefore: string;
    loadAfter: string;
    image: string;
    minutes: number;
    extra: string;
    /** iipsrv master: which binary, or null when it did not run */
    master: string | null;
    /** backends left out of a workload they do not support (their cells say n/a) */
    notRun: Array<{ workload: string; backend: string; reason: string }>;
  },
): string {
  const find = (w: string, b: string) => results.find((r) => r.workload.id === w && r.backend.key === b);
  const cpuMs = (r: RunResult) => (r.cpuSeconds * 1000) / r.wrk.requests;
  const lat = (r: RunResult) => `${fmtMs(r.wrk.p50ms)} / ${fmtMs(r.wrk.p99ms)}`;
  const rss = (r: RunResult) =>
    r.backend.server.kind === 'ours'
      ? `${fmt(r.peakRssTotal / MB)} (${r.backend.processes}×${fmt(r.peakRssWorker / MB)} + ${fmt(r.peakRssPrimary / MB)})`
      : r.backend.processes > 1
        ? `${fmt(r.peakRssTotal / MB)} (${r.backend.processes}×${fmt(r.peakRssWorker / MB)})`
        : fmt(r.peakRssTotal / MB);
  const targets: Record<string, number> = { b: 3, c: 5, d: 1.5, k: 1 };
  const hasMaster = results.some((r) => r.backend.server.kind === 'master');
  const masterKey = (iipKey: string) => iipKey.replace(/^iip/, 'mas');
  // An iipsrv backend of a workload: run, or left out as not supported (then its cells say n/a).
  const planned = (w: string, key: string) => find(w, key) !== undefined || info.notRun.some((n) => n.workload === w && n.backend === key);
  /** The iipsrv 1.1 backend an ours run is compared with: as many processes, without a cache where ours has none and 1.1 ran so too. */
  const iipKeyFor = (r: RunResult): string | null => {
    const w = r.workload.id;
    const has = (k: string) => planned(w, k) || planned(w, masterKey(k));
    if (r.backend.processes === 2) return has('iip2') ? 'iip2' : null;
    const noCache = r.backend.server.env.MAX_IMAGE_CACHE_SIZE === '0';
    const order = noCache ? ['iip1nc', 'iip1'] : ['iip1', 'iip1nc'];
    return order.find(has) ?? null;
  };
  const processesLabel: Record<string, string> = { iip1: '1', iip2: '2', iip1nc: '1, MAX_IMAGE_CACHE_SIZE=0' };
  const ifMaster = (cell: string) => (hasMaster ? [cell] : []);
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const rows: string[] = [];
  for (const ro of results) {
    if (ro.backend.server.kind !== 'ours') continue;
    const w = ro.workload.id;
    const iipKey = iipKeyFor(ro);
    if (!iipKey) continue;
    const ri = find(w, iipKey);
    const rm = find(w, masterKey(iipKey));
    const others = [...(hasMaster ? [rm] : []), ri];
    // A run with error answers (non-2xx) measured something else: its ratios say n/a.
    const failing = (r: RunResult) => r.wrk.non2xx > 0;
    const usable = (r: RunResult | undefined) => (r && !failing(r) ? r : undefined);
    const valid = usable(ro);
    const ratio = (other: RunResult | undefined) => {
      const o = usable(other);
      return valid && o ? valid.wrk.requestsPerSecond / o.wrk.requestsPerSecond : Number.NaN;
    };
    const cpuRatio = (other: RunResult | undefined) => {
      const o = usable(other);
      return valid && o ? `${(cpuMs(valid) / cpuMs(o)).toFixed(2)}×` : 'n/a';
    };
    const target = targets[w];
    const r11 = ratio(ri);
    const mark =
      Number.isFinite(r11) && target !== undefined && (ro.backend.key === 'ours1ka' || ro.backend.key === 'ours2ka')
        ? r11 >= target
          ? ` ✓ (≥${target}×)`
          : ` ✗ (target ${target}×)`
        : '';
    const bold = (x: number) => (Number.isFinite(x) ? `**${x.toFixed(2)}×**` : 'n/a');
    // req/s of a run, with ⚠ where it was flagged (and the share of error answers, if any).
    const reqs = (r: RunResult | undefined) =>
      !r
        ? 'n/a'
        : fmt(r.wrk.requestsPerSecond) + (failing(r) ? ` ⚠ (${fmt((100 * r.wrk.non2xx) / r.wrk.requests)} % non-2xx)` : r.flags.length > 0 ? ' ⚠' : '');
    const or = <T>(r: RunResult | undefined, f: (r: RunResult) => T) => (r ? String(f(r)) : 'n/a');
    rows.push(
      row([
        `${w}. ${ro.workload.title}`,
        ro.backend.label,
        processesLabel[iipKey] ?? iipKey,
        reqs(ro),
        ...ifMaster(reqs(rm)),
        reqs(ri),
        ...ifMaster(bold(ratio(rm))),
        bold(r11) + mark,
        fmtMs(cpuMs(ro)),
        ...ifMaster(or(rm, (r) => fmtMs(cpuMs(r)))),
        or(ri, (r) => fmtMs(cpuMs(r))),
        ...ifMaster(cpuRatio(rm)),
        cpuRatio(ri),
        [ro, ...others].map((r) => (r ? lat(r) : 'n/a')).join(' · '),
        [ro, ...others].map((r) => (r ? rss(r) : 'n/a')).join(' · '),
      ]),
    );
  }
  const servers = hasMaster ? 'ours · master · 1.1' : 'ours · 1.1';
  const header = row([
    'workload',
    'ours',
    'iipsrv processes',
    'ours req/s',
    ...ifMaster('master req/s'),
    '1.1 req/s',
    ...ifMaster('req/s ours/master'),
    'req/s ours/1.1',
    'ours CPU ms/req',
    ...ifMaster('master CPU ms/req'),
    '1.1 CPU ms/req',
    ...ifMaster('CPU ours/master'),
    'CPU ours/1.1',
    `p50 / p99 ms ${servers}`,
    `peak RSS MB ${servers} (ours: total (workers×each + primary))`,
  ]);
  const detail = results.map(
    (r) =>
      `| ${r.workload.id} | ${r.backend.label} | ${r.wrk.requests} | ${fmt(r.wrk.requestsPerSecond)} | ${fmtMs(r.wrk.p50ms)} | ${fmtMs(r.wrk.p90ms)} | ${fmtMs(r.wrk.p99ms)} | ${fmtMs(cpuMs(r))} | ${fmtMs((r.nginxCpuSeconds * 1000) / r.wrk.requests)} | ${fmt(r.peakRssTotal / MB)} | ${fmt(r.peakRssWorker / MB)} | ${fmt(r.wrk.bytesRead / r.wrk.requests / 1024, 1)} | ${fmt(r.boxBusy)} | ${r.repeatShare === null ? '' : fmt(100 * r.repeatShare)} | ${r.wrk.non2xx} | ${r.flags.length ? r.flags.join('; ') : 'ok'} |`,
  );
  const iiif = results.filter((r) => ['l', 'm', 'n', 'o'].includes(r.workload.id));
  const repeats = iiif.map((r) => r.repeatShare).filter((x): x is number => x !== null);
  const iiifNote = iiif.length
    ? [
        `IIIF (l-o): l and n ask for thumbnails of the whole image, 64-1024 px wide, in three size forms (\`w,\`, \`,h\`, \`!w,h\`), each of one of ${THUMBNAIL_NAMES} names of it ` +
          '(symbolic links, given to all servers as their `FILESYSTEM_PREFIX`: a gallery, so that neither response caches nor tile caches answer one thumbnail from another); ' +
          'm and o for 2000×2000 regions at full resolution at random places (size `max` in IIIF 3, `full` in IIIF 2). ' +
          'n and o run every server with `IIIF_VERSION=2` (ours refuses `full` as a size under IIIF 3). ' +
          'iipsrv 1.1 implements IIIF 2 only; the IIIF 3 requests of l and m are valid 2.1 requests too, and it answers them. ' +
          (repeats.length
            ? `In l and n, ${fmt(100 * Math.min(...repeats))}-${fmt(100 * Math.max(...repeats))} % of the timed requests asked for an image and output size already asked for in the same run or its warm-up ` +
              '("outputs asked again" below), the most any response cache could answer; the `MAX_IMAGE_CACHE_SIZE=0` rows show ours without one.'
            : ''),
        '',
      ]
    : [];
  const notRun = info.notRun.length ? ['Not run (n/a in the table):', '', ...info.notRun.map((n) => `- ${n.workload}: ${n.reason}`), ''] : [];
  const rssWorst = Math.max(...results.filter((r) => r.backend.server.kind === 'ours').map((r) => r.peakRssWorker));
  return [
    '# Benchmark results',
    '',
    `Server: ${gitState()} (dist/ as built by \`npm run bench\`)${info.extra ? `; **non-default knobs: ${info.extra}**` : ''}.`,
    '',
    ...(info.master ? [`iipsrv master (\`IIPSRV_MASTER\`): ${info.master}.`, ''] : []),
    `One run of \`npm run bench\` on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'} (${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB), ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, Node ${process.version}; ${info.minutes.toFixed(1)} min. ` +
      `Load average before: ${info.loadBefore.split(' ').slice(0, 3).join(' ')}, after: ${info.loadAfter.split(' ').slice(0, 3).join(' ')}. ` +
      `wrk, nginx and the servers share the same cores, so req/s are noisy; **CPU ms/req** (server processes only, from /proc utime+stime) is the steadier figure.`,
    '',
    `Image: ${info.image}. nginx: 1 worker process, \`access_log off\`, FastCGI responses buffered in memory. ` +
      `wrk \`-t${WRK.threads} -c${WRK.connections} -d${WRK.durationSeconds}s --latency\` (after a ${WARMUP_SECONDS}s untimed warm-up on another part of the list), the same seeded request list for every backend. ` +
      (info.master
        ? 'All servers: `JPEG_QUALITY=75 MAX_IMAGE_CACHE_SIZE=10 VERBOSITY=0 MAX_LAYERS=-1`; iipsrv 1.1 and master with `MEMCACHED_SERVERS=127.0.0.1:1` (dead), ours with `MEMCACHED_SERVERS=` (none); master otherwise with its own defaults. ' +
          'iipsrv 1.1 and master are always reached with one FastCGI connection per request (each process serves one connection at a time: with `fastcgi_keep_conn` the connections nginx keeps idle in its pool hold the process while requests wait on others). '
        : 'Both servers: `JPEG_QUALITY=75 MAX_IMAGE_CACHE_SIZE=10 VERBOSITY=0 MAX_LAYERS=-1`; iipsrv 1.1 with `MEMCACHED_SERVERS=127.0.0.1:1` (dead), ours with `MEMCACHED_SERVERS=` (none). ' +
          'iipsrv 1.1 is always reached with one FastCGI connection per request (it serves one connection at a time). ') +
      'Ours is run both ways: one FastCGI connection per request (conn/request, as iipsrv) and `fastcgi_keep_conn on` (keep-alive). ' +
      'All server processes are restarted before each workload, and a server reached through two locations (ours w1 with and without keep-alive) again before its second run, so RSS and caches belong to that run (warmed by its warm-up run).',
    '',
    header,
    header.replace(/[^|]+/g, '---'),
    ...rows,
    '',
    `Targets: random tiles ≥ 3×, hot tiles ≥ 5×, CVT ≥ 1.5× (checked on the keep-alive rows), RSS ≤ 150 MB per worker: largest worker peak ${fmt(rssWorst / MB)} MB ${rssWorst <= 150 * MB ? '✓' : '✗'}.`,
    '',
    ...masterGoals(find),
    ...iiifAgainstJtl(find),
    'Notes: for plain JTL (b, c) ours sends the stored Q90 tile as it is (passthrough), iipsrv 1.1 decodes and re-encodes at Q75, so the responses are larger for ours (see KB/resp). ' +
      'Ours keeps finished responses in a per-worker 10 MB cache, so in b and e repeated tiles are cache hits; the `MAX_IMAGE_CACHE_SIZE=0` rows show the cost without it. ' +
      "iipsrv 1.1's JPEG tile cache never hits (a 1.1 bug)." +
      (info.master
        ? ' iipsrv master sends stored JPEG tiles as they are too (its `CODEC_PASSTHROUGH` default), so in b and c it and ours send the same bytes; ' +
          'for `OBJ=IIP,1.0` (a) it answers `IIP:1.3`.'
        : ''),
    '',
    ...iiifNote,
    ...notRun,
    '## Every run',
    '',
    '| wl | backend | requests | req/s | p50 ms | p90 ms | p99 ms | server CPU ms/req | nginx CPU ms/req | peak RSS MB | peak RSS per worker MB | KB/resp | box CPU busy % | outputs asked again % | non-2xx | flags |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...detail,
    '',
    ...(info.warnings.length || info.checkFailures.length ? ['## Warnings', '', ...[...info.warnings, ...info.checkFailures].map((w) => `- ${w}`), ''] : []),
  ].join('\n');
}

main()
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  })
  .catch(async (error: Error) => {
    if (isInterrupted()) return; // the signal handler cleans up and exits
    process.stderr.write(`\nbenchmark failed: ${error.stack ?? error.message}\n`);
    await cleanup();
    process.exit(2);
  });
