// Builds build/jp2-decoder and build/jp2-encoder (native/*.c) when a C compiler and libopenjp2's
// headers (Debian libopenjp2-7-dev) are there, and build/jph-decoder (native/jph-decoder.cpp) when
// a C++ compiler and libopenjph's (Debian libopenjph-dev) are. Never fails the build: without the
// decoder JPEG2000 is decoded by spawning opj_decompress, about twice as slow per tile; without the
// encoder the server does not write JPEG2000 (IIIF .jp2 is a 501, and info.json does not offer it);
// without jph-decoder HTJ2K is decoded by OpenJPEG, a whole codestream tile at a time.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PROGRAMS = [
  { name: 'jp2-decoder', source: 'jp2-decoder.c', library: 'openjp2', without: 'JPEG2000 goes through opj_decompress' },
  { name: 'jp2-encoder', source: 'jp2-encoder.c', library: 'openjp2', without: 'no JPEG2000 output' },
  { name: 'jph-decoder', source: 'jph-decoder.cpp', library: 'openjph', without: 'HTJ2K is decoded by OpenJPEG, whole codestream tiles at a time' },
];

function openjp2Flags() {
  const pkg = spawnSync('pkg-config', ['--cflags', '--libs', 'libopenjp2'], { encoding: 'utf8' });
  if (pkg.status === 0) return pkg.stdout.trim().split(/\s+/).filter(Boolean);
  const include = ['/usr/include/openjpeg-2.5', '/usr/local/include/openjpeg-2.5'].find((dir) => existsSync(path.join(dir, 'openjpeg.h')));
  return include ? [`-I${include}`, '-lopenjp2'] : null;
}

// Debian 12's openjph.pc is empty (no Libs, no Cflags): the headers' place decides.
function openjphFlags() {
  const pkg = spawnSync('pkg-config', ['--libs', 'openjph'], { encoding: 'utf8' });
  const libs = pkg.status === 0 ? pkg.stdout.trim().split(/\s+/).filter(Boolean) : [];
  if (libs.some((flag) => flag.startsWith('-lopenjph'))) {
    const cflags = spawnSync('pkg-config', ['--cflags', 'openjph'], { encoding: 'utf8' }).stdout?.trim().split(/\s+/).filter(Boolean) ?? [];
    return [...cflags, ...libs];
  }
  const include = ['/usr/include', '/usr/local/include'].find((dir) => existsSync(path.join(dir, 'openjph/ojph_codestream.h')));
  return include ? (include === '/usr/include' ? ['-lopenjph'] : [`-I${include}`, `-L${include.replace(/include$/, 'lib')}`, '-lopenjph']) : null;
}

const LIBRARIES = {
  openjp2: { flags: openjp2Flags(), compiler: process.env.CC || 'cc', missing: 'libopenjp2 headers not found (apt-get install libopenjp2-7-dev)' },
  openjph: { flags: openjphFlags(), compiler: process.env.CXX || 'c++', missing: 'libopenjph headers not found (apt-get install libopenjph-dev g++)' },
};
for (const { name, source: file, library, without } of PROGRAMS) {
  const say = (line) => process.stderr.write(`${name}: ${line}\n`);
  const source = path.join(root, `native/${file}`);
  const target = path.join(root, `build/${name}`);
  const { flags: found, compiler, missing } = LIBRARIES[library];
  if (process.env.IIPSRV_NO_JP2_HELPER) say(`skipped (IIPSRV_NO_JP2_HELPER): ${without}`);
  else if (!found) say(`${missing}: ${without}`);
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
