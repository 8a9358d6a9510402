/**
 * `mkdir -p` that always ends. Node's own recursive mkdir never returns for some paths of
 * pseudo-filesystems (`/proc/nope/log`: mkdir says ENOENT, the parent exists, and it tries again
 * for ever), which would leave a worker starting for ever on a mistyped LOGFILE, or a request
 * waiting for ever on a mistyped PYRAMID_CACHE_DIR. Here each level is made once, and the second
 * refusal of a level is the answer.
 */
import { mkdirSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** Deeper than any real path: past this, give up. */
const MAX_DEPTH = 128;

function code(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

export function makeDirectoriesSync(dir: string, depth = 0): void {
  try {
    mkdirSync(dir);
    return;
  } catch (error) {
    if (code(error) === 'EEXIST' && statSync(dir).isDirectory()) return;
    const parent = path.dirname(dir);
    if (code(error) !== 'ENOENT' || parent === dir || depth >= MAX_DEPTH) throw error;
  }
  makeDirectoriesSync(path.dirname(dir), depth + 1);
  mkdirSync(dir);
}

export async function makeDirectories(dir: string, depth = 0): Promise<void> {
  try {
    await mkdir(dir);
    return;
  } catch (error) {
    if (code(error) === 'EEXIST' && (await stat(dir)).isDirectory()) return;
    const parent = path.dirname(dir);
    if (code(error) !== 'ENOENT' || parent === dir || depth >= MAX_DEPTH) throw error;
  }
  await makeDirectories(path.dirname(dir), depth + 1);
  // A directory made meanwhile by another process is as good.
  await mkdir(dir).catch(async (error: unknown) => {
    if (code(error) !== 'EEXIST' || !(await stat(dir)).isDirectory()) throw error;
  });
}
