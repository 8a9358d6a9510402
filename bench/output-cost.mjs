// What embedding an ICC profile and watermarking cost, in one process (no HTTP): CPU per tile of
// stored-JPEG tiles with and without the profile spliced in, of re-encoded tiles with and without
// a watermark, and the splice and the watermark alone.
// Run after `npm run build`:  node bench/output-cost.mjs
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { loadConfig } from '../dist/config.js';
import { embedInJpeg } from '../dist/engine/codecs/embed.js';
import { Engine } from '../dist/engine/engine.js';
import { Watermark } from '../dist/engine/output/watermark.js';
import { silentLog } from '../dist/log.js';
import { createRouter } from '../dist/router.js';
import { plainRequest } from './lib/plain-request.mjs';

const dir = mkdtempSync(path.join(os.tmpdir(), 'iipsrv-output-cost-'));
try {
  const W = 2048;
  const H = 2048;
  const raw = Buffer.from(new Uint8Array(W * H * 3).map((_, i) => (i * 7 + (i >> 12)) % 251));
  const tiled = { tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 75 };
  await sharp(raw, { raw: { width: W, height: H, channels: 3 } })
    .withIccProfile('p3')
    .tiff(tiled)
    .toFile(path.join(dir, 'icc.tif'));
  await sharp({ create: { width: 64, height: 32, channels: 4, background: { r: 50, g: 60, b: 70, alpha: 1 } } })
    .png()
    .toFile(path.join(dir, 'mark.png'));

  async function cpuPerTile(env, query) {
    const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: dir + '/', ...env });
    const watermark = config.watermark ? await Watermark.load(config.watermark) : null;
    const engine = new Engine({ paths: { prefix: dir + '/', suffix: '' }, cacheBytes: 0, watermark, maxIcc: config.maxIcc });
    const router = createRouter({ config, engine, log: silentLog });
    for (let i = 0; i < 64; i++) {
      const response = await router(plainRequest(`${query}${i}`));
      if (response.status !== 200) throw new Error(`${query}${i}: ${response.status}`);
    }
    // At least 1.5 s of CPU per case: the machine is shared, short runs are noise.
    const start = process.cpuUsage();
    let rounds = 0;
    let used;
    do {
      for (let i = 0; i < 64; i++, rounds++) await router(plainRequest(`${query}${i}`));
      used = process.cpuUsage(start);
    } while (used.user + used.system < 1_500_000);
    return (used.user + used.system) / rounds / 1000;
  }

  const results = {};
  for (const [name, env, query] of [
    ['stored JPEG tile + ICC (3144 B) spliced', {}, 'FIF=icc.tif&JTL=3,'],
    ['stored JPEG tile, EMBED_ICC=0', { EMBED_ICC: '0' }, 'FIF=icc.tif&JTL=3,'],
    ['stored JPEG tile + ICC (3144 B) spliced, again', {}, 'FIF=icc.tif&JTL=3,'],
    ['re-encoded tile (QLT=75), EMBED_ICC=0', { EMBED_ICC: '0' }, 'FIF=icc.tif&QLT=75&JTL=3,'],
    ['re-encoded tile + ICC', {}, 'FIF=icc.tif&QLT=75&JTL=3,'],
    ['JTL with WATERMARK (64x32, probability 1)', { EMBED_ICC: '0', WATERMARK: path.join(dir, 'mark.png') }, 'FIF=icc.tif&JTL=3,'],
    ['ATL, EMBED_ICC=0', { EMBED_ICC: '0' }, 'FIF=icc.tif&ATL=3,'],
    ['ATL + ICC (through a PNG)', {}, 'FIF=icc.tif&ATL=3,'],
    ['PTL, EMBED_ICC=0', { EMBED_ICC: '0' }, 'FIF=icc.tif&PTL=3,'],
    ['PTL + ICC', {}, 'FIF=icc.tif&PTL=3,'],
    ['PTL with WATERMARK', { EMBED_ICC: '0', WATERMARK: path.join(dir, 'mark.png') }, 'FIF=icc.tif&PTL=3,'],
  ]) {
    results[name] = `${(await cpuPerTile(env, query)).toFixed(3)} ms CPU/tile`;
  }

  const tile = await sharp(raw, { raw: { width: W, height: H, channels: 3 } })
    .extract({ left: 0, top: 0, width: 256, height: 256 })
    .jpeg({ quality: 75 })
    .toBuffer();
  const micro = (f, n = 20000) => {
    for (let i = 0; i < 1000; i++) f();
    const start = performance.now();
    for (let i = 0; i < n; i++) f();
    return `${(((performance.now() - start) / n) * 1000).toFixed(1)} µs`;
  };
  for (const size of [3144, 60000]) {
    const icc = Buffer.alloc(size, 1);
    results[`splice alone: ${size} B profile into a ${tile.length} B tile`] = micro(() => embedInJpeg(tile, icc, null));
  }
  const mark = await Watermark.load({ path: path.join(dir, 'mark.png'), probability: 1, opacity: 1 });
  const pixels = { data: Buffer.alloc(256 * 256 * 3, 100), width: 256, height: 256, channels: 3 };
  results['watermark alone: 64x32 into a 256x256 RGB tile'] = micro(() => mark.markTile(pixels));
  await sharp({ create: { width: 256, height: 256, channels: 4, background: { r: 50, g: 60, b: 70, alpha: 1 } } })
    .png()
    .toFile(path.join(dir, 'big.png'));
  const big = await Watermark.load({ path: path.join(dir, 'big.png'), probability: 1, opacity: 1 });
  results['watermark alone: 256x256 into a 256x256 RGB tile'] = micro(() => big.markTile(pixels), 2000);
  console.log(results);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
