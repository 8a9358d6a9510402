/**
 * From the name a client used to an open image: the filesystem rules (prefix, suffix, no escape),
 * image sequences, and a bounded cache of parsed files. Every request looks at the file's time, so
 * that a replaced file is never served stale; only a file not seen before, or changed since, is
 * opened and parsed again.
 */
import sharp from 'sharp';
import { FileError } from '../../errors.js';
import type { ImageSource } from '../source.js';
import type { ImageFileInfo, ImageFileStat } from './image-file.js';
import { RealPathCheck, UnsafePathError, type ImagePathRules } from './image-path.js';
import { SequenceFinder, viewFileName, viewPath, type ImageSequence } from './image-sequence.js';
import type { ImageStorage } from './storage.js';

export interface OpenImage {
  /** The name as the client gave it (decoded): used in messages and file names. */
  name: string;
  /** The file read (for a sequence, the file of the selected view): cache keys follow it. */
  file: ImageFileInfo;
  source: ImageSource;
  /**
   * The time clients see (Last-Modified, If-Modified-Since), in seconds: the file's, or for every
   * view of a sequence its 000_090 file's, as iipsrv does.
   */
  modifiedSeconds: number;
  /** Set when the name is an image sequence; this image is then one of its views. */
  sequence?: ImageSequence;
  /** The page of a stack (multi-page TIFF) this image is, counted from 0; absent for page 0 and single images. */
  page?: number;
}

/** Makes the source of an identified file (by its format), or of a page of it when it is a stack. */
export type SourceOpener = (file: ImageFileInfo, name: string, page: number) => Promise<ImageSource>;

export interface OpenImagesOptions {
  paths: ImagePathRules;
  /** Where the files are: the local filesystem or an object store. */
  storage: ImageStorage;
  /** Parsed files kept open; 0 = none (re-read every request), -1 = unbounded (up to the ceiling). */
  maxOpen: number;
  /** FILENAME_PATTERN: what joins a sequence's name and its views' angles. */
  filenamePattern: string;
  openSource: SourceOpener;
}

/** What the open-file cache keeps of a parsed file. */
type OpenFile = Pick<OpenImage, 'file' | 'source'>;

/** Most open files a worker keeps, whatever MAX_METADATA_CACHE_SIZE says: file descriptors are finite. */
const OPEN_FILE_CEILING = 256;

export class OpenImages {
  private readonly open = new Map<string, Promise<OpenFile>>();
  private readonly maxOpen: number;
  private readonly sequences: SequenceFinder;
  /** Null unless FILESYSTEM_CONFINE_SYMLINKS. */
  private readonly realPaths: RealPathCheck | null;

  constructor(private readonly options: OpenImagesOptions) {
    this.sequences = new SequenceFinder(options.filenamePattern, options.storage.directories);
    // Links exist only on a filesystem.
    this.realPaths = options.paths.confineSymlinks && options.storage.local ? new RealPathCheck(options.paths.prefix) : null;
    const requested = options.maxOpen;
    this.maxOpen = requested < 0 ? OPEN_FILE_CEILING : Math.min(requested, OPEN_FILE_CEILING);
  }

  /**
   * The image a name stands for: its file, or when there is none, the 000_090 view of the image
   * sequence of that name (iipsrv's convention).
   * @param name the decoded image name from the request
   * @throws FileError when the name is unsafe or neither a readable image nor a sequence
   */
  async openImage(name: string): Promise<OpenImage> {
    const printable = printableName(name);
    const path = this.resolve(name, this.options.paths.suffix, printable);
    let stat;
    try {
      stat = await this.options.storage.stat(path, printable);
    } catch (error) {
      if (!(error instanceof FileError)) throw error;
      return this.openSequence(name, printable);
    }
    const file = await this.openFile(stat, printable);
    return { ...file, name, modifiedSeconds: file.file.mtimeSeconds };
  }

  private async openSequence(name: string, printable: string): Promise<OpenImage> {
    const pattern = this.options.filenamePattern;
    // Sequences take the pattern where single files take FILESYSTEM_SUFFIX (as iipsrv 1.3).
    const stem = this.resolve(name, pattern, printable);
    // Not even the listing of a directory a link leads out to.
    if (this.realPaths && !this.realPaths.placeInside(stem)) throw outside(printable);
    const sequence = await this.sequences.find(stem, printable + pattern, printable);
    const first = viewPath(sequence, 0, 90);
    const stat = await this.options.storage.stat(first, printable + pattern + viewFileName(sequence, 0, 90));
    const file = await this.openFile(stat, printable);
    return { ...file, name, modifiedSeconds: file.file.mtimeSeconds, sequence };
  }

  /**
   * The view of `image`'s sequence at these angles (SDS, JTLS), an image like any other whose
   * caches follow its own file; of a stack (multi-page TIFF), as in master iipsrv, the page
   * `horizontal` (counted from 0; the vertical angle is ignored); a single image is its own only
   * view, whatever the angles.
   * @throws FileError when the sequence has no such view, or the stack no such page
   */
  async openView(image: OpenImage, horizontal: number, vertical: number): Promise<OpenImage> {
    const { sequence } = image;
    if (!sequence) return image.source.description.stack ? this.openPage(image, horizontal) : image;
    const path = viewPath(sequence, horizontal, vertical);
    const printable = sequence.printableStem + viewFileName(sequence, horizontal, vertical);
    let stat;
    try {
      stat = await this.options.storage.stat(path, printable);
    } catch (error) {
      if (error instanceof FileError) throw new FileError(`${printableName(image.name)} has no view ${horizontal},${vertical}: ${printable} is missing`);
      throw error;
    }
    const file = await this.openFile(stat, printableName(image.name));
    return { ...file, name: image.name, modifiedSeconds: image.modifiedSeconds, sequence };
  }

  /**
   * The page `page` (from 0) of a stack, an image like any other, read and cached apart from the
   * other pages of its file.
   * @throws FileError when the stack has no such page, or the file changed into one without it
   */
  async openPage(image: OpenImage, page: number): Promise<OpenImage> {
    const stack = image.source.description.stack;
    if (!stack) return image;
    if ((image.page ?? 0) === page) return image;
    const printable = printableName(image.name);
    if (!Number.isInteger(page) || page < 0 || page >= stack.length) {
      throw new FileError(`${printable} has no page ${page}: the stack has ${stack.length} page${stack.length === 1 ? '' : 's'} (counted from 0)`);
    }
    const stat = await this.options.storage.stat(image.file.path, printable);
    const file = await this.openFile(stat, printable, page);
    return { ...file, name: image.name, modifiedSeconds: file.file.mtimeSeconds, ...(page > 0 ? { page } : {}) };
  }

  /** SIGHUP: forget every parsed file and sequence, so that replaced files are read afresh. */
  flush(): void {
    this.sequences.clear();
    dropDecoderCache();
    for (const path of [...this.open.keys()]) this.forget(path);
  }

  private resolve(name: string, suffix: string, printable: string): string {
    try {
      return this.options.storage.resolve(name, suffix);
    } catch (error) {
      if (error instanceof UnsafePathError) throw new FileError(`${printable}: ${error.message}`);
      throw error;
    }
  }

  /** A parsed file (a page of it), from the open-file cache when it has not changed since. */
  private async openFile(stat: ImageFileStat, printable: string, page = 0): Promise<OpenFile> {
    const { path: file } = stat;
    if (this.realPaths && !this.realPaths.fileInside(file, stat)) throw outside(printable);
    // Each page of a stack is parsed and kept apart (its levels are its own).
    const path = page > 0 ? `${file}\0${page}` : file;
    const known = this.open.get(path);
    if (known) {
      const image = await known.catch(() => null);
      if (image && image.file.version === stat.version && image.file.size === stat.size && this.options.storage.usable(image.file)) {
        // Most recently used last, so that eviction takes the oldest.
        this.open.delete(path);
        this.open.set(path, known);
        return image;
      }
      this.forget(path);
      // libvips caches opened files by name: without this it would go on decoding the old file.
      dropDecoderCache();
    }
    const opening = this.options.storage
      .identify(stat, printable)
      .then(async (info) => ({ file: info, source: await this.options.openSource(info, printable, page) }));
    if (this.maxOpen > 0) {
      this.open.set(path, opening);
      opening.catch(() => {
        if (this.open.get(path) === opening) this.open.delete(path);
      });
      while (this.open.size > this.maxOpen) this.forget(this.open.keys().next().value!);
    }
    return opening;
  }

  private forget(path: string): void {
    const entry = this.open.get(path);
    this.open.delete(path);
    // Requests still using it hold their own reference; closing later costs nothing.
    entry?.then(
      (image) => setTimeout(() => void image.source.close().catch(() => undefined), 30_000).unref(),
      () => undefined,
    );
  }
}

function outside(printable: string): FileError {
  return new FileError(`${printable} leads outside the image directory`);
}

/** Names go back to clients in error bodies: keep them printable. */
function printableName(name: string): string {
  // eslint-disable-next-line no-control-regex -- the control characters are what it replaces
  return name.replace(/[\0-\x1f\x7f]/g, '?');
}

/** Empties libvips' cache of opened files and operations, keeping its limits. */
function dropDecoderCache(): void {
  const { memory, files, items } = sharp.cache();
  sharp.cache(false);
  sharp.cache({ memory: memory.max, files: files.max, items: items.max });
}
