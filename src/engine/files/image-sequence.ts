/**
 * iipsrv's image sequences (panoramas, multispectral stacks): a name that is not a file stands for
 * the files `<name><FILENAME_PATTERN><HHH>_<VVV>.<ext>`, one per view, HHH the horizontal angle
 * (or spectral band) and VVV the vertical angle, zero-padded to three digits. The sequence must
 * have the view 000_090; its extension is the extension of every view.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { FileError } from '../../errors.js';
import type { DirectoryLister } from './storage.js';

export interface ImageSequence {
  /** Absolute path up to the angles: directory + name + pattern. */
  stem: string;
  /** The part of the stem clients may see (name + pattern), for messages. */
  printableStem: string;
  /** Without the dot. */
  extension: string;
  /** Angles of the views at vertical 90 (the bands of a multispectral sequence), ascending. */
  horizontal: number[];
  /** Angles of the views at horizontal 0, ascending. */
  vertical: number[];
}

/** The angles a single image answers for: it is its own only view. */
export const SINGLE_VIEW = { horizontal: [0], vertical: [90] } as const;

export const DEFAULT_VIEW = { horizontal: 0, vertical: 90 } as const;

/** `%03d`, as iipsrv formats the angles in file names. */
function angle(value: number): string {
  return value < 0 ? '-' + String(-value).padStart(2, '0') : String(value).padStart(3, '0');
}

export function viewFileName(sequence: ImageSequence, horizontal: number, vertical: number): string {
  return `${angle(horizontal)}_${angle(vertical)}.${sequence.extension}`;
}

export function viewPath(sequence: ImageSequence, horizontal: number, vertical: number): string {
  return sequence.stem + viewFileName(sequence, horizontal, vertical);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** What a directory held when its mtime was `mtimeMs`: the names that may be views, sorted. */
interface Listing {
  mtimeMs: number;
  names: string[];
  /** Read while the mtime was too recent to vouch for it: read again next time. */
  unsure: boolean;
}

/**
 * Filesystems that keep times in whole seconds (or coarser) may give a file added in the same
 * second as the listing no new mtime: listings of so young a directory are not trusted.
 */
const MTIME_GRANULARITY_MS = 2000;

/** Directories on the local disk: their mtime changes when an entry is added, removed or renamed. */
export const LOCAL_DIRECTORIES: DirectoryLister = {
  async look(directory) {
    const info = await stat(directory).catch(() => null);
    return info?.isDirectory() ? { version: info.mtimeMs, settleMs: MTIME_GRANULARITY_MS } : null;
  },
  list: (directory) => readdir(directory),
};

/**
 * Finds sequences in their directory, and reads a directory again only when it changed (a file
 * added, removed or renamed changes its mtime), so that asking for any name, found or missing,
 * costs one stat of its directory. Without this, every new missing name read its whole directory
 * (44.9 ms a request in a directory of 60 000 files). Of a listing only the names that can be
 * views are kept (the pattern, then `HHH_VVV`), so plain image directories cost next to nothing;
 * the names kept are bounded over all directories, and a directory with more views than that is
 * read each time, as before.
 */
export class SequenceFinder {
  private readonly listings = new Map<string, Listing>();
  private readonly reading = new Map<string, Promise<Listing | null>>();
  private namesHeld = 0;

  /**
   * @param pattern FILENAME_PATTERN, which every view's name contains
   * @param maxNames names kept over all directories
   * @param maxDirectories directories remembered
   */
  constructor(
    private readonly pattern = '_pyr_',
    private readonly directories: DirectoryLister = LOCAL_DIRECTORIES,
    private readonly maxNames = 200_000,
    private readonly maxDirectories = 1000,
  ) {}

  /**
   * @param stem absolute path up to the angles (directory + name + pattern)
   * @param printableStem what messages may show of it
   * @param printableName the image name, for messages
   * @throws FileError with iipsrv's messages when there is no 000_090 view or several extensions
   */
  async find(stem: string, printableStem: string, printableName: string): Promise<ImageSequence> {
    const directory = path.dirname(stem);
    const look = await this.directories.look(directory).catch(() => null);
    if (!look) throw notASequence(printableName);
    const mtimeMs = look.version;
    let listing: Listing | null | undefined = this.listings.get(directory);
    if (listing && listing.mtimeMs !== mtimeMs) {
      this.forget(directory);
      listing = undefined;
    }
    if (listing) {
      // Most recently used last, so that eviction takes the oldest.
      this.listings.delete(directory);
      this.listings.set(directory, listing);
    } else {
      listing = await this.read(directory, mtimeMs, look.settleMs);
    }
    if (!listing) throw notASequence(printableName);
    const found = sequenceIn(listing.names, stem, printableStem, printableName);
    if (found instanceof FileError) throw found;
    return found;
  }

  clear(): void {
    this.listings.clear();
    this.namesHeld = 0;
  }

  /** Reads a directory once however many requests wait for it. Null when it cannot be read. */
  private read(directory: string, mtimeMs: number, settleMs: number): Promise<Listing | null> {
    const key = `${mtimeMs}:${directory}`;
    let reading = this.reading.get(key);
    if (!reading) {
      reading = this.directories
        .list(directory)
        .then((entries) => {
          const names = entries.filter((name) => name.includes(this.pattern) && VIEW_ANGLES.test(name)).sort();
          const listing: Listing = { mtimeMs, names, unsure: Date.now() - mtimeMs < settleMs };
          this.remember(directory, listing);
          return listing;
        })
        .catch(() => null)
        .finally(() => this.reading.delete(key));
      this.reading.set(key, reading);
    }
    return reading;
  }

  private remember(directory: string, listing: Listing): void {
    this.forget(directory);
    if (listing.unsure || listing.names.length > this.maxNames) return;
    this.listings.set(directory, listing);
    this.namesHeld += listing.names.length;
    while (this.listings.size > this.maxDirectories || this.namesHeld > this.maxNames) this.forget(this.listings.keys().next().value!);
  }

  private forget(directory: string): void {
    const listing = this.listings.get(directory);
    if (!listing) return;
    this.listings.delete(directory);
    this.namesHeld -= listing.names.length;
  }
}

/** The angles of a view's name: `000_090.` (after the pattern), which every view has. */
const VIEW_ANGLES = /\d{3}_\d{3}/;

/** The range of sorted `names` that start with `prefix`. */
function withPrefix(names: readonly string[], prefix: string): readonly string[] {
  let low = 0;
  let high = names.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (names[middle]! < prefix) low = middle + 1;
    else high = middle;
  }
  let end = low;
  while (end < names.length && names[end]!.startsWith(prefix)) end++;
  return names.slice(low, end);
}

function notASequence(printableName: string): FileError {
  return new FileError(`${printableName} is neither a file nor part of an image sequence`);
}

/** The sequence `stem` names among a directory's (sorted) entries, or why there is none. */
function sequenceIn(sorted: readonly string[], stem: string, printableStem: string, printableName: string): ImageSequence | FileError {
  const base = path.basename(stem);
  const entries = withPrefix(sorted, base);
  const first = `${base}000_090.`;
  const firstViews = entries.filter((entry) => entry.startsWith(first) && entry.length > first.length);
  if (firstViews.length === 0) return notASequence(printableName);
  if (firstViews.length > 1) return new FileError(`There are multiple file extensions matching ${printableStem}000_090.*`);
  const extension = firstViews[0]!.slice(first.length);
  const quoted = escapeRegExp(base);
  const tail = escapeRegExp('.' + extension);
  const numbers = (pattern: RegExp) =>
    [
      ...new Set(
        entries
          .map((entry) => pattern.exec(entry)?.[1])
          .filter((n): n is string => n !== undefined)
          .map(Number),
      ),
    ].sort((a, b) => a - b);
  return {
    stem,
    printableStem,
    extension,
    horizontal: numbers(new RegExp(`^${quoted}(\\d{3,})_090${tail}$`)),
    vertical: numbers(new RegExp(`^${quoted}000_(\\d{3,})${tail}$`)),
  };
}
