/**
 * The JPEG2000 decoder processes: the spawn pool (bounded concurrency, hung children killed,
 * runaway output cut, missing programs reported), the persistent helper (same pixels as
 * opj_decompress, killed and replaced when it hangs, a crash failing one request only), and the
 * source's answer to each failure (404 for the file's fault, 500 with the reason for ours).
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileError, ServerFailureError } from '../../src/errors.ts';
import { Jp2Decoder, decoderOutputDir, HELPER_BINARY } from '../../src/engine/jp2/decoder.ts';
import { DecodedLevelCache } from '../../src/engine/jp2/level-cache.ts';
import { type DecodeError, ProcessPool } from '../../src/engine/jp2/process-pool.ts';
import { Jp2Source } from '../../src/engine/jp2/jp2-source.ts';
import { tempDir } from '../helpers/daemon.ts';
import { processExists } from '../helpers/processes.ts';
import { expectedRect, JP2_SKIP, makeJp2, testImage } from '../helpers/jp2.ts';

const alive = (pid: number | undefined) => pid !== undefined && processExists(pid);

describe('ProcessPool', () => {
  it('runs at most `size` children at once', async () => {
    const pool = new ProcessPool(2);
    let peak = 0;
    const started = Date.now();
    const runs = Array.from({ length: 5 }, () => {
      const run = pool.run('sleep', ['0.2'], { timeoutMs: 5000, maxBytes: 10 });
      peak = Math.max(peak, pool.active);
      return run;
    });
    await Promise.all(runs);
    assert.equal(peak, 2);
    // Five 0.2 s children two at a time: three rounds.
    assert.ok(Date.now() - started >= 550, `took ${Date.now() - started} ms`);
    assert.equal(pool.active, 0);
  });

  it('kills a hung child at its timeout and frees its slot', async () => {
    const pool = new ProcessPool(1);
    const started = Date.now();
    await assert.rejects(pool.run('sleep', ['30'], { timeoutMs: 300, maxBytes: 10 }), (error: DecodeError) => error.kind === 'timeout');
    assert.ok(Date.now() - started < 3000);
    assert.equal(pool.active, 0);
    assert.equal((await pool.run('echo', ['ok'], { timeoutMs: 2000, maxBytes: 100 })).toString(), 'ok\n');
  });

  it('cuts off a child that writes more than expected, and reports failures and missing programs', async () => {
    const pool = new ProcessPool(1);
    await assert.rejects(pool.run('yes', [], { timeoutMs: 5000, maxBytes: 10_000 }), (error: DecodeError) => error.kind === 'overflow');
    await assert.rejects(pool.run('sh', ['-c', 'echo broken >&2; exit 3'], { timeoutMs: 5000, maxBytes: 100 }), /exit status 3: broken/);
    await assert.rejects(pool.run('/nonexistent/decoder', [], { timeoutMs: 5000, maxBytes: 100 }), (error: DecodeError) => error.kind === 'unavailable');
    assert.equal(pool.active, 0);
  });
});

describe('JPEG2000 decoders', { skip: JP2_SKIP ?? false }, () => {
  const dir = tempDir('iipsrv-jp2dec-');
  let file: string;
  const image = testImage(700, 500, 3, 8);
  const decoders: Jp2Decoder[] = [];
  const decoder = (options: ConstructorParameters<typeof Jp2Decoder>[0]) => {
    const made = new Jp2Decoder(options);
    decoders.push(made);
    return made;
  };
  const source = (d: Jp2Decoder) => Jp2Source.open(file, 'test.jp2', { decoder: d, levelCache: new DecodedLevelCache(1 << 20), maxLayers: -1 });

  before(() => {
    file = makeJp2(dir, 'test.jp2', image, ['-n', '4', '-t', '256,256', '-r', '20,5']);
  });

  after(() => {
    for (const d of decoders) d.close();
    const out = decoderOutputDir();
    if (out) assert.deepEqual(readdirSync(out), []);
  });

  it(
    'gives the same pixels through the persistent helper and through opj_decompress',
    { skip: existsSync(HELPER_BINARY) ? false : 'build/jp2-decoder not built (npm run build)' },
    async () => {
      const viaHelper = await source(decoder({}));
      const viaProgram = await source(decoder({ helper: null }));
      for (const [level, rect] of [
        [0, { left: 300, top: 200, width: 256, height: 256 }],
        [0, { left: 512, top: 256, width: 188, height: 244 }],
        [2, { left: 0, top: 0, width: 175, height: 125 }],
      ] as const) {
        const a = await viaHelper.samples(level, rect);
        const b = await viaProgram.samples(level, rect);
        assert.deepEqual([a.width, a.height, a.channels], [rect.width, rect.height, 3]);
        assert.ok(Buffer.from(a.data as Uint8Array).equals(Buffer.from(b.data as Uint8Array)), `level ${level} ${JSON.stringify(rect)}`);
      }
    },
  );

  it(
    'kills a hung helper at its timeout (500 with the reason) and starts a fresh one',
    { skip: existsSync(HELPER_BINARY) ? false : 'build/jp2-decoder not built' },
    async () => {
      // A helper that reads its request and never answers.
      const hung = path.join(dir, 'hung-helper');
      writeFileSync(hung, '#!/bin/sh\nread line\nexec sleep 60\n');
      chmodSync(hung, 0o755);
      const d = decoder({ helper: hung, timeoutMs: 300, concurrency: 1 });
      const src = await source(d);
      const started = Date.now();
      await assert.rejects(
        src.samples(0, { left: 0, top: 0, width: 64, height: 64 }),
        (error: Error) => error instanceof ServerFailureError && /timed out after 300 ms/.test(error.message),
      );
      assert.ok(Date.now() - started < 3000);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(d.helpers!.processes, 0, 'the hung helper is still alive');
    },
  );

  it('fails only the request a crashing helper was on (404: the data is to blame)', async () => {
    const crash = path.join(dir, 'crash-helper');
    writeFileSync(crash, '#!/bin/sh\nread line\nkill -SEGV $$\n');
    chmodSync(crash, 0o755);
    const d = decoder({ helper: crash, concurrency: 1 });
    const src = await source(d);
    await assert.rejects(
      src.samples(0, { left: 0, top: 0, width: 64, height: 64 }),
      (error: Error) => error instanceof FileError && /SIGSEGV/.test(error.message),
    );
    // The next request gets a new helper (which crashes again: still an answer, not a hang).
    await assert.rejects(src.samples(0, { left: 0, top: 0, width: 64, height: 64 }), FileError);
    // Both gone helpers counted (iipsrv_jp2_helper_restarts_total).
    assert.equal(d.helpers!.restarts, 2);
  });

  it('kills a hung opj_decompress at its timeout and leaves no output file', async () => {
    const slow = path.join(dir, 'slow-opj');
    writeFileSync(slow, '#!/bin/sh\nexec sleep 60\n');
    chmodSync(slow, 0o755);
    const d = decoder({ helper: null, command: slow, timeoutMs: 300 });
    const src = await source(d);
    await assert.rejects(
      src.samples(1, { left: 0, top: 0, width: 64, height: 64 }),
      (error: Error) => error instanceof ServerFailureError && /timed out/.test(error.message),
    );
    assert.equal(d.pool.active, 0);
  });

  it('cuts tiles asked for together from one decoded 512x512 block, edge blocks included, exactly', async () => {
    // Over 1 Mpx, so that its full resolution is not decoded whole.
    const big = testImage(1300, 900, 3, 8);
    const bigFile = makeJp2(dir, 'big.jp2', big, ['-n', '3']);
    const cache = new DecodedLevelCache(16 << 20);
    const src = await Jp2Source.open(bigFile, 'big.jp2', { decoder: decoder({}), levelCache: cache, maxLayers: -1 });
    const tiles = [
      [4, 2],
      [4, 3],
      [5, 3],
      [0, 0],
      [1, 1],
    ] as const;
    const got = await Promise.all(tiles.map(([col, row]) => src.decodeTile(0, col, row)));
    assert.ok(cache.bytes >= 512 * 512 * 3, 'no block was kept');
    tiles.forEach(([col, row], i) => {
      const left = col * 256;
      const top = row * 256;
      const expected = expectedRect(big, left, top, Math.min(256, 1300 - left), Math.min(256, 900 - top));
      const pixels = got[i]!;
      assert.deepEqual([pixels.width, pixels.height], [expected.width, expected.height], `tile ${col},${row}`);
      assert.ok(pixels.data.equals(expected.data), `tile ${col},${row} differs from the source`);
    });
  });

  it('refuses a virtual level that would need too many pixels decoded (404 naming the limit), instead of exhausting memory', async () => {
    // One resolution only: its virtual levels are scaled from the full image.
    const flat = makeJp2(dir, 'flat.jp2', testImage(1024, 768, 3, 8), ['-n', '1']);
    const src = await Jp2Source.open(flat, 'flat.jp2', {
      decoder: decoder({}),
      levelCache: new DecodedLevelCache(1 << 20),
      maxLayers: -1,
      maxVirtualSourcePixels: 500_000,
    });
    assert.deepEqual(
      src.description.levels.map((l) => `${l.width}x${l.height}`),
      ['1024x768', '512x384', '256x192'],
    );
    await assert.rejects(
      src.samples(2, { left: 0, top: 0, width: 256, height: 192 }),
      (error: Error) => error instanceof FileError && /1024x768 pixels decoded .*more than the 500000 pixels allowed/.test(error.message),
    );
    const part = await src.samples(1, { left: 0, top: 0, width: 256, height: 256 });
    assert.deepEqual([part.width, part.height], [256, 256]);
  });

  it('says which package is missing when there is no decoder at all', async () => {
    const src = await source(decoder({ helper: null, command: '/nonexistent/opj_decompress' }));
    await assert.rejects(src.samples(0, { left: 0, top: 0, width: 8, height: 8 }), /apt-get install libopenjp2-tools/);
  });

  it('leaves no helper behind once closed', { skip: existsSync(HELPER_BINARY) ? false : 'build/jp2-decoder not built' }, async () => {
    const d = decoder({});
    const src = await source(d);
    await Promise.all([0, 1, 2].map((i) => src.samples(0, { left: i * 100, top: 0, width: 64, height: 64 })));
    const pids = [...(d.helpers as unknown as { all: Set<{ child: { pid?: number } }> }).all].map((h) => h.child.pid);
    assert.ok(pids.length >= 1 && pids.every(alive));
    d.close();
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(
      pids.every((pid) => !alive(pid)),
      'a helper survived close()',
    );
  });
});
