/**
 * A big plain JPEG through the real program with two workers sharing one PYRAMID_CACHE_DIR: both
 * answer at once while the pyramid is built, one pyramid is built (no half-written or temporary
 * file is left), and afterwards both serve the pyramid's stored tiles.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { startDaemon, tempDir } from '../helpers/daemon.ts';
import { freePort, type Started } from '../helpers/processes.ts';
import { decodePixels } from '../helpers/images.ts';

function get(port: number, query: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    // A connection a request, so that both workers get requests.
    http
      .get({ host: '127.0.0.1', port, path: `/?${query}`, agent: false }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

describe('a big plain JPEG, two workers, one pyramid cache', () => {
  let port: number;
  let daemon: Started;
  let cache: string;
  before(async () => {
    const images = tempDir();
    cache = tempDir();
    const width = 2400;
    const height = 1800;
    const raw = Buffer.alloc(width * height * 3);
    for (let i = 0; i < raw.length; i += 3) {
      const x = (i / 3) % width;
      const y = Math.floor(i / 3 / width);
      raw[i] = x % 256;
      raw[i + 1] = y % 256;
      raw[i + 2] = (x + y) % 256;
    }
    await sharp(raw, { raw: { width, height, channels: 3 } })
      .jpeg({ quality: 90 })
      .toFile(path.join(images, 'big.jpg'));
    port = await freePort();
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '2'], {
      env: { FILESYSTEM_PREFIX: images + '/', PLAIN_MEMORY_PIXELS: '100000', PYRAMID_CACHE_DIR: cache },
      waitPort: port,
    });
  });
  after(async () => {
    await daemon?.stop();
  });

  it('answers every request while the pyramid is built, builds it once, then serves the same stored tiles from both workers', async () => {
    // 2400x1800 .. 150x112: 5 resolutions; each of 1 to 4 has at least two tiles across.
    const queries = Array.from({ length: 24 }, (_, i) => `FIF=big.jpg&JTL=${1 + (i % 4)},${i % 2}`);
    const answers = await Promise.all(queries.map((query) => get(port, query)));
    for (const [i, answer] of answers.entries()) assert.equal(answer.status, 200, `${queries[i]}: ${answer.body.toString().slice(0, 200)}`);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const files = readdirSync(cache);
      if (files.length === 1 && files[0]!.endsWith('.tif')) break;
      assert.ok(Date.now() < deadline, `the pyramid is built within a minute: ${files.join()}`);
      assert.ok(files.filter((f) => f.endsWith('.tif')).length <= 1, 'one pyramid');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // Each worker looks for the finished pyramid at most once a second.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const tiles = await Promise.all(Array.from({ length: 8 }, () => get(port, 'FIF=big.jpg&JTL=3,1')));
    for (const tile of tiles) {
      assert.equal(tile.status, 200);
      assert.ok(tile.body.equals(tiles[0]!.body), 'the same stored tile from every worker');
    }
    const pixels = await decodePixels(tiles[0]!.body);
    assert.deepEqual([pixels.width, pixels.height], [256, 256]);
    assert.deepEqual(readdirSync(cache).length, 1);
  });
});
