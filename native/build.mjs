// Builds build/jp2-decoder (native/jp2-decoder.c) when a C compiler and libopenjp2's headers
// (Debian libopenjp2-7-dev) are there. Never fails the build: without it JPEG2000 is decoded by
// spawning opj_decompress, about twice as slow per tile.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const source = path.join(root, 'native/jp2-decoder.c');
const target = path.join(root, 'build/jp2-decoder');
const say = (line) => process.stderr.write(`jp2-decoder: ${line}\n`);

function flags() {
  const pkg = spawnSync('pkg-config', ['--cflags', '--libs', 'libopenjp2'], { encoding: 'utf8' });
  if (pkg.status === 0) return pkg.stdout.trim().split(/\s+/).filter(Boolean);
  const include = ['/usr/include/openjpeg-2.5', '/usr/local/include/openjpeg-2.5'].find((dir) => existsSync(path.join(dir, 'openjpeg.h')));
  return include ? [`-I${include}`, '-lopenjp2'] : null;
}

const compiler = process.env.CC || 'cc';
const found = flags();
if (process.env.IIPSRV_NO_JP2_HELPER) say('skipped (IIPSRV_NO_JP2_HELPER): JPEG2000 goes through opj_decompress');
else if (!found) say('libopenjp2 headers not found (apt-get install libopenjp2-7-dev): JPEG2000 goes through opj_decompress');
else {
  mkdirSync(path.dirname(target), { recursive: true });
  const temporary = `${target}.${process.pid}`;
  const result = spawnSync(compiler, ['-O2', '-Wall', '-o', temporary, source, ...found], { encoding: 'utf8' });
  if (result.status === 0) {
    renameSync(temporary, target);
  } else {
    rmSync(temporary, { force: true });
    say(`${compiler} failed (JPEG2000 goes through opj_decompress): ${(result.error?.message ?? result.stderr).trim().slice(0, 500)}`);
  }
}
