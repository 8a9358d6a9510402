/**
 * Images in a directory of the local filesystem (or a network filesystem mounted there): iipsrv's
 * only kind of storage, and still the fastest (a synchronous stat per request, the page cache).
 */
import { opendir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PositionedFile, type RandomAccessFile } from '../tiff/positioned-file.js';
import { identifyImageFile, statImageFile, type ImageFileInfo, type ImageFileStat } from './image-file.js';
import { resolveImagePath } from './image-path.js';
import { LOCAL_DIRECTORIES } from './image-sequence.js';
import type { DirectoryLister, ImageStorage } from './storage.js';

export class LocalStorage implements ImageStorage {
  readonly local = true;
  readonly directories: DirectoryLister = LOCAL_DIRECTORIES;
  /** What /health lists: the prefix's directory (a prefix may end inside a file name). */
  private readonly folder: string;

  constructor(private readonly prefix: string) {
    this.folder = prefix === '' ? '.' : prefix.endsWith('/') ? prefix : dirname(prefix) + '/';
  }

  resolve(name: string, suffix: string): string {
    return resolveImagePath(name, { prefix: this.prefix, suffix });
  }

  stat(location: string, printable: string): ImageFileStat {
    return statImageFile(location, printable);
  }

  identify(file: ImageFileStat, printable: string): Promise<ImageFileInfo> {
    return identifyImageFile(file, printable);
  }

  openRandomAccess(file: ImageFileInfo): Promise<RandomAccessFile> {
    return PositionedFile.open(file.path);
  }

  localPath(file: ImageFileInfo): Promise<string> {
    return Promise.resolve(file.path);
  }

  usable(): boolean {
    return true;
  }

  async check(): Promise<{ ok: boolean; folder: string; error?: string }> {
    const folder = this.folder;
    try {
      await (await opendir(folder)).close();
      return { ok: true, folder };
    } catch (error) {
      return { ok: false, folder, error: (error as NodeJS.ErrnoException).code ?? (error as Error).message };
    }
  }
}
