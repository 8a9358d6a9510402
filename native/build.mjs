// Builds build/jp2-decoder and build/jp2-encoder (native/*.c) when a C compiler and libopenjp2's
// headers (Debian libopenjp2-7-dev) are there. Never fails the build: without the decoder
// JPEG2000 is decoded by spawning opj_decompress, about twice as slow per tile; without the
// encoder the server does not write JPEG2000 (IIIF .jp2 is a 501, and info.json does not offer it).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PROGRAMS = [
  { name: 'jp2-decoder', without: 'JPEG2000 goes through opj_decompress' },
  { name: 'jp2-encoder', without: 'no JPEG2000 output' },
];

function flags() {
  const pkg = spawnSync('pkg-config', ['--cflags', '--libs', 'libopenjp2'], { encoding: 'utf8' });
  if (pkg.status === 0) return pkg.stdout.trim().split(/\s+/).filter(Boolean);
  const include = ['/usr/include/openjpeg-2.5', '/usr/local/include/openjpeg-2.5'].find((dir) => existsSync(path.join(dir, 'openjpeg.h')));
  return include ? [`-I${include}`, '-lopenjp2'] : null;
}

const compiler = process.env.CC || 'cc';
const found = flags();
for (const { name, without } of PROGRAMS) {
  const say = (line) => process.stderr.write(`${name}: ${line}\n`);
  const source = path.join(root, `native/${name}.c`);
  const target = path.join(root, `build/${name}`);
  if (process.env.IIPSRV_NO_JP2_HELPER) say(`skipped (IIPSRV_NO_JP2_HELPER): ${without}`);
  else if (!found) say(`libopenjp2 headers not found (apt-get install libopenjp2-7-dev): ${without}`);
  else {
    mkdirSync(path.dirname(target), { recursive: true });
    const temporary = `${target}.${process.pid}`;
    const result = spawnSync(compiler, ['-O2', '-Wall', '-o', temporary, source, ...found], { encoding: 'utf8' });
    if (result.status === 0) {
      renameSync(temporary, target);
    } else {
      rmSync(temporary, { force: true });
      say(`${compiler} failed (${without}): ${(result.error?.message ?? result.stderr).trim().slice(0, 500)}`);
    }
  }
}
