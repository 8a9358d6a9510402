/**
 * `iipsrv purge IMAGE`: everything cached of an image becomes unreachable, and the pyramid built
 * for it is deleted. memcached cannot list or find an image's entries (keys are hashes), so the
 * purge gives the image's file a new cache generation instead (engine/cache/generations.ts): its
 * old entries are never looked up again and age out. An image sequence has a file per view: each
 * gets one. Running servers notice within CACHE_GENERATION_CHECK.
 */
import type { Config } from '../config.js';
import type { Engine, OpenImage } from '../engine/engine.js';
import { openNamedImage, requireMemcached, toolEngine, ToolFailure, type ToolReport } from './tool-engine.js';

/** @throws ToolFailure when the image cannot be opened or memcached does not confirm the purge */
export async function purge(config: Config, name: string, report: ToolReport): Promise<void> {
  // Opening a big plain image must not start building the pyramid this is about to delete.
  const tools = await toolEngine(config, false);
  try {
    const { engine, memcached } = tools;
    const image = await openNamedImage(engine, name);
    const done: string[] = [];
    const pyramid = engine.derivedPyramid(image);
    if (pyramid && (await pyramid.remove())) done.push(`deleted its pyramid ${pyramid.path}`);
    if (!memcached) {
      throw new ToolFailure(
        `${done.length > 0 ? `${done.join('; ')}, but ` : ''}MEMCACHED_SERVERS is not set: there is no shared cache to purge, and servers' ` +
          'memory caches are emptied only by SIGHUP (or by replacing the file)',
      );
    }
    await requireMemcached(memcached, config);
    const files = await imageFiles(engine, image);
    for (const file of files) {
      try {
        await engine.purge(file);
      } catch (error) {
        throw new ToolFailure(`memcached did not take the purge of ${name}: ${(error as Error).message}`);
      }
    }
    done.unshift(`new cache generation for ${files.length === 1 ? 'its file' : `its ${files.length} files`}`);
    report.result(`purged ${name}: ${done.join('; ')}`);
  } finally {
    tools.close();
  }
}

/** The image, or every view of an image sequence (each is a file of its own). */
async function imageFiles(engine: Engine, image: OpenImage): Promise<OpenImage[]> {
  const { sequence } = image;
  if (!sequence) return [image];
  // The views the sequence's listing found (its angles at vertical 90 and at horizontal 0).
  const views = await Promise.allSettled([
    ...sequence.horizontal.map((angle) => engine.openView(image, angle, 90)),
    ...sequence.vertical.map((angle) => engine.openView(image, 0, angle)),
  ]);
  const byFile = new Map<string, OpenImage>([[image.file.path, image]]);
  for (const view of views) if (view.status === 'fulfilled') byFile.set(view.value.file.path, view.value);
  return [...byFile.values()];
}
