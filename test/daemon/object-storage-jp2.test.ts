/**
 * JPEG2000 in an S3 bucket (s3rver) through the real program, against the same files from disk:
 * tiled codestreams (with TLM markers and without) are read by byte ranges, a tile costing its
 * main header, its tile-parts and a look at the other tile-part headers, with no local copy made;
 * the counting proxy in front of the bucket shows it. A store that fails in the middle of a decode
 * is a 503 (not a 404 "cannot be decoded"); a truncated object is the 404 it is from disk.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HELPER_BINARY } from '../../src/engine/jp2/decoder.ts';
import { ROOT, startDaemon, tempDir } from '../helpers/daemon.ts';
import { JP2_SKIP, makeJp2, testImage } from '../helpers/jp2.ts';
import { s3Env, startS3, type S3Server } from '../helpers/object-stores.ts';
import { freePort, type Started } from '../helpers/processes.ts';
import { startStoreProxy, type StoreProxy } from '../helpers/store-proxy.ts';
import { existsSync } from 'node:fs';

const SKIP = JP2_SKIP ?? (existsSync(HELPER_BINARY) ? false : 'build/jp2-decoder not built (npm run build)');

async function get(port: number, query: string): Promise<{ status: number; body: Buffer }> {
  const response = await fetch(`http://127.0.0.1:${port}/?${query}`);
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => entry.name);
}

/** The tiled images: 2048x2048 in 4x4 codestream tiles of 512x512, lossless (large tile-parts, as archives keep them). */
const TILED = ['tiled.jp2', 'tiled-tlm.jp2'];
/** Levels 0-3 of 2048 in 256x256 tiles (8x8 at full size): tile 45 is column 5, row 5. */
const SAME_BYTES = (name: string) => [
  `FIF=${name}&JTL=3,45`,
  `FIF=${name}&JTL=3,0`,
  `FIF=${name}&JTL=1,3`,
  `IIIF=${name}/1000,700,600,500/300,/0/default.png`,
  `IIIF=${name}/full/200,/0/default.jpg`,
  `FIF=${name}&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number`,
];

describe('JPEG2000 in an S3 bucket, read by ranges', { skip: SKIP }, () => {
  let images: string;
  let s3: S3Server;
  let proxy: StoreProxy;
  const daemons: Started[] = [];
  let diskPort: number;

  const startOnStore = async (env: Record<string, string> = {}): Promise<{ port: number; copies: string }> => {
    const port = await freePort();
    const copies = tempDir('iipsrv-objects-');
    daemons.push(
      await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
        env: { ...s3Env({ endpoint: proxy.url }), FILESYSTEM_PREFIX: `s3://${s3.bucket}/jp2/`, REMOTE_CACHE_DIR: copies, ...env },
        waitPort: port,
      }),
    );
    return { port, copies };
  };

  before(async () => {
    images = tempDir();
    const image = testImage(2048, 2048, 3, 8);
    makeJp2(images, 'tiled.jp2', image, ['-t', '512,512', '-n', '5']);
    makeJp2(images, 'tiled-tlm.jp2', image, ['-t', '512,512', '-n', '5', '-TLM']);
    // A codestream cut in its last tile-part: the header reads, the last tiles do not.
    const codestream = readFileSync(makeJp2(images, 'whole.j2k', testImage(1024, 1024, 3, 8), ['-t', '256,256', '-n', '4']));
    writeFileSync(path.join(images, 'truncated.jp2'), codestream.subarray(0, codestream.length - 1000));
    copyFileSync(path.join(ROOT, 'examples/images/example.jp2'), path.join(images, 'example.jp2'));
    s3 = await startS3();
    for (const name of [...TILED, 'truncated.jp2', 'example.jp2']) await s3.put(`jp2/${name}`, { file: path.join(images, name) });
    proxy = await startStoreProxy({ host: '127.0.0.1', port: s3.port });
    diskPort = await freePort();
    daemons.push(await startDaemon(['--http', `127.0.0.1:${diskPort}`, '--workers', '1'], { env: { FILESYSTEM_PREFIX: images + '/' }, waitPort: diskPort }));
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await proxy?.stop();
    await s3?.stop();
  });

  it('fetches the tile-parts a tile needs, not the object, and makes no local copy', async (t) => {
    for (const name of TILED) {
      const { port, copies } = await startOnStore();
      const size = statSync(path.join(images, name)).size;
      ok(await get(port, `FIF=${name}&OBJ=Max-size`), `${name} opened`);
      proxy.reset();
      ok(await get(port, `FIF=${name}&JTL=3,45`), `${name} tile`);
      const reads = proxy.requests.filter((r) => r.method === 'GET');
      const fetched = reads.reduce((sum, r) => sum + r.bytes, 0);
      t.diagnostic(
        `${name}: ${fetched} bytes in ${reads.length} requests for one full-size tile of a ${size}-byte object (${((100 * fetched) / size).toFixed(1)} %)`,
      );
      assert.ok(reads.length > 0 && reads.every((r) => r.range !== null), `ranged reads only: ${JSON.stringify(proxy.requests)}`);
      // One codestream tile of sixteen, and a 64 KB block at each other tile-part's header.
      assert.ok(fetched < size * 0.25, `${name}: fetched ${fetched} bytes of ${size}`);
      // Another tile: the looks at the tile-part headers are kept, only its tile-part is fetched.
      proxy.reset();
      ok(await get(port, `FIF=${name}&JTL=3,18`), `${name} second tile`);
      const again = proxy.requests.filter((r) => r.method === 'GET').reduce((sum, r) => sum + r.bytes, 0);
      t.diagnostic(`${name}: ${again} bytes in ${proxy.requests.length} requests for a tile of another codestream tile`);
      assert.ok(again > 0 && again < size / 8, `${name}: fetched ${again} bytes of ${size} for a second tile`);
      proxy.reset();
      ok(await get(port, `IIIF=${name}/full/256,/0/default.jpg`), `${name} thumbnail`);
      const thumbnail = proxy.requests.filter((r) => r.method === 'GET').reduce((sum, r) => sum + r.bytes, 0);
      t.diagnostic(`${name}: ${thumbnail} bytes in ${proxy.requests.length} requests for a 256-pixel thumbnail`);
      for (const query of SAME_BYTES(name)) {
        const [remote, local] = await Promise.all([get(port, query), get(diskPort, query)]);
        assert.ok(ok(remote, query).equals(ok(local, query)), `${query}: the same bytes as from disk`);
      }
      assert.deepEqual(filesUnder(copies), [], 'no local copy');
    }
  });

  it('serves an untiled JPEG2000 as from disk', async () => {
    const { port } = await startOnStore();
    for (const query of ['IIIF=example.jp2/full/120,/0/default.jpg', 'FIF=example.jp2&JTL=2,1', 'IIIF=example.jp2/100,100,300,200/full/0/default.png']) {
      const [remote, local] = await Promise.all([get(port, query), get(diskPort, query)]);
      assert.ok(ok(remote, query).equals(ok(local, query)), `${query}: the same bytes as from disk`);
    }
  });

  it('answers 503 when the store fails in the middle of a decode, and 404 for a truncated object as from disk', async () => {
    const { port } = await startOnStore({ REMOTE_CHECK_INTERVAL: '600', REMOTE_ATTEMPTS: '1' });
    ok(await get(port, 'FIF=tiled.jp2&OBJ=Max-size'), 'opened');
    proxy.reset();
    proxy.failWith = 503;
    try {
      const answer = await get(port, 'FIF=tiled.jp2&JTL=3,10');
      assert.equal(answer.status, 503, answer.body.toString());
      assert.match(answer.body.toString(), /image store/);
      assert.ok(
        proxy.requests.some((r) => r.method === 'GET' && r.range !== null),
        `the decode asked the store for its bytes: ${JSON.stringify(proxy.requests)}`,
      );
    } finally {
      proxy.failWith = null;
    }
    ok(await get(port, 'FIF=tiled.jp2&JTL=3,10'), 'the store is back');
    const query = 'FIF=truncated.jp2&JTL=2,15';
    const [remote, local] = await Promise.all([get(port, query), get(diskPort, query)]);
    assert.equal(local.status, 404, local.body.toString());
    assert.equal(remote.status, 404, remote.body.toString());
  });
});

function ok(answer: { status: number; body: Buffer }, what: string): Buffer {
  assert.equal(answer.status, 200, `${what}: ${answer.body.toString().slice(0, 300)}`);
  return answer.body;
}
