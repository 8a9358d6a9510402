/**
 * Images in object storage through the real program: a bucket in s3rver (an S3-protocol server
 * from npm) and a directory behind real nginx (HTTP Range), each compared with the same files
 * served from disk. A counting proxy in front of the store shows what reaches it: one HEAD per
 * image per check interval, structure in blocks that a second instance takes from the shared
 * memcached, tile data by exact ranges. Then the failures: a missing object, wrong credentials, a
 * store that is down, a web server that ignores Range.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { ROOT, startDaemon, tempDir } from '../helpers/daemon.ts';
import { decodePixels, meanAbsoluteDifference } from '../helpers/images.ts';
import { memcachedMissing, startMemcached } from '../helpers/memcached.ts';
import { s3Env, startS3, type S3Server } from '../helpers/object-stores.ts';
import { freePort, type Started } from '../helpers/processes.ts';
import { startStoreProxy, type StoreProxy } from '../helpers/store-proxy.ts';
import { nginxAvailability, startStaticNginx, webTempDir, type WebServer } from '../helpers/webservers.ts';

const EXAMPLE_TIF = path.join(ROOT, 'examples/images/example.tif');
const EXAMPLE_JP2 = path.join(ROOT, 'examples/images/example.jp2');

interface Answer {
  status: number;
  body: Buffer;
  headers: Headers;
}

async function get(port: number, query: string, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`http://127.0.0.1:${port}/?${query}`, { headers });
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()), headers: response.headers };
}

function ok(answer: Answer, what: string): Buffer {
  assert.equal(answer.status, 200, `${what}: ${answer.body.toString().slice(0, 300)}`);
  return answer.body;
}

/** A deflate pyramid (tiles our own decoder reads) and a plain JPEG, made once for every store. */
async function makeImages(dir: string): Promise<void> {
  const width = 1500;
  const height = 1000;
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0, p = 0; p < width * height; p++, i += 3) {
    const x = p % width;
    const y = Math.floor(p / width);
    raw[i] = x % 256;
    raw[i + 1] = y % 256;
    raw[i + 2] = (x * y) % 251;
  }
  const image = () => sharp(raw, { raw: { width, height, channels: 3 } });
  await image().tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'deflate' }).toFile(path.join(dir, 'deflate.tif'));
  await image().jpeg({ quality: 90 }).toFile(path.join(dir, 'plain.jpg'));
  copyFileSync(EXAMPLE_TIF, path.join(dir, 'example.tif'));
  copyFileSync(EXAMPLE_JP2, path.join(dir, 'example.jp2'));
  mkdirSync(path.join(dir, 'seq'));
  for (const angle of ['000', '010']) copyFileSync(EXAMPLE_TIF, path.join(dir, 'seq', `pano_pyr_${angle}_090.tif`));
}

/** What every store must serve as the disk does: the same bytes, or for JPEG regions the same picture. */
const SAME_BYTES = [
  'FIF=example.tif&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number&OBJ=Tile-size',
  'FIF=example.tif&JTL=2,1',
  'FIF=example.tif&JTL=0,0',
  'FIF=deflate.tif&JTL=3,2',
  'IIIF=deflate.tif/full/300,/0/default.jpg',
  'IIIF=deflate.tif/0,0,600,400/300,/0/default.png',
  'IIIF=example.tif/0,0,256,256/256,/0/default.jpg',
  'IIIF=example.jp2/full/120,/0/default.jpg',
  'IIIF=plain.jpg/full/200,/0/default.jpg',
  'DeepZoom=example.tif_files/8/0_0.jpg',
  'Zoomify=example.tif/TileGroup0/1-0-0.jpg',
  'FIF=seq/pano&OBJ=Horizontal-views&OBJ=Vertical-views',
  'FIF=seq/pano&JTLS=10,1,0,90',
];
/** Regions of JPEG-tiled TIFFs: assembled from the tiles in a store, read by libvips from disk. */
const SAME_PICTURE = ['IIIF=example.tif/full/400,/0/default.jpg', 'IIIF=example.tif/100,100,900,700/450,/0/default.png', 'FIF=example.tif&CVT=jpeg&WID=300'];

async function compareWithDisk(storePort: number, diskPort: number): Promise<void> {
  for (const query of SAME_BYTES) {
    const [remote, local] = await Promise.all([get(storePort, query), get(diskPort, query)]);
    ok(local, `disk ${query}`);
    assert.ok(ok(remote, query).equals(local.body), `${query}: the same bytes as from disk`);
  }
  for (const query of SAME_PICTURE) {
    const [remote, local] = await Promise.all([get(storePort, query), get(diskPort, query)]);
    const [a, b] = await Promise.all([decodePixels(ok(remote, query)), decodePixels(ok(local, query))]);
    assert.deepEqual([a.width, a.height], [b.width, b.height], query);
    // libjpeg-turbo and libtiff's JPEG decoding upsample chroma differently: a level or two.
    assert.ok(meanAbsoluteDifference(a, b) < 3, `${query}: mean difference ${meanAbsoluteDifference(a, b)}`);
  }
  const info = JSON.parse(ok(await get(storePort, 'IIIF=example.tif/info.json'), 'info.json').toString()) as { width: number; height: number };
  const diskInfo = JSON.parse(ok(await get(diskPort, 'IIIF=example.tif/info.json'), 'info.json').toString()) as { width: number; height: number };
  assert.deepEqual([info.width, info.height], [diskInfo.width, diskInfo.height]);
}

describe('images in an S3 bucket (s3rver)', { skip: memcachedMissing }, () => {
  let images: string;
  let s3: S3Server;
  let proxy: StoreProxy;
  let memcached: Awaited<ReturnType<typeof startMemcached>>;
  const daemons: Started[] = [];
  let diskPort: number;
  let storePort: number;

  const startOnStore = async (env: Record<string, string> = {}, endpoint = proxy.url): Promise<number> => {
    const port = await freePort();
    daemons.push(
      await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
        env: {
          ...s3Env({ endpoint }),
          FILESYSTEM_PREFIX: `s3://${s3.bucket}/collection/`,
          REMOTE_CACHE_DIR: tempDir('iipsrv-objects-'),
          MEMCACHED_SERVERS: `127.0.0.1:${memcached.port}`,
          ...env,
        },
        waitPort: port,
      }),
    );
    return port;
  };

  before(async () => {
    images = tempDir();
    await makeImages(images);
    s3 = await startS3();
    for (const name of ['example.tif', 'example.jp2', 'deflate.tif', 'plain.jpg', 'seq/pano_pyr_000_090.tif', 'seq/pano_pyr_010_090.tif']) {
      await s3.put(`collection/${name}`, { file: path.join(images, name) });
    }
    proxy = await startStoreProxy({ host: '127.0.0.1', port: s3.port });
    memcached = await startMemcached();
    diskPort = await freePort();
    daemons.push(await startDaemon(['--http', `127.0.0.1:${diskPort}`, '--workers', '1'], { env: { FILESYSTEM_PREFIX: images + '/' }, waitPort: diskPort }));
    storePort = await startOnStore({ REMOTE_CHECK_INTERVAL: '1' });
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await proxy?.stop();
    await s3?.stop();
    await memcached?.process.stop();
  });

  it('serves every protocol, format and a sequence as from disk', async () => {
    await compareWithDisk(storePort, diskPort);
  });

  it('reads a stored JPEG tile by its exact byte range once the structure is known', async () => {
    // The level's tile arrays are read with its first tile.
    ok(await get(storePort, 'FIF=example.tif&JTL=3,0'), 'first tile of the level');
    proxy.reset();
    const tile = ok(await get(storePort, 'FIF=example.tif&JTL=3,5'), 'tile');
    const reads = proxy.requests.filter((r) => r.method === 'GET');
    assert.equal(reads.length, 1, `one ranged read: ${JSON.stringify(proxy.requests)}`);
    const fetched = reads[0]!.bytes;
    // The tile sent is the stored one with the level's JPEG tables in front (a few hundred bytes).
    assert.ok(fetched <= tile.length && fetched > tile.length - 1000, `fetched ${fetched} for a ${tile.length}-byte tile`);
  });

  it('asks the store about an image at most once per check interval, and sees a replaced object', async () => {
    const before = ok(await get(storePort, 'FIF=deflate.tif&JTL=0,0'), 'tile');
    const first = await get(storePort, 'FIF=deflate.tif&OBJ=Max-size');
    const lastModified = first.headers.get('last-modified');
    assert.ok(lastModified);
    proxy.reset();
    await Promise.all(Array.from({ length: 10 }, () => get(storePort, 'FIF=deflate.tif&JTL=0,0')));
    assert.ok(proxy.requests.filter((r) => r.method === 'HEAD').length <= 1, 'at most one HEAD for ten requests within the interval');
    const conditional = await get(storePort, 'FIF=deflate.tif&JTL=0,0', { 'If-Modified-Since': lastModified });
    assert.equal(conditional.status, 304);

    // Replaced by a different picture (the plain JPEG's pixels, as a pyramid).
    const replacement = await sharp(path.join(images, 'plain.jpg'))
      .negate()
      .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'deflate' })
      .toBuffer();
    await s3.put('collection/deflate.tif', replacement);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const afterwards = ok(await get(storePort, 'FIF=deflate.tif&JTL=0,0'), 'tile after the change');
    assert.ok(!afterwards.equals(before), 'the new object is served, not the cached tile of the old one');
    await s3.put('collection/deflate.tif', { file: path.join(images, 'deflate.tif') });
  });

  it('a second instance takes the structure from memcached: no block reads, only the tile bytes', async () => {
    ok(await get(storePort, 'FIF=example.tif&JTL=3,1'), 'tile from the first instance');
    const second = await startOnStore();
    proxy.reset();
    ok(await get(second, 'FIF=example.tif&JTL=3,7'), 'tile from the second instance');
    const ranged = proxy.requests.filter((r) => r.method === 'GET');
    assert.equal(proxy.requests.filter((r) => r.method === 'HEAD').length, 1, 'one HEAD');
    assert.equal(ranged.length, 1, `only the tile's range: ${JSON.stringify(proxy.requests)}`);
    assert.ok(!ranged[0]!.range!.startsWith('bytes=0-'), 'the header block came from memcached');
  });

  it('answers a missing object 404, wrong credentials 403 without the secret, a store that is down 503, in bounded time', async () => {
    const missing = await get(storePort, 'FIF=nothing-here.tif&JTL=0,0');
    assert.equal(missing.status, 404);
    assert.match(missing.body.toString(), /nothing-here\.tif/);

    const denied = await startOnStore({ AWS_ACCESS_KEY_ID: 'NOT-A-KEY', AWS_SECRET_ACCESS_KEY: 'very-secret-value' });
    const refused = await get(denied, 'FIF=example.tif&JTL=0,0');
    assert.equal(refused.status, 403);
    assert.doesNotMatch(refused.body.toString(), /very-secret-value|NOT-A-KEY/);

    const downPort = await freePort();
    const down = await startOnStore({ REMOTE_TIMEOUT: '0.5', REMOTE_ATTEMPTS: '2' }, `http://127.0.0.1:${downPort}`);
    const started = Date.now();
    const unavailable = await get(down, 'FIF=example.tif&JTL=0,0');
    assert.equal(unavailable.status, 503);
    assert.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`);
    const health = await fetch(`http://127.0.0.1:${down}/health`);
    assert.equal(health.status, 503, 'health fails while the store is down');
    const metrics = await (await fetch(`http://127.0.0.1:${down}/metrics`)).text();
    assert.match(metrics, /iipsrv_store_failures_total\{kind="unavailable"\} [1-9]/);
  });

  it('the viewer page lists the images directly in the bucket', async () => {
    const port = await startOnStore({ VIEWER: '1' });
    const page = await (await fetch(`http://127.0.0.1:${port}/viewer/`)).text();
    for (const name of ['example.tif', 'example.jp2', 'deflate.tif', 'plain.jpg'])
      assert.match(page, new RegExp(`\\?image=${name.replace('.', '\\.')}"`), name);
    assert.doesNotMatch(page, /pano_pyr_/, 'a store is listed flat: no folders walked');
  });

  it('counts what it asked of the store in /metrics', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${storePort}/metrics`)).text();
    const value = (pattern: RegExp) => Number(pattern.exec(metrics)?.[1] ?? 'NaN');
    assert.ok(value(/iipsrv_store_requests_total\{request="head"\} (\d+)/) >= 1, metrics.slice(0, 2000));
    assert.ok(value(/iipsrv_store_requests_total\{request="read"\} (\d+)/) >= 10);
    assert.ok(value(/iipsrv_store_blocks_total\{source="store"\} (\d+)/) >= 1);
  });
});

describe('images behind a web server that honours Range (nginx)', { skip: nginxAvailability().skip ?? false }, () => {
  let images: string;
  let nginx: WebServer;
  let noRanges: WebServer;
  const daemons: Started[] = [];
  let diskPort: number;

  const startOn = async (origin: WebServer, env: Record<string, string> = {}): Promise<number> => {
    const port = await freePort();
    daemons.push(
      await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
        env: { FILESYSTEM_PREFIX: `http://127.0.0.1:${origin.port}/images/`, REMOTE_CACHE_DIR: tempDir('iipsrv-objects-'), ...env },
        waitPort: port,
      }),
    );
    return port;
  };

  before(async () => {
    const web = webTempDir();
    const root = path.join(web, 'root');
    images = path.join(root, 'images');
    mkdirSync(images, { recursive: true });
    await makeImages(images);
    nginx = await startStaticNginx({ dir: path.join(web, 'ranges'), root });
    noRanges = await startStaticNginx({ dir: path.join(web, 'no-ranges'), root, directives: 'max_ranges 0;' });
    diskPort = await freePort();
    daemons.push(await startDaemon(['--http', `127.0.0.1:${diskPort}`, '--workers', '1'], { env: { FILESYSTEM_PREFIX: images + '/' }, waitPort: diskPort }));
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await nginx?.stop();
    await noRanges?.stop();
  });

  it('serves as from disk (sequences aside: a web server cannot list)', async () => {
    const port = await startOn(nginx);
    for (const query of SAME_BYTES.filter((q) => !q.includes('seq/'))) {
      const [remote, local] = await Promise.all([get(port, query), get(diskPort, query)]);
      assert.ok(ok(remote, query).equals(ok(local, query)), `${query}: the same bytes as from disk`);
    }
    assert.equal((await get(port, 'FIF=seq/pano&OBJ=Horizontal-views')).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200, 'healthy: nginx answers');
    const viewer = await startOn(nginx, { VIEWER: '1' });
    assert.match(await (await fetch(`http://127.0.0.1:${viewer}/viewer/`)).text(), /cannot be listed/);
    assert.equal((await get(port, 'FIF=missing.tif&JTL=0,0')).status, 404);
  });

  it('answers 502 when the web server ignores Range, without downloading the file for each tile', async () => {
    const port = await startOn(noRanges);
    const answer = await get(port, 'FIF=example.tif&JTL=0,0');
    assert.equal(answer.status, 502, answer.body.toString());
  });
});
