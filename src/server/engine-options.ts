/**
 * The engine settings a configuration implies, in one place: the daemon's workers and the tests
 * that stand in for them build their engines the same way. What belongs to a running process
 * (the memcached client, the loaded watermark, its share of the JPEG2000 decoders) is added by
 * the caller.
 */
import type { Config } from '../config.js';
import type { EngineOptions } from '../engine/engine.js';

export function engineOptionsFor(config: Config): EngineOptions {
  return {
    paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix },
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
    limits: { maxTileBytes: config.maxTileBytes, maxSamplesPerPixel: config.maxSamplesPerPixel, maxProcessingPixels: config.maxProcessingPixels },
  };
}
