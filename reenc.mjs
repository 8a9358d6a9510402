import sharp from 'sharp';
const root = process.argv[2];
const { loadConfig } = await import(root + '/dist/config.js');
const { Engine } = await import(root + '/dist/engine/engine.js');
const { silentLog } = await import(root + '/dist/log.js');
const { createRouter } = await import(root + '/dist/router.js');
let opts = null;
try { opts = (await import(root + '/dist/server/engine-options.js')).engineOptionsFor; } catch {}
const img = '/tmp/iipsrv-ts-bench-cache/';
const fs = await import('node:fs');
const file = fs.readdirSync(img).find((f) => f.endsWith('.tif') && f.startsWith('bench-v1'));
const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: img, MAX_IMAGE_CACHE_SIZE: '0', JPEG_QUALITY: '75' });
const engine = new Engine(opts && process.argv[3] !== 'min' ? opts(config) : { paths: { prefix: img, suffix: '' }, cacheBytes: 0 });
const router = createRouter({ config, engine, log: silentLog });
const request = (query) => ({ method: 'GET', query, path: '/', headers: {}, scriptName: '', https: false, remoteAddress: '', signal: new AbortController().signal });
const q = `FIF=${file}&QLT=75&JTL=6,`;
for (let pass = 0; pass < 3; pass++) {
  const start = process.cpuUsage();
  for (let t = 0; t < 1000; t++) { const r = await router(request(q + (t * 7) % 1000)); if (r.status !== 200) throw new Error(String(r.body)); }
  const u = process.cpuUsage(start);
  if (pass === 2) console.log(root, process.argv[3] ?? '', ((u.user + u.system) / 1000000).toFixed(3), 'ms');
}
