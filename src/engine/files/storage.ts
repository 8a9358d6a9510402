/**
 * Where images are read from: the local filesystem (FILESYSTEM_PREFIX a directory) or an object
 * store (FILESYSTEM_PREFIX `s3://...` or `http(s)://...`, see store/remote-storage.ts). The rest of
 * the engine sees only this contract: names become locations, locations are looked at on every
 * request (so a replaced image is never served stale) and opened for reading by byte ranges; the
 * decoders that need a file on disk (JPEG2000, libvips' readers) ask for one.
 */
import type { RandomAccessFile } from '../tiff/positioned-file.js';
import type { ImageFileInfo, ImageFileStat } from './image-file.js';

/** A directory's entries for the image sequences, and when to read them again. */
export interface DirectoryLister {
  /**
   * A number that changes when the directory's entries may have changed; null when there is no
   * such directory. Listings younger than `settleMs` are not kept (a filesystem's times are coarse).
   */
  look(directory: string): Promise<{ version: number; settleMs: number } | null>;
  /** @throws when the directory cannot be listed */
  list(directory: string): Promise<string[]>;
}

export interface ImageStorage {
  /** True for the local filesystem, where links, real paths and file identities mean something. */
  readonly local: boolean;
  /**
   * The location of a decoded name with a suffix appended.
   * @throws UnsafePathError when the name would lead outside FILESYSTEM_PREFIX
   */
  resolve(name: string, suffix: string): string;
  /**
   * What a location holds now (synchronously where that is cheaper, as on a local disk).
   * @throws FileError when there is nothing there; the store's errors (AccessDeniedError ...)
   */
  stat(location: string, printable: string): ImageFileStat | Promise<ImageFileStat>;
  /**
   * Its format, from the magic bytes.
   * @throws FileError, InvalidArgumentError (not an image we read)
   */
  identify(file: ImageFileStat, printable: string): Promise<ImageFileInfo>;
  /** Opened for positioned reads (the TIFF reader). */
  openRandomAccess(file: ImageFileInfo): Promise<RandomAccessFile>;
  /** A path on the local disk holding the file's bytes, for decoders that read files themselves. */
  localPath(file: ImageFileInfo, printable: string): Promise<string>;
  /** Whether a file opened earlier can still be read as it was opened (its local copy still exists). */
  usable(file: ImageFileInfo): boolean;
  readonly directories: DirectoryLister;
  /**
   * Keys directly under the prefix, relative to it, at most `limit` (for the viewer's list); absent
   * for the local filesystem, whose folders the viewer walks itself.
   * @throws an engine error (BadGatewayError when the store cannot list, UnavailableError ...)
   */
  listTop?(limit: number): Promise<string[]>;
  /** Counters for /metrics (an object store's requests and failures); absent for the local filesystem. */
  stats?(): Record<string, number>;
  /** SIGHUP: forget what was learnt of the files (their versions, their structure). */
  flush?(): void;
  /** For /health: can images be read at all? */
  check(): Promise<{ ok: boolean; folder: string; error?: string }>;
}
