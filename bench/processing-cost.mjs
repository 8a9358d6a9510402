// CPU per tile of the processing pipeline, in one process (no HTTP): a 16-bit RGB tile through
// CNT+GAM against an 8-bit tile that is re-encoded (QLT), the target being at most 2x; the
// histogram commands (CNT=st/eq, COL=binary), hill shading (SHD), convolution (CNV), float and
// 8-bit CIELAB tiles (vips CLI needed for the CIELAB file) for comparison.
// Run after `npm run build`:  node bench/processing-cost.mjs
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { loadConfig } from '../dist/config.js';
import { Engine } from '../dist/engine/engine.js';
import { silentLog } from '../dist/log.js';
import { createRouter } from '../dist/router.js';
import { plainRequest } from './lib/plain-request.mjs';

const dir = mkdtempSync(path.join(os.tmpdir(), 'iipsrv-processing-'));
try {
  const W = 2048;
  const H = 2048;
  const wide = new Uint16Array(W * H * 3).map((_, i) => (i * 37) % 65536);
  const narrow = Buffer.from(new Uint8Array(W * H * 3).map((_, i) => (i * 37) % 256));
  const tiled = { tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'deflate' };
  await sharp(wide, { raw: { width: W, height: H, channels: 3 } })
    .toColourspace('rgb16')
    .tiff(tiled)
    .toFile(path.join(dir, 'rgb16.tif'));
  await sharp(narrow, { raw: { width: W, height: H, channels: 3 } })
    .tiff(tiled)
    .toFile(path.join(dir, 'rgb8.tif'));
  const grey = new Float32Array(W * H).map((_, i) => ((i * 37) % 65536) / 65535);
  await sharp(grey, { raw: { width: W, height: H, channels: 1 } })
    .tiff(tiled)
    .toFile(path.join(dir, 'float.tif'));
  const vips = (...args) => spawnSync('vips', args, { stdio: 'ignore' }).status === 0;
  const lab =
    vips('colourspace', path.join(dir, 'rgb8.tif'), path.join(dir, 'lab.v'), 'labq') &&
    vips('tiffsave', path.join(dir, 'lab.v'), path.join(dir, 'lab.tif'), '--tile', '--pyramid', '--compression', 'deflate');
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/' });
  const engine = new Engine({ paths: { prefix: dir + '/', suffix: '' }, cacheBytes: 0 });
  const router = createRouter({ config, engine, log: silentLog });
  const results = {};
  for (const [name, prefix] of [
    ['8-bit tile re-encoded (QLT=75)', 'FIF=rgb8.tif&QLT=75&JTL=3,'],
    ['16-bit tile', 'FIF=rgb16.tif&JTL=3,'],
    ['16-bit tile, CNT=1.5&GAM=0.8', 'FIF=rgb16.tif&CNT=1.5&GAM=0.8&JTL=3,'],
    ['16-bit tile, CMP=jet', 'FIF=rgb16.tif&CMP=jet&JTL=3,'],
    ['16-bit tile, CNT=st', 'FIF=rgb16.tif&CNT=st&JTL=3,'],
    ['8-bit tile, CNT=eq', 'FIF=rgb8.tif&CNT=eq&JTL=3,'],
    ['8-bit tile, COL=binary', 'FIF=rgb8.tif&COL=binary&JTL=3,'],
    ['8-bit tile, SHD=45,30', 'FIF=rgb8.tif&SHD=45,30&JTL=3,'],
    ['8-bit tile, CNV=sobel', 'FIF=rgb8.tif&CNV=sobel&JTL=3,'],
    ['16-bit tile, CNV=sobel', 'FIF=rgb16.tif&CNV=sobel&JTL=3,'],
    ['float tile, CMP=jet', 'FIF=float.tif&CMP=jet&JTL=3,'],
    ...(lab ? [['8-bit CIELAB tile', 'FIF=lab.tif&JTL=3,']] : []),
  ]) {
    // A warm-up pass, then the timed one over the same 64 tiles.
    for (let pass = 0; pass < 2; pass++) {
      const start = process.cpuUsage();
      for (let tile = 0; tile < 64; tile++) {
        const response = await router(plainRequest(prefix + tile));
        if (response.status !== 200) throw new Error(`${prefix}${tile}: ${response.status} ${response.body}`);
      }
      const used = process.cpuUsage(start);
      if (pass === 1) results[name] = (used.user + used.system) / 64000;
    }
  }
  const base = results['8-bit tile re-encoded (QLT=75)'];
  for (const [name, ms] of Object.entries(results)) console.log(`${name.padEnd(36)} ${ms.toFixed(2)} ms CPU/tile  ${(ms / base).toFixed(2)}x`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
