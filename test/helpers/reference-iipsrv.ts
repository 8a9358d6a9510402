/**
 * Differential testing against the real iipsrv 1.1 (Debian's iipimage-server): the reference and
 * our server run side by side over FastCGI TCP behind one nginx on loopback, with the same images
 * and the same settings, and every request is sent to both.
 *
 *   const pair = await startDifferentialPair({ dir, images, env: { JPEG_QUALITY: '75' } });
 *   const { ref, ours } = await pair.get('FIF=pyr.tif&OBJ=IIP,1.0');
 *   ... await pair.stop();
 *
 * Also: test pyramids made with the vips command line (the layout 1.1 reads), JPEG decoding to
 * raw pixels and PSNR, and header lists normalised for comparison.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { startDaemon, which } from './daemon.ts';
import { canConnect, freePort, startProgram, stopGroup, waitFor, waitUntilListening, type Started } from './processes.ts';
import { nginxAvailability, nginxSiteReplacements, renderExample, startNginx, type WebServer } from './webservers.ts';

const run = promisify(execFile);

export const REFERENCE_IIPSRV = '/usr/lib/iipimage-server/iipsrv.fcgi';
export const REFERENCE_SKIP = 'iipsrv 1.1 not installed (apt-get install iipimage-server)';
/** The URL path both servers answer on (examples/nginx/iipsrv.conf). */
export const IIP_PATH = '/fcgi-bin/iipsrv.fcgi';

/**
 * Why the differential tests must skip (naming the Debian package), or null when nginx, the
 * reference iipsrv and the vips command line are all installed.
 */
export function referenceSkipReason(): string | null {
  if (!existsSync(REFERENCE_IIPSRV)) return REFERENCE_SKIP;
  const nginx = nginxAvailability();
  if (nginx.skip) return nginx.skip;
  if (!which('vips')) return 'vips not installed (apt-get install libvips-tools)';
  if (!which('tiffset')) return 'tiffset not installed (apt-get install libtiff-tools)';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Servers.

/** Environment common to both servers: no memcached, no log, the given settings. */
function baseEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' };
}

/**
 * iipsrv 1.1 as a standalone FastCGI server on a TCP port. MEMCACHED_SERVERS points at a dead
 * port (so it never shares a cache with anything), VERBOSITY=0 unless the caller sets a LOGFILE.
 */
export async function startReferenceIipsrv(port: number, env: Record<string, string>): Promise<Started> {
  const started = startProgram(REFERENCE_IIPSRV, ['--bind', `127.0.0.1:${port}`], {
    env: { ...baseEnv(), MEMCACHED_SERVERS: '127.0.0.1:1', VERBOSITY: '0', ...env },
  });
  await waitUntilListening(started, { port }, { what: 'iipsrv 1.1' });
  return started;
}

export interface RawReply {
  status: number;
  /** In the order received, names lower-cased. */
  headers: Array<[string, string]>;
  body: Buffer;
}

export interface Both {
  ref: RawReply;
  ours: RawReply;
}

export interface DifferentialPair {
  nginx: WebServer;
  reference: Started;
  ours: Started;
  /** nginx's port for the reference and for ours. */
  refPort: number;
  oursPort: number;
  /** Sends the same query (and headers) to both, at the same time. */
  get(query: string, headers?: Record<string, string>): Promise<Both>;
  /** One query to one side. */
  fetch(side: 'ref' | 'ours', query: string, headers?: Record<string, string>): Promise<RawReply>;
  /** Is the reference still running (some malformed requests kill 1.1)? */
  referenceAlive(): boolean;
  stop(): Promise<void>;
}

export interface PairOptions {
  /** A working directory for nginx's files. */
  dir: string;
  /** FILESYSTEM_PREFIX, with its trailing slash. */
  images: string;
  /** Settings for both servers (JPEG_QUALITY, MAX_CVT ...). */
  env?: Record<string, string>;
}

/** GET through nginx, keeping the header order and the raw body. */
export function fetchRaw(port: number, pathAndQuery: string, headers: Record<string, string> = {}): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathAndQuery, method: 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const list: Array<[string, string]> = [];
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) list.push([res.rawHeaders[i]!.toLowerCase(), res.rawHeaders[i + 1]!]);
        resolve({ status: res.statusCode ?? 0, headers: list, body: Buffer.concat(chunks) });
      });
      res.on('error', reject);
    });
    req.setTimeout(20_000, () => req.destroy(new Error(`request ${pathAndQuery} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The reference on one FastCGI port, ours (`bin/iipsrv --workers 1`) on another, and one nginx
 * with a server block for each (both rendered from examples/nginx/iipsrv.conf).
 */
export async function startDifferentialPair(options: PairOptions): Promise<DifferentialPair> {
  const settings = { FILESYSTEM_PREFIX: options.images, ...options.env };
  const [refFcgi, oursFcgi, refPort, oursPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const reference = await startReferenceIipsrv(refFcgi, settings);
  let ours: Started | null = null;
  try {
    ours = await startDaemon(['--bind', `127.0.0.1:${oursFcgi}`, '--workers', '1'], {
      env: { VERBOSITY: '0', ...settings, MEMCACHED_SERVERS: '' },
      waitPort: oursFcgi,
    });
    const site =
      renderExample('nginx/iipsrv.conf', nginxSiteReplacements({ port: refPort, fastcgiPort: refFcgi })) +
      '\n' +
      renderExample('nginx/iipsrv.conf', nginxSiteReplacements({ port: oursPort, fastcgiPort: oursFcgi }));
    mkdirSync(options.dir, { recursive: true });
    const nginx = await startNginx({ dir: options.dir, port: refPort, site });
    await waitFor(() => canConnect({ port: oursPort }), 10_000, `nginx on port ${oursPort}`);
    const started = ours;
    const fetch = (side: 'ref' | 'ours', query: string, headers?: Record<string, string>) =>
      fetchRaw(side === 'ref' ? refPort : oursPort, `${IIP_PATH}${query === '' ? '' : '?' + query}`, headers);
    return {
      nginx,
      reference,
      ours: started,
      refPort,
      oursPort,
      fetch,
      async get(query, headers) {
        const [ref, mine] = await Promise.all([fetch('ref', query, headers), fetch('ours', query, headers)]);
        return { ref, ours: mine };
      },
      referenceAlive: () => reference.alive(),
      async stop() {
        await nginx.stop();
        await stopGroup(started);
        await stopGroup(reference);
      },
    };
  } catch (error) {
    if (ours) await stopGroup(ours);
    await stopGroup(reference);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Headers.

/**
 * Headers that differ by nature, not by behaviour: the product name, the time of the response,
 * and HTTP framing (nginx streams 1.1's length-less bodies chunked; ours sends Content-Length).
 */
export const UNCOMPARED_HEADERS = new Set(['server', 'date', 'connection', 'transfer-encoding', 'content-length', 'keep-alive']);

/** `name: value` lines in order, without the uncompared headers (and any extra names given). */
export function comparableHeaders(reply: RawReply, ignore: Iterable<string> = []): string[] {
  const skip = new Set([...UNCOMPARED_HEADERS, ...[...ignore].map((n) => n.toLowerCase())]);
  return reply.headers.filter(([name]) => !skip.has(name)).map(([name, value]) => `${name}: ${value}`);
}

export function header(reply: RawReply, name: string): string | undefined {
  return reply.headers.find(([n]) => n === name.toLowerCase())?.[1];
}

// ---------------------------------------------------------------------------------------------
// Pixels.

export { decodePixels, meanAbsoluteDifference, psnr, type Pixels } from './images.ts';

// ---------------------------------------------------------------------------------------------
// Images, made with the vips command line.

export interface VipsPyramidOptions {
  width: number;
  height: number;
  tileSize: number;
  compression: 'jpeg' | 'deflate' | 'lzw' | 'none';
  /** 1 (grey) or 3 (RGB) bands. */
  bands?: 1 | 3;
  /** Not tiled, no pyramid: a plain strip TIFF (1.1 refuses it). */
  strips?: boolean;
}

/**
 * Smooth content with structure in both directions (ramps and slow waves), so that a tile taken
 * from the wrong place or a wrong level shows, while JPEG at quality 75 stays close to the source.
 */
export function testPattern(width: number, height: number, bands: 1 | 3): Buffer {
  const raw = Buffer.alloc(width * height * bands);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const r = (x * 255) / Math.max(1, width - 1);
      const g = (y * 255) / Math.max(1, height - 1);
      const b = 128 + 90 * Math.sin(x / 37) * Math.cos(y / 29);
      const i = (y * width + x) * bands;
      if (bands === 1) {
        raw[i] = Math.round(0.4 * r + 0.3 * g + 0.3 * b);
      } else {
        raw[i] = Math.round(r);
        raw[i + 1] = Math.round(g);
        raw[i + 2] = Math.round(b);
      }
    }
  }
  return raw;
}

/**
 * `vips tiffsave in out.tif --tile --pyramid --tile-width N --tile-height N --compression C --Q 90`:
 * a tiled pyramid in the main IFD chain, the layout 1.1 reads.
 */
export async function makeVipsPyramid(file: string, options: VipsPyramidOptions): Promise<void> {
  const bands = options.bands ?? 3;
  const source = file.replace(/\.tiff?$/, '') + '.source.png';
  let pixels = sharp(testPattern(options.width, options.height, bands), { raw: { width: options.width, height: options.height, channels: bands } });
  // Without this sharp writes one band as an RGB PNG.
  if (bands === 1) pixels = pixels.toColourspace('b-w');
  await pixels.png({ compressionLevel: 1 }).toFile(source);
  const args = ['tiffsave', source, file];
  if (!options.strips) {
    args.push('--tile', '--pyramid', '--tile-width', String(options.tileSize), '--tile-height', String(options.tileSize));
  }
  args.push('--compression', options.compression);
  if (options.compression === 'jpeg') args.push('--Q', '90');
  await run('vips', args);
}

/** `tiffset -s TAG VALUE file` for each tag (text tags and XResolution/YResolution/ResolutionUnit). */
export async function setTiffTags(file: string, tags: Array<[tag: number, value: string]>): Promise<void> {
  for (const [tag, value] of tags) await run('tiffset', ['-s', String(tag), value, file]);
}

/** A file that is not an image but long enough for the magic-number check. */
export function writeNotAnImage(file: string): void {
  writeFileSync(file, 'This is a text file, certainly not an image.\n');
}

export function imagesDir(dir: string): string {
  const images = path.join(dir, 'images') + '/';
  mkdirSync(images, { recursive: true });
  return images;
}
