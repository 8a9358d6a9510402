/**
 * The engine settings a configuration implies, in one place: the daemon's workers and the tests
 * that stand in for them (and the cache tools) build their engines the same way. What belongs to
 * a running process (the memcached client, made by memcachedTierFor; the loaded watermark; its
 * share of the JPEG2000 decoders) is added by the caller.
 */
import type { Config } from '../config.js';
import { availableParallelism } from 'node:os';
import { MemcachedTier } from '../engine/cache/memcached.js';
import type { EngineOptions } from '../engine/engine.js';
import { cheapRegionConcurrency } from '../engine/slots.js';

export function engineOptionsFor(config: Config): EngineOptions {
  return {
    paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix, confineSymlinks: config.filesystemConfineSymlinks },
    remote: config.remote,
    cacheBytes: config.maxImageCacheBytes,
    maxOpenImages: config.maxMetadataCacheEntries,
    interpolation: config.interpolation,
    maxLayers: config.maxLayers,
    filenamePattern: config.filenamePattern,
    encoders: {
      pngCompression: config.pngQuality,
      webpQuality: config.webpQuality,
      avifQuality: config.avifQuality,
      tiffCompression: config.tiffCompression,
      tiffQuality: config.tiffQuality,
    },
    maxIcc: config.maxIcc,
    jp2MaxDecodeBytes: config.jp2MaxDecodeBytes,
    jp2Decoder: { memoryBytes: config.jp2DecoderMemoryBytes, maxResidentBytes: config.jp2HelperMaxResidentBytes },
    plain: {
      maxInputPixels: config.plainMaxPixels,
      memoryPixels: config.plainMemoryPixels,
      memoryBytes: config.plainCacheBytes,
      pyramidDir: config.pyramidCacheDir,
      pyramidBytes: config.pyramidCacheBytes,
    },
    lease: { waitMs: config.memcachedLeaseMs, pollMs: 25 },
    generationCheckMs: config.cacheGenerationCheckMs,
    limits: { maxTileBytes: config.maxTileBytes, maxSamplesPerPixel: config.maxSamplesPerPixel, maxProcessingPixels: config.maxProcessingPixels },
  };
}

/** The memcached client MEMCACHED_SERVERS asks for, or null without servers. */
export function memcachedTierFor(config: Config, onStateChange?: (up: boolean, reason: string) => void): MemcachedTier | null {
  if (config.memcachedServers.length === 0) return null;
  return new MemcachedTier({ servers: config.memcachedServers, lifetimeSeconds: config.memcachedTimeout, onStateChange });
}

/** A worker's share of the cores, at least 1: its JPEG2000 decoders. */
export function coresPerWorker(workers: number): number {
  return Math.max(1, Math.ceil(availableParallelism() / workers));
}

/** Expensive region exports a worker renders at once: its share of the cores, at least 2. */
export function regionConcurrency(workers: number): number {
  return Math.max(2, coresPerWorker(workers));
}

/**
 * libuv threads a worker needs. sharp holds one for the whole run of a region export, so the
 * expensive exports alone could take libuv's default 4 and leave tile encodes, inflates and slow
 * file reads waiting behind them: each worker gets 4 more than it renders regions at once,
 * expensive and cheap.
 */
export function threadPoolSize(workers: number): number {
  const expensive = regionConcurrency(workers);
  return expensive + cheapRegionConcurrency(expensive) + 4;
}
