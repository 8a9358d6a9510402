/**
 * The benchmark image: 10000x7000 RGB, a gradient with a sine texture and uniform noise, saved by
 * the vips CLI as a JPEG-compressed (Q 90) tiled pyramid TIFF with 256x256 tiles in the main IFD
 * chain (the layout iipsrv 1.1 reads). Cached in os.tmpdir() between runs, keyed by a version
 * string (bump IMAGE_VERSION when the recipe changes).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { wrapCodestream } from '../../test/helpers/jp2.ts';
import { pyramid, writeTiff } from '../../test/helpers/tiff-writer.ts';

export const IMAGE_VERSION = 'v1';
export const IMAGE_WIDTH = 10000;
export const IMAGE_HEIGHT = 7000;
export const TILE = 256;

export const CACHE_DIR = path.join(os.tmpdir(), 'iipsrv-ts-bench-cache');
export const IMAGE_NAME = `bench-${IMAGE_VERSION}-${IMAGE_WIDTH}x${IMAGE_HEIGHT}.tif`;

function run(command: string, args: string[]): void {
  const r = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw new Error(`${command}: ${r.error.message} (is libvips-tools installed?)`);
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
}

/** Raw interleaved RGB, written row band by row band so that memory stays small. */
function writeRaw(file: string, width: number, height: number): void {
  const fd = openSync(file, 'w');
  const band = 256;
  const buf = Buffer.allocUnsafe(width * band * 3);
  let s = 0x2545f491 >>> 0; // xorshift32 seed: the same image every time
  const A = 16; // noise amplitude (+-8)
  try {
    for (let y0 = 0; y0 < height; y0 += band) {
      const rows = Math.min(band, height - y0);
      for (let yy = 0; yy < rows; yy++) {
        const y = y0 + yy;
        const gy = (y * 255) / (height - 1);
        const cy = Math.cos(y / 53);
        const sy = Math.sin(y / 11.3);
        let i = yy * width * 3;
        for (let x = 0; x < width; x++) {
          s ^= s << 13;
          s >>>= 0;
          s ^= s >>> 17;
          s ^= s << 5;
          s >>>= 0;
          const w = 60 * Math.sin(x / 37) * cy + 20 * Math.sin(x / 7.1 + sy * 3);
          const r = (x * 255) / (width - 1) + w + (((s & 255) * A) >> 8) - A / 2;
          const g = gy - w + ((((s >>> 8) & 255) * A) >> 8) - A / 2;
          const b = 128 + 0.5 * w + ((((s >>> 16) & 255) * A) >> 8) - A / 2;
          buf[i++] = r < 0 ? 0 : r > 255 ? 255 : r;
          buf[i++] = g < 0 ? 0 : g > 255 ? 255 : g;
          buf[i++] = b < 0 ? 0 : b > 255 ? 255 : b;
        }
      }
      writeSync(fd, buf, 0, rows * width * 3);
    }
  } finally {
    closeSync(fd);
  }
}

/** Returns { dir, name } of the cached image, generating it first if needed. */
export function benchImage(log: (line: string) => void): { dir: string; name: string; file: string; generated: boolean } {
  mkdirSync(CACHE_DIR, { recursive: true });
  chmodSync(CACHE_DIR, 0o755);
  const file = path.join(CACHE_DIR, IMAGE_NAME);
  if (existsSync(file)) return { dir: CACHE_DIR + '/', name: IMAGE_NAME, file, generated: false };
  const started = Date.now();
  log(`generating ${file} (${IMAGE_WIDTH}x${IMAGE_HEIGHT}, vips tiffsave --tile --pyramid --compression jpeg --Q 90)...`);
  const work = path.join(CACHE_DIR, `tmp-${process.pid}`);
  mkdirSync(work, { recursive: true });
  try {
    const raw = path.join(work, 'in.raw');
    const v = path.join(work, 'in.v');
    const tif = path.join(work, 'out.tif');
    writeRaw(raw, IMAGE_WIDTH, IMAGE_HEIGHT);
    run('vips', ['rawload', raw, v, String(IMAGE_WIDTH), String(IMAGE_HEIGHT), '3']);
    run('vips', ['tiffsave', v, tif, '--tile', '--pyramid', '--tile-width', String(TILE), '--tile-height', String(TILE), '--compression', 'jpeg', '--Q', '90']);
    chmodSync(tif, 0o644);
    renameSync(tif, file);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`generated in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { dir: CACHE_DIR + '/', name: IMAGE_NAME, file, generated: true };
}

/** Level sizes as vips writes them: floor-halving until a level fits in one tile. Largest first. */
export function expectedLevels(width: number, height: number, tile: number): Array<[number, number]> {
  const levels: Array<[number, number]> = [[width, height]];
  while (width > tile || height > tile) {
    width = Math.floor(width / 2);
    height = Math.floor(height / 2);
    levels.push([width, height]);
  }
  return levels;
}

export const TYPED_SIZE = 4096;

/**
 * The pixel-type images of workloads h, i, j: a 4096x4096 crop of the benchmark image as 16-bit
 * RGB, as 32-bit float grey (SMaxSampleValue 255, so that iipsrv 1.1, which defaults a float
 * maximum to 0, renders it too) and as 8-bit CIELAB; deflate, vips' default predictor.
 * Cached beside the benchmark image.
 */
export function pixelTypeImages(log: (line: string) => void, base: string): { rgb16: string; float: string; lab: string } {
  const names = {
    rgb16: `bench-${IMAGE_VERSION}-rgb16-${TYPED_SIZE}.tif`,
    float: `bench-${IMAGE_VERSION}-float-${TYPED_SIZE}.tif`,
    lab: `bench-${IMAGE_VERSION}-lab8-${TYPED_SIZE}.tif`,
  };
  if (Object.values(names).every((n) => existsSync(path.join(CACHE_DIR, n)))) return names;
  const started = Date.now();
  log(`generating the pixel-type images (${TYPED_SIZE}x${TYPED_SIZE} 16-bit RGB, float grey, CIELAB)...`);
  const work = path.join(CACHE_DIR, `tmp-${process.pid}`);
  mkdirSync(work, { recursive: true });
  try {
    const v = (name: string) => path.join(work, `${name}.v`);
    run('vips', ['crop', `${base}[page=0]`, v('crop'), '0', '0', String(TYPED_SIZE), String(TYPED_SIZE)]);
    run('vips', ['colourspace', v('crop'), v('rgb16'), 'rgb16']);
    run('vips', ['colourspace', v('crop'), v('grey'), 'b-w']);
    run('vips', ['colourspace', v('crop'), v('lab'), 'labq']);
    // The float image by our test writer: vips cannot set SMaxSampleValue (and tiffset writes it wrong).
    run('vips', ['rawsave', v('grey'), path.join(work, 'grey.raw')]);
    const grey = readFileSync(path.join(work, 'grey.raw'));
    const full = { width: TYPED_SIZE, height: TYPED_SIZE, samples: Float64Array.from(grey) };
    writeTiff(path.join(work, names.float), {
      levels: pyramid(full, 1),
      channels: 1,
      bits: 32,
      kind: 'float',
      smin: [0],
      smax: [255],
      compression: 'deflate',
      predictor: 3,
    });
    for (const [key, source] of [
      ['rgb16', 'rgb16'],
      ['float', ''],
      ['lab', 'lab'],
    ] as const) {
      const tif = path.join(work, names[key]);
      if (source)
        run('vips', [
          'tiffsave',
          v(source),
          tif,
          '--tile',
          '--pyramid',
          '--tile-width',
          String(TILE),
          '--tile-height',
          String(TILE),
          '--compression',
          'deflate',
        ]);
      chmodSync(tif, 0o644);
      renameSync(tif, path.join(CACHE_DIR, names[key]));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`generated in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return names;
}

export const JP2_VERSION = 'v1';
export const JP2_NAME = `bench-jp2-${JP2_VERSION}-${IMAGE_WIDTH}x${IMAGE_HEIGHT}.jp2`;
/** How the JPEG2000 bench image is coded: 1024x1024 codestream tiles, 6 DWT levels, 3 lossy layers. */
export const JP2_RECIPE = ['-t', '1024,1024', '-n', '7', '-r', '40,20,10', '-p', 'RPCL', '-TLM'];

/**
 * The same pixels as the TIFF as a lossy JP2 made by OpenJPEG (opj_compress, as archives'
 * masters often are), cached beside it. About 35 s the first time.
 */
export function benchJp2(log: (line: string) => void): { dir: string; name: string; file: string; generated: boolean } {
  const tiff = benchImage(log);
  const file = path.join(CACHE_DIR, JP2_NAME);
  if (existsSync(file)) return { dir: CACHE_DIR + '/', name: JP2_NAME, file, generated: false };
  const started = Date.now();
  log(`generating ${file} (opj_compress ${JP2_RECIPE.join(' ')})...`);
  const work = path.join(CACHE_DIR, `tmp-jp2-${process.pid}`);
  mkdirSync(work, { recursive: true });
  try {
    const ppm = path.join(work, 'in.ppm');
    const jp2 = path.join(work, 'out.jp2');
    run('vips', ['copy', tiff.file, ppm]);
    run('opj_compress', ['-i', ppm, '-o', jp2, ...JP2_RECIPE]);
    chmodSync(jp2, 0o644);
    renameSync(jp2, file);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`generated in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { dir: CACHE_DIR + '/', name: JP2_NAME, file, generated: true };
}

export const HTJ2K_VERSION = 'v1';
export const HTJ2K_NAME = `bench-htj2k-${HTJ2K_VERSION}-${IMAGE_WIDTH}x${IMAGE_HEIGHT}.jph`;
/**
 * How the HTJ2K bench image is coded (OpenJPH's ojph_compress): as the JP2, 1024x1024 codestream
 * tiles, 7 DWT levels, RPCL, lossy (9-7), quantisation step 0.02: 18 MB against the JP2's 20.
 */
export const HTJ2K_RECIPE = ['-tile_size', '{1024,1024}', '-num_decomps', '7', '-prog_order', 'RPCL', '-qstep', '0.02'];

/**
 * The same pixels as the TIFF and the JP2 as HTJ2K (JPEG2000 Part 15), in a .jph file (the
 * codestream ojph_compress writes, in JP2 boxes with the 'jph ' brand), cached beside them.
 */
export function benchHtj2k(log: (line: string) => void): { dir: string; name: string; file: string; generated: boolean } {
  const tiff = benchImage(log);
  const file = path.join(CACHE_DIR, HTJ2K_NAME);
  if (existsSync(file)) return { dir: CACHE_DIR + '/', name: HTJ2K_NAME, file, generated: false };
  const started = Date.now();
  log(`generating ${file} (ojph_compress ${HTJ2K_RECIPE.join(' ')})...`);
  const work = path.join(CACHE_DIR, `tmp-htj2k-${process.pid}`);
  mkdirSync(work, { recursive: true });
  try {
    const ppm = path.join(work, 'in.ppm');
    const j2c = path.join(work, 'out.j2c');
    const jph = path.join(work, 'out.jph');
    run('vips', ['copy', tiff.file, ppm]);
    run('ojph_compress', ['-i', ppm, '-o', j2c, ...HTJ2K_RECIPE]);
    writeFileSync(jph, wrapCodestream(readFileSync(j2c), 'jph ', { width: IMAGE_WIDTH, height: IMAGE_HEIGHT, channels: 3, bits: 8 }));
    chmodSync(jph, 0o644);
    renameSync(jph, file);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`generated in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { dir: CACHE_DIR + '/', name: HTJ2K_NAME, file, generated: true };
}
