/**
 * The shared tile engine every protocol talks to. It knows image files, never URLs: protocols ask
 * it for an image by the name the client used, and it applies the filesystem rules, opens the file
 * and (as it grows) reads tiles and regions through its caches.
 */
import { FileError } from '../errors.js';
import { inspectImageFile, type ImageFileInfo } from './image-file.js';
import { resolveImagePath, UnsafePathError, type ImagePathRules } from './image-path.js';

export interface EngineOptions {
  paths: ImagePathRules;
}

export class Engine {
  constructor(private readonly options: EngineOptions) {}

  /**
   * @param name the decoded image name from the request
   * @throws FileError when the name is unsafe or the file is not a readable image
   */
  async openImage(name: string): Promise<ImageFileInfo> {
    let path: string;
    try {
      path = resolveImagePath(name, this.options.paths);
    } catch (error) {
      if (error instanceof UnsafePathError) throw new FileError(`${safeName(name)}: ${error.message}`);
      throw error;
    }
    return inspectImageFile(path, safeName(name));
  }

  /** SIGHUP: forget everything cached so that replaced files and settings are read afresh. */
  flushCaches(): void {
    // Nothing is cached yet beyond what each request reads.
  }
}

/** Names go back to clients in error bodies: keep them printable. */
function safeName(name: string): string {
  return name.replace(/[\0-\x1f\x7f]/g, '?');
}
