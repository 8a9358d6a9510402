/**
 * Turns the image name a client sent (FIF, an IIIF identifier, a DeepZoom path) into the file path
 * to open, the way iipsrv does (FILESYSTEM_PREFIX + name + FILESYSTEM_SUFFIX, plain concatenation)
 * but without its holes: a name can never reach a file outside the prefix, whatever its encoding.
 */
import path from 'node:path';

export interface ImagePathRules {
  prefix: string;
  suffix: string;
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
  const full = rules.prefix + name + rules.suffix;
  if (rules.prefix !== '') {
    // The prefix may end in a directory separator or in the start of a file name (`/data/img_`);
    // either way the resolved file must stay inside the directory the prefix names.
    const root = rules.prefix.endsWith('/') ? path.resolve(rules.prefix) : path.dirname(path.resolve(rules.prefix + 'x'));
    const resolved = path.resolve(full);
    if (resolved !== root && !resolved.startsWith(root.endsWith('/') ? root : root + '/')) {
      throw new UnsafePathError('image name leaves the image directory');
    }
    return resolved;
  }
  return path.resolve(full);
}
