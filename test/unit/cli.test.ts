import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { availableParallelism } from 'node:os';
import { defaultWorkers, parseArguments, parseResolutions, selectResolutions } from '../../src/cli.ts';

describe('command line', () => {
  it('--bind HOST:PORT with the default backlog 2048', () => {
    const command = parseArguments(['--bind', '127.0.0.1:9000'], false);
    assert.equal(command.kind, 'run');
    if (command.kind !== 'run') return;
    assert.deepEqual(command.options.fastcgi, { kind: 'tcp', host: '127.0.0.1', port: 9000, backlog: 2048 });
    assert.equal(command.options.http, null);
  });
  it('--bind with an empty host or * listens on every interface; --backlog anywhere', () => {
    for (const bind of [':9000', '*:9000']) {
      const command = parseArguments(['--backlog', '1024', '--bind', bind], false);
      assert.equal(command.kind, 'run');
      if (command.kind === 'run') assert.deepEqual(command.options.fastcgi, { kind: 'tcp', host: '0.0.0.0', port: 9000, backlog: 1024 });
    }
  });
  it('--bind PATH is a unix socket', () => {
    const command = parseArguments(['--bind=/run/iipsrv.sock'], false);
    assert.equal(command.kind, 'run');
    if (command.kind === 'run') assert.deepEqual(command.options.fastcgi, { kind: 'unix', path: '/run/iipsrv.sock', backlog: 2048 });
  });
  it('no --bind and fd 0 is a socket: serve on it', () => {
    const command = parseArguments([], true);
    assert.equal(command.kind, 'run');
    if (command.kind === 'run') assert.deepEqual(command.options.fastcgi, { kind: 'fd', fd: 0, backlog: 2048 });
  });
  it('from a shell with nothing to serve: a usage error', () => {
    const command = parseArguments([], false);
    assert.equal(command.kind, 'usage-error');
  });
  it('--http and --workers', () => {
    const command = parseArguments(['--http', 'localhost:8080', '--workers', '3'], false);
    assert.equal(command.kind, 'run');
    if (command.kind !== 'run') return;
    assert.deepEqual(command.options.http, { host: 'localhost', port: 8080 });
    assert.equal(command.options.workers, 3);
    assert.equal(command.options.fastcgi, null);
  });
  it('defaults to one worker per two CPUs, at least two (a lone worker that dies closes the listening socket)', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 8, 64].map((cpus) => defaultWorkers(cpus)),
      [2, 2, 2, 2, 4, 32],
    );
    const command = parseArguments(['--bind', ':9000'], false);
    assert.equal(command.kind === 'run' && command.options.workers, Math.max(2, Math.floor(availableParallelism() / 2)));
  });
  it('HTTP limits: --http-idle-timeout and --http-read-timeout in seconds (0 for none), --http-max-connections', () => {
    const defaults = parseArguments(['--http', ':8080'], false);
    assert.deepEqual(defaults.kind === 'run' && defaults.options.httpLimits, { idleTimeoutMs: 5000, readTimeoutMs: 30_000, maxConnections: 1024 });
    const set = parseArguments(['--http', ':8080', '--http-idle-timeout', '0', '--http-read-timeout=2.5', '--http-max-connections', '10'], false);
    assert.deepEqual(set.kind === 'run' && set.options.httpLimits, { idleTimeoutMs: 0, readTimeoutMs: 2500, maxConnections: 10 });
  });
  it('refuses bad values and unknown flags', () => {
    for (const argv of [
      ['--http-idle-timeout', '-1'],
      ['--http-read-timeout', '5s'],
      ['--http-max-connections', '0'],
      ['--bind'],
      ['--workers', '0'],
      ['--backlog', 'x', '--bind', ':1'],
      ['--http', 'nohost'],
      ['--frobnicate'],
      ['--bind', 'h:70000'],
    ]) {
      assert.equal(parseArguments(argv, false).kind, 'usage-error', argv.join(' '));
    }
  });
  it('--help and --version', () => {
    assert.equal(parseArguments(['--help'], false).kind, 'help');
    assert.equal(parseArguments(['--version'], false).kind, 'version');
  });
});

describe('command line: the cache tools', () => {
  it('warm IMAGE with the defaults: every resolution, two tiles at once', () => {
    assert.deepEqual(parseArguments(['warm', 'sub dir/a.tif'], false), { kind: 'warm', image: 'sub dir/a.tif', resolutions: null, concurrency: 2 });
  });
  it('warm with --levels and --concurrency, before or after the image, = or not', () => {
    assert.deepEqual(parseArguments(['warm', '--levels=0-3', 'a.tif', '--concurrency', '4'], false), {
      kind: 'warm',
      image: 'a.tif',
      resolutions: [{ from: 0, to: 3 }],
      concurrency: 4,
    });
    assert.deepEqual(parseArguments(['warm', '--', '-odd.tif'], false), { kind: 'warm', image: '-odd.tif', resolutions: null, concurrency: 2 });
  });
  it('purge IMAGE', () => {
    assert.deepEqual(parseArguments(['purge', 'a.tif'], false), { kind: 'purge', image: 'a.tif' });
  });
  it('--help of each tool, wherever it is', () => {
    assert.deepEqual(parseArguments(['warm', '--help'], false), { kind: 'tool-help', tool: 'warm' });
    assert.deepEqual(parseArguments(['purge', 'a.tif', '-h'], false), { kind: 'tool-help', tool: 'purge' });
  });
  it('usage errors name the tool: no image, two images, unknown options, bad values', () => {
    for (const argv of [
      ['warm'],
      ['purge'],
      ['warm', 'a.tif', 'b.tif'],
      ['warm', ''],
      ['purge', 'a.tif', '--levels', '1'],
      ['purge', 'a.tif', '--concurrency', '2'],
      ['warm', 'a.tif', '--levels'],
      ['warm', 'a.tif', '--levels', 'all'],
      ['warm', 'a.tif', '--concurrency', '0'],
      ['warm', 'a.tif', '--bind', ':9000'],
    ]) {
      const command = parseArguments(argv, false);
      assert.equal(command.kind, 'tool-usage-error', argv.join(' '));
      assert.equal(command.kind === 'tool-usage-error' && command.tool, argv[0]);
    }
  });
  it('the server command line is unchanged: an unknown first word is still an error, tool names only as the first word', () => {
    assert.equal(parseArguments(['frob'], false).kind, 'usage-error');
    assert.equal(parseArguments(['--http', ':8080', 'warm', 'a.tif'], false).kind, 'usage-error');
  });
});

describe('--levels: iipsrv resolution numbers, 0 = the smallest', () => {
  it('reads N, N-M, N- and lists of them', () => {
    assert.deepEqual(parseResolutions('2'), [{ from: 2, to: 2 }]);
    assert.deepEqual(parseResolutions('0-3'), [{ from: 0, to: 3 }]);
    assert.deepEqual(parseResolutions('4-'), [{ from: 4, to: null }]);
    assert.deepEqual(parseResolutions('0,2-3, 5-'), [
      { from: 0, to: 0 },
      { from: 2, to: 3 },
      { from: 5, to: null },
    ]);
  });
  it('refuses what names no resolutions', () => {
    for (const spec of ['', ',', '3-1', '-2', 'a', '1-2-3', '1.5', '1000', '2,']) {
      assert.throws(() => parseResolutions(spec), /--levels expects/, JSON.stringify(spec));
    }
  });
  it("selects the image's resolutions in ascending order, ignoring numbers it does not have", () => {
    assert.deepEqual(selectResolutions(null, 4), [0, 1, 2, 3]);
    assert.deepEqual(selectResolutions(parseResolutions('3,0-1'), 6), [0, 1, 3]);
    assert.deepEqual(selectResolutions(parseResolutions('2-'), 5), [2, 3, 4]);
    assert.deepEqual(selectResolutions(parseResolutions('1-9'), 3), [1, 2]);
    assert.deepEqual(selectResolutions(parseResolutions('7-9'), 3), []);
  });
});
