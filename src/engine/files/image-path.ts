/**
 * Turns the image name a client sent (FIF, an IIIF identifier, a DeepZoom path) into the file path
 * to open, the way iipsrv does (FILESYSTEM_PREFIX + name + FILESYSTEM_SUFFIX, plain concatenation)
 * but without its holes: a name can never reach a file outside the prefix, whatever its encoding.
 *
 * What "inside the prefix" means when the prefix does not end in `/`: iipsrv sites use both
 * `/data/images` with names such as `/a.tif` (a directory whose slash the names bring) and
 * `/data/img_` with names such as `001.tif` (the start of file names). Both keep working: such a
 * prefix reaches anything inside a directory named exactly `images` (or `img_`), and files directly
 * in `/data` whose names start with `images` (or `img_`). It never reaches into a directory that
 * merely starts so: iipsrv let `images` + `_private/x.tif` read `/data/images_private/x.tif`.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';

export interface ImagePathRules {
  prefix: string;
  suffix: string;
  /** FILESYSTEM_CONFINE_SYMLINKS: refuse files whose links lead outside the prefix (see RealPathCheck). */
  confineSymlinks?: boolean;
}

export class UnsafePathError extends Error {
  override name = 'UnsafePathError';
}

/**
 * Decodes the way iipsrv's FIF does: `+` is a space, `%XX` a byte; a malformed `%` passes through.
 * Bytes are then read as UTF-8 since that is how every current client encodes names.
 */
export function decodeImageName(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const ch = raw.charCodeAt(i);
    if (ch === 0x2b /* + */) {
      bytes.push(0x20);
    } else if (ch === 0x25 /* % */ && /^[0-9a-fA-F]{2}$/.test(raw.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (ch < 0x80) {
      bytes.push(ch);
    } else {
      for (const b of Buffer.from(raw[i]!, 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Where names may lead: everything inside `directory`, or with a `stem` only what starts with it. */
interface Scope {
  directory: string;
  /** Files directly in `directory` whose names start with it, and the directory of that name. */
  stem: string | null;
}

function prefixScope(prefix: string): Scope {
  if (prefix.endsWith('/')) return { directory: path.resolve(prefix), stem: null };
  // `x` keeps what ends the prefix (a dot, a dash) part of the file name.
  const resolved = path.resolve(prefix + 'x');
  return { directory: path.dirname(resolved), stem: path.basename(resolved).slice(0, -1) };
}

/**
 * The scope `file` falls in (with a stem, the one directory or the files it names), or null when
 * it is outside.
 */
function scopeOf(file: string, scope: Scope): Scope | null {
  const relative = path.relative(scope.directory, file);
  if (relative === '..' || relative.startsWith('../') || path.isAbsolute(relative)) return null;
  if (scope.stem === null || relative === '') return scope;
  const slash = relative.indexOf('/');
  if (slash < 0) return relative.startsWith(scope.stem) ? scope : null;
  return relative.slice(0, slash) === scope.stem ? { directory: path.join(scope.directory, scope.stem), stem: null } : null;
}

/**
 * Resolves a decoded image name to a path under the prefix. Refuses NUL bytes and any `..` path
 * segment (with `/` or `\` separators) instead of iipsrv's repeated `../` stripping, which is both
 * surprising (`....//` vanishes) and incomplete (`..` at the end, backslashes).
 */
export function resolveImagePath(name: string, rules: ImagePathRules): string {
  if (name === '') throw new UnsafePathError('empty image name');
  if (name.includes('\0')) throw new UnsafePathError('image name contains a NUL byte');
  if (name.split(/[/\\]/).some((segment) => segment === '..')) {
    throw new UnsafePathError('image name climbs out of the image directory');
  }
  const resolved = path.resolve(rules.prefix + name + rules.suffix);
  if (rules.prefix !== '' && !scopeOf(resolved, prefixScope(rules.prefix))) {
    throw new UnsafePathError('image name leaves the image directory');
  }
  return resolved;
}

/**
 * FILESYSTEM_CONFINE_SYMLINKS: is a file, its symbolic links followed, inside the prefix by the
 * same rules as its name (inside the prefix's own real directory, which may itself be a link)?
 * Answers are kept per path and file identity (device and inode, from the stat every request makes
 * anyway), so a request pays a map lookup; a link pointed elsewhere leads to another file and is
 * checked again. iipsrv follows every link.
 */
export class RealPathCheck {
  private readonly known = new Map<string, { dev: number; ino: number; inside: boolean }>();
  private readonly scope: Scope | null;

  constructor(
    prefix: string,
    private readonly maxEntries = 10_000,
  ) {
    this.scope = prefix === '' ? null : prefixScope(prefix);
  }

  /** For an existing file: every link on its path followed, itself included. */
  fileInside(file: string, identity: { dev: number; ino: number }): boolean {
    const known = this.known.get(file);
    if (known && known.dev === identity.dev && known.ino === identity.ino) return known.inside;
    const inside = this.inside(file, () => realpathSync.native(file));
    if (this.known.size >= this.maxEntries) this.known.delete(this.known.keys().next().value!);
    this.known.set(file, { dev: identity.dev, ino: identity.ino, inside });
    return inside;
  }

  /** For a place that need not exist (where a sequence's views would be): its directory's links followed. */
  placeInside(file: string): boolean {
    return this.inside(file, () => path.join(realpathSync.native(path.dirname(file)), path.basename(file)));
  }

  private inside(file: string, real: () => string): boolean {
    if (this.scope === null) return true;
    const scope = scopeOf(file, this.scope);
    if (!scope) return false;
    try {
      return scopeOf(real(), { directory: realpathSync.native(scope.directory), stem: scope.stem }) !== null;
    } catch {
      // Gone, or a link to nowhere: nothing to serve.
      return false;
    }
  }
}
