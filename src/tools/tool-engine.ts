/**
 * What the cache tools share: an engine built from the environment exactly as a server's worker
 * builds it (the same cache keys, so what `warm` stores is what servers look up), the image named
 * on the command line opened through it, and one way of reporting a failure.
 */
import type { Config } from '../config.js';
import type { MemcachedTier } from '../engine/cache/memcached.js';
import { Engine, type OpenImage } from '../engine/engine.js';
import { Watermark } from '../engine/output/watermark.js';
import { engineOptionsFor, memcachedTierFor } from '../server/engine-options.js';

export interface ToolEngine {
  engine: Engine;
  memcached: MemcachedTier | null;
  /** Ends the memcached connection and the decoder processes, so that the process can exit. */
  close(): void;
}

/** Where a tool writes: progress on stderr, the result on stdout (what cron mails or a script reads). */
export interface ToolReport {
  progress(line: string): void;
  result(line: string): void;
}

/** A failure the tool reports as `iipsrv TOOL: message` and exits 1 for. */
export class ToolFailure extends Error {
  override name = 'ToolFailure';
}

/** @param buildPyramids whether opening a big plain image starts building its pyramid (not for purge) */
export async function toolEngine(config: Config, buildPyramids: boolean): Promise<ToolEngine> {
  const memcached = memcachedTierFor(config);
  // The watermark is part of every cache key (the engine's output tag): load it as the server does.
  const watermark = config.watermark ? await Watermark.load(config.watermark).catch(() => null) : null;
  const base = engineOptionsFor(config);
  const engine = new Engine({
    ...base,
    // Nothing is read twice: the RAM tier would only hold memory.
    cacheBytes: 0,
    memcached,
    watermark,
    plain: { ...base.plain!, buildOnOpen: buildPyramids },
  });
  return {
    engine,
    memcached,
    close: () => {
      engine.close();
      memcached?.close();
    },
  };
}

/** The image as a request names it, opened as a server would. @throws ToolFailure when there is none */
export async function openNamedImage(engine: Engine, name: string): Promise<OpenImage> {
  try {
    return await engine.openImage(name);
  } catch (error) {
    throw new ToolFailure(`cannot open the image: ${(error as Error).message}`);
  }
}

/** memcached must answer before a tool works with it. @throws ToolFailure when it does not */
export async function requireMemcached(memcached: MemcachedTier, config: Config): Promise<void> {
  if (await memcached.check(2000)) return;
  const servers = config.memcachedServers.map((s) => `${s.host}:${s.port}`).join(', ');
  throw new ToolFailure(`memcached (MEMCACHED_SERVERS=${servers}) does not answer`);
}
