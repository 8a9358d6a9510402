/**
 * iipsrv's image sequences (panoramas, multispectral stacks): a name that is not a file stands for
 * the files `<name><FILENAME_PATTERN><HHH>_<VVV>.<ext>`, one per view, HHH the horizontal angle
 * (or spectral band) and VVV the vertical angle, zero-padded to three digits. The sequence must
 * have the view 000_090; its extension is the extension of every view.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { FileError } from '../../errors.js';

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

/**
 * Lists sequences from their directory, and lists again only when the directory changed (a view
 * added, removed or renamed changes its mtime), so that a request costs one stat of the directory.
 * Names that are no sequence are remembered the same way: asking again for a missing image does
 * not read the directory again.
 */
export class SequenceFinder {
  private readonly listings = new Map<string, { mtimeMs: number; found: ImageSequence | FileError }>();

  constructor(private readonly maxEntries = 1000) {}

  /**
   * @param stem absolute path up to the angles (directory + name + pattern)
   * @param printableStem what messages may show of it
   * @param printableName the image name, for messages
   * @throws FileError with iipsrv's messages when there is no 000_090 view or several extensions
   */
  async find(stem: string, printableStem: string, printableName: string): Promise<ImageSequence> {
    const directory = path.dirname(stem);
    let mtimeMs: number;
    try {
      const info = await stat(directory);
      if (!info.isDirectory()) throw new Error('not a directory');
      mtimeMs = info.mtimeMs;
    } catch {
      throw notASequence(printableName);
    }
    let known = this.listings.get(stem);
    if (!known || known.mtimeMs !== mtimeMs) {
      let entries: string[] | null = null;
      try {
        entries = await readdir(directory);
      } catch {
        // Unreadable: no sequence, until the directory changes.
      }
      known = { mtimeMs, found: entries ? sequenceIn(entries, stem, printableStem, printableName) : notASequence(printableName) };
      this.listings.delete(stem);
      this.listings.set(stem, known);
      while (this.listings.size > this.maxEntries) this.listings.delete(this.listings.keys().next().value!);
    }
    if (known.found instanceof FileError) throw known.found;
    return known.found;
  }

  clear(): void {
    this.listings.clear();
  }
}

function notASequence(printableName: string): FileError {
  return new FileError(`${printableName} is neither a file nor part of an image sequence`);
}

/** The sequence `stem` names among a directory's entries, or why there is none. */
function sequenceIn(entries: string[], stem: string, printableStem: string, printableName: string): ImageSequence | FileError {
  const base = path.basename(stem);
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
