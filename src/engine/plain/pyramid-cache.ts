/**
 * Pyramid TIFFs built from big non-pyramidal images (PYRAMID_CACHE_DIR), named after the source
 * file's path, size and modification time, so that a replaced file never finds the old pyramid.
 */
import { createHash } from 'node:crypto';
import { FileCache, type FileCacheOptions } from '../cache/file-cache.js';

/** What names a source file's pyramid: a changed file is another file. */
export interface SourceIdentity {
  path: string;
  size: number;
  mtimeSeconds: number;
}

export class PyramidCache extends FileCache {
  constructor(options: Omit<FileCacheOptions, 'suffix'>) {
    super({ ...options, suffix: '.tif' });
  }

  key(source: SourceIdentity): string {
    return createHash('sha256').update(`${source.path}\0${source.size}\0${source.mtimeSeconds}`).digest('hex').slice(0, 40);
  }
}
