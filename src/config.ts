/**
 * Every environment variable iipsrv reads (1.1 and the later releases), parsed once into one typed,
 * validated object. Existing iipsrv configurations must keep working unchanged, so:
 *  - values iipsrv documents a fallback for (out-of-range qualities, MAX_CVT below 64 ...) take that
 *    fallback and leave a warning, which the start-up banner logs;
 *  - values iipsrv would have silently turned into 0 through atoi ("abc", "10MB") are start-up errors
 *    naming the variable and what it accepts, because a silent 0 is never what the admin meant.
 * Nothing else in the program reads process.env.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Protocol = 'iip' | 'iiif' | 'deepzoom' | 'zoomify';

export interface UriMapping {
  /** Path prefix without slashes (`iiif` matches `/iiif/...`); empty matches every path. */
  prefix: string;
  protocol: Protocol;
}

export type LogTarget = { kind: 'none' } | { kind: 'file'; path: string } | { kind: 'stderr' } | { kind: 'syslog'; host: string; port: number };

/** ACCESS_LOG: where the per-request JSON lines go (independent of LOGFILE and VERBOSITY). */
export type AccessLogTarget = { kind: 'none' } | { kind: 'file'; path: string } | { kind: 'stderr' } | { kind: 'stdout' };

export type Interpolation = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos3';

/**
 * Request headers that may decide the URLs the server gives out (TRUSTED_HEADERS), lower case.
 * Only a proxy in front that sets them, replacing what the client sent, makes them trustworthy.
 */
export type TrustedHeader = 'x-iiif-id' | 'x-forwarded-host' | 'x-forwarded-proto';

export const TRUSTABLE_HEADERS: readonly TrustedHeader[] = ['x-iiif-id', 'x-forwarded-host', 'x-forwarded-proto'];

export interface MemcachedServer {
  host: string;
  port: number;
}

/** The FastCGI listener's limits, per worker process (see README.md, Configuration). */
export interface FastCgiLimits {
  /** A connection with no request in progress (or whose peer stops reading) is closed after this; 0: never. */
  idleTimeoutMs: number;
  /** A request's input must arrive within this of its BEGIN_REQUEST; 0: no limit. */
  readTimeoutMs: number;
  maxConnections: number;
  maxRequestsPerConnection: number;
  maxParamsBytes: number;
  maxHeldInputBytes: number;
}

/**
 * Far above what nginx, Apache or lighttpd need: they send a request's PARAMS and STDIN at once
 * and one request at a time per connection; nginx drops its own idle upstream connections after
 * 60 s (keepalive_timeout), before ours would; Apache's default header limits (100 fields of
 * 8190 bytes) stay under the params size.
 */
export const FASTCGI_LIMIT_DEFAULTS: Readonly<FastCgiLimits> = {
  idleTimeoutMs: 120_000,
  readTimeoutMs: 30_000,
  maxConnections: 1024,
  maxRequestsPerConnection: 100,
  maxParamsBytes: 1024 * 1024,
  maxHeldInputBytes: 8 * 1024 * 1024,
};

/** FILESYSTEM_PREFIX naming an object store (`s3://bucket/prefix/`, `https://host/path/`) and the REMOTE_* settings. */
export interface RemoteStoreConfig {
  location: { kind: 's3'; bucket: string; forcePathStyle: boolean } | { kind: 'http'; baseUrl: string };
  /** What every key starts with: the prefix's path after the bucket or host, without a leading slash. */
  keyPrefix: string;
  /** REMOTE_TIMEOUT (one attempt), REMOTE_ATTEMPTS, REMOTE_BACKOFF. */
  timeouts: { requestTimeoutMs: number; attempts: number; backoffMs: number };
  /** REMOTE_CHECK_INTERVAL: how long the store's answer about an object (its ETag, or that it is missing) is trusted. */
  checkIntervalMs: number;
  /** REMOTE_BLOCK_CACHE (MB): file structure kept in RAM per worker. */
  blockCacheBytes: number;
  /** REMOTE_CACHE_DIR and REMOTE_CACHE_SIZE (MB): local copies for decoders that read files. */
  copiesDir: string;
  copiesBytes: number;
}

export interface Config {
  logTarget: LogTarget;
  /** 0 = no log at all; 1 = start-up banner and errors; 2 = one line per request; 3-6 more detail. */
  verbosity: number;
  /** ACCESS_LOG: one JSON line per request answered, whatever VERBOSITY says; none by default. */
  accessLog: AccessLogTarget;
  /** RAM response cache bound in bytes (MAX_IMAGE_CACHE_SIZE MB x 1 024 000, as iipsrv counts); 0 disables. */
  maxImageCacheBytes: number;
  /** Parsed-image-header cache entries; 0 = none, -1 = unbounded. */
  maxMetadataCacheEntries: number;
  filesystemPrefix: string;
  /** Set when FILESYSTEM_PREFIX names an object store rather than a directory. */
  remote: RemoteStoreConfig | null;
  filesystemSuffix: string;
  /** FILESYSTEM_CONFINE_SYMLINKS: refuse files whose links lead outside the prefix. */
  filesystemConfineSymlinks: boolean;
  filenamePattern: string;
  jpegQuality: number;
  pngQuality: number;
  webpQuality: number;
  avifQuality: number;
  avifCodec: number;
  tiffCompression: 'none' | 'lzw' | 'deflate' | 'jpeg' | 'webp' | 'zstd';
  tiffQuality: number;
  /** Largest CVT/IIIF output side in pixels; Infinity when MAX_CVT=-1. */
  maxCvt: number;
  allowUpscaling: boolean;
  /** JPEG2000 quality layers decoded: 0 = half of them, -1 = all. */
  maxLayers: number;
  /** JP2_MAX_DECODE_MB in bytes: most memory one JPEG2000 decode may need by its header's account; 0 = no check. */
  jp2MaxDecodeBytes: number;
  /** JP2_HELPER_MEMORY_MB in bytes: address-space limit of each JPEG2000 decoder process; 0 = none. */
  jp2DecoderMemoryBytes: number;
  /** JP2_HELPER_RSS_MB in bytes: a decoder helper holding more after a decode is replaced; 0 = never. */
  jp2HelperMaxResidentBytes: number;
  watermark: { path: string; probability: number; opacity: number } | null;
  /** Empty = no memcached tier. */
  memcachedServers: MemcachedServer[];
  /** Entry lifetime in seconds. */
  memcachedTimeout: number;
  /**
   * MEMCACHED_LEASE: longest a request waits, in ms, for a tile or region another worker or
   * instance has leased (is rendering) before rendering it itself; 0 = no lease.
   */
  memcachedLeaseMs: number;
  /**
   * CACHE_GENERATION_CHECK: how long, in ms, a server uses an image's cache generation before it
   * asks memcached again; `iipsrv purge` takes effect within this. 0 = ask for every request.
   */
  cacheGenerationCheckMs: number;
  /** METRICS: Prometheus metrics at /metrics; null = the default (on with --http, off in FastCGI alone). */
  metrics: boolean | null;
  /** METRICS_PATH: the path /metrics answers on (FastCGI sites choose one their web server passes on). */
  metricsPath: string;
  /** HEALTH_PATH: the path the health answer is given on (besides the query `HEALTH`). */
  healthPath: string;
  /** VIEWER: the viewer page (an image list and OpenSeadragon); off unless asked for. */
  viewer: boolean;
  /** VIEWER_PATH: where the viewer page and its scripts are served, ending in `/`. */
  viewerPath: string;
  interpolation: Interpolation;
  /** Access-Control-Allow-Origin value; empty = no CORS headers. */
  cors: string;
  baseUrl: string;
  /** Headers allowed to decide IIIF ids and redirects when BASE_URL is unset; none by default. */
  trustedHeaders: TrustedHeader[];
  uriMap: UriMapping[];
  cacheControl: string;
  /** Largest ICC profile embedded in outputs, in bytes: 0 = never, Infinity = always. */
  maxIcc: number;
  codecPassthrough: boolean;
  iiifVersion: 2 | 3;
  iiifDelimiter: string;
  /** JSON members (without braces) added to every info.json. */
  iiifExtraInfo: string;
  iiifExtensions: boolean;
  copyright: string;
  kakaduReadmode: number;
  /** Threads for image processing (OMP_NUM_THREADS); 0 = library default. */
  threads: number;
  /** FCGI_WEB_SERVER_ADDRS: the only peers allowed to connect; empty = anyone. */
  allowedPeers: string[];
  /** MAX_TILE_BYTES: largest tile or strip decoded, in bytes (width x height x samples x bytes a sample). */
  maxTileBytes: number;
  /** MAX_SAMPLES_PER_PIXEL: most samples (bands) a pixel of an image may have. */
  maxSamplesPerPixel: number;
  /** MAX_PROCESSING_PIXELS: most pixels of one region decoded whole into memory (processing commands, raw samples). */
  maxProcessingPixels: number;
  /** PLAIN_MAX_PIXELS: non-pyramidal images claiming more pixels are refused. */
  plainMaxPixels: number;
  /** PLAIN_MEMORY_PIXELS: non-pyramidal images up to this size are decoded whole and kept. */
  plainMemoryPixels: number;
  /** PLAIN_CACHE_SIZE (MB): bytes of decoded small images a worker keeps. */
  plainCacheBytes: number;
  /** PYRAMID_CACHE_DIR: where pyramids of big non-pyramidal images are built; '' = none. */
  pyramidCacheDir: string;
  /** PYRAMID_CACHE_SIZE (MB): bytes of pyramids kept in PYRAMID_CACHE_DIR. */
  pyramidCacheBytes: number;
  fastcgi: FastCgiLimits;
  /** Notes for the start-up log: fallbacks taken and variables accepted but without effect here. */
  warnings: string[];
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Reads one variable; whitespace around it is an editing accident in unit files, not meaning. */
function read(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined ? undefined : raw.trim();
}

function integer(env: Env, name: string, fallback: number): number {
  const value = read(env, name);
  if (value === undefined || value === '') return fallback;
  if (!/^[+-]?\d+$/.test(value)) throw new ConfigError(name, `expected a whole number, got "${value}"`);
  return Number.parseInt(value, 10);
}

function decimal(env: Env, name: string, fallback: number): number {
  const value = read(env, name);
  if (value === undefined || value === '') return fallback;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(value)) {
    throw new ConfigError(name, `expected a number, got "${value}"`);
  }
  return Number.parseFloat(value);
}

/** iipsrv treats any non-zero integer as true; we also take the usual words. */
function flag(env: Env, name: string, fallback: boolean): boolean {
  const value = read(env, name)?.toLowerCase();
  if (value === undefined || value === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['0', 'false', 'no', 'off'].includes(value)) return false;
  if (/^[+-]?\d+$/.test(value)) return Number.parseInt(value, 10) !== 0;
  throw new ConfigError(name, `expected 0 or 1, got "${value}"`);
}

/** A duration in seconds (fractions allowed), 0 for none; as milliseconds. */
function seconds(env: Env, name: string, fallback: number): number {
  const value = decimal(env, name, fallback);
  if (value < 0 || !Number.isFinite(value)) throw new ConfigError(name, 'expected a number of seconds, 0 (none) or more');
  return Math.round(value * 1000);
}

/** A count or size that must be at least `min`. */
function atLeast(env: Env, name: string, fallback: number, min: number, unit: string): number {
  const value = integer(env, name, fallback);
  if (value < min) throw new ConfigError(name, `expected ${unit}, at least ${min}, got ${value}`);
  return value;
}

/** A request path: begins with a slash. */
function parsePath(env: Env, name: string, fallback: string): string {
  const value = read(env, name);
  if (value === undefined || value === '') return fallback;
  if (!value.startsWith('/') || /[?#\s]/.test(value)) throw new ConfigError(name, `expected a path beginning with /, got "${value}"`);
  return value;
}

/**
 * The viewer answers every path under its own, so `/` would take every request from the
 * protocols; a path without its final `/` gets one (the page's links are below it). Plain
 * characters only: the path is written into HTML and matched against request paths as they came.
 */
function parseViewerPath(env: Env): string {
  const value = parsePath(env, 'VIEWER_PATH', '/viewer/');
  if (value === '/' || !/^\/[A-Za-z0-9._~/-]+$/.test(value)) {
    throw new ConfigError('VIEWER_PATH', `expected a path below / of letters, digits and . _ ~ - /, such as /viewer/, got "${value}"`);
  }
  return value.endsWith('/') ? value : value + '/';
}

/** Whole bytes of a record of the largest size (header, 65535 bytes, 255 of padding). */
const LARGEST_RECORD_BYTES = 8 + 0xffff + 0xff;

function parseFastCgiLimits(env: Env, warnings: string[]): FastCgiLimits {
  const defaults = FASTCGI_LIMIT_DEFAULTS;
  const maxParamsBytes = atLeast(env, 'FCGI_MAX_PARAMS_SIZE', defaults.maxParamsBytes, 1024, 'a size in bytes');
  let maxHeldInputBytes = atLeast(env, 'FCGI_MAX_HELD_INPUT', defaults.maxHeldInputBytes, 1, 'a size in bytes');
  const needed = maxParamsBytes + LARGEST_RECORD_BYTES;
  if (maxHeldInputBytes < needed) {
    warnings.push(`FCGI_MAX_HELD_INPUT=${maxHeldInputBytes} cannot hold one request of FCGI_MAX_PARAMS_SIZE; using ${needed}`);
    maxHeldInputBytes = needed;
  }
  return {
    idleTimeoutMs: seconds(env, 'FCGI_IDLE_TIMEOUT', defaults.idleTimeoutMs / 1000),
    readTimeoutMs: seconds(env, 'FCGI_READ_TIMEOUT', defaults.readTimeoutMs / 1000),
    maxConnections: atLeast(env, 'FCGI_MAX_CONNS', defaults.maxConnections, 1, 'a number of connections'),
    maxRequestsPerConnection: atLeast(env, 'FCGI_MAX_REQS', defaults.maxRequestsPerConnection, 1, 'a number of requests'),
    maxParamsBytes,
    maxHeldInputBytes,
  };
}

function clamp(warnings: string[], name: string, value: number, min: number, max: number): number {
  const clamped = Math.min(max, Math.max(min, value));
  if (clamped !== value) warnings.push(`${name}=${value} is outside ${min}-${max}; using ${clamped}`);
  return clamped;
}

function parseLogTarget(env: Env): LogTarget {
  const value = read(env, 'LOGFILE');
  if (value === undefined || value === '') return { kind: 'none' };
  if (value === '-' || value.toLowerCase() === 'stderr') return { kind: 'stderr' };
  if (value.toLowerCase() === 'syslog') return { kind: 'syslog', host: '127.0.0.1', port: 514 };
  // Extension: syslog://host:port for a syslog daemon that is not on the default UDP port.
  const remote = /^syslog:\/\/([^:/]+)(?::(\d+))?\/?$/i.exec(value);
  if (remote) return { kind: 'syslog', host: remote[1]!, port: Number(remote[2] ?? 514) };
  return { kind: 'file', path: value };
}

/**
 * A file path, `stdout` or `stderr`. The words LOGFILE also takes for other targets are refused
 * rather than taken as file names: `ACCESS_LOG=syslog` creating a file called syslog would
 * surprise.
 */
function parseAccessLog(env: Env): AccessLogTarget {
  const value = read(env, 'ACCESS_LOG');
  if (value === undefined || value === '') return { kind: 'none' };
  const word = value.toLowerCase();
  if (word === 'stdout' || word === 'stderr') return { kind: word };
  if (word === '-' || word === 'syslog' || word.startsWith('syslog://')) {
    throw new ConfigError('ACCESS_LOG', `"${value}" is not a target here: give a file path, stdout or stderr`);
  }
  if (value.endsWith('/')) throw new ConfigError('ACCESS_LOG', `"${value}" names a directory: give a file path, stdout or stderr`);
  return { kind: 'file', path: value };
}

const PROTOCOLS: Record<string, Protocol> = {
  iip: 'iip',
  fif: 'iip',
  iiif: 'iiif',
  deepzoom: 'deepzoom',
  zoomify: 'zoomify',
};

/**
 * `prefix=>protocol`, several separated by whitespace, commas or semicolons (iipsrv takes one;
 * several is a superset that old configs never hit).
 */
export function parseUriMap(value: string): UriMapping[] {
  const mappings: UriMapping[] = [];
  for (const entry of value.split(/[\s,;]+/).filter(Boolean)) {
    const arrow = entry.indexOf('=>');
    if (arrow < 0) throw new ConfigError('URI_MAP', `"${entry}" is not of the form prefix=>protocol`);
    const prefix = entry.slice(0, arrow).replace(/^\/+|\/+$/g, '');
    const name = entry.slice(arrow + 2).toLowerCase();
    const protocol = PROTOCOLS[name];
    if (!protocol) {
      throw new ConfigError('URI_MAP', `unknown protocol "${name}" (use IIP, IIIF, DeepZoom or Zoomify)`);
    }
    if (mappings.some((m) => m.prefix === prefix)) {
      throw new ConfigError('URI_MAP', `prefix "${prefix}" is mapped twice`);
    }
    mappings.push({ prefix, protocol });
  }
  // Longest prefix first so that `iiif3` is not captured by `iiif`.
  return mappings.sort((a, b) => b.prefix.length - a.prefix.length);
}

export function parseMemcachedServers(value: string | undefined): MemcachedServer[] {
  if (value === undefined) return [{ host: 'localhost', port: 11211 }];
  const servers: MemcachedServer[] = [];
  for (const entry of value.split(/[\s,]+/).filter(Boolean)) {
    // host, host:port, [v6]:port
    const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry);
    const port = Number(match?.[2] ?? 11211);
    if (!match || port < 1 || port > 65535) {
      throw new ConfigError('MEMCACHED_SERVERS', `"${entry}" is not host[:port]`);
    }
    servers.push({ host: match[1]!.replace(/^\[|\]$/g, ''), port });
  }
  return servers;
}

function parseInterpolation(env: Env): Interpolation {
  const value = read(env, 'INTERPOLATION')?.toLowerCase();
  if (value === undefined || value === '') return 'bilinear';
  const named: Record<string, Interpolation> = {
    nearest: 'nearest',
    bilinear: 'bilinear',
    linear: 'bilinear',
    bicubic: 'bicubic',
    cubic: 'bicubic',
    lanczos: 'lanczos3',
    lanczos3: 'lanczos3',
  };
  if (named[value]) return named[value]!;
  if (/^[+-]?\d+$/.test(value)) {
    // iipsrv: 0 is nearest neighbour, anything else bilinear. 2 and 3 pick the better kernels.
    const n = Number.parseInt(value, 10);
    return n === 0 ? 'nearest' : n === 2 ? 'bicubic' : n === 3 ? 'lanczos3' : 'bilinear';
  }
  throw new ConfigError('INTERPOLATION', `expected 0 (nearest), 1 (bilinear), 2 (bicubic), 3 (lanczos3) or a name, got "${value}"`);
}

function parseTiffCompression(env: Env, warnings: string[]): Config['tiffCompression'] {
  const value = read(env, 'TIFF_COMPRESSION')?.toLowerCase();
  if (value === undefined || value === '') return 'deflate';
  const byNumber: Config['tiffCompression'][] = ['none', 'lzw', 'deflate', 'jpeg', 'webp', 'zstd'];
  if (/^\d+$/.test(value)) {
    const chosen = byNumber[Number(value)];
    if (chosen) return chosen;
    warnings.push(`TIFF_COMPRESSION=${value} is not 0-5; using 0 (none) as iipsrv does`);
    return 'none';
  }
  if ((byNumber as string[]).includes(value)) return value as Config['tiffCompression'];
  if (value === 'zip') return 'deflate';
  throw new ConfigError('TIFF_COMPRESSION', `expected 0-5 or none/lzw/deflate/jpeg/webp/zstd, got "${value}"`);
}

function parseBaseUrl(env: Env): string {
  const value = read(env, 'BASE_URL') ?? '';
  if (value !== '' && !/^(https?:)?\/\//i.test(value) && !value.startsWith('/')) {
    throw new ConfigError('BASE_URL', `expected an absolute URL such as https://example.org/iiif/, got "${value}"`);
  }
  return value;
}

function parseTrustedHeaders(env: Env): TrustedHeader[] {
  const names = (read(env, 'TRUSTED_HEADERS') ?? '')
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((name) => name.toLowerCase());
  const trusted: TrustedHeader[] = [];
  for (const name of names) {
    const known = TRUSTABLE_HEADERS.find((header) => header === name);
    if (!known) throw new ConfigError('TRUSTED_HEADERS', `"${name}" is not one of X-IIIF-ID, X-Forwarded-Host, X-Forwarded-Proto`);
    if (!trusted.includes(known)) trusted.push(known);
  }
  // One order whatever the spelling, so that Vary headers are the same from every configuration.
  return TRUSTABLE_HEADERS.filter((header) => trusted.includes(header));
}

function parseExtraInfo(env: Env): string {
  const value = read(env, 'IIIF_EXTRA_INFO') ?? '';
  if (value === '') return '';
  // iipsrv pastes it into info.json verbatim; refuse what would make every info.json invalid JSON.
  const members = value.replace(/,\s*$/, '');
  try {
    const parsed: unknown = JSON.parse(`{${members}}`);
    if (typeof parsed !== 'object' || parsed === null) throw new Error('not an object');
  } catch {
    throw new ConfigError('IIIF_EXTRA_INFO', `expected JSON members such as "rights": "https://...", got ${value}`);
  }
  return members;
}

function parseAllowedPeers(env: Env): string[] {
  const value = read(env, 'FCGI_WEB_SERVER_ADDRS') ?? '';
  const peers = value.split(/[\s,]+/).filter(Boolean);
  for (const peer of peers) {
    if (!/^[\d.]+$|^[\da-f:]+$/i.test(peer)) {
      throw new ConfigError('FCGI_WEB_SERVER_ADDRS', `"${peer}" is not an IP address`);
    }
  }
  return peers;
}

/** A limit that must be a positive whole number, at most `max`. */
function limit(env: Env, name: string, fallback: number, max: number): number {
  const value = integer(env, name, fallback);
  if (value < 1 || value > max) throw new ConfigError(name, `expected a whole number from 1 to ${max}, got ${value}`);
  return value;
}

export function loadConfig(env: Env = process.env): Config {
  const warnings: string[] = [];

  let verbosity = integer(env, 'VERBOSITY', 1);
  if (verbosity < 0) verbosity = 0;
  if (verbosity > 6) verbosity = clamp(warnings, 'VERBOSITY', verbosity, 0, 6);

  const cacheMb = decimal(env, 'MAX_IMAGE_CACHE_SIZE', 10);
  if (cacheMb < 0) throw new ConfigError('MAX_IMAGE_CACHE_SIZE', 'expected a size in MB, 0 or more');

  const metadataEntries = integer(env, 'MAX_METADATA_CACHE_SIZE', 1000);
  if (metadataEntries < -1) throw new ConfigError('MAX_METADATA_CACHE_SIZE', 'expected -1 (unbounded), 0 or a count');

  // MAX_CVT: -1 = unlimited (iipsrv 1.2+; 1.1 turned it into 64 by accident), 0 = default.
  const maxCvtRaw = integer(env, 'MAX_CVT', 5000);
  let maxCvt: number;
  if (maxCvtRaw === -1) maxCvt = Number.POSITIVE_INFINITY;
  else if (maxCvtRaw === 0) maxCvt = 5000;
  else if (maxCvtRaw < 0) throw new ConfigError('MAX_CVT', 'expected -1 (unlimited) or a size in pixels');
  else maxCvt = clamp(warnings, 'MAX_CVT', maxCvtRaw, 64, Number.MAX_SAFE_INTEGER);

  const watermarkPath = read(env, 'WATERMARK') ?? '';
  const watermark =
    watermarkPath === ''
      ? null
      : {
          path: watermarkPath,
          probability: clamp(warnings, 'WATERMARK_PROBABILITY', decimal(env, 'WATERMARK_PROBABILITY', 1), 0, 1),
          opacity: clamp(warnings, 'WATERMARK_OPACITY', decimal(env, 'WATERMARK_OPACITY', 1), 0, 1),
        };

  const memcachedTimeout = integer(env, 'MEMCACHED_TIMEOUT', 86400);
  if (memcachedTimeout < 0) throw new ConfigError('MEMCACHED_TIMEOUT', 'expected a lifetime in seconds, 0 or more');

  // EMBED_ICC (1.1) switches embedding off; MAX_ICC (1.3) bounds the profile size. Both honoured.
  const embedIcc = flag(env, 'EMBED_ICC', true);
  const maxIccRaw = integer(env, 'MAX_ICC', 65536);
  if (maxIccRaw < -1) throw new ConfigError('MAX_ICC', 'expected -1 (any size), 0 (never) or a size in bytes');
  const maxIcc = !embedIcc ? 0 : maxIccRaw === -1 ? Number.POSITIVE_INFINITY : maxIccRaw;

  let iiifVersionRaw = integer(env, 'IIIF_VERSION', 3);
  if (iiifVersionRaw < 1) iiifVersionRaw = 3;
  if (iiifVersionRaw !== 2 && iiifVersionRaw !== 3) {
    throw new ConfigError('IIIF_VERSION', `expected 2 or 3, got ${iiifVersionRaw}`);
  }

  const threads = integer(env, 'OMP_NUM_THREADS', 0);
  if (threads < 0) throw new ConfigError('OMP_NUM_THREADS', 'expected a thread count');

  const kakaduReadmode = integer(env, 'KAKADU_READMODE', 0);
  if (read(env, 'KAKADU_READMODE')) warnings.push('KAKADU_READMODE is accepted but has no effect: JPEG2000 is decoded with OpenJPEG');
  if (read(env, 'DECODER_MODULES')) warnings.push('DECODER_MODULES is accepted but has no effect: decoders are built in');

  const uriMapValue = read(env, 'URI_MAP') ?? '';

  // JPEG2000 decoder memory. The helper's limit must leave room for what the header check lets
  // through, or files it accepts would fail in the decoder instead.
  const megabytes = (name: string, fallback: number, min: number) => {
    const value = integer(env, name, fallback);
    if (value !== 0 && value < min) throw new ConfigError(name, `expected 0 (no limit) or at least ${min} MB, got ${value}`);
    return value * 1024 * 1024;
  };
  const jp2MaxDecodeBytes = megabytes('JP2_MAX_DECODE_MB', 1024, 16);
  const jp2DecoderMemoryBytes = megabytes('JP2_HELPER_MEMORY_MB', 2048, 64);
  const jp2HelperMaxResidentBytes = megabytes('JP2_HELPER_RSS_MB', 256, 16);
  if (jp2DecoderMemoryBytes > 0 && jp2MaxDecodeBytes > 0 && jp2MaxDecodeBytes + 64 * 1024 * 1024 > jp2DecoderMemoryBytes) {
    throw new ConfigError(
      'JP2_HELPER_MEMORY_MB',
      `must exceed JP2_MAX_DECODE_MB by at least 64 MB (got ${jp2DecoderMemoryBytes / 1048576} and ${jp2MaxDecodeBytes / 1048576})`,
    );
  }

  const plainCacheMb = decimal(env, 'PLAIN_CACHE_SIZE', 128);
  if (plainCacheMb < 0) throw new ConfigError('PLAIN_CACHE_SIZE', 'expected a size in MB, 0 or more');
  const pyramidCacheMb = decimal(env, 'PYRAMID_CACHE_SIZE', 10240);
  if (pyramidCacheMb < 0) throw new ConfigError('PYRAMID_CACHE_SIZE', 'expected a size in MB, 0 or more');

  const filesystemPrefix = env.FILESYSTEM_PREFIX ?? '';
  const filesystemConfineSymlinks = flag(env, 'FILESYSTEM_CONFINE_SYMLINKS', false);
  if (filesystemConfineSymlinks && filesystemPrefix === '') warnings.push('FILESYSTEM_CONFINE_SYMLINKS has no effect without FILESYSTEM_PREFIX');
  const remote = parseRemoteStore(env, filesystemPrefix);
  if (filesystemConfineSymlinks && remote) warnings.push('FILESYSTEM_CONFINE_SYMLINKS has no effect on an object store');

  return {
    logTarget: parseLogTarget(env),
    verbosity,
    accessLog: parseAccessLog(env),
    maxImageCacheBytes: Math.round(cacheMb * 1_024_000),
    maxMetadataCacheEntries: metadataEntries,
    filesystemPrefix,
    remote,
    filesystemSuffix: env.FILESYSTEM_SUFFIX ?? '',
    filesystemConfineSymlinks,
    filenamePattern: env.FILENAME_PATTERN || '_pyr_',
    jpegQuality: clamp(warnings, 'JPEG_QUALITY', integer(env, 'JPEG_QUALITY', 75), 1, 100),
    pngQuality: clamp(warnings, 'PNG_QUALITY', integer(env, 'PNG_QUALITY', 1), 0, 9),
    webpQuality: clamp(warnings, 'WEBP_QUALITY', integer(env, 'WEBP_QUALITY', 50), -1, 100),
    avifQuality: clamp(warnings, 'AVIF_QUALITY', integer(env, 'AVIF_QUALITY', 50), -1, 100),
    avifCodec: clamp(warnings, 'AVIF_CODEC', integer(env, 'AVIF_CODEC', 0), 0, 3),
    tiffCompression: parseTiffCompression(env, warnings),
    tiffQuality: clamp(warnings, 'TIFF_QUALITY', integer(env, 'TIFF_QUALITY', 1), 0, 100),
    maxCvt,
    allowUpscaling: flag(env, 'ALLOW_UPSCALING', true),
    maxLayers: Math.max(-1, integer(env, 'MAX_LAYERS', 0)),
    jp2MaxDecodeBytes,
    jp2DecoderMemoryBytes,
    jp2HelperMaxResidentBytes,
    watermark,
    memcachedServers: parseMemcachedServers(env.MEMCACHED_SERVERS),
    memcachedTimeout,
    memcachedLeaseMs: seconds(env, 'MEMCACHED_LEASE', 2),
    cacheGenerationCheckMs: seconds(env, 'CACHE_GENERATION_CHECK', 5),
    metrics: read(env, 'METRICS') ? flag(env, 'METRICS', false) : null,
    metricsPath: parsePath(env, 'METRICS_PATH', '/metrics'),
    healthPath: parsePath(env, 'HEALTH_PATH', '/health'),
    viewer: flag(env, 'VIEWER', false),
    viewerPath: parseViewerPath(env),
    interpolation: parseInterpolation(env),
    cors: read(env, 'CORS') ?? '',
    baseUrl: parseBaseUrl(env),
    trustedHeaders: parseTrustedHeaders(env),
    uriMap: parseUriMap(uriMapValue),
    cacheControl: read(env, 'CACHE_CONTROL') || 'max-age=86400',
    maxIcc,
    codecPassthrough: flag(env, 'CODEC_PASSTHROUGH', true),
    iiifVersion: iiifVersionRaw,
    iiifDelimiter: read(env, 'IIIF_DELIMITER') ?? '',
    iiifExtraInfo: parseExtraInfo(env),
    iiifExtensions: flag(env, 'IIIF_EXTENSIONS', false),
    copyright: read(env, 'COPYRIGHT') ?? '',
    kakaduReadmode: clamp(warnings, 'KAKADU_READMODE', kakaduReadmode, 0, 2),
    threads,
    allowedPeers: parseAllowedPeers(env),
    // The defaults are the engine's (engine/decode-limits.ts); a tile beyond 2 GiB no Buffer holds.
    maxTileBytes: limit(env, 'MAX_TILE_BYTES', 32 * 1024 * 1024, 0x7fff_ffff),
    maxSamplesPerPixel: limit(env, 'MAX_SAMPLES_PER_PIXEL', 1024, 0xffff),
    maxProcessingPixels: limit(env, 'MAX_PROCESSING_PIXELS', 32 * 1024 * 1024, Number.MAX_SAFE_INTEGER),
    plainMaxPixels: limit(env, 'PLAIN_MAX_PIXELS', 1 << 30, Number.MAX_SAFE_INTEGER),
    plainMemoryPixels: Math.max(0, integer(env, 'PLAIN_MEMORY_PIXELS', 16 * 1024 * 1024)),
    plainCacheBytes: Math.round(plainCacheMb * 1024 * 1024),
    pyramidCacheDir: read(env, 'PYRAMID_CACHE_DIR') ?? '',
    pyramidCacheBytes: Math.round(pyramidCacheMb * 1024 * 1024),
    fastcgi: parseFastCgiLimits(env, warnings),
    warnings,
  };
}

/**
 * FILESYSTEM_PREFIX `s3://bucket/prefix/` or `http(s)://host/path/`: images in an object store.
 * The AWS SDK reads its own variables (AWS_REGION, AWS_ENDPOINT_URL[_S3], credentials); path-style
 * addressing (MinIO, Ceph and most stores that are not AWS) is AWS_S3_FORCE_PATH_STYLE=1.
 */
function parseRemoteStore(env: Env, prefix: string): RemoteStoreConfig | null {
  const s3 = /^s3:\/\/([^/]*)\/?(.*)$/i.exec(prefix);
  const http = /^(https?:\/\/[^/?#]+)(\/[^?#]*)?$/i.exec(prefix);
  if (!s3 && !http && !/^[a-z][a-z0-9+.-]*:\/\//i.test(prefix)) return null;
  let location: RemoteStoreConfig['location'];
  let keyPrefix: string;
  if (s3) {
    const bucket = s3[1]!;
    // S3's bucket naming rules, loosely: stores other than AWS allow a little more.
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/.test(bucket))
      throw new ConfigError('FILESYSTEM_PREFIX', `"${bucket}" is not a bucket name (s3://BUCKET/optional/prefix/)`);
    location = { kind: 's3', bucket, forcePathStyle: flag(env, 'AWS_S3_FORCE_PATH_STYLE', false) };
    keyPrefix = s3[2]!;
  } else if (http) {
    let url: URL;
    try {
      url = new URL(http[1]!);
    } catch {
      throw new ConfigError('FILESYSTEM_PREFIX', `"${prefix}" is not a URL`);
    }
    if (url.username || url.password) throw new ConfigError('FILESYSTEM_PREFIX', 'credentials in the URL would end up in logs: give none');
    location = { kind: 'http', baseUrl: `${url.protocol}//${url.host}/` };
    keyPrefix = (http[2] ?? '/').replace(/^\/+/, '');
  } else {
    throw new ConfigError('FILESYSTEM_PREFIX', `"${prefix.split(':')[0]}" is no store we read: use a directory, s3://, http:// or https://`);
  }
  const timeoutMs = seconds(env, 'REMOTE_TIMEOUT', 10);
  if (timeoutMs === 0) throw new ConfigError('REMOTE_TIMEOUT', 'expected a number of seconds above 0');
  const blockMb = decimal(env, 'REMOTE_BLOCK_CACHE', 64);
  if (blockMb < 0) throw new ConfigError('REMOTE_BLOCK_CACHE', 'expected a size in MB, 0 or more');
  const copiesMb = decimal(env, 'REMOTE_CACHE_SIZE', 10240);
  if (copiesMb <= 0) throw new ConfigError('REMOTE_CACHE_SIZE', 'expected a size in MB above 0');
  return {
    location,
    keyPrefix,
    timeouts: {
      requestTimeoutMs: timeoutMs,
      attempts: atLeast(env, 'REMOTE_ATTEMPTS', 3, 1, 'a number of attempts'),
      backoffMs: seconds(env, 'REMOTE_BACKOFF', 0.1),
    },
    checkIntervalMs: seconds(env, 'REMOTE_CHECK_INTERVAL', 5),
    blockCacheBytes: Math.round(blockMb * 1024 * 1024),
    copiesDir: read(env, 'REMOTE_CACHE_DIR') || join(tmpdir(), 'iipsrv-ts-objects'),
    copiesBytes: Math.round(copiesMb * 1024 * 1024),
  };
}

/** The settings as the start-up banner lists them (no secrets live in iipsrv's variables). */
export function describeConfig(config: Config): Record<string, unknown> {
  const { warnings: _warnings, ...rest } = config;
  return {
    ...rest,
    maxCvt: Number.isFinite(config.maxCvt) ? config.maxCvt : 'unlimited',
    maxIcc: Number.isFinite(config.maxIcc) ? config.maxIcc : 'unlimited',
  };
}
