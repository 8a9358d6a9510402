// CPU per re-encoded tile, in one process (no HTTP, no nginx): 1000 different JTL tiles of the
// full resolution of the benchmark image requested with QLT=75, so that each stored Q90 JPEG tile
// is decoded and encoded again (the work of workload e, forced re-encode, with
// MAX_IMAGE_CACHE_SIZE=0), through a checkout's compiled router. Three passes; the last is printed
// in CPU ms per tile (user + system time of this process).
//
//   node bench/reencode-cost.mjs IMAGE [CHECKOUT] [--minimal]
//
// IMAGE: the benchmark's 10000x7000 pyramid TIFF (bench/lib/image.ts), which `npm run bench`
//   makes and keeps as $TMPDIR/iipsrv-ts-bench-cache/bench-v1-10000x7000.tif.
// CHECKOUT: the root of a built checkout (npm run build); this one by default. Run it once per
//   checkout, back to back, to compare the code of two commits on the same image.
// --minimal: an engine with only the image folder and no cache, as checkouts from before
//   src/server/engine-options.ts need (used by itself when that module is missing).
// Plain node, not tsx: under tsx's loader the same tiles cost about half as much again.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { plainRequest } from './lib/plain-request.mjs';

const TILES = 1000;
const PASSES = 3;

const args = process.argv.slice(2);
const minimal = args.includes('--minimal');
const [image, checkoutArg] = args.filter((a) => !a.startsWith('--'));
if (!image || !existsSync(image)) {
  console.error('usage: node bench/reencode-cost.mjs IMAGE [CHECKOUT] [--minimal]   (IMAGE: the benchmark image, see the header)');
  process.exit(2);
}
const checkout = path.resolve(checkoutArg ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const dist = (file) => path.join(checkout, 'dist', file);
if (!existsSync(dist('router.js'))) {
  console.error(`${dist('router.js')} is missing: run npm run build in ${checkout}`);
  process.exit(2);
}
const from = (file) => import(pathToFileURL(dist(file)).href);
const { loadConfig } = await from('config.js');
const { Engine } = await from('engine/engine.js');
const { silentLog } = await from('log.js');
const { createRouter } = await from('router.js');
const engineOptionsFor = existsSync(dist('server/engine-options.js')) ? (await from('server/engine-options.js')).engineOptionsFor : null;

const dir = path.dirname(path.resolve(image)) + '/';
const name = path.basename(image);
const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir, MAX_IMAGE_CACHE_SIZE: '0', JPEG_QUALITY: '75' });
const engine = new Engine(engineOptionsFor && !minimal ? engineOptionsFor(config) : { paths: { prefix: dir, suffix: '' }, cacheBytes: 0 });
const router = createRouter({ config, engine, log: silentLog });

// Resolution 6 of the benchmark image's 7 is the full 10000x7000: 40x28 tiles, 1000 of them here.
const query = (tile) => `FIF=${encodeURIComponent(name)}&QLT=75&JTL=6,${(tile * 7) % TILES}`;
let msPerTile = 0;
for (let pass = 0; pass < PASSES; pass++) {
  const start = process.cpuUsage();
  for (let t = 0; t < TILES; t++) {
    const response = await router(plainRequest(query(t)));
    if (response.status !== 200) throw new Error(`${query(t)}: ${response.status} ${response.body.toString()}`);
  }
  const used = process.cpuUsage(start);
  msPerTile = (used.user + used.system) / 1000 / TILES;
}
console.log(`${checkout}${minimal ? ' (--minimal)' : ''}: ${msPerTile.toFixed(3)} CPU ms per re-encoded tile`);
