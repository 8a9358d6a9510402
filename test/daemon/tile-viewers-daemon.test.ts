/**
 * DeepZoom and Zoomify through the daemon: beside the real iipsrv 1.1 behind one nginx (FastCGI),
 * query style and URI_MAP path style (`/deepzoom/...`, `/zoomify/...`), and over --http.
 * Documents are compared byte for byte where 1.1 is right; tiles of the stored levels by size and
 * pixels.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon, tempDir } from '../helpers/daemon.ts';
import { freePort, type Started } from '../helpers/processes.ts';
import { decodePixels, psnr } from '../helpers/images.ts';
import { fetchRaw, imagesDir, makeVipsPyramid, referenceSkipReason, startDifferentialPair, type DifferentialPair } from '../helpers/reference-iipsrv.ts';

const skip = referenceSkipReason();
const URI_MAP = 'iiif=>IIIF iip=>IIP deepzoom=>DeepZoom zoomify=>Zoomify';

describe('DeepZoom and Zoomify beside iipsrv 1.1, behind nginx', { skip: skip ?? false }, () => {
  let pair: DifferentialPair;
  before(async () => {
    const dir = tempDir();
    const images = imagesDir(dir);
    await makeVipsPyramid(path.join(images, 'pyr.tif'), { width: 1000, height: 700, tileSize: 256, compression: 'jpeg' });
    await makeVipsPyramid(path.join(images, 'odd.tif'), { width: 1001, height: 733, tileSize: 256, compression: 'deflate' });
    // 1.1 reads only one URI_MAP mapping; ours all of them. Query style is compared with 1.1.
    pair = await startDifferentialPair({ dir: path.join(dir, 'web'), images: images, env: { JPEG_QUALITY: '75', URI_MAP } });
  });
  after(async () => pair?.stop());

  it('the .dzi: byte-identical to 1.1, headers too', async () => {
    for (const image of ['pyr.tif', 'odd.tif']) {
      const { ref, ours } = await pair.get(`DeepZoom=${image}.dzi`);
      assert.equal(ours.status, 200);
      assert.equal(ours.body.toString(), ref.body.toString());
      const type = (r: typeof ref) => r.headers.find(([n]) => n === 'content-type')?.[1];
      assert.equal(type(ours), type(ref));
      assert.equal(ours.headers.find(([n]) => n === 'last-modified')?.[1], ref.headers.find(([n]) => n === 'last-modified')?.[1]);
    }
  });

  it('ImageProperties.xml: as 1.1 but NUMTILES counts every tier (1.1 counted only the full resolution: on purpose)', async () => {
    const { ref, ours } = await pair.get('Zoomify=pyr.tif/ImageProperties.xml');
    assert.equal(ref.body.toString(), '<IMAGE_PROPERTIES WIDTH="1000" HEIGHT="700" NUMTILES="12" NUMIMAGES="1" VERSION="1.8" TILESIZE="256" />');
    assert.equal(ours.body.toString(), ref.body.toString().replace('NUMTILES="12"', 'NUMTILES="17"'));
  });

  it('tiles of the stored levels: the same sizes and close pixels as 1.1, for DeepZoom and Zoomify', async () => {
    const queries = [
      'DeepZoom=pyr.tif_files/10/0_0.jpg',
      'DeepZoom=pyr.tif_files/10/3_2.jpg',
      'DeepZoom=pyr.tif_files/9/1_1.jpg',
      'DeepZoom=pyr.tif_files/8/0_0.jpg',
      'DeepZoom=odd.tif_files/10/3_2.jpg',
      'Zoomify=pyr.tif/TileGroup0/0-0-0.jpg',
      'Zoomify=pyr.tif/TileGroup0/1-1-1.jpg',
      'Zoomify=pyr.tif/TileGroup0/2-3-2.jpg',
      'Zoomify=odd.tif/TileGroup0/2-3-2.jpg',
    ];
    for (const query of queries) {
      const { ref, ours } = await pair.get(query);
      assert.equal(ref.status, 200, `reference ${query}`);
      assert.equal(ours.status, 200, `ours ${query}`);
      const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
      assert.deepEqual([b.width, b.height], [a.width, a.height], query);
      assert.ok(psnr(a, b) > 30, `${query}: PSNR ${psnr(a, b).toFixed(1)} dB`);
    }
  });

  it('a level below the smallest stored one: ours is scaled to its DeepZoom size (1.1 sends the 250x175 tile: on purpose)', async () => {
    const { ref, ours } = await pair.get('DeepZoom=pyr.tif_files/7/0_0.jpg');
    const [a, b] = await Promise.all([decodePixels(ref.body), decodePixels(ours.body)]);
    assert.deepEqual([a.width, a.height], [250, 175]);
    assert.deepEqual([b.width, b.height], [125, 88]);
  });

  it('URI_MAP path style through nginx: /deepzoom/... and /zoomify/... answer as the query style does', async () => {
    for (const [pathStyle, query] of [
      ['/deepzoom/pyr.tif.dzi', 'DeepZoom=pyr.tif.dzi'],
      ['/deepzoom/pyr.tif_files/10/2_1.jpg', 'DeepZoom=pyr.tif_files/10/2_1.jpg'],
      ['/zoomify/pyr.tif/ImageProperties.xml', 'Zoomify=pyr.tif/ImageProperties.xml'],
      ['/zoomify/pyr.tif/TileGroup0/2-1-1.jpg', 'Zoomify=pyr.tif/TileGroup0/2-1-1.jpg'],
    ] as const) {
      const viaPath = await fetchRaw(pair.oursPort, pathStyle);
      const viaQuery = await pair.fetch('ours', query);
      assert.equal(viaPath.status, 200, `${pathStyle}: ${viaPath.body.toString().slice(0, 200)}`);
      assert.ok(viaPath.body.equals(viaQuery.body), pathStyle);
    }
  });

  it('errors: out-of-range tiles 404, bad syntax 400, with a message', async () => {
    const past = await pair.fetch('ours', 'DeepZoom=pyr.tif_files/10/4_0.jpg');
    assert.equal(past.status, 404);
    assert.match(past.body.toString(), /no tile 4,0 at level 10/);
    assert.equal((await pair.fetch('ours', 'Zoomify=pyr.tif/TileGroup0/x.jpg')).status, 400);
  });
});

describe('DeepZoom and Zoomify over --http', () => {
  let daemon: Started;
  let port: number;
  before(async () => {
    const dir = tempDir();
    await makeVipsPyramid(path.join(dir, 'pyr.tif'), { width: 1000, height: 700, tileSize: 256, compression: 'jpeg' }).catch(async () => {
      // Without the vips command line: sharp writes an equivalent pyramid.
      const { makePyramidTiff } = await import('../helpers/images.ts');
      await makePyramidTiff(path.join(dir, 'pyr.tif'), { width: 1000, height: 700 });
    });
    port = await freePort();
    daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], { env: { FILESYSTEM_PREFIX: dir + '/', URI_MAP }, waitPort: port });
  });
  after(async () => daemon?.stop());

  const get = (p: string) =>
    new Promise<{ status: number; type: string; body: Buffer }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body: Buffer.concat(chunks) }));
        })
        .on('error', reject);
    });

  it('descriptors and tiles, query and path style', async () => {
    for (const [p, type] of [
      ['/?DeepZoom=pyr.tif.dzi', 'application/xml'],
      ['/deepzoom/pyr.tif.dzi', 'application/xml'],
      ['/deepzoom/pyr.tif_files/9/1_0.jpg', 'image/jpeg'],
      ['/zoomify/pyr.tif/ImageProperties.xml', 'application/xml'],
      ['/?Zoomify=pyr.tif/TileGroup0/2-3-2.jpg', 'image/jpeg'],
    ] as const) {
      const reply = await get(p);
      assert.equal(reply.status, 200, p);
      assert.equal(reply.type, type, p);
    }
  });
});
