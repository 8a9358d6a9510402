/**
 * OpenSeadragon's files, served from its npm package so that the page needs nothing from another
 * site. Only names of the shapes the package ships are looked up (its script and its button
 * images), so no request path can reach another file; the version is part of their URLs, so a
 * browser may keep them for good and an upgrade changes the URLs.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';

/** What may be asked for below `openseadragon/<version>/`. */
const SERVED = /^(?:openseadragon\.min\.js|images\/[a-z0-9_]+\.png)$/;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.js': 'text/javascript; charset=utf-8',
  '.png': 'image/png',
};

export interface Asset {
  contentType: string;
  body: Buffer;
}

export interface OpenSeadragonPackage {
  /** The folder holding openseadragon.min.js and images/. */
  buildDir: string;
  version: string;
}

/** Where the package is installed; throws when it is not (the page then says so). */
export function findOpenSeadragon(): OpenSeadragonPackage {
  const main = createRequire(import.meta.url).resolve('openseadragon');
  const buildDir = path.dirname(main);
  const manifest = JSON.parse(readFileSync(path.join(buildDir, '..', '..', 'package.json'), 'utf8')) as { version?: unknown };
  if (typeof manifest.version !== 'string' || !/^[0-9A-Za-z.+-]+$/.test(manifest.version)) throw new Error('openseadragon: no usable version in package.json');
  return { buildDir, version: manifest.version };
}

/**
 * Files are read once and kept: the allowed names are a fixed set of small files (under a
 * megabyte together), asked for by every page view.
 */
export class OpenSeadragonAssets {
  private readonly kept = new Map<string, Promise<Asset | null>>();

  constructor(private readonly pkg: OpenSeadragonPackage) {}

  get version(): string {
    return this.pkg.version;
  }

  /** @param relative the path below `openseadragon/<version>/`, as the request gave it; null: no such file */
  get(relative: string): Promise<Asset | null> {
    if (!SERVED.test(relative)) return Promise.resolve(null);
    let asset = this.kept.get(relative);
    if (!asset) {
      asset = this.read(relative);
      this.kept.set(relative, asset);
      // Only files that exist are kept: made-up names must not grow the map.
      void asset.then((found) => found ?? this.kept.delete(relative));
    }
    return asset;
  }

  private async read(relative: string): Promise<Asset | null> {
    try {
      const body = await readFile(path.join(this.pkg.buildDir, relative));
      return { contentType: CONTENT_TYPES[path.extname(relative)]!, body };
    } catch {
      return null;
    }
  }
}
