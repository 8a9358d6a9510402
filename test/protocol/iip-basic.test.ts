/**
 * The router and the minimal IIP protocol as pure functions: no sockets, a plain request in, a
 * plain response out.
 */
import assert from 'node:assert/strict';
import { readFileSync, renameSync, symlinkSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { Engine } from '../../src/engine/engine.ts';
import { createLog, silentLog } from '../../src/log.ts';
import type { PlainResponse } from '../../src/request.ts';
import { getHeader } from '../../src/request.ts';
import { createRouter } from '../../src/router.ts';
import { plainRequest } from '../helpers/requests.ts';
import { tempDir } from '../helpers/daemon.ts';
import { makePyramidTiff } from '../helpers/images.ts';

const request = plainRequest;

function routerFor(env: Record<string, string>) {
  const config = loadConfig({ MEMCACHED_SERVERS: '', ...env });
  const engine = new Engine({
    paths: { prefix: config.filesystemPrefix, suffix: config.filesystemSuffix, confineSymlinks: config.filesystemConfineSymlinks },
    cacheBytes: config.maxImageCacheBytes,
  });
  return createRouter({ config, engine, log: silentLog });
}

const text = (response: PlainResponse) => response.body.toString('latin1');
const MTIME = 1_700_000_000; // Tue, 14 Nov 2023 22:13:20 GMT

let dir: string;
let images: string;

before(async () => {
  dir = tempDir();
  images = path.join(dir, 'images') + '/';
  mkdirSync(path.join(images, 'sub dir'), { recursive: true });
  await makePyramidTiff(path.join(images, 'pyr.tif'), { width: 300, height: 200 });
  await makePyramidTiff(path.join(images, 'sub dir', 'ü.tif'), { width: 64, height: 64 });
  // Outside the prefix: a valid image that no request may reach.
  await makePyramidTiff(path.join(dir, 'secret.tif'), { width: 64, height: 64 });
  // Beside the prefix's directory: a name may not reach them by continuing its last part.
  mkdirSync(path.join(dir, 'images_private'));
  await makePyramidTiff(path.join(dir, 'images_private', 'secret.tif'), { width: 64, height: 64 });
  // iipsrv's prefix-as-start-of-a-file-name pattern (FILESYSTEM_PREFIX=.../img_).
  await makePyramidTiff(path.join(dir, 'img_001.tif'), { width: 64, height: 64 });
  mkdirSync(path.join(dir, 'img_sub'));
  await makePyramidTiff(path.join(dir, 'img_sub', 'x.tif'), { width: 64, height: 64 });
  writeFileSync(path.join(images, 'notes.txt'), 'not an image at all');
  // Symbolic links inside the prefix, to files and directories inside and outside it.
  symlinkSync(path.join(dir, 'secret.tif'), path.join(images, 'out.tif'));
  symlinkSync(path.join(dir, 'images_private'), path.join(images, 'outdir'));
  symlinkSync('pyr.tif', path.join(images, 'in.tif'));
  symlinkSync('sub dir', path.join(images, 'indir'));
  symlinkSync(images, path.join(dir, 'alias'));
  mkdirSync(path.join(dir, 'outside-sequence'));
  await makePyramidTiff(path.join(dir, 'outside-sequence', 's_pyr_000_090.tif'), { width: 64, height: 64 });
  symlinkSync(path.join(dir, 'outside-sequence'), path.join(images, 'seq'));
  utimesSync(path.join(images, 'pyr.tif'), MTIME, MTIME);
});

describe('IIP: OBJ=IIP,1.0 and the response framing', () => {
  it('answers OBJ=IIP,1.0 with iipsrv headers and body', async () => {
    const response = await routerFor({ FILESYSTEM_PREFIX: images })(request('FIF=pyr.tif&OBJ=IIP,1.0'));
    assert.equal(response.status, 200);
    assert.equal(text(response), 'IIP:1.0\r\n');
    assert.deepEqual(
      response.headers.map(([name]) => name),
      ['Server', 'X-Powered-By', 'Cache-Control', 'Last-Modified', 'Content-Type', 'Content-Length'],
    );
    assert.equal(getHeader(response.headers, 'content-type'), 'application/vnd.netfpx');
    assert.equal(getHeader(response.headers, 'last-modified'), 'Tue, 14 Nov 2023 22:13:20 GMT');
    assert.equal(getHeader(response.headers, 'cache-control'), 'max-age=86400');
    assert.equal(getHeader(response.headers, 'content-length'), '9');
    assert.match(getHeader(response.headers, 'server') ?? '', /^iipsrv-ts\/\d+\.\d+\.\d+$/);
  });
  it('OBJ without FIF has no empty Last-Modified line (1.1 broke its header block there)', async () => {
    const response = await routerFor({})(request('OBJ=IIP,1.0&OBJ=IIP-server'));
    assert.equal(response.status, 200);
    assert.equal(text(response), 'IIP:1.0\r\nIIP-server:3.65\r\n');
    assert.equal(getHeader(response.headers, 'last-modified'), undefined);
  });
  it('without OBJ=IIP,1.0 the body starts with an empty line, as in iipsrv', async () => {
    const response = await routerFor({})(request('OBJ=IIP-server'));
    assert.equal(text(response), '\r\nIIP-server:3.65\r\n');
  });
  it('command names are case-insensitive', async () => {
    const response = await routerFor({ FILESYSTEM_PREFIX: images })(request('fif=pyr.tif&obj=IIP,1.0'));
    assert.equal(text(response), 'IIP:1.0\r\n');
  });
  it('CACHE_CONTROL and CORS apply; CORS is on every response', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images, CORS: '*', CACHE_CONTROL: 'public, max-age=60' });
    const ok = await router(request('FIF=pyr.tif&OBJ=IIP,1.0'));
    assert.equal(getHeader(ok.headers, 'cache-control'), 'public, max-age=60');
    for (const response of [ok, await router(request('FOO=bar')), await router(request('FIF=none.tif&OBJ=IIP,1.0')), await router(request(''))]) {
      assert.equal(getHeader(response.headers, 'access-control-allow-origin'), '*', `status ${response.status}`);
    }
  });
  it('without CORS there are no CORS headers', async () => {
    const response = await routerFor({})(request('OBJ=IIP,1.0'));
    assert.equal(getHeader(response.headers, 'access-control-allow-origin'), undefined);
  });
});

describe('IIP: errors', () => {
  it('unknown command: Error 2 2 with the name as sent, status 400', async () => {
    const response = await routerFor({})(request('FOO=bar'));
    assert.equal(response.status, 400);
    assert.equal(text(response), 'Error/7:2 2 FOO\r\n');
    assert.equal(getHeader(response.headers, 'content-type'), 'application/vnd.netfpx');
    assert.equal(getHeader(response.headers, 'cache-control'), 'no-cache');
    assert.equal(getHeader(response.headers, 'content-disposition'), 'inline;filename="IIPisAMadGameClosedToOurUnderstanding.netfpx"');
  });
  it('unknown OBJ object: Error 3 2 with the lower-cased name', async () => {
    const response = await routerFor({ FILESYSTEM_PREFIX: images })(request('FIF=pyr.tif&OBJ=Foo'));
    assert.equal(text(response), 'Error/7:3 2 foo\r\n');
  });
  it('image object without FIF: Error 1 3', async () => {
    const response = await routerFor({})(request('OBJ=Max-size'));
    assert.equal(text(response), 'Error/12:1 3 max-size\r\n');
  });
  it('a request that produces nothing: Error 2 1 with the whole request, not cut at 31 characters', async () => {
    const query = 'INV=&SOMETHING_LONG_ENOUGH_TO_CUT=x';
    const response = await routerFor({})(request(query));
    assert.equal(text(response), 'Error/32:2 2 SOMETHING_LONG_ENOUGH_TO_CUT\r\n');
    const nothing = await routerFor({})(request('FIRST=&SECOND=&THIRD_ONE_IS_LONG='));
    assert.equal(text(nothing), 'Error/37:2 1 FIRST=&SECOND=&THIRD_ONE_IS_LONG=\r\n');
    const empty = await routerFor({})(request('a=&=b'));
    assert.equal(text(empty), 'Error/9:2 1 a=&=b\r\n');
  });
  it('several errors give several lines', async () => {
    const response = await routerFor({})(request('FOO=1&BAR=2'));
    assert.equal(text(response), 'Error/7:2 2 FOO\r\nError/7:2 2 BAR\r\n');
  });
  it('unknown commands leave at most one short log line per request at the default VERBOSITY', async () => {
    const logfile = path.join(dir, 'unknown-commands.log');
    const log = createLog({ target: { kind: 'file', path: logfile }, verbosity: 1 });
    const config = loadConfig({ MEMCACHED_SERVERS: '', FILESYSTEM_PREFIX: images });
    const router = createRouter({ config, engine: new Engine({ paths: { prefix: images, suffix: '' } }), log });
    // 8 KB of unknown commands, alone and beside an image.
    const unknowns = Array.from({ length: 1000 }, (_, i) => `UNKNOWN${i}=1`).join('&');
    assert.ok(unknowns.length > 8000);
    assert.equal((await router(request(unknowns))).status, 400);
    assert.equal((await router(request(`FIF=pyr.tif&${unknowns}&JTL=0,0`))).status, 200);
    await log.flush();
    const lines = readFileSync(logfile, 'utf8').split('\n').filter(Boolean);
    assert.equal(lines.length, 2, lines.slice(0, 3).join('\n'));
    for (const line of lines) assert.ok(line.length < 1024, `${line.length} bytes: ${line.slice(0, 200)}`);
    const entry = JSON.parse(lines[0]!) as { unsupported: number; commands: string };
    assert.equal(entry.unsupported, 1000);
    assert.match(entry.commands, /^UNKNOWN0, UNKNOWN1, UNKNOWN2, .*, \.\.\.$/);
  });
  it('a missing image is 404 with a message that names the image, not the filesystem path', async () => {
    const response = await routerFor({ FILESYSTEM_PREFIX: images })(request('FIF=missing.tif&OBJ=IIP,1.0'));
    assert.equal(response.status, 404);
    assert.match(text(response), /missing\.tif/);
    assert.ok(!text(response).includes(dir), text(response));
  });
  it('a file that is not an image is 400 "Unsupported image type" (as iipsrv 1.1); a directory 404', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images });
    const response = await router(request('FIF=notes.txt&OBJ=IIP,1.0'));
    assert.equal(response.status, 400);
    assert.match(text(response), /^Unsupported image type: notes\.txt/);
    assert.equal((await router(request('FIF=sub%20dir&OBJ=IIP,1.0'))).status, 404);
  });
  it('FIF decodes its argument: %20, + and UTF-8', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images });
    assert.equal((await router(request('FIF=sub%20dir/%C3%BC.tif&OBJ=IIP,1.0'))).status, 200);
    assert.equal((await router(request('FIF=sub+dir/%C3%BC.tif&OBJ=IIP,1.0'))).status, 200);
  });
  it('an empty request is the banner page, 200', async () => {
    const response = await routerFor({})(request(''));
    assert.equal(response.status, 200);
    assert.match(getHeader(response.headers, 'content-type') ?? '', /^text\/html/);
    assert.match(text(response), /iipsrv-ts/);
  });
});

describe('HTTP semantics', () => {
  it('If-Modified-Since at or after the file time: 304 without body; before: 200', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images });
    const at = await router(request('FIF=pyr.tif&OBJ=IIP,1.0', { headers: { 'if-modified-since': 'Tue, 14 Nov 2023 22:13:20 GMT' } }));
    assert.equal(at.status, 304);
    assert.equal(at.body.length, 0);
    assert.equal(getHeader(at.headers, 'content-length'), undefined);
    const later = await router(request('FIF=pyr.tif&OBJ=IIP,1.0', { headers: { 'if-modified-since': 'Wed, 15 Nov 2023 00:00:00 GMT' } }));
    assert.equal(later.status, 304);
    const earlier = await router(request('FIF=pyr.tif&OBJ=IIP,1.0', { headers: { 'if-modified-since': 'Tue, 14 Nov 2023 22:13:19 GMT' } }));
    assert.equal(earlier.status, 200);
    const garbage = await router(request('FIF=pyr.tif&OBJ=IIP,1.0', { headers: { 'if-modified-since': 'yesterday-ish' } }));
    assert.equal(garbage.status, 200, 'an unreadable date is ignored (1.1 answered 304 by accident)');
  });
  it('OPTIONS is a CORS preflight answer; unknown methods 405', async () => {
    const router = routerFor({ CORS: 'https://viewer.example' });
    const options = await router(request('', { method: 'OPTIONS' }));
    assert.equal(options.status, 204);
    assert.equal(getHeader(options.headers, 'access-control-allow-origin'), 'https://viewer.example');
    const put = await router(request('OBJ=IIP,1.0', { method: 'PUT' }));
    assert.equal(put.status, 405);
    assert.equal(getHeader(put.headers, 'allow'), 'GET, HEAD, POST, OPTIONS');
  });
  it('POST is answered from the query string, as iipsrv 1.1 does', async () => {
    const response = await routerFor({})(request('OBJ=IIP,1.0', { method: 'POST' }));
    assert.equal(text(response), 'IIP:1.0\r\n');
  });
});

describe('URI_MAP', () => {
  it('maps a path prefix to IIP and keeps the query commands', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images, URI_MAP: 'iip=>IIP' });
    const response = await router(request('OBJ=IIP,1.0', { path: '/iip/pyr.tif', scriptName: '' }));
    assert.equal(response.status, 200);
    assert.equal(getHeader(response.headers, 'last-modified'), 'Tue, 14 Nov 2023 22:13:20 GMT');
  });
  it('finds the prefix after SCRIPT_NAME (Apache ScriptAlias style)', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images, URI_MAP: 'iip=>IIP' });
    const response = await router(request('OBJ=IIP,1.0', { path: '/fcgi-bin/iipsrv.fcgi/iip/pyr.tif', scriptName: '/fcgi-bin/iipsrv.fcgi' }));
    assert.equal(getHeader(response.headers, 'last-modified'), 'Tue, 14 Nov 2023 22:13:20 GMT');
  });
  it('needs a whole path segment: /iipfoo does not match iip (it does in iipsrv)', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images, URI_MAP: 'iip=>IIP' });
    const response = await router(request('OBJ=IIP,1.0', { path: '/iipfoo/pyr.tif', scriptName: '' }));
    assert.equal(getHeader(response.headers, 'last-modified'), undefined, 'fell back to the query string');
    assert.equal(text(response), 'IIP:1.0\r\n');
  });
});

describe('filesystem safety', () => {
  // Each of these would reach ../secret.tif (a valid image) if paths were not confined.
  const hostile = [
    '../secret.tif',
    '%2e%2e/secret.tif',
    '%2E%2E%2Fsecret.tif',
    '..%2fsecret.tif',
    '..%5csecret.tif',
    '....//secret.tif',
    './../secret.tif',
    'sub%20dir/../../secret.tif',
    'sub%20dir/%2e%2e/%2e%2e/secret.tif',
    '%252e%252e/secret.tif',
    '/../secret.tif',
    `${'..%2F'.repeat(12)}secret.tif`,
    'pyr.tif%00.jpg',
    '%00',
    '..',
    '.',
  ];
  for (const name of hostile) {
    it(`FIF=${name} stays inside FILESYSTEM_PREFIX`, async () => {
      const router = routerFor({ FILESYSTEM_PREFIX: images });
      const response = await router(request(`FIF=${name}&OBJ=IIP,1.0`));
      assert.equal(response.status, 404, `status for ${name}`);
      assert.ok(!text(response).includes(dir), 'the body does not reveal the filesystem path');
    });
  }
  it('an absolute path is read relative to the prefix (prefix + name, as iipsrv)', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images });
    assert.equal((await router(request(`FIF=${encodeURIComponent(path.join(dir, 'secret.tif'))}&OBJ=IIP,1.0`))).status, 404);
    assert.equal((await router(request('FIF=/pyr.tif&OBJ=IIP,1.0'))).status, 200);
  });
  it('FILESYSTEM_SUFFIX is appended', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images, FILESYSTEM_SUFFIX: '.tif' });
    assert.equal((await router(request('FIF=pyr&OBJ=IIP,1.0'))).status, 200);
  });
  it('a prefix without its trailing slash still confines to its directory: images never reaches images_private/', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: path.join(dir, 'images') });
    assert.equal((await router(request('FIF=/pyr.tif&OBJ=IIP,1.0'))).status, 200);
    assert.equal((await router(request('FIF=/sub%20dir/%C3%BC.tif&OBJ=IIP,1.0'))).status, 200);
    for (const name of ['_private/secret.tif', '_private%2Fsecret.tif', '/../images_private/secret.tif']) {
      const response = await router(request(`FIF=${name}&OBJ=IIP,1.0`));
      assert.equal(response.status, 404, name);
      assert.ok(!text(response).includes(dir), 'the body does not reveal the filesystem path');
    }
  });
  it("iipsrv's prefix that is the start of file names (/data/img_ + 001.tif) works; it reaches no directory of the same start", async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: path.join(dir, 'img_') });
    assert.equal((await router(request('FIF=001.tif&OBJ=IIP,1.0'))).status, 200);
    assert.equal((await router(request('FIF=sub/x.tif&OBJ=IIP,1.0'))).status, 404);
  });
  it('symbolic links are followed by default, as iipsrv does', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images });
    for (const name of ['out.tif', 'outdir/secret.tif', 'in.tif', 'seq/s']) assert.equal((await router(request(`FIF=${name}&OBJ=IIP,1.0`))).status, 200, name);
  });
  it('FILESYSTEM_CONFINE_SYMLINKS=1 refuses links that resolve outside the prefix, and follows those inside it', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images, FILESYSTEM_CONFINE_SYMLINKS: '1' });
    for (const name of ['out.tif', 'outdir/secret.tif', 'seq/s']) {
      const response = await router(request(`FIF=${name}&OBJ=IIP,1.0`));
      assert.equal(response.status, 404, name);
      assert.ok(!text(response).includes(dir), 'the body does not reveal the filesystem path');
    }
    for (const name of ['pyr.tif', 'in.tif', 'indir/%C3%BC.tif']) assert.equal((await router(request(`FIF=${name}&OBJ=IIP,1.0`))).status, 200, name);
    // The prefix itself may be a link, with or without its trailing slash.
    assert.equal(
      (await routerFor({ FILESYSTEM_PREFIX: path.join(dir, 'alias') + '/', FILESYSTEM_CONFINE_SYMLINKS: '1' })(request('FIF=pyr.tif&OBJ=IIP,1.0'))).status,
      200,
    );
    assert.equal(
      (await routerFor({ FILESYSTEM_PREFIX: path.join(dir, 'alias'), FILESYSTEM_CONFINE_SYMLINKS: '1' })(request('FIF=/pyr.tif&OBJ=IIP,1.0'))).status,
      200,
    );
  });
  it('FILESYSTEM_CONFINE_SYMLINKS=1: a link pointed elsewhere after it was checked is checked again', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: images, FILESYSTEM_CONFINE_SYMLINKS: '1' });
    symlinkSync('pyr.tif', path.join(images, 'moving.tif'));
    assert.equal((await router(request('FIF=moving.tif&OBJ=IIP,1.0'))).status, 200);
    symlinkSync(path.join(dir, 'secret.tif'), path.join(images, 'moving.tif.new'));
    renameSync(path.join(images, 'moving.tif.new'), path.join(images, 'moving.tif'));
    assert.equal((await router(request('FIF=moving.tif&OBJ=IIP,1.0'))).status, 404);
  });
  it('a prefix that ends in a partial file name confines to its directory', async () => {
    const router = routerFor({ FILESYSTEM_PREFIX: path.join(images, 'p') });
    assert.equal((await router(request('FIF=yr.tif&OBJ=IIP,1.0'))).status, 200);
    assert.equal((await router(request('FIF=/../../secret.tif&OBJ=IIP,1.0'))).status, 404);
  });
});
