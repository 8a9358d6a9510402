/**
 * Differential tests: the real iipsrv 1.1 (Debian's iipimage-server) and our server run side by
 * side over FastCGI TCP behind one nginx, with the same images and settings, and get the same
 * requests. Text answers must be byte-identical, images the same size and bands with close
 * pixels. Where 1.1 is known to be wrong (reference §17) or where we differ on purpose (README,
 * "Differences from iipsrv 1.1 on purpose"), the test says so in its name and checks our
 * behaviour.
 *
 * Skips, naming the Debian package, when nginx or /usr/lib/iipimage-server/iipsrv.fcgi is absent.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import sharp from 'sharp';
import { tempDir } from '../helpers/daemon.ts';
import {
  comparableHeaders,
  decodePixels,
  header,
  imagesDir,
  makeVipsPyramid,
  meanAbsoluteDifference,
  psnr,
  referenceSkipReason,
  setTiffTags,
  startDifferentialPair,
  writeNotAnImage,
  type Both,
  type DifferentialPair,
  type Pixels,
  type RawReply,
} from '../helpers/reference-iipsrv.ts';

const SKIP = referenceSkipReason();
const MTIME = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT

interface TestImage {
  file: string;
  width: number;
  height: number;
  tile: number;
  bands: 1 | 3;
  compression: 'jpeg' | 'deflate';
}

const IMAGES: TestImage[] = [
  { file: 'pyr.tif', width: 1000, height: 700, tile: 256, bands: 3, compression: 'jpeg' },
  { file: 'odd.tif', width: 1001, height: 733, tile: 512, bands: 3, compression: 'jpeg' },
  { file: 'grey.tif', width: 1000, height: 700, tile: 256, bands: 1, compression: 'jpeg' },
  { file: 'meta.tif', width: 1000, height: 700, tile: 256, bands: 3, compression: 'jpeg' },
  { file: 'deflate.tif', width: 600, height: 450, tile: 256, bands: 3, compression: 'deflate' },
];
const byFile = (file: string) => IMAGES.find((i) => i.file === file)!;

/** Level sizes as vips writes them: halved (rounded down) until the level fits in one tile; largest first. */
function levelsOf(image: TestImage): Array<{ width: number; height: number }> {
  const levels = [{ width: image.width, height: image.height }];
  for (;;) {
    const last = levels[levels.length - 1]!;
    if (last.width <= image.tile && last.height <= image.tile) break;
    levels.push({ width: Math.floor(last.width / 2), height: Math.floor(last.height / 2) });
  }
  return levels;
}

/** Tiles of IIP resolution r (0 = smallest): count and the cropped size of each. */
function tilesOf(image: TestImage, resolution: number): Array<{ width: number; height: number }> {
  const levels = levelsOf(image);
  const level = levels[levels.length - 1 - resolution]!;
  const across = Math.ceil(level.width / image.tile);
  const down = Math.ceil(level.height / image.tile);
  const tiles: Array<{ width: number; height: number }> = [];
  for (let row = 0; row < down; row++) {
    for (let col = 0; col < across; col++) {
      tiles.push({ width: Math.min(image.tile, level.width - col * image.tile), height: Math.min(image.tile, level.height - row * image.tile) });
    }
  }
  return tiles;
}

const text = (reply: RawReply) => reply.body.toString('latin1');

/** Status, headers (but Server, Date and framing) and body all the same. */
function assertIdentical(both: Both, what: string, ignoreHeaders: string[] = []): void {
  assert.equal(both.ours.status, both.ref.status, `${what}: status`);
  assert.deepEqual(comparableHeaders(both.ours, ignoreHeaders), comparableHeaders(both.ref, ignoreHeaders), `${what}: headers`);
  assert.equal(text(both.ours), text(both.ref), `${what}: body`);
}

/**
 * Our header list equals the reference's as a set (same names, same values, any order): images
 * carry the same header fields, in an order that does not matter to HTTP.
 */
function assertSameHeaderSet(both: Both, what: string, ignoreHeaders: string[] = []): void {
  assert.deepEqual(comparableHeaders(both.ours, ignoreHeaders).sort(), comparableHeaders(both.ref, ignoreHeaders).sort(), `${what}: headers`);
}

/**
 * IIP error blocks where the only difference is 1.1's 32-byte line buffer (README: error lines
 * are not cut at 31 characters): same status and headers, and each of 1.1's lines is ours cut.
 */
function assertSameErrorsUncut(both: Both, what: string): void {
  assert.equal(both.ours.status, 400, `${what}: status`);
  assert.equal(both.ref.status, 400, `${what}: reference status`);
  assert.deepEqual(comparableHeaders(both.ours), comparableHeaders(both.ref), `${what}: headers`);
  const ours = text(both.ours).split('\r\n');
  const ref = text(both.ref).split('\r\n');
  assert.deepEqual(
    ref,
    ours.map((line) => line.slice(0, 31)),
    `${what}: 1.1's lines are ours cut at 31 characters`,
  );
}

interface ImageComparison {
  ref: Pixels;
  ours: Pixels;
  psnr: number;
  mad: number;
}

async function compareImages(both: Both, what: string): Promise<ImageComparison> {
  assert.equal(both.ours.status, 200, `${what}: our status (${text(both.ours).slice(0, 200)})`);
  assert.equal(both.ref.status, 200, `${what}: reference status`);
  assert.equal(header(both.ours, 'content-type'), header(both.ref, 'content-type'), `${what}: Content-Type`);
  const [ref, ours] = await Promise.all([decodePixels(both.ref.body), decodePixels(both.ours.body)]);
  assert.deepEqual([ours.width, ours.height], [ref.width, ref.height], `${what}: dimensions`);
  assert.equal(ours.channels, ref.channels, `${what}: channels`);
  return { ref, ours, psnr: psnr(ref, ours), mad: meanAbsoluteDifference(ref, ours) };
}

/**
 * Ours sends stored JPEG tiles as they are (quality 90 here) while 1.1 decodes and re-encodes
 * them at JPEG_QUALITY 75: the two differ by one generation of JPEG loss.
 */
const TILE_PSNR = 35;
/** Both re-encoded at quality 75 from the same pixels. */
const REENCODED_PSNR = 38;
/** Regions: both resample, with different filters (1.1: bilinear without half-pixel centres). */
const REGION_PSNR = 30;

/** The lowest PSNR a test saw, reported as a diagnostic line of the test. */
function reportPsnr(t: TestContext, values: number[]): void {
  if (values.length > 0) t.diagnostic(`lowest PSNR ${Math.min(...values).toFixed(1)} dB over ${values.length} images`);
}

let dir: string;
let images: string;
let pair: DifferentialPair | null = null;
const need = () => {
  assert.ok(pair, 'the servers did not start');
  return pair;
};

async function makeImages(target: string): Promise<void> {
  await Promise.all(
    IMAGES.map((i) =>
      makeVipsPyramid(path.join(target, i.file), { width: i.width, height: i.height, tileSize: i.tile, compression: i.compression, bands: i.bands }),
    ),
  );
  await setTiffTags(path.join(target, 'meta.tif'), [
    [315, 'Jane Artist'],
    [33432, '(c) 2024 Test'],
    [270, 'A description'],
    [306, '2024:01:02 03:04:05'],
    [305, 'vips test'],
    [296, '2'],
    [282, '300'],
    [283, '300'],
  ]);
  await makeVipsPyramid(path.join(target, 'strips.tif'), { width: 300, height: 200, tileSize: 256, compression: 'deflate', strips: true });
  writeNotAnImage(path.join(target, 'notes.txt'));
  writeFileSync(path.join(target, 'tiny.txt'), 'short');
  mkdirSync(path.join(target, 'sub', 'dir'), { recursive: true });
  copyFileSync(path.join(target, 'pyr.tif'), path.join(target, 'sub', 'dir', 'my.image.tif'));
  for (const file of [...IMAGES.map((i) => i.file), 'strips.tif', 'sub/dir/my.image.tif']) utimesSync(path.join(target, file), MTIME, MTIME);
}

describe('differential: iipsrv 1.1 and ours behind one nginx', { skip: SKIP ?? false }, () => {
  before(async () => {
    dir = tempDir('iipsrv-diff-');
    images = imagesDir(dir);
    await makeImages(images);
    pair = await startDifferentialPair({ dir, images, env: { JPEG_QUALITY: '75' } });
  });
  after(async () => {
    await pair?.stop();
  });

  describe('OBJ: byte-identical answers', () => {
    const OBJECTS = [
      'IIP,1.0',
      'IIP-server',
      'Basic-info',
      'Max-size',
      'Tile-size',
      'Resolution-number',
      'Bits-per-channel',
      'Colorspace,0-2,0',
      'Min-Max-sample-values',
      'Horizontal-views',
      'Vertical-views',
      'Resolutions',
      'IIP-opt-comm',
      'IIP-opt-obj',
    ];
    const METADATA = ['summary-info', 'copyright', 'subject', 'author', 'create-dtm', 'app-name'];
    // 1.1 knows these names but a TIFF never has them: nothing is output, then `2 1`.
    const EMPTY_METADATA = ['title', 'keywords', 'comment', 'last-author', 'rev-number', 'edit-time', 'last-printed', 'last-save-dtm'];

    for (const image of IMAGES) {
      it(`${image.file}: every object alone`, async () => {
        for (const object of OBJECTS) assertIdentical(await need().get(`FIF=${image.file}&OBJ=${object}`), `${image.file} OBJ=${object}`);
      });
      it(`${image.file}: all objects in one request, with IIP,1.0 first and last`, async () => {
        const query = `FIF=${image.file}&${OBJECTS.map((o) => `OBJ=${o}`).join('&')}`;
        assertIdentical(await need().get(query), `${image.file} combined`);
        const reversed = `FIF=${image.file}&${[...OBJECTS]
          .reverse()
          .map((o) => `OBJ=${o}`)
          .join('&')}`;
        assertIdentical(await need().get(reversed), `${image.file} combined, reversed`);
      });
    }

    it('metadata objects of an image with Artist, Copyright, ImageDescription, DateTime, Software', async () => {
      for (const object of METADATA) {
        const both = await need().get(`FIF=meta.tif&OBJ=${object}`);
        assertIdentical(both, `meta.tif OBJ=${object}`);
        assert.equal(both.ours.status, 200);
      }
      const both = await need().get(`FIF=meta.tif&OBJ=IIP,1.0&${METADATA.map((o) => `OBJ=${o}`).join('&')}&OBJ=Basic-info`);
      assertIdentical(both, 'meta.tif all metadata');
      assert.match(text(both.ours), /\r\ncopyright\/13:\(c\) 2024 Test\r\n/);
    });

    it('metadata 1.1 knows but TIFF never has: nothing, then the 2 1 error (its line not cut at 31 characters, on purpose)', async () => {
      for (const object of EMPTY_METADATA) {
        const query = `FIF=meta.tif&OBJ=${object}`;
        const both = await need().get(query);
        assertSameErrorsUncut(both, query);
        assert.equal(text(both.ours), `Error/${query.length + 4}:2 1 ${query}\r\n`);
      }
    });

    it('metadata objects of an image without metadata: nothing, then the 2 1 error (full line in ours, cut at 31 in 1.1)', async () => {
      for (const object of [...METADATA, 'title']) {
        const query = `FIF=pyr.tif&OBJ=${object}`;
        const both = await need().get(query);
        // 1.1 formats the line into a 32-byte buffer; the length prefix is the same.
        assertSameErrorsUncut(both, query);
        assert.equal(text(both.ours), `Error/${query.length + 4}:2 1 ${query}\r\n`);
      }
    });

    it('metadata beside present objects: only the lines that exist', async () => {
      assertIdentical(await need().get('FIF=meta.tif&OBJ=copyright&OBJ=title&OBJ=keywords'), 'present and absent');
      assertIdentical(await need().get('FIF=pyr.tif&OBJ=Max-size&OBJ=copyright'), 'absent beside Max-size');
    });

    it('ROT before Max-size swaps it; Max-size before ROT does not', async () => {
      assertIdentical(await need().get('FIF=pyr.tif&OBJ=Max-size&ROT=90&OBJ=Max-size&ROT=270&OBJ=Basic-info'), 'ROT 90/270');
      assertIdentical(await need().get('FIF=odd.tif&ROT=180&OBJ=Max-size&ROT=45&OBJ=Max-size'), 'ROT 180/45');
    });

    it('command and object names in any case, FIF in a sub directory', async () => {
      assertIdentical(await need().get('fif=sub/dir/my.image.tif&obj=iip,1.0&Obj=BASIC-INFO&OBJ=resolutions'), 'case');
    });

    it('If-Modified-Since a day after and a day before the file time: 304 and 200 from both', async () => {
      for (const [date, status] of [
        ['Wed, 15 Nov 2023 22:13:20 GMT', 304],
        ['Mon, 13 Nov 2023 22:13:20 GMT', 200],
      ] as const) {
        for (const query of ['FIF=pyr.tif&OBJ=IIP,1.0', 'FIF=pyr.tif&JTL=0,0', 'FIF=pyr.tif&WID=100&CVT=jpeg', 'FIF=pyr.tif&TIL=2,0']) {
          const both = await need().get(query, { 'If-Modified-Since': date });
          assert.equal(both.ref.status, status, `${query} since ${date}: reference`);
          assert.equal(both.ours.status, status, `${query} since ${date}`);
          if (status === 304) assertIdentical(both, `${query} since ${date}`);
        }
      }
    });

    it('If-Modified-Since at the file time: ours 304 (1.1 answers 200 or 304 from one request to the next: it reads the date into an uninitialised struct tm)', async () => {
      for (const query of ['FIF=pyr.tif&OBJ=IIP,1.0', 'FIF=pyr.tif&JTL=0,0']) {
        const both = await need().get(query, { 'If-Modified-Since': 'Tue, 14 Nov 2023 22:13:20 GMT' });
        assert.ok([200, 304].includes(both.ref.status), `${query}: reference ${both.ref.status}`);
        assert.equal(both.ours.status, 304, query);
      }
    });

    it('an object name with a % sign: the name as sent (1.1 prints error lines printf-style, reference §17 #11)', async () => {
      const both = await need().get('FIF=pyr.tif&OBJ=max-size%20');
      assert.equal(both.ours.status, 400);
      assert.equal(text(both.ours), 'Error/15:3 2 max-size%20\r\n');
      assert.notEqual(text(both.ref), text(both.ours), '1.1 took %20 for a conversion');
    });

    it("a negative ROT before Max-size: ours swaps for -90 as for 270 (1.1 ignores negative angles: C's % keeps the sign)", async () => {
      const both = await need().get('FIF=pyr.tif&ROT=-90&OBJ=Max-size');
      assert.equal(text(both.ref), '\r\nMax-size:1000 700\r\n');
      assert.equal(text(both.ours), '\r\nMax-size:700 1000\r\n');
    });

    it('SDS (sequence view) on a single image: accepted, as 1.1 does for 0,90', async () => {
      assertIdentical(await need().get('FIF=pyr.tif&SDS=0,90&OBJ=Max-size&OBJ=Horizontal-views&OBJ=Vertical-views'), 'SDS');
    });

    it('OBJ=dpi: an iipsrv 1.3 object; 1.1 rejects it with 3 2, ours answers (pixels per metre, as 1.3)', async () => {
      const both = await need().get('FIF=meta.tif&OBJ=dpi');
      assert.equal(text(both.ref), 'Error/7:3 2 dpi\r\n');
      assert.equal(both.ours.status, 200);
      assert.equal(text(both.ours), '\r\nDPI:11811.023622 11811.023622\r\n');
    });

    it('OBJ without FIF: 1.1 sends an empty Last-Modified that ends its headers early (not copied, on purpose)', async () => {
      const both = await need().get('OBJ=IIP,1.0&OBJ=IIP-server');
      assert.equal(both.ours.status, 200);
      assert.equal(header(both.ours, 'content-type'), 'application/vnd.netfpx');
      assert.equal(header(both.ours, 'last-modified'), undefined);
      assert.equal(text(both.ours), 'IIP:1.0\r\nIIP-server:3.65\r\n');
      // What an HTTP client gets from 1.1: the Content-Type line and a blank line inside the body.
      assert.equal(text(both.ref), 'Content-Type: application/vnd.netfpx\r\n\r\nIIP:1.0\r\nIIP-server:3.65\r\n');
    });
  });

  describe('JTL: every tile of every resolution', () => {
    for (const image of IMAGES) {
      const levels = levelsOf(image);
      for (let resolution = 0; resolution < levels.length; resolution++) {
        const tiles = tilesOf(image, resolution);
        it(`${image.file} resolution ${resolution}: ${tiles.length} tiles, edge tiles cropped`, async (t) => {
          const seen: number[] = [];
          for (let tile = 0; tile < tiles.length; tile++) {
            const query = `FIF=${image.file}&JTL=${resolution},${tile}`;
            const both = await need().get(query);
            assertSameHeaderSet(both, query);
            const result = await compareImages(both, query);
            assert.deepEqual([result.ours.width, result.ours.height], [tiles[tile]!.width, tiles[tile]!.height], `${query}: cropped size`);
            assert.equal(result.ours.channels, image.bands, `${query}: bands`);
            assert.ok(result.psnr >= TILE_PSNR, `${query}: PSNR ${result.psnr.toFixed(1)} dB < ${TILE_PSNR} (mean abs diff ${result.mad.toFixed(2)})`);

            // With QLT=75 ours re-encodes too, at 1.1's quality.
            const qlt = `FIF=${image.file}&QLT=75&JTL=${resolution},${tile}`;
            const reencoded = await compareImages({ ref: both.ref, ours: await need().fetch('ours', qlt) }, qlt);
            assert.ok(reencoded.psnr >= REENCODED_PSNR, `${qlt}: PSNR ${reencoded.psnr.toFixed(1)} dB < ${REENCODED_PSNR}`);
            seen.push(result.psnr, reencoded.psnr);
          }
          reportPsnr(t, seen);
        });
      }
    }

    it('JTL=2 without a comma is resolution 2, tile 2; JTL=1 is resolution 1, tile 1', async () => {
      for (const query of ['FIF=pyr.tif&JTL=2', 'FIF=pyr.tif&JTL=1', 'FIF=grey.tif&JTL=1']) {
        const both = await need().get(query);
        assertSameHeaderSet(both, query);
        const result = await compareImages(both, query);
        assert.ok(result.psnr >= TILE_PSNR, `${query}: PSNR ${result.psnr.toFixed(1)}`);
      }
    });

    it('QLT changes the quality of both: same sizes, close pixels', async () => {
      for (const query of ['FIF=pyr.tif&QLT=30&JTL=2,5', 'FIF=deflate.tif&QLT=95&JTL=1,0', 'FIF=grey.tif&QLT=50&JTL=2,11']) {
        const result = await compareImages(await need().get(query), query);
        assert.ok(result.psnr >= 28, `${query}: PSNR ${result.psnr.toFixed(1)}`);
      }
    });

    it('resolution out of range: 404 from both (messages differ: ours does not mention TPTImage or TIFFSetDirectory)', async () => {
      for (const query of ['FIF=pyr.tif&JTL=3,0', 'FIF=pyr.tif&JTL=4,0', 'FIF=odd.tif&JTL=2,0', 'FIF=pyr.tif&JTL=99,0']) {
        const both = await need().get(query);
        assert.equal(both.ref.status, 404, query);
        assert.equal(both.ours.status, 404, query);
        assert.match(text(both.ours), /non-existent resolution/);
      }
    });

    it('tile out of range: 404 and the same message', async () => {
      for (const query of ['FIF=pyr.tif&JTL=2,12', 'FIF=pyr.tif&JTL=0,1', 'FIF=odd.tif&JTL=1,4', 'FIF=deflate.tif&JTL=1,6']) {
        const both = await need().get(query);
        assert.equal(both.ours.status, 404, query);
        assert.equal(both.ref.status, 404, query);
        assert.equal(text(both.ours), text(both.ref), query);
      }
    });

    it('negative resolution or tile: 400 from both (1.1 sends its banner page, ours a message)', async () => {
      for (const query of ['FIF=pyr.tif&JTL=-1,0', 'FIF=pyr.tif&JTL=0,-1', 'FIF=pyr.tif&JTL=-1']) {
        const both = await need().get(query);
        assert.equal(both.ref.status, 400, query);
        assert.equal(both.ours.status, 400, query);
        assert.match(text(both.ref), /<title>IIPImage Server<\/title>/);
      }
    });

    it('JTL without FIF: the same IIP error block, byte for byte', async () => {
      assertIdentical(await need().get('JTL=0,0'), 'JTL=0,0');
      assertIdentical(await need().get('JTL=2,3&OBJ=IIP-server'), 'JTL and OBJ without FIF');
    });

    it('ROT before JTL: 90, 180 (1.1 also takes the opposite tile), 270 and mirrored tiles', async (t) => {
      const seen: number[] = [];
      for (const image of ['pyr.tif', 'odd.tif', 'grey.tif']) {
        for (const rotation of ['90', '180', '270', '!0', '!90', '!270']) {
          for (const tile of image === 'odd.tif' ? [0, 3] : [0, 3, 8, 11]) {
            const query = `FIF=${image}&ROT=${rotation}&JTL=${levelsOf(byFile(image)).length - 1},${tile}`;
            const both = await need().get(query);
            assertSameHeaderSet(both, query);
            const result = await compareImages(both, query);
            assert.ok(result.psnr >= REENCODED_PSNR, `${query}: PSNR ${result.psnr.toFixed(1)}`);
            seen.push(result.psnr);
          }
        }
      }
      reportPsnr(t, seen);
    });

    it('ROT=!180 (a vertical flip) before JTL: 1.1 flips the tile asked for, without taking the opposite one', async () => {
      for (const query of ['FIF=pyr.tif&ROT=!180&JTL=2,0', 'FIF=pyr.tif&ROT=!180&JTL=2,5', 'FIF=grey.tif&ROT=!180&JTL=2,11']) {
        const both = await need().get(query);
        const result = await compareImages(both, query);
        assert.ok(result.psnr >= REENCODED_PSNR, `${query}: PSNR ${result.psnr.toFixed(1)}`);
      }
    });

    it('an unknown command beside a tile: the tile alone from both (1.1 appends its error text, but nginx cuts the body at its Content-Length)', async () => {
      const both = await need().get('FIF=pyr.tif&JTL=2,3&FOO=1');
      const result = await compareImages(both, 'JTL with FOO');
      assert.ok(result.psnr >= TILE_PSNR);
      for (const reply of [both.ref, both.ours]) assert.equal(reply.body.subarray(-2).toString('hex'), 'ffd9', 'the body ends with the JPEG');
    });
  });

  describe('TIL: the multi-tile stream', () => {
    interface TilRecord {
      resolution: number;
      tile: number;
      prefix: string;
      jpeg: Buffer;
    }
    /**
     * `Tile,<res>,<n>,0/<len>:` + 8 bytes + JPEG, each followed by CRLF. With `rest`, whatever
     * follows the last record is returned instead of failing.
     */
    function parseTil(body: Buffer, rest?: { text: string }): TilRecord[] {
      const records: TilRecord[] = [];
      let offset = 0;
      while (offset < body.length) {
        const head = /^Tile,(\d+),(\d+),0\/(\d+):/.exec(body.subarray(offset, offset + 64).toString('latin1'));
        if (!head && rest) {
          rest.text = body.subarray(offset).toString('latin1');
          break;
        }
        assert.ok(head, `a tile record at byte ${offset}`);
        const start = offset + head[0].length;
        const length = Number(head[3]);
        records.push({
          resolution: Number(head[1]),
          tile: Number(head[2]),
          prefix: body.subarray(start, start + 8).toString('hex'),
          jpeg: body.subarray(start + 8, start + length),
        });
        assert.equal(body.subarray(start + length, start + length + 2).toString('latin1'), '\r\n');
        offset = start + length + 2;
      }
      return records;
    }

    const tilesIn = (reply: RawReply) => parseTil(reply.body).map((r) => r.tile);

    for (const query of [
      'FIF=pyr.tif&TIL=2,0-5',
      'FIF=pyr.tif&TIL=2,3-4',
      'FIF=pyr.tif&TIL=2,6-9',
      'FIF=pyr.tif&TIL=2,0-11',
      'FIF=pyr.tif&TIL=2,5',
      'FIF=pyr.tif&TIL=0,0',
      'FIF=grey.tif&TIL=1,0-3',
      'FIF=odd.tif&TIL=1,0-3',
      'FIF=deflate.tif&TIL=2,0-5',
    ]) {
      it(`${query}: same headers, same tiles in the same (column-major) order`, async () => {
        const both = await need().get(query);
        assert.equal(both.ours.status, both.ref.status);
        assert.deepEqual(comparableHeaders(both.ours), comparableHeaders(both.ref), 'headers');
        const [ref, ours] = [parseTil(both.ref.body), parseTil(both.ours.body)];
        assert.deepEqual(
          ours.map((r) => [r.resolution, r.tile, r.prefix]),
          ref.map((r) => [r.resolution, r.tile, r.prefix]),
        );
        for (let i = 0; i < ref.length; i++) {
          const result = await compareImages(
            { ref: { status: 200, headers: [], body: ref[i]!.jpeg }, ours: { status: 200, headers: [], body: ours[i]!.jpeg } },
            `${query} record ${i}`,
          );
          assert.ok(result.psnr >= TILE_PSNR, `${query} record ${i}: PSNR ${result.psnr.toFixed(1)}`);
        }
      });
    }

    it('an end tile before the start tile: ours streams the rectangle the two span (1.1 sends the start tile alone; on purpose)', async () => {
      const both = await need().get('FIF=pyr.tif&TIL=2,7-4');
      assert.deepEqual(tilesIn(both.ref), [7]);
      // Tiles 7 (3,1) and 4 (0,1) span columns 0-3 of row 1, sent column by column.
      assert.deepEqual(tilesIn(both.ours), [4, 5, 6, 7]);
    });

    it('an end tile past the grid: 404 from ours (1.1 streams the tiles up to the first missing one with status 200, then a whole 404 response inside the body)', async () => {
      for (const [query, partial] of [
        ['FIF=pyr.tif&TIL=2,0-12', [0, 4, 8]],
        ['FIF=pyr.tif&TIL=2,10-12', [8]],
      ] as const) {
        const both = await need().get(query);
        assert.equal(both.ref.status, 200, query);
        const rest = { text: '' };
        assert.deepEqual(
          parseTil(both.ref.body, rest).map((r) => r.tile),
          partial,
          `${query}: what 1.1 sends`,
        );
        assert.match(rest.text, /^Status: 404 Not Found\r\n[^]*Asked for non-existent tile: 12$/);
        assert.equal(both.ours.status, 404, query);
        assert.equal(text(both.ours), 'Asked for non-existent tile: 12');
      }
    });

    it('TIL without FIF: the same IIP error block', async () => {
      assertIdentical(await need().get('TIL=2,0-5'), 'TIL without FIF');
    });
  });

  describe('CVT: region exports (reference §7.3)', () => {
    // [query, 1.1's size on pyr.tif] — the sizes the reference measured, checked here on both.
    const TABLE: Array<[string, number, number]> = [
      ['CVT=jpeg', 1000, 700],
      ['WID=300&CVT=jpeg', 300, 210],
      ['HEI=300&CVT=jpeg', 429, 300],
      ['WID=300&HEI=300&CVT=jpeg', 300, 210],
      ['RGN=0,0,0.5,1&CVT=jpeg', 500, 700],
      ['WID=2000&CVT=jpeg', 2000, 1400],
      ['WID=300&ROT=90&CVT=jpeg', 210, 300],
    ];
    for (const [query, width, height] of TABLE) {
      it(`pyr.tif ${query}: ${width}x${height} from both`, async (t) => {
        const both = await need().get(`FIF=pyr.tif&${query}`);
        assertSameHeaderSet(both, query);
        const result = await compareImages(both, query);
        assert.deepEqual([result.ours.width, result.ours.height], [width, height]);
        assert.ok(result.psnr >= REGION_PSNR, `${query}: PSNR ${result.psnr.toFixed(1)} (mean abs diff ${result.mad.toFixed(2)})`);
        reportPsnr(t, [result.psnr]);
      });
    }

    const MORE = [
      'CVT=jpeg',
      'WID=300&CVT=jpeg',
      'HEI=300&CVT=jpeg',
      'WID=300&HEI=300&CVT=jpeg',
      'WID=301&HEI=77&CVT=jpeg',
      'RGN=0,0,0.5,1&CVT=jpeg',
      'RGN=0.9,0.9,0.5,0.5&WID=100&CVT=jpeg',
      'WID=2000&CVT=jpeg',
      'WID=6000&CVT=jpeg',
      'HEI=5000&CVT=jpeg',
      'ROT=90&WID=300&CVT=jpeg',
      'ROT=180&WID=300&CVT=jpeg',
      'ROT=270&HEI=200&CVT=jpeg',
      'ROT=!0&WID=300&CVT=jpeg',
      'ROT=!90&WID=300&CVT=jpeg',
      'ROT=!180&WID=300&CVT=jpeg',
      'QLT=50&WID=300&CVT=jpeg',
      'WID=300&CVT=JPEG',
    ];
    for (const image of ['pyr.tif', 'odd.tif', 'grey.tif', 'deflate.tif']) {
      it(`${image}: sizes, bands and pixels of ${MORE.length} exports`, async (t) => {
        const seen: number[] = [];
        for (const query of MORE) {
          const both = await need().get(`FIF=${image}&${query}`);
          assertSameHeaderSet(both, `${image} ${query}`);
          const result = await compareImages(both, `${image} ${query}`);
          assert.equal(result.ours.channels, byFile(image).bands, `${image} ${query}: bands`);
          assert.ok(result.psnr >= REGION_PSNR, `${image} ${query}: PSNR ${result.psnr.toFixed(1)} (mean abs diff ${result.mad.toFixed(2)})`);
          seen.push(result.psnr);
        }
        reportPsnr(t, seen);
      });
    }

    it('tiny exports: the same sizes (pixels differ: 1.1 samples the top-left source pixel, ours averages)', async () => {
      for (const image of ['pyr.tif', 'odd.tif', 'grey.tif']) {
        for (const query of ['WID=1&CVT=jpeg', 'HEI=1&CVT=jpeg', 'WID=7&CVT=jpeg', 'RGN=0.5,0.5,0.01,0.01&WID=3&CVT=jpeg']) {
          await compareImages(await need().get(`FIF=${image}&${query}`), `${image} ${query}`);
        }
      }
    });

    it('ROT other than a multiple of 90: ours rotates by that angle, corners white (1.1 ignores the angle; on purpose, as iipsrv 1.3)', async () => {
      const both = await need().get('FIF=pyr.tif&ROT=45&WID=300&CVT=jpeg');
      const [ref, ours] = await Promise.all([decodePixels(both.ref.body), decodePixels(both.ours.body)]);
      assert.deepEqual([ref.width, ref.height], [300, 210]);
      // A 300x210 picture turned by 45 degrees needs (300+210)/sqrt(2) = 361 px each way.
      assert.deepEqual([ours.width, ours.height], [361, 361]);
      const corner = [...ours.data.subarray(0, 3)];
      assert.ok(
        corner.every((v) => v > 240),
        `top-left corner is white: ${corner}`,
      );
    });

    it('a negative ROT: ours rotates -90 as 270 (1.1 ignores negative angles, for regions and tiles)', async () => {
      const region = await need().get('FIF=pyr.tif&ROT=-90&WID=300&CVT=jpeg');
      const [refRegion, oursRegion] = await Promise.all([decodePixels(region.ref.body), decodePixels(region.ours.body)]);
      assert.deepEqual([refRegion.width, refRegion.height], [300, 210]);
      assert.deepEqual([oursRegion.width, oursRegion.height], [210, 300]);
      const rotated = await compareImages(
        { ref: (await need().get('FIF=pyr.tif&ROT=270&WID=300&CVT=jpeg')).ref, ours: region.ours },
        'ROT=-90 against 1.1 ROT=270',
      );
      assert.ok(rotated.psnr >= REGION_PSNR, `PSNR ${rotated.psnr.toFixed(1)}`);
    });

    it('an unknown command beside a region: ours sends the image alone; 1.1 appends the error text (on purpose)', async () => {
      const both = await need().get('FIF=pyr.tif&WID=200&CVT=jpeg&FOO=1');
      const result = await compareImages(both, 'CVT with FOO');
      assert.ok(result.psnr >= REGION_PSNR);
      assert.ok(text(both.ref).endsWith('Error/7:2 2 FOO\r\n'), '1.1 appends');
      assert.equal(both.ours.body.subarray(-2).toString('hex'), 'ffd9', 'our body ends with the JPEG');
    });

    it('Content-Disposition: the file name without its last extension, .jpg', async () => {
      for (const name of ['pyr.tif', 'sub/dir/my.image.tif']) {
        const both = await need().get(`FIF=${name}&WID=100&CVT=jpeg`);
        assert.equal(header(both.ours, 'content-disposition'), header(both.ref, 'content-disposition'), name);
      }
      assert.equal(header((await need().get('FIF=sub/dir/my.image.tif&WID=100&CVT=jpeg')).ours, 'content-disposition'), 'inline;filename="my.image.jpg"');
    });

    it('RGN partial regions: 1.1 rounds the viewport at the level (with edge clipping), ours keeps the exact fraction: sizes within 1 px', async () => {
      let differing = 0;
      for (const image of ['pyr.tif', 'odd.tif', 'grey.tif', 'deflate.tif']) {
        for (const [query, width] of [
          ['RGN=0.5,0.5,0.5,0.5&WID=125&CVT=jpeg', 125],
          ['RGN=0.25,0.25,0.5,0.5&WID=200&CVT=jpeg', 200],
          ['RGN=0.2,0.1,0.6,0.3&WID=400&CVT=jpeg', 400],
          ['RGN=0.1,0.3,0.3,0.6&HEI=250&CVT=jpeg', 0],
        ] as const) {
          const both = await need().get(`FIF=${image}&${query}`);
          const [ref, ours] = await Promise.all([decodePixels(both.ref.body), decodePixels(both.ours.body)]);
          if (width > 0) assert.equal(ours.width, width, `${image} ${query}: ours gives WID exactly`);
          else assert.equal(ours.height, 250, `${image} ${query}: ours gives HEI exactly`);
          assert.ok(Math.abs(ours.width - ref.width) <= 1, `${image} ${query}: width ${ours.width} vs ${ref.width}`);
          assert.ok(Math.abs(ours.height - ref.height) <= 1, `${image} ${query}: height ${ours.height} vs ${ref.height}`);
          if (ours.width !== ref.width || ours.height !== ref.height) differing++;
        }
      }
      assert.ok(differing > 0, 'some sizes differ by a pixel (if none do any more, make this test exact)');
    });

    it('RGN without WID/HEI: the region at its own size (1.1 stretches it to the full image size, reference §17 #16)', async () => {
      // [image, query, ours, 1.1's: the region fitted into the whole image's size]
      for (const [image, query, width, height, refWidth, refHeight] of [
        ['pyr.tif', 'RGN=0,0,0.5,0.5&CVT=jpeg', 500, 350, 1000, 700],
        ['pyr.tif', 'RGN=0.25,0.5,0.25,0.5&CVT=jpeg', 250, 350, 500, 700],
        ['odd.tif', 'RGN=0,0,0.5,0.5&CVT=jpeg', 501, 367, 1001, 733],
      ] as const) {
        const both = await need().get(`FIF=${image}&${query}`);
        const [ref, ours] = await Promise.all([decodePixels(both.ref.body), decodePixels(both.ours.body)]);
        assert.deepEqual([ref.width, ref.height], [refWidth, refHeight], `${image} ${query}: 1.1 upscales`);
        assert.deepEqual([ours.width, ours.height], [width, height], `${image} ${query}`);
        // Same content: 1.1's stretched region scaled down to ours.
        const { data } = await sharp(both.ref.body).resize(width, height, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
        const similarity = psnr({ width, height, channels: ref.channels, data }, ours);
        assert.ok(similarity >= REGION_PSNR, `${image} ${query}: PSNR ${similarity.toFixed(1)}`);
      }
    });

    it('CVT=png and tiff: 1.1 sends a JPEG anyway; ours sends that format, as iipsrv 1.3 (on purpose)', async () => {
      for (const [query, type] of [
        ['FIF=pyr.tif&WID=200&CVT=png', 'image/png'],
        ['FIF=pyr.tif&WID=200&CVT=tiff', 'image/tiff'],
      ] as const) {
        const both = await need().get(query);
        assert.equal(header(both.ref, 'content-type'), 'image/jpeg');
        assert.equal(header(both.ours, 'content-type'), type);
        const [ref, ours] = await Promise.all([decodePixels(both.ref.body), decodePixels(both.ours.body)]);
        assert.deepEqual([ours.width, ours.height], [ref.width, ref.height], query);
      }
    });

    it('CVT with a format nobody knows: 1.1 sends a JPEG, ours a 400 naming the formats (on purpose)', async () => {
      const both = await need().get('FIF=pyr.tif&WID=200&CVT=bmp');
      assert.equal(header(both.ref, 'content-type'), 'image/jpeg');
      assert.equal(both.ours.status, 400);
      assert.match(text(both.ours), /bmp/);
    });

    it('CVT without FIF: the same IIP error block', async () => {
      assertIdentical(await need().get('WID=200&CVT=jpeg'), 'CVT without FIF');
    });
  });

  describe('errors', () => {
    it('unknown command: Error 2 2, byte for byte', async () => {
      for (const query of ['FOO=bar', 'FIF=pyr.tif&FOO=bar', 'FOO=1&BAR=2', 'FIF=pyr.tif&OBJ=IIP,1.0&XYZ=1']) assertIdentical(await need().get(query), query);
    });

    it('unknown OBJ: Error 3 2 with the lower-cased name, byte for byte', async () => {
      for (const query of ['FIF=pyr.tif&OBJ=foo', 'FIF=pyr.tif&OBJ=Max-Size-Please', 'OBJ=Nothing', 'FIF=pyr.tif&OBJ=IIP,1.0&OBJ=bar&OBJ=Max-size']) {
        assertIdentical(await need().get(query), query);
      }
    });

    it('an image object without FIF: Error 1 3 with the lower-cased object', async () => {
      for (const query of ['OBJ=Max-size', 'OBJ=Basic-info&OBJ=IIP-server', 'OBJ=copyright']) assertIdentical(await need().get(query), query);
    });

    it('a request that produces nothing: Error 2 1 (short enough that 1.1 does not cut it)', async () => {
      for (const query of ['FIF=pyr.tif', 'QLT=50', 'FIF=pyr.tif&WID=10']) assertIdentical(await need().get(query), query);
    });

    it('a missing file: 404 from both; ours names the image as asked, 1.1 the filesystem path (on purpose)', async () => {
      for (const query of ['FIF=nothere.tif&OBJ=IIP,1.0', 'FIF=nothere.tif&JTL=0,0', 'FIF=sub/nothere.tif&CVT=jpeg', 'FIF=sub&OBJ=IIP,1.0']) {
        const both = await need().get(query);
        assert.equal(both.ref.status, 404, query);
        assert.equal(both.ours.status, 404, query);
        assert.ok(text(both.ref).includes(images), '1.1 reveals the path');
        assert.ok(!text(both.ours).includes(dir), 'ours does not');
        assert.match(text(both.ours), /is neither a file nor part of an image sequence$/);
        assert.equal(text(both.ours), text(both.ref).replace(images, ''), 'otherwise the same message');
      }
    });

    it('a TIFF that is not tiled: 404 "TIFF image is not tiled" from 1.1, served by ours as an image without a pyramid (on purpose)', async () => {
      for (const query of ['FIF=strips.tif&OBJ=IIP,1.0', 'FIF=strips.tif&JTL=0,0', 'FIF=strips.tif&CVT=jpeg']) {
        const both = await need().get(query);
        assert.equal(both.ref.status, 404, query);
        assert.equal(text(both.ref), 'TIFF image is not tiled');
        assert.equal(both.ours.status, 200, query);
      }
    });

    it('a file shorter than the magic-number check: 404 from both', async () => {
      const both = await need().get('FIF=tiny.txt&OBJ=IIP,1.0');
      assert.equal(both.ref.status, 404);
      assert.equal(both.ours.status, 404);
    });

    it('a file that is not an image: 400 from both (1.1: "Unsupported image type", with its banner); a PNG 400 from 1.1, served by ours (on purpose)', async () => {
      for (const query of ['FIF=notes.txt&OBJ=IIP,1.0', 'FIF=notes.txt&JTL=0,0']) {
        const both = await need().get(query);
        assert.equal(both.ref.status, 400, `${query}: reference`);
        assert.equal(both.ours.status, both.ref.status, query);
      }
      const png = await need().get('FIF=pyr.source.png&OBJ=IIP,1.0');
      assert.equal(png.ref.status, 400);
      assert.equal(png.ours.status, 200);
    });

    it('the empty request: 1.1 answers its banner with 400, ours with 200 (on purpose, as 1.2+)', async () => {
      const both = await need().get('');
      assert.equal(both.ref.status, 400);
      assert.equal(both.ours.status, 200);
      assert.match(header(both.ours, 'content-type') ?? '', /^text\/html/);
    });

    it('the reference survived every request', () => {
      assert.ok(need().referenceAlive(), 'iipsrv 1.1 crashed during the tests');
    });
  });
});

describe('differential: MAX_CVT=400, ALLOW_UPSCALING=0, CORS=*', { skip: SKIP ?? false }, () => {
  let limited: DifferentialPair | null = null;
  const get = (query: string) => {
    assert.ok(limited, 'the servers did not start');
    return limited.get(query);
  };
  before(async () => {
    const limitedDir = tempDir('iipsrv-diff-limits-');
    const limitedImages = imagesDir(limitedDir);
    await makeVipsPyramid(path.join(limitedImages, 'pyr.tif'), { width: 1000, height: 700, tileSize: 256, compression: 'jpeg' });
    limited = await startDifferentialPair({
      dir: limitedDir,
      images: limitedImages,
      env: { JPEG_QUALITY: '75', MAX_CVT: '400', ALLOW_UPSCALING: '0', CORS: '*' },
    });
  });
  after(async () => {
    await limited?.stop();
  });

  for (const [query, width, height] of [
    ['WID=600&CVT=jpeg', 400, 280],
    ['WID=300&CVT=jpeg', 300, 210],
    ['HEI=300&CVT=jpeg', 400, 280],
    ['WID=2000&HEI=100&CVT=jpeg', 143, 100],
  ] as const) {
    it(`${query}: ${width}x${height} from both`, async () => {
      const both = await get(`FIF=pyr.tif&${query}`);
      const result = await compareImages(both, query);
      assert.deepEqual([result.ours.width, result.ours.height], [width, height]);
      assert.ok(result.psnr >= REGION_PSNR, `${query}: PSNR ${result.psnr.toFixed(1)}`);
    });
  }

  it('more than MAX_CVT asked for (or nothing): 400x280 (1.1 drops to the 250x175 level and clamps there: fewer pixels than allowed, and fewer than for WID=600)', async () => {
    for (const query of ['CVT=jpeg', 'WID=2000&CVT=jpeg', 'HEI=1000&CVT=jpeg']) {
      const both = await get(`FIF=pyr.tif&${query}`);
      const [ref, ours] = await Promise.all([decodePixels(both.ref.body), decodePixels(both.ours.body)]);
      assert.deepEqual([ref.width, ref.height], [250, 175], `${query}: what 1.1 does`);
      assert.deepEqual([ours.width, ours.height], [400, 280], query);
    }
  });

  it('a small region with ALLOW_UPSCALING=0: never more pixels than the region has (1.1 caps at the level, not the region, so it upscales)', async () => {
    for (const [query, width, height, refWidth, refHeight] of [
      ['RGN=0,0,0.25,0.25&WID=400&CVT=jpeg', 250, 175, 400, 280],
      ['RGN=0,0,0.1,0.1&WID=300&CVT=jpeg', 100, 70, 300, 210],
    ] as const) {
      const both = await get(`FIF=pyr.tif&${query}`);
      const [ref, ours] = await Promise.all([decodePixels(both.ref.body), decodePixels(both.ours.body)]);
      assert.deepEqual([ref.width, ref.height], [refWidth, refHeight], `${query}: what 1.1 does`);
      assert.deepEqual([ours.width, ours.height], [width, height], query);
    }
  });

  it('a region that fits: the same from both', async () => {
    for (const query of ['RGN=0,0,0.5,0.5&WID=300&CVT=jpeg', 'RGN=0,0,0.5,0.5&CVT=jpeg', 'WID=100&CVT=jpeg']) {
      const result = await compareImages(await get(`FIF=pyr.tif&${query}`), query);
      assert.ok(result.psnr >= REGION_PSNR, `${query}: PSNR ${result.psnr.toFixed(1)}`);
    }
  });

  it('OBJ with CORS: the same body; ours sends the 1.3 CORS block (1.1: Allow-Origin and Allow-Headers: X-Requested-With)', async () => {
    const both = await get('FIF=pyr.tif&OBJ=IIP,1.0&OBJ=Basic-info');
    assert.equal(text(both.ours), text(both.ref));
    assert.equal(header(both.ref, 'access-control-allow-origin'), '*');
    assert.equal(header(both.ref, 'access-control-allow-headers'), 'X-Requested-With');
    assert.equal(header(both.ours, 'access-control-allow-origin'), '*');
    assert.match(header(both.ours, 'access-control-allow-headers') ?? '', /X-Requested-With/);
    const cors = /^access-control-/;
    assert.deepEqual(
      comparableHeaders(both.ours).filter((h) => !cors.test(h)),
      comparableHeaders(both.ref).filter((h) => !cors.test(h)),
    );
  });

  it('tiles and regions with CORS: 1.1 leaves CORS off images, ours sends it on every response (on purpose)', async () => {
    for (const query of ['FIF=pyr.tif&JTL=2,3', 'FIF=pyr.tif&WID=200&CVT=jpeg']) {
      const both = await get(query);
      assert.equal(header(both.ref, 'access-control-allow-origin'), undefined, query);
      assert.equal(header(both.ours, 'access-control-allow-origin'), '*', query);
    }
  });

  it('IIP errors with CORS: the same body, CORS on both', async () => {
    const both = await get('FIF=pyr.tif&OBJ=foo');
    assert.equal(both.ours.status, 400);
    assert.equal(text(both.ours), text(both.ref));
    assert.equal(header(both.ref, 'access-control-allow-origin'), '*');
    assert.equal(header(both.ours, 'access-control-allow-origin'), '*');
  });
});

describe('differential: MAX_CVT=-1', { skip: SKIP ?? false }, () => {
  let unlimited: DifferentialPair | null = null;
  before(async () => {
    const unlimitedDir = tempDir('iipsrv-diff-unlimited-');
    const unlimitedImages = imagesDir(unlimitedDir);
    await makeVipsPyramid(path.join(unlimitedImages, 'pyr.tif'), { width: 1000, height: 700, tileSize: 256, compression: 'jpeg' });
    unlimited = await startDifferentialPair({ dir: unlimitedDir, images: unlimitedImages, env: { JPEG_QUALITY: '75', MAX_CVT: '-1' } });
  });
  after(async () => {
    await unlimited?.stop();
  });

  // Larger requests (WID=300, a plain CVT) kill 1.1 after it has sent its headers: not sent here.
  it('up to 64 px: the same from both', async () => {
    assert.ok(unlimited);
    const result = await compareImages(await unlimited.get('FIF=pyr.tif&WID=50&CVT=jpeg'), 'WID=50');
    assert.deepEqual([result.ours.width, result.ours.height], [50, 35]);
  });

  it('above 64 px: unlimited in ours (1.1 caps at 64, reference §17 #12)', async () => {
    assert.ok(unlimited);
    const both = await unlimited.get('FIF=pyr.tif&WID=65&CVT=jpeg');
    const [ref, ours] = await Promise.all([decodePixels(both.ref.body), decodePixels(both.ours.body)]);
    assert.deepEqual([ref.width, ref.height], [64, 45], 'what 1.1 does');
    assert.deepEqual([ours.width, ours.height], [65, 46]);
    const big = await unlimited.fetch('ours', 'FIF=pyr.tif&WID=6000&CVT=jpeg');
    const pixels = await decodePixels(big.body);
    assert.deepEqual([pixels.width, pixels.height], [6000, 4200], 'beyond the default 5000');
  });
});
