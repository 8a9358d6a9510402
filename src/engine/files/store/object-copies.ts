/**
 * Local copies of objects for the decoders that read files themselves (OpenJPEG, libvips' readers
 * of plain images and of TIFF compressions we do not decode): downloaded once per host into
 * REMOTE_CACHE_DIR, shared by the workers and instances that use the directory, named after the
 * object's location and version, and kept under REMOTE_CACHE_SIZE, least recently used first.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { stat, utimes } from 'node:fs/promises';
import { ServerFailureError } from '../../../errors.js';
import { FileCache } from '../../cache/file-cache.js';
import type { ObjectStore } from './object-store.js';
import type { RemoteObject } from './remote-file.js';

/** How often a copy in use has its time touched, so that the clean-up sees it is in use. */
const TOUCH_EVERY_MS = 60_000;
/** Between two looks for a copy another process is downloading. */
const POLL_MS = 100;
/** Copies remembered for {@link ObjectCopies.usable}; beyond this the oldest are forgotten (and looked up again). */
const MAX_REMEMBERED = 10_000;

export interface ObjectCopiesOptions {
  dir: string;
  maxBytes: number;
  /** Longest a request waits for a download (its own or another process's). */
  waitMs: number;
}

export class ObjectCopies {
  private readonly files: FileCache;
  /** Copies this process handed out, by identity, and when they were last touched. */
  private readonly made = new Map<string, { path: string; touched: number }>();

  constructor(
    private readonly store: ObjectStore,
    private readonly options: ObjectCopiesOptions,
    /** Turns a store's failure into the error clients get. */
    private readonly failure: (error: unknown) => Error,
  ) {
    // A failed download (the store was down) is tried again by the next request.
    this.files = new FileCache({ dir: options.dir, suffix: '.obj', maxBytes: options.maxBytes, retryFailedMs: 0 });
  }

  /**
   * The path of a complete local copy of the object.
   * @throws ServerFailureError when the object is larger than the whole cache; UnavailableError & co. from `failure`
   */
  async path(object: RemoteObject, printable: string): Promise<string> {
    if (object.size > this.options.maxBytes) {
      throw new ServerFailureError(
        `${printable}: reading this image needs a local copy of ${object.size} bytes, more than REMOTE_CACHE_SIZE (${this.options.maxBytes} bytes)`,
      );
    }
    const key = createHash('sha256').update(object.identity).digest('hex').slice(0, 40);
    const deadline = Date.now() + this.options.waitMs;
    for (;;) {
      const path = await this.files.build(key, async (temporary) => {
        let written;
        try {
          written = await this.store.download(object.key, temporary, object.etag);
        } catch (error) {
          throw this.failure(error);
        }
        const size = (await stat(temporary)).size;
        if (size !== object.size || written.size !== object.size) {
          throw this.failure(new Error(`the download has ${size} bytes where the object has ${object.size}`));
        }
      });
      if (path) {
        this.made.delete(object.identity);
        this.made.set(object.identity, { path, touched: Date.now() });
        if (this.made.size > MAX_REMEMBERED) this.made.delete(this.made.keys().next().value!);
        return path;
      }
      // Another process is downloading it.
      if (Date.now() > deadline) throw this.failure(new Error(`no local copy within ${this.options.waitMs} ms`));
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /**
   * Whether the copy handed out for `identity` (if any) is still there; a use now and then keeps
   * the clean-up away from it.
   */
  usable(identity: string): boolean {
    const copy = this.made.get(identity);
    if (!copy) return true;
    if (!existsSync(copy.path)) {
      this.made.delete(identity);
      return false;
    }
    const now = Date.now();
    if (now - copy.touched > TOUCH_EVERY_MS) {
      copy.touched = now;
      void utimes(copy.path, new Date(now), new Date(now)).catch(() => undefined);
    }
    return true;
  }
}
