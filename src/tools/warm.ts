/**
 * `iipsrv warm IMAGE`: renders the tiles viewers ask for and stores them in memcached, and builds
 * the pyramid of an image without one (PYRAMID_CACHE_DIR), so that the first visitors of a new
 * image find it ready.
 *
 * The tiles are the engine's entries for an upright JPEG tile of the default quality (JPEG_QUALITY,
 * CODEC_PASSTHROUGH, no processing), which is what IIP's JTL, IIIF tile requests (a region and
 * size matching a tile of a stored level), and DeepZoom and Zoomify tiles of stored levels all ask
 * the engine for: one entry serves all four. Not warmed: the DeepZoom and Zoomify levels below
 * the smallest stored one (scaled from it as regions: a few small tiles), and regions of other sizes.
 */
import { selectResolutions, type ResolutionRange } from '../cli.js';
import type { Config } from '../config.js';
import type { Engine, OpenImage, TileRequest } from '../engine/engine.js';
import { levelForResolution, tileGrid } from '../engine/geometry.js';
import { NO_PROCESSING } from '../engine/pixels/processing.js';
import { openNamedImage, requireMemcached, toolEngine, ToolFailure, type ToolReport } from './tool-engine.js';

export interface WarmRequest {
  /** As requests name it (decoded). */
  image: string;
  /** iipsrv resolution numbers; null = all. */
  resolutions: ResolutionRange[] | null;
  /** Tiles rendered at once. */
  concurrency: number;
}

/** @throws ToolFailure when the image cannot be opened, memcached does not answer, or tiles could not be rendered or stored */
export async function warm(config: Config, request: WarmRequest, report: ToolReport): Promise<void> {
  if (config.memcachedServers.length === 0 && config.pyramidCacheDir === '') {
    throw new ToolFailure('nothing to warm: MEMCACHED_SERVERS is not set (and there is no PYRAMID_CACHE_DIR to build pyramids in)');
  }
  const started = performance.now();
  const tools = await toolEngine(config, true);
  try {
    const { engine, memcached } = tools;
    const image = await openNamedImage(engine, request.image);
    const { levels } = image.source.description;
    const resolutions = selectResolutions(request.resolutions, levels.length);
    if (resolutions.length === 0) {
      throw new ToolFailure(`${request.image} has resolutions 0-${levels.length - 1} (0 = the smallest): --levels selects none of them`);
    }
    if (memcached) await requireMemcached(memcached, config);

    const pyramid = engine.derivedPyramid(image);
    let built = '';
    if (pyramid) {
      const state = await pyramid.build().catch((error: Error) => {
        throw new ToolFailure(`the pyramid of ${request.image} could not be built: ${error.message}`);
      });
      const told = `pyramid ${{ built: 'built', present: 'already built', busy: 'being built by another process' }[state]} (${pyramid.path})`;
      report.progress(told);
      built = `${told}; `;
    }
    if (!memcached) {
      if (!pyramid) throw new ToolFailure(`nothing to warm: MEMCACHED_SERVERS is not set, and ${request.image} needs no built pyramid`);
      report.result(`warmed ${request.image}: ${built}no tiles stored (MEMCACHED_SERVERS is not set)`);
      return;
    }

    let tiles = 0;
    let bytes = 0;
    const failures: Failures = { count: 0, first: null };
    for (const resolution of resolutions) {
      const level = levelForResolution(levels.length, resolution);
      const size = levels[level]!;
      const done = await warmLevel(engine, image, level, request.concurrency, config, failures);
      tiles += done.tiles;
      bytes += done.bytes;
      report.progress(`resolution ${resolution} (${size.width}x${size.height}): ${done.tiles} tiles`);
    }
    await memcached.settled();
    const stats = engine.cacheStats();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const tooBig = memcached.setsTooBig > 0 ? `; ${memcached.setsTooBig} larger than memcached takes (1 MB), not stored` : '';
    report.result(
      `warmed ${request.image}: ${built}${tiles} tiles of resolutions ${ranges(resolutions)} (${stats.computed} rendered, ` +
        `${stats.memcachedHits} already cached), ${bytes} bytes in ${seconds} s; memcached stored ${memcached.setsStored}${tooBig}`,
    );
    if (failures.count > 0) throw new ToolFailure(`${failures.count} tile(s) could not be rendered, the first: ${failures.first}`);
    const unstored = memcached.setsFailed + memcached.setsSkipped;
    if (unstored > 0) throw new ToolFailure(`memcached did not store ${unstored} tile(s) (it refused or stopped answering)`);
  } finally {
    tools.close();
  }
}

/** Tiles that could not be rendered: how many, and the first one's reason (an image may have thousands). */
interface Failures {
  count: number;
  first: string | null;
}

/** Every tile of one level, `concurrency` at a time; failures are counted, not thrown. */
async function warmLevel(
  engine: Engine,
  image: OpenImage,
  level: number,
  concurrency: number,
  config: Config,
  failures: Failures,
): Promise<{ tiles: number; bytes: number }> {
  const { across, down } = tileGrid(image.source.description.levels[level]!);
  const count = across * down;
  let next = 0;
  let bytes = 0;
  const lane = async () => {
    while (next < count) {
      const tile = next++;
      try {
        const { bytes: body } = await engine.tile(image, viewerTile(level, tile % across, Math.floor(tile / across), config));
        bytes += body.length;
      } catch (error) {
        failures.count++;
        failures.first ??= `level ${level} tile ${tile}: ${(error as Error).message}`;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return { tiles: count, bytes };
}

/**
 * The tile request a viewer's default tile request becomes (Session.tileRequest with no IIP
 * modifiers): the same request, the same cache entry.
 */
function viewerTile(level: number, col: number, row: number, config: Config): TileRequest {
  return {
    level,
    col,
    row,
    format: 'jpeg',
    quality: config.jpegQuality,
    requested: null,
    bits: 8,
    passthrough: config.codecPassthrough,
    rotation: 0,
    mirror: false,
    processing: NO_PROCESSING,
  };
}

/** 0,1,2,3,5 as 0-3,5. */
function ranges(numbers: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < numbers.length;) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j]! + 1) j++;
    parts.push(j > i ? `${numbers[i]}-${numbers[j]}` : `${numbers[i]}`);
    i = j + 1;
  }
  return parts.join(',');
}
