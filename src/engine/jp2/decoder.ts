/**
 * JPEG2000 decoding with OpenJPEG outside the server process, so that a crash or a hang in the
 * codec costs a child, never the server, and decodes run on the other cores. Only the resolution,
 * the quality layers and the area asked for are decoded.
 *
 * Two ways, the first when it was built (npm run build compiles native/jp2-decoder.c when
 * libopenjp2's headers are there): persistent helpers (helper.ts), about half the time per tile;
 * else, and for what the helper leaves to it (sYCC, subsampled components), one `opj_decompress`
 * (Debian libopenjp2-tools) per decode with -r, -l and -d.
 *
 * opj_decompress picks its writer by the output name's extension and cannot write to a socket
 * (Node's child pipes are sockets: /dev/stdout cannot be reopened), so each decode writes a PNM
 * file in a private directory (in RAM under /dev/shm when there is one), read and removed as soon
 * as the child has gone, whatever happened; the directory goes when the process exits.
 *
 * A file in an object store is given as a {@link RangedJp2}: the helper reads it by the byte ranges
 * the codec asks for; opj_decompress and the HTJ2K helper read files, and get its local copy.
 *
 * Both run under an address-space limit (`memoryBytes`: setrlimit in the helper, `ulimit -v` for
 * opj_decompress), so that a file whose codestream makes OpenJPEG allocate without bound fails
 * its own request (DecodeError 'memory') instead of exhausting the machine.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile, stat, unlink } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DecodeArea } from './decode-area.js';
import { HelperPool, HelperUnsupported, type HelperLimits, type RangeSource } from './helper.js';
import { parsePnm, type DecodedPixels } from './pnm.js';
import { DecodeError, ProcessPool } from './process-pool.js';

export interface Jp2DecoderOptions {
  command?: string;
  /** The persistent helper's binary; null = none (opj_decompress only). Default: build/jp2-decoder when it exists. */
  helper?: string | null;
  /**
   * The HTJ2K helper over OpenJPH (native/jph-decoder.cpp); null = none (OpenJPEG decodes HT
   * codestreams, a whole codestream tile at a time). Default: build/jph-decoder when it exists.
   */
  highThroughputHelper?: string | null;
  /** Children at once; default the cores. */
  concurrency?: number;
  timeoutMs?: number;
  /** Address-space limit of each decoder process, bytes; 0 = none. Default 2 GiB. */
  memoryBytes?: number;
  /** A helper still holding more than this after a decode is replaced; 0 = never. Default 256 MiB. */
  maxResidentBytes?: number;
}

/** A JPEG2000 file read by byte ranges (an object in a store), and its local copy for the decoders that read files. */
export interface RangedJp2 extends RangeSource {
  localPath(): Promise<string>;
}

/** A path on the disk, or a file read by ranges. */
export type Jp2File = string | RangedJp2;

export const DEFAULT_DECODE_TIMEOUT_MS = 30_000;
export const DEFAULT_DECODER_MEMORY_BYTES = 2048 * 1024 * 1024;
export const DEFAULT_MAX_RESIDENT_BYTES = 256 * 1024 * 1024;
/** OpenJPEG's words for an allocation that failed (opj_decompress prints them). */
const OUT_OF_MEMORY = /memory|exceeds system limits/i;

/** Where npm run build puts the helper: build/ at the package root (this file is three levels below it, in src/ or dist/). */
export const HELPER_BINARY = fileURLToPath(new URL('../../../build/jp2-decoder', import.meta.url));
/** The HTJ2K helper over OpenJPH (native/jph-decoder.cpp), built beside it when libopenjph's headers are there. */
export const HIGH_THROUGHPUT_HELPER_BINARY = fileURLToPath(new URL('../../../build/jph-decoder', import.meta.url));

let outputDir: string | null = null;
let outputCounter = 0;

/** A fresh output name in this process's directory (made again if a tmp cleaner took it). */
function outputFile(): string {
  if (!outputDir || !existsSync(outputDir)) {
    const first = outputDir === null;
    const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    try {
      outputDir = mkdtempSync(path.join(base, 'iipsrv-jp2-'));
    } catch {
      outputDir = mkdtempSync(path.join(tmpdir(), 'iipsrv-jp2-'));
    }
    if (first) process.once('exit', () => outputDir && rmSync(outputDir, { recursive: true, force: true }));
  }
  return path.join(outputDir, `${++outputCounter}.pnm`);
}

/** The directory decodes write into, or null before the first (for tests). */
export function decoderOutputDir(): string | null {
  return outputDir;
}

export class Jp2Decoder {
  readonly pool: ProcessPool;
  readonly helpers: HelperPool | null;
  /** The address-space limit of each decoder process, bytes; 0 = none. */
  readonly memoryBytes: number;
  /** The OpenJPH helpers for HTJ2K, or null (OpenJPEG decodes it then). */
  readonly highThroughputHelpers: HelperPool | null;
  private readonly command: string;
  private readonly timeoutMs: number;

  constructor(options: Jp2DecoderOptions = {}) {
    this.command = options.command ?? 'opj_decompress';
    this.timeoutMs = options.timeoutMs ?? DEFAULT_DECODE_TIMEOUT_MS;
    this.memoryBytes = options.memoryBytes ?? DEFAULT_DECODER_MEMORY_BYTES;
    const size = options.concurrency ?? Math.max(1, availableParallelism());
    this.pool = new ProcessPool(size);
    const helper = options.helper === undefined ? (existsSync(HELPER_BINARY) ? HELPER_BINARY : null) : options.helper;
    const limits: HelperLimits = { memoryBytes: this.memoryBytes, maxResidentBytes: options.maxResidentBytes ?? DEFAULT_MAX_RESIDENT_BYTES };
    this.helpers = helper ? new HelperPool(helper, size, limits) : null;
    const htHelper =
      options.highThroughputHelper === undefined
        ? existsSync(HIGH_THROUGHPUT_HELPER_BINARY)
          ? HIGH_THROUGHPUT_HELPER_BINARY
          : null
        : options.highThroughputHelper;
    this.highThroughputHelpers = htHelper ? new HelperPool(htHelper, size, limits) : null;
  }

  /**
   * Whether an area smaller than a codestream tile of an HTJ2K codestream can be decoded as asked:
   * by OpenJPH's helper, not by OpenJPEG (up to 2.5.4 at least its HT block decoder writes the tile
   * buffer only, never the code-block buffers of such a decode, which then come out as zeros: a
   * flat grey picture), whose callers decode whole codestream tiles instead.
   */
  get decodesHighThroughputAreas(): boolean {
    return this.highThroughputHelpers !== null;
  }

  /**
   * An HTJ2K area through OpenJPH (all quality layers: it has no layer limit).
   * @throws HelperUnsupported when it cannot (no helper; subsampled or mixed components): OpenJPEG then
   * @throws DecodeError when the codec fails, hangs, or delivers something else than asked
   */
  async decodeHighThroughput(file: string, area: DecodeArea): Promise<DecodedPixels> {
    if (!this.highThroughputHelpers || /[\n\r]/.test(file)) throw new HelperUnsupported('no HTJ2K helper for this file');
    const maxBytes = area.width * area.height * Math.max(area.channels, 1) * 2;
    const pixels = await this.highThroughputHelpers.decode({ ...area, path: file }, this.timeoutMs, maxBytes);
    if (pixels.width !== area.width || pixels.height !== area.height) {
      throw new DecodeError(`the decoder gave ${pixels.width}x${pixels.height} where ${area.width}x${area.height} was expected`);
    }
    return pixels;
  }

  /** @throws DecodeError when the codec fails, hangs, or delivers something else than asked */
  async decode(file: Jp2File, area: DecodeArea): Promise<DecodedPixels> {
    // Requests are lines: a name with a line break goes the other way.
    const given = typeof file !== 'string' ? { source: file } : /[\n\r]/.test(file) ? null : { path: file };
    if (this.helpers && given) {
      const maxBytes = area.width * area.height * Math.max(area.channels, 1) * 2;
      try {
        const pixels = await this.helpers.decode({ ...area, ...given }, this.timeoutMs, maxBytes);
        if (pixels.width !== area.width || pixels.height !== area.height) {
          throw new DecodeError(`the decoder gave ${pixels.width}x${pixels.height} where ${area.width}x${area.height} was expected`);
        }
        return pixels;
      } catch (error) {
        if (!(error instanceof HelperUnsupported)) throw error;
      }
    }
    return this.decodeWithProgram(typeof file === 'string' ? file : await file.localPath(), area);
  }

  private async decodeWithProgram(file: string, area: DecodeArea): Promise<DecodedPixels> {
    const output = outputFile();
    const args = [
      '-i',
      file,
      '-o',
      output,
      '-r',
      String(area.reduce),
      '-l',
      String(area.layers),
      '-d',
      `${area.x0},${area.y0},${area.x1},${area.y1}`,
      '-quiet',
    ];
    // 16-bit samples at most, plus the header.
    const maxBytes = area.width * area.height * Math.max(area.channels, 1) * 2 + 4096;
    let bytes: Buffer;
    const kilobytes = Math.floor(this.memoryBytes / 1024);
    // The shell sets the limit, then becomes the decoder: it is the same process, killed alike.
    const [command, commandArgs] =
      kilobytes > 0 ? ['/bin/sh', ['-c', 'ulimit -v "$1" && shift && exec "$@"', 'sh', String(kilobytes), this.command, ...args]] : [this.command, args];
    try {
      await this.pool.run(command, commandArgs, { timeoutMs: this.timeoutMs, maxBytes: 64 * 1024 });
      const { size } = await stat(output).catch(() => ({ size: -1 }));
      if (size < 0) throw new DecodeError(`${this.command} wrote no image`);
      if (size > maxBytes) throw new DecodeError(`${this.command} wrote ${size} bytes where at most ${maxBytes} were expected`);
      bytes = await readFile(output);
    } catch (error) {
      // 127: the shell found no such program.
      const missing = error instanceof DecodeError && (error.kind === 'unavailable' || (command === '/bin/sh' && /^exit status 127\b/.test(error.message)));
      if (missing) {
        throw new DecodeError(`${this.command} is not installed (apt-get install libopenjp2-tools)`, 'unavailable');
      }
      if (error instanceof DecodeError && error.kind === 'failed' && kilobytes > 0 && OUT_OF_MEMORY.test(error.message)) {
        throw new DecodeError(error.message, 'memory');
      }
      throw error;
    } finally {
      await unlink(output).catch(() => undefined);
    }
    const pixels = parsePnm(bytes);
    if (pixels.width !== area.width || pixels.height !== area.height) {
      throw new DecodeError(`the decoder gave ${pixels.width}x${pixels.height} where ${area.width}x${area.height} was expected`);
    }
    return pixels;
  }

  /** Ends the helpers and any decode still running. */
  close(): void {
    this.helpers?.close();
    this.highThroughputHelpers?.close();
    this.pool.killAll();
  }
}
