/**
 * The images of FILESYSTEM_PREFIX the viewer page lists, as the names a request gives (prefix +
 * name + suffix is the file, as the engine resolves them). Every page load walks the folder, so
 * the walk is bounded in entries read, depth and names kept: a huge or deep folder gives a
 * truncated list quickly rather than a slow page. Directories reached by a symbolic link are never
 * entered (no loops, nothing outside by that road); linked files are listed, and with
 * FILESYSTEM_CONFINE_SYMLINKS only those whose real path is inside the folder.
 */
import type { Dirent } from 'node:fs';
import { opendir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';

/** The file suffixes of the formats the engine opens (it goes by magic bytes; this only picks what to list). */
const IMAGE_FILE = /\.(?:tiff?|ptif|jp2|j2k|j2c|jpx|jpf|jph|jhc|jpe?g|png|gif|webp|heic|heif|avif|jxl|p[bgpn]m)$/i;

export interface ListLimits {
  /** Names kept. */
  maxImages: number;
  /** Directory entries read, over the whole walk. */
  maxEntries: number;
  /** Folders below the prefix entered. */
  maxDepth: number;
}

export const LIST_LIMITS: Readonly<ListLimits> = { maxImages: 1000, maxEntries: 20_000, maxDepth: 8 };

export interface ListRules {
  prefix: string;
  suffix: string;
  confineSymlinks: boolean;
}

export type ImageList = { ok: true; names: string[]; truncated: boolean } | { ok: false; reason: string };

interface Folder {
  directory: string;
  /** What the names of its files begin with. */
  names: string;
  depth: number;
  /** Only entries starting with this (the file-name part of a prefix without a final `/`). */
  stem: string;
}

interface Walk {
  rules: ListRules;
  limits: ListLimits;
  /** The folder's real path, for FILESYSTEM_CONFINE_SYMLINKS; null when links are followed anywhere. */
  realRoot: string | null;
  names: string[];
  entries: number;
  truncated: boolean;
  /** maxImages reached and one more found: the rest of the walk is of no use. */
  full: boolean;
}

/**
 * A prefix ending in `/` is a folder; one that does not names the start of file names in its
 * directory (`/data/img_` + `001.tif`) and, as a folder, the directory named exactly so.
 */
function startingFolder(prefix: string): Folder {
  if (prefix.endsWith('/')) return { directory: prefix, names: '', depth: 0, stem: '' };
  const slash = prefix.lastIndexOf('/');
  return { directory: prefix.slice(0, slash + 1) || '.', names: '', depth: 0, stem: prefix.slice(slash + 1) };
}

function isInside(file: string, root: string): boolean {
  return file.startsWith(root.endsWith('/') ? root : root + '/');
}

/** The name a request gives for `entry`, or null when it is no image of ours to list. */
function imageName(walk: Walk, folder: Folder, entry: string): string | null {
  const { suffix } = walk.rules;
  if (!entry.endsWith(suffix) || !IMAGE_FILE.test(entry)) return null;
  const name = folder.names + entry.slice(folder.stem.length, entry.length - suffix.length);
  return name === '' ? null : name;
}

async function linkedFile(walk: Walk, file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    return walk.realRoot === null || isInside(await realpath(file), walk.realRoot);
  } catch {
    return false;
  }
}

async function visit(walk: Walk, folder: Folder, entry: Dirent, queue: Folder[]): Promise<void> {
  const name = entry.name;
  // Hidden files, and names that are not UTF-8 (no request could name them back).
  if (name.startsWith('.') || name.includes('\uFFFD') || !name.startsWith(folder.stem)) return;
  const file = path.join(folder.directory, name);
  if (entry.isDirectory()) {
    // Below a stem only the directory of exactly that name is the prefix's (as the engine rules).
    if (folder.stem !== '' && name !== folder.stem) return;
    if (folder.depth < walk.limits.maxDepth) {
      queue.push({ directory: file, names: folder.names + name.slice(folder.stem.length) + '/', depth: folder.depth + 1, stem: '' });
    } else walk.truncated = true;
    return;
  }
  const image = imageName(walk, folder, name);
  if (image === null) return;
  if (entry.isSymbolicLink() ? !(await linkedFile(walk, file)) : !entry.isFile()) return;
  if (walk.names.length >= walk.limits.maxImages) {
    walk.truncated = walk.full = true;
    return;
  }
  walk.names.push(image);
}

/** Reads one folder's entries; false once the walk must stop. */
async function readFolder(walk: Walk, folder: Folder, queue: Folder[]): Promise<boolean> {
  const dir = await opendir(folder.directory);
  try {
    for await (const entry of dir) {
      if (++walk.entries > walk.limits.maxEntries) {
        walk.truncated = true;
        return false;
      }
      await visit(walk, folder, entry, queue);
      if (walk.full) return false;
    }
  } finally {
    // Leaving the loop early closes the handle already; a second close is refused.
    await dir.close().catch(() => undefined);
  }
  return true;
}

/**
 * The images among the names an object store lists directly under the prefix (a store's listing
 * is flat: no folders are walked), by the same rules as a folder's files.
 */
export function storedImages(keys: readonly string[], suffix: string, limits: ListLimits = LIST_LIMITS): ImageList {
  const names = keys
    .filter((key) => !key.startsWith('.') && key.endsWith(suffix) && IMAGE_FILE.test(key))
    .map((key) => key.slice(0, key.length - suffix.length))
    .filter((name) => name !== '')
    .sort();
  return { ok: true, names: names.slice(0, limits.maxImages), truncated: names.length > limits.maxImages };
}

export async function listImages(rules: ListRules, limits: ListLimits = LIST_LIMITS): Promise<ImageList> {
  if (rules.prefix === '') return { ok: false, reason: 'FILESYSTEM_PREFIX is not set: there is no image folder to list.' };
  const start = startingFolder(rules.prefix);
  const walk: Walk = { rules, limits, realRoot: null, names: [], entries: 0, truncated: false, full: false };
  try {
    if (rules.confineSymlinks) walk.realRoot = await realpath(start.directory);
    const queue: Folder[] = [];
    await readFolder(walk, start, queue);
    for (let folder = queue.shift(); folder; folder = queue.shift()) {
      // A subfolder that cannot be read is left out; only the image folder itself must be readable.
      const more = await readFolder(walk, folder, queue).catch(() => true);
      if (!more) break;
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return { ok: false, reason: `The image folder (FILESYSTEM_PREFIX) cannot be read (${code}).` };
  }
  walk.names.sort();
  return { ok: true, names: walk.names, truncated: walk.truncated };
}
