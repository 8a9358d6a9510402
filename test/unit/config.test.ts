import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, parseMemcachedServers, parseUriMap } from '../../src/config.ts';
import { DEFAULT_DECODE_LIMITS } from '../../src/engine/decode-limits.ts';
import { PLAIN_DEFAULTS } from '../../src/engine/formats.ts';
import { engineOptionsFor } from '../../src/server/engine-options.ts';

describe('config: iipsrv defaults', () => {
  const config = loadConfig({});
  it('matches iipsrv 1.1 defaults where they exist', () => {
    assert.equal(config.verbosity, 1);
    assert.equal(config.jpegQuality, 75);
    assert.equal(config.maxCvt, 5000);
    assert.equal(config.maxImageCacheBytes, 10 * 1_024_000);
    assert.equal(config.filesystemPrefix, '');
    assert.equal(config.filesystemConfineSymlinks, false, 'links are followed, as iipsrv does');
    assert.equal(config.filenamePattern, '_pyr_');
    assert.equal(config.allowUpscaling, true);
    assert.equal(config.maxLayers, 0);
    assert.equal(config.interpolation, 'bilinear');
    assert.equal(config.cors, '');
    assert.equal(config.cacheControl, 'max-age=86400');
    assert.equal(config.memcachedTimeout, 86400);
    assert.equal(config.iiifVersion, 3);
    assert.equal(config.maxIcc, 65536);
    assert.equal(config.codecPassthrough, true);
    assert.deepEqual(config.uriMap, []);
    assert.deepEqual(config.trustedHeaders, [], 'no request header may decide advertised URLs unless the operator says so');
    assert.equal(config.watermark, null);
    assert.deepEqual(config.warnings, []);
  });
  it('logs nowhere without LOGFILE', () => {
    assert.deepEqual(config.logTarget, { kind: 'none' });
  });
  it('writes no access log without ACCESS_LOG', () => {
    assert.deepEqual(config.accessLog, { kind: 'none' });
    assert.deepEqual(loadConfig({ ACCESS_LOG: '' }).accessLog, { kind: 'none' });
  });
  it('uses memcached on localhost when MEMCACHED_SERVERS is unset, none when it is empty', () => {
    assert.deepEqual(config.memcachedServers, [{ host: 'localhost', port: 11211 }]);
    assert.deepEqual(loadConfig({ MEMCACHED_SERVERS: '' }).memcachedServers, []);
  });
});

describe('config: health, metrics and the memcached lease (issue 16)', () => {
  it('defaults: 2 s lease, metrics by mode, /metrics and /health', () => {
    const config = loadConfig({});
    assert.equal(config.memcachedLeaseMs, 2000);
    assert.equal(config.metrics, null, 'decided by the mode: on with --http, off in FastCGI alone');
    assert.equal(config.metricsPath, '/metrics');
    assert.equal(config.healthPath, '/health');
  });
  it('reads them, and refuses what cannot be meant', () => {
    const config = loadConfig({ MEMCACHED_LEASE: '0.5', METRICS: '1', METRICS_PATH: '/iipsrv/metrics', HEALTH_PATH: '/iipsrv/health' });
    assert.equal(config.memcachedLeaseMs, 500);
    assert.equal(config.metrics, true);
    assert.equal(config.metricsPath, '/iipsrv/metrics');
    assert.equal(config.healthPath, '/iipsrv/health');
    assert.equal(loadConfig({ METRICS: '0' }).metrics, false);
    assert.equal(loadConfig({ MEMCACHED_LEASE: '0' }).memcachedLeaseMs, 0);
    assert.throws(() => loadConfig({ MEMCACHED_LEASE: '-1' }), ConfigError);
    assert.throws(() => loadConfig({ METRICS: 'maybe' }), ConfigError);
    assert.throws(() => loadConfig({ METRICS_PATH: 'metrics' }), ConfigError);
    assert.throws(() => loadConfig({ HEALTH_PATH: '/health?x' }), ConfigError);
  });
  it('CACHE_GENERATION_CHECK: 5 s by default, seconds given, 0 for every request; nothing negative', () => {
    assert.equal(loadConfig({}).cacheGenerationCheckMs, 5000);
    assert.equal(loadConfig({ CACHE_GENERATION_CHECK: '1.5' }).cacheGenerationCheckMs, 1500);
    assert.equal(loadConfig({ CACHE_GENERATION_CHECK: '0' }).cacheGenerationCheckMs, 0);
    assert.throws(() => loadConfig({ CACHE_GENERATION_CHECK: '-1' }), ConfigError);
    assert.throws(() => loadConfig({ CACHE_GENERATION_CHECK: 'soon' }), ConfigError);
  });
});

describe('config: the viewer page (issue 16)', () => {
  it('is off by default, at /viewer/', () => {
    const config = loadConfig({});
    assert.equal(config.viewer, false);
    assert.equal(config.viewerPath, '/viewer/');
  });
  it('reads VIEWER and VIEWER_PATH, adding the final slash, and refuses / and non-paths', () => {
    const config = loadConfig({ VIEWER: '1', VIEWER_PATH: '/tools/view' });
    assert.equal(config.viewer, true);
    assert.equal(config.viewerPath, '/tools/view/');
    assert.equal(loadConfig({ VIEWER_PATH: '/v/' }).viewerPath, '/v/');
    assert.throws(() => loadConfig({ VIEWER_PATH: '/' }), /VIEWER_PATH/);
    assert.throws(() => loadConfig({ VIEWER_PATH: 'viewer' }), /VIEWER_PATH/);
    assert.throws(() => loadConfig({ VIEWER_PATH: '/viewer?x' }), /VIEWER_PATH/);
    assert.throws(() => loadConfig({ VIEWER_PATH: '/a"b/' }), /VIEWER_PATH/);
    assert.throws(() => loadConfig({ VIEWER_PATH: '/%2e%2e/' }), /VIEWER_PATH/);
    assert.throws(() => loadConfig({ VIEWER: 'perhaps' }), /VIEWER/);
  });
});

describe('config: images in an object store (issue 17)', () => {
  it('a directory prefix is no store', () => {
    assert.equal(loadConfig({ FILESYSTEM_PREFIX: '/data/images/' }).remote, null);
    assert.equal(loadConfig({}).remote, null);
  });
  it('s3://bucket/prefix/ with the REMOTE_* defaults', () => {
    const remote = loadConfig({ FILESYSTEM_PREFIX: 's3://my-bucket/collection/scans/' }).remote!;
    assert.deepEqual(remote.location, { kind: 's3', bucket: 'my-bucket', forcePathStyle: false });
    assert.equal(remote.keyPrefix, 'collection/scans/');
    assert.deepEqual(remote.timeouts, { requestTimeoutMs: 10_000, attempts: 3, backoffMs: 100 });
    assert.equal(remote.checkIntervalMs, 5000);
    assert.equal(remote.blockCacheBytes, 64 * 1024 * 1024);
    assert.equal(remote.copiesBytes, 10240 * 1024 * 1024);
    assert.match(remote.copiesDir, /iipsrv-ts-objects$/);
    assert.deepEqual(loadConfig({ FILESYSTEM_PREFIX: 's3://b3t', AWS_S3_FORCE_PATH_STYLE: '1' }).remote!.location, {
      kind: 's3',
      bucket: 'b3t',
      forcePathStyle: true,
    });
  });
  it('http(s)://host/path/: the origin and the path as the key prefix', () => {
    const remote = loadConfig({ FILESYSTEM_PREFIX: 'https://images.example.org:8443/iiif/files/', REMOTE_CHECK_INTERVAL: '0.5' }).remote!;
    assert.deepEqual(remote.location, { kind: 'http', baseUrl: 'https://images.example.org:8443/' });
    assert.equal(remote.keyPrefix, 'iiif/files/');
    assert.equal(remote.checkIntervalMs, 500);
    assert.equal(loadConfig({ FILESYSTEM_PREFIX: 'http://origin' }).remote!.keyPrefix, '');
  });
  it('refuses what cannot work: other schemes, credentials in the URL, bad bucket names and settings', () => {
    assert.throws(() => loadConfig({ FILESYSTEM_PREFIX: 'gs://bucket/' }), /FILESYSTEM_PREFIX/);
    assert.throws(() => loadConfig({ FILESYSTEM_PREFIX: 'https://user:secret@host/' }), /credentials/);
    assert.throws(() => loadConfig({ FILESYSTEM_PREFIX: 's3:///x' }), /bucket/);
    assert.throws(() => loadConfig({ FILESYSTEM_PREFIX: 's3://bkt/', REMOTE_TIMEOUT: '0' }), /REMOTE_TIMEOUT/);
    assert.throws(() => loadConfig({ FILESYSTEM_PREFIX: 's3://bkt/', REMOTE_ATTEMPTS: '0' }), /REMOTE_ATTEMPTS/);
    assert.throws(() => loadConfig({ FILESYSTEM_PREFIX: 's3://bkt/', REMOTE_CACHE_SIZE: '0' }), /REMOTE_CACHE_SIZE/);
  });
});

describe('config: values from a typical iipsrv deployment', () => {
  it('reads the Debian package settings unchanged', () => {
    const config = loadConfig({
      LOGFILE: '/var/log/iipsrv.log',
      VERBOSITY: '5',
      MAX_IMAGE_CACHE_SIZE: '10',
      JPEG_QUALITY: '90',
      MAX_CVT: '5000',
      MEMCACHED_SERVERS: 'localhost',
      FILESYSTEM_PREFIX: '/var/www/images/',
      CORS: '*',
      URI_MAP: 'iiif=>IIIF',
      BASE_URL: 'https://example.org/iiif/',
    });
    assert.deepEqual(config.logTarget, { kind: 'file', path: '/var/log/iipsrv.log' });
    assert.equal(config.verbosity, 5);
    assert.equal(config.jpegQuality, 90);
    assert.equal(config.filesystemPrefix, '/var/www/images/');
    assert.equal(config.cors, '*');
    assert.deepEqual(config.uriMap, [{ prefix: 'iiif', protocol: 'iiif' }]);
    assert.equal(config.baseUrl, 'https://example.org/iiif/');
  });
  it('takes syslog and stderr targets', () => {
    assert.deepEqual(loadConfig({ LOGFILE: 'syslog' }).logTarget, { kind: 'syslog', host: '127.0.0.1', port: 514 });
    assert.deepEqual(loadConfig({ LOGFILE: 'syslog://10.1.2.3:5140' }).logTarget, { kind: 'syslog', host: '10.1.2.3', port: 5140 });
    assert.deepEqual(loadConfig({ LOGFILE: 'stderr' }).logTarget, { kind: 'stderr' });
  });
  it('ACCESS_LOG: a file, stdout or stderr, whatever VERBOSITY says; other log targets refused', () => {
    assert.deepEqual(loadConfig({ ACCESS_LOG: '/var/log/iipsrv/access.log', VERBOSITY: '0' }).accessLog, {
      kind: 'file',
      path: '/var/log/iipsrv/access.log',
    });
    assert.deepEqual(loadConfig({ ACCESS_LOG: 'logs/access.log' }).accessLog, { kind: 'file', path: 'logs/access.log' });
    assert.deepEqual(loadConfig({ ACCESS_LOG: 'stdout' }).accessLog, { kind: 'stdout' });
    assert.deepEqual(loadConfig({ ACCESS_LOG: 'STDERR' }).accessLog, { kind: 'stderr' });
    for (const value of ['-', 'syslog', 'syslog://10.1.2.3:514', '/var/log/']) {
      assert.throws(() => loadConfig({ ACCESS_LOG: value }), { name: 'ConfigError', message: /^ACCESS_LOG: / }, value);
    }
  });
  it('float cache sizes in iipsrv MB (1 024 000 bytes)', () => {
    assert.equal(loadConfig({ MAX_IMAGE_CACHE_SIZE: '0.5' }).maxImageCacheBytes, 512_000);
    assert.equal(loadConfig({ MAX_IMAGE_CACHE_SIZE: '0' }).maxImageCacheBytes, 0);
  });
});

describe('config: fallbacks iipsrv documents, with a warning', () => {
  it('clamps JPEG_QUALITY to 1-100', () => {
    const high = loadConfig({ JPEG_QUALITY: '150' });
    assert.equal(high.jpegQuality, 100);
    assert.match(high.warnings.join('\n'), /JPEG_QUALITY=150/);
    assert.equal(loadConfig({ JPEG_QUALITY: '0' }).jpegQuality, 1);
  });
  it('MAX_CVT: -1 unlimited (not 64 as 1.1 by accident), 0 default, small values raised to 64', () => {
    assert.equal(loadConfig({ MAX_CVT: '-1' }).maxCvt, Number.POSITIVE_INFINITY);
    assert.equal(loadConfig({ MAX_CVT: '0' }).maxCvt, 5000);
    const small = loadConfig({ MAX_CVT: '10' });
    assert.equal(small.maxCvt, 64);
    assert.equal(small.warnings.length, 1);
  });
  it('negative VERBOSITY is 0', () => {
    assert.equal(loadConfig({ VERBOSITY: '-3' }).verbosity, 0);
  });
  it('clamps watermark probability and opacity to 0-1', () => {
    const config = loadConfig({ WATERMARK: '/w.tif', WATERMARK_PROBABILITY: '2', WATERMARK_OPACITY: '-1' });
    assert.deepEqual(config.watermark, { path: '/w.tif', probability: 1, opacity: 0 });
  });
  it('EMBED_ICC=0 switches ICC embedding off, MAX_ICC=-1 lets any size through', () => {
    assert.equal(loadConfig({ EMBED_ICC: '0' }).maxIcc, 0);
    assert.equal(loadConfig({ MAX_ICC: '-1' }).maxIcc, Number.POSITIVE_INFINITY);
  });
  it('decode limits: MAX_TILE_BYTES, MAX_SAMPLES_PER_PIXEL, MAX_PROCESSING_PIXELS, with the engine defaults', () => {
    const config = loadConfig({});
    assert.deepEqual(
      { maxTileBytes: config.maxTileBytes, maxSamplesPerPixel: config.maxSamplesPerPixel, maxProcessingPixels: config.maxProcessingPixels },
      DEFAULT_DECODE_LIMITS,
    );
    const set = loadConfig({ MAX_TILE_BYTES: '1048576', MAX_SAMPLES_PER_PIXEL: '4', MAX_PROCESSING_PIXELS: '1000000' });
    assert.deepEqual([set.maxTileBytes, set.maxSamplesPerPixel, set.maxProcessingPixels], [1048576, 4, 1000000]);
    for (const [variable, value] of [
      ['MAX_TILE_BYTES', '0'],
      ['MAX_TILE_BYTES', '4294967296'],
      ['MAX_SAMPLES_PER_PIXEL', '-1'],
      ['MAX_PROCESSING_PIXELS', '32MB'],
    ] as const) {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: unknown) => error instanceof ConfigError && error.variable === variable,
      );
    }
  });
  it("images without a pyramid: PLAIN_MAX_PIXELS, PLAIN_MEMORY_PIXELS, PLAIN_CACHE_SIZE, PYRAMID_CACHE_DIR, PYRAMID_CACHE_SIZE, defaults the engine's", () => {
    assert.deepEqual(engineOptionsFor(loadConfig({})).plain, PLAIN_DEFAULTS);
    const set = loadConfig({
      PLAIN_MAX_PIXELS: '100000000',
      PLAIN_MEMORY_PIXELS: '1000000',
      PLAIN_CACHE_SIZE: '64',
      PYRAMID_CACHE_DIR: '/var/cache/iipsrv',
      PYRAMID_CACHE_SIZE: '1024',
    });
    assert.deepEqual(engineOptionsFor(set).plain, {
      maxInputPixels: 100_000_000,
      memoryPixels: 1_000_000,
      memoryBytes: 64 * 1024 * 1024,
      pyramidDir: '/var/cache/iipsrv',
      pyramidBytes: 1024 * 1024 * 1024,
    });
    for (const [variable, value] of [
      ['PLAIN_MAX_PIXELS', '0'],
      ['PLAIN_CACHE_SIZE', '-1'],
      ['PYRAMID_CACHE_SIZE', 'lots'],
    ] as const) {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: unknown) => error instanceof ConfigError && error.variable === variable,
      );
    }
  });
  it('IIIF_VERSION below 1 means the default 3', () => {
    assert.equal(loadConfig({ IIIF_VERSION: '0' }).iiifVersion, 3);
    assert.equal(loadConfig({ IIIF_VERSION: '2' }).iiifVersion, 2);
  });
  it('INTERPOLATION: 0 nearest, other numbers bilinear or better, names accepted', () => {
    assert.equal(loadConfig({ INTERPOLATION: '0' }).interpolation, 'nearest');
    assert.equal(loadConfig({ INTERPOLATION: '1' }).interpolation, 'bilinear');
    assert.equal(loadConfig({ INTERPOLATION: 'lanczos3' }).interpolation, 'lanczos3');
  });
  it('FILESYSTEM_CONFINE_SYMLINKS without FILESYSTEM_PREFIX has nothing to confine to: a warning', () => {
    assert.match(loadConfig({ FILESYSTEM_CONFINE_SYMLINKS: '1' }).warnings.join('\n'), /FILESYSTEM_CONFINE_SYMLINKS has no effect without FILESYSTEM_PREFIX/);
    const confined = loadConfig({ FILESYSTEM_CONFINE_SYMLINKS: '1', FILESYSTEM_PREFIX: '/srv/images/' });
    assert.equal(confined.filesystemConfineSymlinks, true);
    assert.deepEqual(confined.warnings, []);
  });
  it('accepts KAKADU_READMODE and DECODER_MODULES with a note that they do nothing here', () => {
    const config = loadConfig({ KAKADU_READMODE: '1', DECODER_MODULES: 'openjpeg' });
    assert.equal(config.kakaduReadmode, 1);
    assert.equal(config.warnings.length, 2);
  });
});

describe('config: start-up errors name the variable', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ JPEG_QUALITY: 'high' }, /^JPEG_QUALITY: expected a whole number/],
    [{ MAX_IMAGE_CACHE_SIZE: '10MB' }, /^MAX_IMAGE_CACHE_SIZE: expected a number/],
    [{ MAX_IMAGE_CACHE_SIZE: '-1' }, /^MAX_IMAGE_CACHE_SIZE/],
    [{ MAX_CVT: '-5' }, /^MAX_CVT/],
    [{ IIIF_VERSION: '4' }, /^IIIF_VERSION: expected 2 or 3/],
    [{ URI_MAP: 'iiif->IIIF' }, /^URI_MAP: "iiif->IIIF" is not of the form prefix=>protocol/],
    [{ URI_MAP: 'x=>wms' }, /^URI_MAP: unknown protocol "wms"/],
    [{ ALLOW_UPSCALING: 'maybe' }, /^ALLOW_UPSCALING: expected 0 or 1/],
    [{ MEMCACHED_SERVERS: 'cache:notaport' }, /^MEMCACHED_SERVERS/],
    [{ BASE_URL: 'example.org' }, /^BASE_URL/],
    [{ IIIF_EXTRA_INFO: '"rights": ' }, /^IIIF_EXTRA_INFO/],
    [{ INTERPOLATION: 'smooth' }, /^INTERPOLATION/],
    [{ FCGI_WEB_SERVER_ADDRS: 'localhost' }, /^FCGI_WEB_SERVER_ADDRS/],
    [{ JP2_MAX_DECODE_MB: '1GB' }, /^JP2_MAX_DECODE_MB: expected a whole number/],
    [{ JP2_HELPER_MEMORY_MB: '10' }, /^JP2_HELPER_MEMORY_MB: expected 0 \(no limit\) or at least 64 MB/],
    [{ JP2_HELPER_RSS_MB: '-1' }, /^JP2_HELPER_RSS_MB/],
    // A helper limit the header check would let decodes run into.
    [{ JP2_MAX_DECODE_MB: '1024', JP2_HELPER_MEMORY_MB: '1024' }, /^JP2_HELPER_MEMORY_MB: must exceed JP2_MAX_DECODE_MB by at least 64 MB/],
    [{ TRUSTED_HEADERS: 'X-Forwarded-Host, Host' }, /^TRUSTED_HEADERS: "host" is not one of/],
    [{ FCGI_IDLE_TIMEOUT: '-1' }, /^FCGI_IDLE_TIMEOUT: expected a number of seconds/],
    [{ FCGI_READ_TIMEOUT: '30s' }, /^FCGI_READ_TIMEOUT: expected a number/],
    [{ FCGI_MAX_CONNS: '0' }, /^FCGI_MAX_CONNS: expected a number of connections, at least 1/],
    [{ FCGI_MAX_REQS: '0' }, /^FCGI_MAX_REQS: expected a number of requests, at least 1/],
    [{ FCGI_MAX_PARAMS_SIZE: '1MB' }, /^FCGI_MAX_PARAMS_SIZE: expected a whole number/],
    [{ FCGI_MAX_PARAMS_SIZE: '100' }, /^FCGI_MAX_PARAMS_SIZE: expected a size in bytes, at least 1024/],
  ];
  for (const [env, message] of cases) {
    it(`${JSON.stringify(env)}`, () => {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }
});

describe('config: JPEG2000 decoder memory', () => {
  it('bounds a decode at 1 GB by its header, each decoder process at 2 GB, and replaces a helper holding over 256 MB', () => {
    const config = loadConfig({});
    assert.equal(config.jp2MaxDecodeBytes, 1024 * 1024 * 1024);
    assert.equal(config.jp2DecoderMemoryBytes, 2048 * 1024 * 1024);
    assert.equal(config.jp2HelperMaxResidentBytes, 256 * 1024 * 1024);
  });
  it('takes other sizes in MB, and 0 to switch each off', () => {
    const config = loadConfig({ JP2_MAX_DECODE_MB: '300', JP2_HELPER_MEMORY_MB: '512', JP2_HELPER_RSS_MB: '64' });
    assert.deepEqual(
      [config.jp2MaxDecodeBytes, config.jp2DecoderMemoryBytes, config.jp2HelperMaxResidentBytes],
      [300, 512, 64].map((mb) => mb * 1024 * 1024),
    );
    const off = loadConfig({ JP2_MAX_DECODE_MB: '0', JP2_HELPER_MEMORY_MB: '0', JP2_HELPER_RSS_MB: '0' });
    assert.deepEqual([off.jp2MaxDecodeBytes, off.jp2DecoderMemoryBytes, off.jp2HelperMaxResidentBytes], [0, 0, 0]);
  });
});

describe('config: FastCGI limits', () => {
  it('defaults far above what web servers need', () => {
    assert.deepEqual(loadConfig({}).fastcgi, {
      idleTimeoutMs: 120_000,
      readTimeoutMs: 30_000,
      maxConnections: 1024,
      maxRequestsPerConnection: 100,
      maxParamsBytes: 1024 * 1024,
      maxHeldInputBytes: 8 * 1024 * 1024,
    });
  });
  it('reads seconds (fractions allowed, 0 for none), counts and bytes', () => {
    const config = loadConfig({
      FCGI_IDLE_TIMEOUT: '0',
      FCGI_READ_TIMEOUT: '2.5',
      FCGI_MAX_CONNS: '50',
      FCGI_MAX_REQS: '1',
      FCGI_MAX_PARAMS_SIZE: '65536',
      FCGI_MAX_HELD_INPUT: '1048576',
    });
    assert.deepEqual(config.fastcgi, {
      idleTimeoutMs: 0,
      readTimeoutMs: 2500,
      maxConnections: 50,
      maxRequestsPerConnection: 1,
      maxParamsBytes: 65536,
      maxHeldInputBytes: 1048576,
    });
    assert.deepEqual(config.warnings, []);
  });
  it('raises FCGI_MAX_HELD_INPUT to what one request of FCGI_MAX_PARAMS_SIZE needs, with a warning', () => {
    const config = loadConfig({ FCGI_MAX_PARAMS_SIZE: '2000000', FCGI_MAX_HELD_INPUT: '1000' });
    assert.equal(config.fastcgi.maxHeldInputBytes, 2000000 + 8 + 65535 + 255);
    assert.match(config.warnings[0]!, /FCGI_MAX_HELD_INPUT=1000 cannot hold one request/);
  });
});

describe('config: list values', () => {
  it('URI_MAP takes several mappings, longest prefix first', () => {
    assert.deepEqual(parseUriMap('iiif=>IIIF deepzoom=>DeepZoom,iiif3=>iiif; zoomify=>Zoomify iip=>IIP'), [
      { prefix: 'deepzoom', protocol: 'deepzoom' },
      { prefix: 'zoomify', protocol: 'zoomify' },
      { prefix: 'iiif3', protocol: 'iiif' },
      { prefix: 'iiif', protocol: 'iiif' },
      { prefix: 'iip', protocol: 'iip' },
    ]);
  });
  it('URI_MAP with an empty prefix maps every path', () => {
    assert.deepEqual(parseUriMap('=>IIIF'), [{ prefix: '', protocol: 'iiif' }]);
  });
  it('TRUSTED_HEADERS: header names in any case, separated by commas or spaces, in one order', () => {
    assert.deepEqual(loadConfig({ TRUSTED_HEADERS: 'x-forwarded-proto X-IIIF-ID,X-Forwarded-Proto' }).trustedHeaders, ['x-iiif-id', 'x-forwarded-proto']);
  });
  it('MEMCACHED_SERVERS: host[:port] lists', () => {
    assert.deepEqual(parseMemcachedServers('a, b:11212 [::1]:11213'), [
      { host: 'a', port: 11211 },
      { host: 'b', port: 11212 },
      { host: '::1', port: 11213 },
    ]);
  });
});
