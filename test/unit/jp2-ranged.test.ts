/**
 * JPEG2000 read by byte ranges (an object in a store) through the persistent helper: a file given
 * as a RandomAccessFile that counts and can fail what it is asked, against the same file decoded
 * from its path. The pixels are the same; a tile of a tiled codestream reads its main header and
 * its own tile-parts, not the file; a failed read fails the decode with the reader's own error
 * (not "cannot be decoded"), a read that never comes back with a 503 at the decode's time limit;
 * HTJ2K and truncated files behave as from the disk.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { FileError, UnavailableError } from '../../src/errors.ts';
import { HELPER_BINARY, Jp2Decoder } from '../../src/engine/jp2/decoder.ts';
import { HelperPool } from '../../src/engine/jp2/helper.ts';
import type { DecodeError } from '../../src/engine/jp2/process-pool.ts';
import { LruCache } from '../../src/engine/cache/lru.ts';
import { Jp2Source, type StoredJp2 } from '../../src/engine/jp2/jp2-source.ts';
import { DecodedLevelCache } from '../../src/engine/jp2/level-cache.ts';
import { PositionedFile, type RandomAccessFile, type ReadPurpose } from '../../src/engine/tiff/positioned-file.ts';
import { tempDir } from '../helpers/daemon.ts';
import { HTJ2K_SKIP, JP2_SKIP, makeHtj2k, makeJp2, testImage } from '../helpers/jp2.ts';

const SKIP = JP2_SKIP ?? (existsSync(HELPER_BINARY) ? false : 'build/jp2-decoder not built (npm run build)');

/** A file on the disk read as a store's object would be, with what was read, and faults on demand. */
class CountingFile implements RandomAccessFile {
  reads: Array<{ position: number; length: number; purpose: ReadPurpose }> = [];
  /** Set: every read from now on fails with it (or, 'hang', never answers). */
  fault: Error | 'hang' | null = null;
  /** Reads under way now, and the most there were at once. */
  inFlight = 0;
  maxInFlight = 0;
  private constructor(private readonly file: PositionedFile) {}
  static async open(path: string): Promise<CountingFile> {
    return new CountingFile(await PositionedFile.open(path));
  }
  get size(): number {
    return this.file.size;
  }
  get bytes(): number {
    return this.reads.reduce((sum, r) => sum + r.length, 0);
  }
  contains(position: number, length: number): boolean {
    return this.file.contains(position, length);
  }
  read(position: number, length: number, what: string, headroom = 0, purpose: ReadPurpose = 'structure'): Promise<Buffer> {
    this.reads.push({ position, length, purpose });
    if (this.fault === 'hang') return new Promise(() => undefined);
    if (this.fault) return Promise.reject(this.fault);
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    return this.file.read(position, length, what, headroom).finally(() => this.inFlight--);
  }
  close(): Promise<void> {
    return this.file.close();
  }
}

describe('JPEG2000 read by ranges through the helper', { skip: SKIP }, () => {
  const dir = tempDir('iipsrv-jp2ranged-');
  const image = testImage(2048, 1536, 3, 8);
  const files: Record<string, string> = {};
  const decoders: Jp2Decoder[] = [];
  const opened: CountingFile[] = [];
  const decoder = (options: ConstructorParameters<typeof Jp2Decoder>[0] = {}) => {
    const made = new Jp2Decoder(options);
    decoders.push(made);
    return made;
  };
  const options = (d: Jp2Decoder) => ({ decoder: d, levelCache: new DecodedLevelCache(1 << 20), maxLayers: -1, blocks: false });
  const stored = async (
    path: string,
    localPath: () => Promise<string> = () => Promise.reject(new Error('no local copy may be made')),
  ): Promise<StoredJp2 & { file: CountingFile }> => {
    const file = await CountingFile.open(path);
    opened.push(file);
    return { file, identity: `${path}\0v1`, localPath };
  };
  const same = (a: { data: ArrayLike<number> }, b: { data: ArrayLike<number> }) => Buffer.from(a.data as Uint8Array).equals(Buffer.from(b.data as Uint8Array));

  before(() => {
    // 4x3 codestream tiles of 512x512, lossless (large tile-parts, as in an archive).
    files.tlm = makeJp2(dir, 'tlm.jp2', image, ['-t', '512,512', '-n', '5', '-TLM']);
    files.tiled = makeJp2(dir, 'tiled.jp2', image, ['-t', '512,512', '-n', '5', '-r', '4,1']);
    files.untiled = makeJp2(dir, 'untiled.j2k', image, ['-n', '5', '-r', '20']);
  });
  after(async () => {
    for (const d of decoders) d.close();
    await Promise.all(opened.map((f) => f.close()));
  });

  it('keeps tile-parts read in the shared cache: a neighbouring tile of the same codestream tile reads no tile-part again', async () => {
    const d = decoder();
    const location = await stored(files.tlm!);
    const source = await Jp2Source.open(location, 'tlm.jp2', { ...options(d), storedTileParts: new LruCache(16 << 20) });
    await source.samples(0, { left: 0, top: 0, width: 256, height: 256 });
    const big = () => location.file.reads.filter((r) => r.length > 64 * 1024).length;
    assert.equal(big(), 1, 'the first tile reads its tile-part');
    await source.samples(0, { left: 256, top: 256, width: 256, height: 256 });
    assert.equal(big(), 1, 'the second tile, in the same 512x512 codestream tile, finds it kept');
    await source.samples(0, { left: 512, top: 0, width: 256, height: 256 });
    assert.equal(big(), 2, 'a tile of the next codestream tile reads that one');
  });

  it('gives the pixels the file gives from its path, reads a tile of a tiled codestream, not the file, and an untiled one from a copy', async () => {
    const d = decoder();
    for (const name of ['tlm', 'tiled', 'untiled']) {
      const path = files[name]!;
      const fromDisk = await Jp2Source.open(path, `${name}.jp2`, options(d));
      let copies = 0;
      // An untiled codestream is one tile-part: it is decoded from a local copy.
      const location = await stored(path, () => {
        copies++;
        return Promise.resolve(path);
      });
      const fromStore = await Jp2Source.open(location, `${name}.jp2`, options(d));
      assert.deepEqual(fromStore.description, fromDisk.description, name);
      for (const [level, rect] of [
        [0, { left: 1280, top: 768, width: 256, height: 256 }],
        [0, { left: 400, top: 300, width: 700, height: 500 }],
        [1, { left: 0, top: 0, width: 1024, height: 768 }],
      ] as const) {
        location.file.reads = [];
        location.file.maxInFlight = 0;
        const a = await fromStore.samples(level, rect);
        const b = await fromDisk.samples(level, rect);
        assert.ok(same(a, b), `${name} level ${level} ${JSON.stringify(rect)}: the same pixels`);
        const share = location.file.bytes / location.file.size;
        if (name !== 'untiled' && level === 0 && rect.width === 256) {
          // One codestream tile of twelve, its neighbours' tile-part headers, the main header.
          assert.ok(share < 0.25, `${name}: ${location.file.bytes} bytes read of ${location.file.size} for one tile`);
          assert.ok(
            location.file.reads.some((r) => r.purpose === 'data' && r.length > 64 * 1024),
            'the tile-part is read as one exact range',
          );
          // With TLM the looks at the 12 tile-part headers are asked for at once, else one by one.
          if (name === 'tlm') assert.ok(location.file.maxInFlight >= 12, `${location.file.maxInFlight} reads at once`);
          else assert.ok(location.file.maxInFlight <= 2, `${location.file.maxInFlight} reads at once`);
          const header = fromStore.header.tilePartsOffset;
          assert.ok(
            location.file.reads.every((r) => r.position + r.length <= header === (r.purpose === 'structure')),
            'the boxes and main header through the block cache, the rest exactly',
          );
        }
        // The whole file at most, and the tile-part headers a second time (OpenJPEG walks them twice).
        assert.ok(share < 1.1, `${name}: ${location.file.bytes} bytes read of ${location.file.size}`);
      }
      assert.equal(copies, name === 'untiled' ? 1 : 0, `${name}: local copies`);
    }
  });

  it("fails a decode whose read fails with the reader's own error, and the next decode works", async () => {
    const d = decoder({ concurrency: 1 });
    const location = await stored(files.tiled!);
    const source = await Jp2Source.open(location, 'tiled.jp2', options(d));
    location.file.fault = new UnavailableError('the image store is not answering; try again later');
    await assert.rejects(source.samples(0, { left: 0, top: 0, width: 256, height: 256 }), (error) => error === location.file.fault);
    location.file.fault = null;
    const again = await source.samples(0, { left: 0, top: 0, width: 256, height: 256 });
    const fromDisk = await (await Jp2Source.open(files.tiled!, 'tiled.jp2', options(d))).samples(0, { left: 0, top: 0, width: 256, height: 256 });
    assert.ok(same(again, fromDisk));
  });

  it('answers 503 at the time limit when a read never comes back, and replaces the helper', async () => {
    const d = decoder({ concurrency: 1, timeoutMs: 500 });
    const location = await stored(files.tiled!);
    const source = await Jp2Source.open(location, 'tiled.jp2', options(d));
    location.file.fault = 'hang';
    const started = Date.now();
    await assert.rejects(source.samples(0, { left: 0, top: 0, width: 256, height: 256 }), UnavailableError);
    assert.ok(Date.now() - started < 5000, `answered after ${Date.now() - started} ms`);
    location.file.fault = null;
    assert.equal((await source.samples(0, { left: 0, top: 0, width: 256, height: 256 })).width, 256);
  });

  it('refuses a truncated file as it does from the disk (404)', async () => {
    const d = decoder();
    const codestream = makeJp2(dir, 'tiled.j2k', image, ['-t', '512,512', '-n', '5', '-r', '4,1']);
    const rect = { left: 1536, top: 1024, width: 256, height: 256 };
    for (const share of [0.4, 0.98]) {
      const bytes = readFileSync(codestream);
      const truncated = `${dir}/truncated-${share}.j2k`;
      writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * share)));
      const outcome = (location: Parameters<typeof Jp2Source.open>[0]) =>
        Jp2Source.open(location, 'truncated.j2k', options(d))
          .then((source) => source.samples(0, rect))
          .catch((error: Error) => error);
      const fromDisk = await outcome(truncated);
      const fromStore = await outcome(await stored(truncated));
      // OpenJPEG: "Stream too short" (the tile-part is gone), "Tile part length size inconsistent" (cut inside).
      assert.ok(fromDisk instanceof FileError, `from the disk: ${String(fromDisk)}`);
      assert.ok(fromStore instanceof FileError, `from the store: ${String(fromStore)}`);
      assert.equal(fromStore.message, fromDisk.message);
    }
  });

  it('takes the local copy for HTJ2K and when there is no helper', { skip: HTJ2K_SKIP ?? false }, async () => {
    const ht = makeHtj2k(dir, 'ht.j2c', testImage(300, 200, 3, 8), ['-reversible', 'true']);
    let copies = 0;
    const localPath = (path: string) => () => {
      copies++;
      return Promise.resolve(path);
    };
    const d = decoder();
    const htSource = await Jp2Source.open(await stored(ht, localPath(ht)), 'ht.j2c', options(d));
    assert.equal(copies, 1, 'HTJ2K is decoded from a file');
    assert.equal((await htSource.samples(0, { left: 0, top: 0, width: 100, height: 100 })).width, 100);
    const withoutHelper = decoder({ helper: null });
    const plain = await Jp2Source.open(await stored(files.tiled!, localPath(files.tiled!)), 'tiled.jp2', options(withoutHelper));
    assert.equal(copies, 2, 'opj_decompress reads files');
    assert.equal((await plain.samples(0, { left: 0, top: 0, width: 100, height: 100 })).width, 100);
    assert.ok(statSync(files.tiled!).size > 0);
  });

  it('ends a helper that asks for bytes past the end of the file, before the source is asked', async () => {
    // A helper that reads its request, then asks for 16 bytes at offset 100 of a 64-byte file.
    const rogue = `${dir}/rogue-helper`;
    writeFileSync(rogue, "#!/bin/sh\nread line\nprintf 'J2RQ\\020\\000\\000\\000\\144\\000\\000\\000\\000\\000\\000\\000'\nexec sleep 60\n");
    chmodSync(rogue, 0o755);
    const pool = new HelperPool(rogue, 1);
    let asked = 0;
    const source = {
      size: 64,
      read: () => {
        asked++;
        return Promise.resolve(Buffer.alloc(16));
      },
    };
    const area = { reduce: 0, layers: 1, x0: 0, y0: 0, x1: 8, y1: 8 };
    try {
      await assert.rejects(
        pool.decode({ ...area, source }, 5000, 1000),
        (error: DecodeError) => error.kind === 'failed' && /16 bytes at 100/.test(error.message),
      );
      assert.equal(asked, 0);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(pool.processes, 0, 'the helper was ended');
    } finally {
      pool.close();
    }
  });
});
