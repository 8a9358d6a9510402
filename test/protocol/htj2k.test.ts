/**
 * HTJ2K (JPEG2000 Part 15) end to end through the router: raw codestreams made by OpenJPH's
 * ojph_compress (untiled without precincts, and tiled with precincts), the same codestream in a
 * .jph file and in a JP2 file, served by every decoder there is. Tiles are compared with the
 * known lossless pixels: OpenJPEG decodes an HT area smaller than a codestream tile as a flat grey
 * picture (every sample 128), which is what the first test caught.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { HIGH_THROUGHPUT_HELPER_BINARY, Jp2Decoder, type Jp2DecoderOptions } from '../../src/engine/jp2/decoder.ts';
import { DecodeError } from '../../src/engine/jp2/process-pool.ts';
import { fileHeaderBytes, readJp2Header } from '../../src/engine/jp2/header.ts';
import { silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { tempDir } from '../helpers/daemon.ts';
import { decodePixels, psnr } from '../helpers/images.ts';
import { expectedRect, HTJ2K_SKIP, JP2_SKIP, makeHtj2k, makeJp2, testImage, wrapCodestream, type TestImage } from '../helpers/jp2.ts';
import { seededRandom } from '../helpers/random.ts';
import { plainRequest } from '../helpers/requests.ts';

const engines: Engine[] = [];

function serverFor(prefix: string, jp2Decoder?: Jp2DecoderOptions) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: prefix });
  const engine = new Engine({
    paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix },
    cacheBytes: config.maxImageCacheBytes,
    maxLayers: config.maxLayers,
    jp2Decoder,
  });
  engines.push(engine);
  const router = createRouter({ config, engine, log: silentLog });
  return (query: string): Promise<PlainResponse> => router(plainRequest(query));
}

const text = (r: PlainResponse) => r.body.toString('latin1');
const jphSkip = existsSync(HIGH_THROUGHPUT_HELPER_BINARY) ? false : 'build/jph-decoder not built (apt-get install libopenjph-dev g++)';

/** Which decoders serve the files: OpenJPH's helper (the default when built), OpenJPEG's helper, opj_decompress. */
const DECODERS: Array<[string, Jp2DecoderOptions | undefined]> = [
  ['OpenJPH (helper)', { highThroughputHelper: HIGH_THROUGHPUT_HELPER_BINARY }],
  ['OpenJPEG (helper)', { highThroughputHelper: null }],
  ['OpenJPEG (opj_decompress)', { helper: null, highThroughputHelper: null }],
];

describe('HTJ2K images', { skip: JP2_SKIP ?? HTJ2K_SKIP ?? false }, () => {
  const dir = tempDir('iipsrv-htj2k-');
  let image: TestImage;

  before(() => {
    image = testImage(2000, 1500, 3, 8);
    // As in the issue: reversible, untiled, no precincts, 5 DWT levels (ojph_compress's defaults).
    makeHtj2k(dir, 'plain.j2c', image, ['-reversible', 'true']);
    // Codestream tiles of an odd size, precincts, another progression.
    makeHtj2k(dir, 'tiled.j2c', image, ['-reversible', 'true', '-tile_size', '{700,600}', '-precincts', '{64,64},{128,128}', '-prog_order', 'RPCL']);
    // An image offset on the reference grid, and tiles starting before it.
    makeHtj2k(dir, 'offset.j2c', image, ['-reversible', 'true', '-image_offset', '{333,217}', '-tile_offset', '{100,100}', '-tile_size', '{500,700}']);
    const codestream = readFileSync(path.join(dir, 'plain.j2c'));
    writeFileSync(path.join(dir, 'plain.jph'), wrapCodestream(codestream, 'jph ', image));
    writeFileSync(path.join(dir, 'ht.jp2'), wrapCodestream(readFileSync(path.join(dir, 'tiled.j2c')), 'jp2 ', image));
    makeJp2(dir, 'classic.jp2', image, ['-n', '6']);
  });

  after(() => {
    for (const engine of engines) engine.close();
  });

  it('tells HT code-blocks from classic ones in the header', async () => {
    const ht = async (name: string) => {
      const handle = await open(path.join(dir, name));
      try {
        return (await readJp2Header(fileHeaderBytes(handle), (await handle.stat()).size)).highThroughput;
      } finally {
        await handle.close();
      }
    };
    assert.equal(await ht('plain.j2c'), true);
    assert.equal(await ht('plain.jph'), true);
    assert.equal(await ht('ht.jp2'), true);
    assert.equal(await ht('classic.jp2'), false);
  });

  it("OpenJPH's helper decodes an area as asked, and bad input fails cleanly within its memory limit", { skip: jphSkip }, async () => {
    const decoder = new Jp2Decoder({ highThroughputHelper: HIGH_THROUGHPUT_HELPER_BINARY, concurrency: 1 });
    try {
      const area = { reduce: 0, layers: 1, x0: 1792, y0: 1280, x1: 2000, y1: 1500, width: 208, height: 220, channels: 3 };
      for (const name of ['plain.j2c', 'plain.jph', 'ht.jp2']) {
        const pixels = await decoder.decodeHighThroughput(path.join(dir, name), area);
        assert.deepEqual(Buffer.from(pixels.data.buffer, pixels.data.byteOffset, pixels.data.byteLength), expectedRect(image, 1792, 1280, 208, 220).data, name);
      }
      // Cut in the middle of its data.
      const whole = readFileSync(path.join(dir, 'plain.j2c'));
      writeFileSync(path.join(dir, 'truncated.j2c'), whole.subarray(0, whole.length >> 1));
      await assert.rejects(
        decoder.decodeHighThroughput(path.join(dir, 'truncated.j2c'), area),
        (e: unknown) => e instanceof DecodeError && e.kind === 'failed',
      );
    } finally {
      decoder.close();
    }
    // The whole image needs more than 24 MB: refused by the limit, and the next decode works.
    const small = new Jp2Decoder({ highThroughputHelper: HIGH_THROUGHPUT_HELPER_BINARY, concurrency: 1, memoryBytes: 24 * 1024 * 1024 });
    try {
      const full = { reduce: 0, layers: 1, x0: 0, y0: 0, x1: 2000, y1: 1500, width: 2000, height: 1500, channels: 3 };
      await assert.rejects(small.decodeHighThroughput(path.join(dir, 'plain.j2c'), full), (e: unknown) => e instanceof DecodeError && e.kind === 'memory');
      const again = await small.decodeHighThroughput(path.join(dir, 'plain.j2c'), { ...full, x0: 1792, y0: 1280, width: 208, height: 220 });
      assert.equal(again.width, 208);
    } finally {
      small.close();
    }
    // Served: an error answer, not grey pixels.
    const get = serverFor(dir + '/');
    const response = await get('FIF=truncated.j2c&JTL=3,9');
    assert.ok(response.status >= 400, `status ${response.status}`);
  });

  it('mutated HTJ2K data is answered with a 200 or a 4xx, quickly, and the decoders go on', async () => {
    // OpenJPH crashes (SIGSEGV, failed assertions) on some of these: the helper dies, its request
    // is a 404, and the next request gets a fresh one.
    const small = testImage(600, 450, 3, 8);
    const original = readFileSync(makeHtj2k(dir, 'small.j2c', small, ['-reversible', 'true', '-tile_size', '{300,300}']));
    const get = serverFor(dir + '/');
    const rnd = seededRandom(15);
    const statuses = new Map<number, number>();
    for (let i = 0; i < 30; i++) {
      const mutant = Buffer.from(original);
      for (let n = 1 + Math.floor(rnd() * 12); n > 0; n--) {
        const at = rnd() < 0.5 ? Math.floor(rnd() * 300) : Math.floor(rnd() * mutant.length);
        mutant[at] = Math.floor(rnd() * 256);
      }
      const name = `mutant-${i}.j2c`;
      writeFileSync(path.join(dir, name), rnd() < 0.3 ? mutant.subarray(0, 100 + Math.floor(rnd() * (mutant.length - 100))) : mutant);
      for (const query of [`FIF=${name}&JTL=2,4`, `FIF=${name}&JTL=1,0`, `FIF=${name}&WID=300&CVT=jpeg`]) {
        const started = Date.now();
        const answer = await get(query);
        const took = Date.now() - started;
        const context = `${query} -> ${answer.status} ${text(answer).slice(0, 200)}`;
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        assert.ok(took < 3000, `${context} took ${took} ms`);
        assert.ok(
          answer.status === 200 || (answer.status >= 400 && answer.status < 500) || (answer.status === 501 && /not supported/.test(text(answer))),
          context,
        );
      }
    }
    assert.ok((statuses.get(200) ?? 0) > 0 && [...statuses.keys()].some((s) => s >= 400), `the mutants were all alike: ${[...statuses]}`);
    const goodAnswer = await get('FIF=small.j2c&PTL=2,4');
    assert.equal(goodAnswer.status, 200, text(goodAnswer));
    const good = await decodePixels(goodAnswer.body);
    assert.equal(psnr(good, expectedRect(small, 256, 256, 256, 194)), Infinity);
  });

  for (const [label, options] of DECODERS) {
    const skip =
      options?.highThroughputHelper && !existsSync(options.highThroughputHelper) ? 'build/jph-decoder not built (apt-get install libopenjph-dev g++)' : false;
    describe(label, { skip }, () => {
      let get: (query: string) => Promise<PlainResponse>;
      before(() => {
        get = serverFor(dir + '/', options);
      });

      for (const name of ['plain.j2c', 'tiled.j2c', 'offset.j2c', 'plain.jph', 'ht.jp2']) {
        it(`${name}: full-resolution tiles are the coded pixels, reduced ones the low band`, async () => {
          const info = await get(`FIF=${name}&OBJ=Max-size&OBJ=Resolution-number`);
          assert.equal(info.status, 200, text(info));
          assert.match(text(info), /Max-size:2000 1500/);
          assert.match(text(info), /Resolution-number:4/);
          // Full resolution is IIP resolution 3, 8 tiles a row: an inner tile, one across a
          // codestream tile boundary (700, 600), and the cropped corner.
          for (const [tile, left, top, width, height] of [
            [9, 256, 256, 256, 256],
            [18, 512, 512, 256, 256],
            [47, 1792, 1280, 208, 220],
          ] as const) {
            const response = await get(`FIF=${name}&PTL=3,${tile}`);
            assert.equal(response.status, 200, text(response));
            const got = await decodePixels(response.body);
            assert.equal(psnr(got, expectedRect(image, left, top, width, height)), Infinity, `tile ${tile}`);
          }
          const reduced = await sharp(Buffer.from(image.data), { raw: { width: 2000, height: 1500, channels: 3 } })
            .resize(1000, 750)
            .extract({ left: 256, top: 512, width: 256, height: 238 })
            .raw()
            .toBuffer();
          const level = await decodePixels((await get(`FIF=${name}&PTL=2,${2 * 4 + 1}`)).body);
          assert.ok(psnr(level, { width: 256, height: 238, channels: 3, data: reduced }) > 28);
        });
      }

      it('a region export of an HT codestream is the coded pixels too', async () => {
        const response = await get('FIF=plain.j2c&RGN=0.3,0.4,0.2,0.2&WID=400&CVT=png');
        assert.equal(response.status, 200, text(response));
        const got = await decodePixels(response.body);
        assert.equal(psnr(got, expectedRect(image, 600, 600, 400, 300)), Infinity);
      });
    });
  }
});
