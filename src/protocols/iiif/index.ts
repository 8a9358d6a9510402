/**
 * IIIF Image API 2.1 and 3.0 (`IIIF=` in the query string, or a URI_MAP prefix such as
 * `iiif=>IIIF`). It is a command of the IIP request string (the router hands it to the IIP
 * runner), as in iipsrv, so IIP modifiers given before it apply. Tiles that fall exactly on the pyramid's grid go through the engine's tile path
 * (caches, stored-JPEG passthrough), so they cost what an IIP JTL costs; everything else is a
 * region export.
 */
import { FileError, InvalidArgumentError } from '../../errors.js';
import { tileGrid, tileRect, planExactRegion, type LevelSize, type Rect } from '../../engine/geometry.js';
import { CONTENT_TYPES, type OutputFormat } from '../../engine/output/encoders.js';
import type { ColourMode } from '../../engine/engine.js';
import { STRETCH, type Processing } from '../../engine/pixels/processing.js';
import type { HeaderList, PlainRequest } from '../../request.js';
import { originVary, requestOrigin } from '../shared/origin.js';
import { contentDisposition, imageResponse } from '../shared/responses.js';
import { selectImage } from '../shared/select-image.js';
import type { Session } from '../shared/session.js';
import { CONTEXTS, PROFILES, infoDocument, scaleFactors } from './info.js';
import {
  parseQualityFormat,
  parseRegion,
  parseRotation,
  parseSize,
  splitIiifPath,
  type IiifVersion,
  type ImageRequestParts,
  type OutputSize,
  type Rotation,
  type SizeLimits,
} from './params.js';

/** The version of a request: an Accept header naming a context wins over IIIF_VERSION. */
function versionFor(request: PlainRequest, configured: IiifVersion): IiifVersion {
  const accept = request.headers.accept ?? '';
  if (accept.includes(CONTEXTS[2])) return 2;
  if (accept.includes(CONTEXTS[3])) return 3;
  return configured;
}

/**
 * The media type of info.json. v3: JSON-LD with the context as profile, unless the client accepts
 * plain JSON and not JSON-LD. v2: plain JSON unless the client asks for JSON-LD (2.1 §5.1 "MUST").
 */
export function infoContentType(accept: string, version: IiifVersion): string {
  const ld = `application/ld+json;profile="${CONTEXTS[version]}"`;
  const types = accept
    .split(',')
    .map((part) => part.split(';')[0]!.trim().toLowerCase())
    .filter((type) => type !== '');
  if (types.includes('application/ld+json')) return ld;
  if (types.includes('application/json')) return 'application/json';
  return version === 3 ? ld : 'application/json';
}

/**
 * The identifier's URI, in this order: BASE_URL; the front end's IIIF_ID parameter; X-IIIF-ID
 * when TRUSTED_HEADERS lists it (iipsrv takes it from anyone, and even over BASE_URL: an open
 * redirect); else the scheme and host the client reached (see requestOrigin) and the path up to
 * the identifier.
 */
export function baseUri(session: Session, rawArgument: string, identifier: string): string {
  const { request } = session;
  const { baseUrl, trustedHeaders } = session.context.config;
  if (baseUrl !== '') return (baseUrl.endsWith('/') ? baseUrl : baseUrl + '/') + identifier;
  if (request.iiifId) return request.iiifId;
  const imposed = trustedHeaders.includes('x-iiif-id') ? request.headers['x-iiif-id'] : undefined;
  if (imposed) return imposed;
  const { scheme, host } = requestOrigin(request, trustedHeaders);
  const argument = rawArgument.replace(/^\/+/, '');
  const queryStyle = /(^|&)iiif=/i.test(request.query) && request.query.includes(argument);
  if (queryStyle) return `${scheme}://${host}${request.path}?IIIF=${identifier}`;
  // Path style: the path ends with the argument; what comes before the identifier is the base.
  const path = request.path;
  const tail = argument.slice(identifier.length);
  const prefix = path.endsWith(argument)
    ? path.slice(0, path.length - argument.length)
    : path.endsWith(tail)
      ? path.slice(0, path.length - tail.length - identifier.length)
      : '/';
  return `${scheme}://${host}${prefix}${identifier}`;
}

/** The request headers baseUri's answer depends on, as Vary names them (Host is part of the URL). */
function baseUriVary(session: Session): string[] {
  const { baseUrl, trustedHeaders } = session.context.config;
  if (baseUrl !== '' || session.request.iiifId) return [];
  return [...(trustedHeaders.includes('x-iiif-id') ? ['X-IIIF-ID'] : []), ...originVary(trustedHeaders)];
}

/** Vary, when the answer depends on any request header. */
function varyHeader(session: Session): HeaderList {
  return session.vary.length > 0 ? [['Vary', session.vary.join(', ')]] : [];
}

/**
 * MAX_CVT and ALLOW_UPSCALING as IIIF applies them. info.json promises the tiles it lists, so the
 * limit is never below the image's tile size (MAX_CVT may be as low as 64).
 */
function limitsOf(session: Session, levels: LevelSize[]): SizeLimits {
  let limits = knownLimits.get(levels);
  if (!limits) {
    const { config } = session.context;
    let tileWidth = 0;
    let tileHeight = 0;
    for (const l of levels) {
      tileWidth = Math.max(tileWidth, l.tileWidth);
      tileHeight = Math.max(tileHeight, l.tileHeight);
    }
    limits = { maxWidth: Math.max(config.maxCvt, tileWidth), maxHeight: Math.max(config.maxCvt, tileHeight), allowUpscaling: config.allowUpscaling };
    knownLimits.set(levels, limits);
  }
  return limits;
}

/** Per opened image (its levels array); the configuration does not change while a worker runs. */
const knownLimits = new WeakMap<LevelSize[], SizeLimits>();

/**
 * The tile (level, column, row) whose pixels a region and size are exactly, as viewers ask for
 * them from info.json's tile size and scale factors; null for anything else. The size must be the
 * tile's on both sides, a side derived from `w,` or `,h` too: a level rounded down (3001 px halved
 * to 1500) holds 441x512 px as a 220x256 tile, while `220,` of that region is 220x255.
 */
export function tileOnGrid(levels: LevelSize[], region: Rect, size: OutputSize): { level: number; col: number; row: number } | null {
  const full = levels[0]!;
  const factors = scaleFactors(levels);
  for (let level = 0; level < levels.length; level++) {
    const at = levels[level]!;
    const factor = factors[level]!;
    const spanX = at.tileWidth * factor;
    const spanY = at.tileHeight * factor;
    if (region.left % spanX !== 0 || region.top % spanY !== 0) continue;
    const col = region.left / spanX;
    const row = region.top / spanY;
    const { across, down } = tileGrid(at);
    if (col >= across || row >= down) continue;
    if (region.width !== Math.min(spanX, full.width - region.left) || region.height !== Math.min(spanY, full.height - region.top)) continue;
    const rect = tileRect(at, col, row);
    if (rect.width === size.width && rect.height === size.height) return { level, col, row };
  }
  return null;
}

/** `22.5`, `90`: integers where possible, no trailing zeros. */
function degreesText(degrees: number): string {
  return String(Number(degrees.toFixed(6)));
}

/** The canonical form of a request (3.0 §4.8, 2.1 §4.7), for the Link header. */
function canonicalParameters(
  region: Rect,
  full: LevelSize,
  size: OutputSize,
  rotation: Rotation,
  quality: string,
  extension: string,
  version: IiifVersion,
): string {
  const whole = region.left === 0 && region.top === 0 && region.width === full.width && region.height === full.height;
  const regionText = whole ? 'full' : [region.left, region.top, region.width, region.height].map((v) => Math.round(v)).join(',');
  // The region at its own size: what `max` (v3) and `full` (v2) give.
  const natural = size.width === Math.max(1, Math.round(region.width)) && size.height === Math.max(1, Math.round(region.height));
  let sizeText: string;
  if (version === 3) {
    if (natural || (size.max && !size.upscaled)) sizeText = 'max';
    else if (size.max) sizeText = '^max';
    else sizeText = `${size.upscaled ? '^' : ''}${size.width},${size.height}`;
  } else {
    sizeText = natural ? 'full' : size.distorted ? `${size.width},${size.height}` : `${size.width},`;
  }
  return `${regionText}/${sizeText}/${rotation.mirror ? '!' : ''}${degreesText(rotation.degrees)}/${quality}.${extension}`;
}

/** An image request worked out: what to read, what to make, and its canonical parameters. */
interface ImageRequestPlan {
  region: Rect;
  size: OutputSize;
  rotation: Rotation;
  colour: ColourMode;
  format: OutputFormat;
  /** The stored tile when the request is exactly one (the tile path), else null. */
  tile: { level: number; col: number; row: number } | null;
  canonicalTail: string;
  /** An IIIF_EXTENSIONS quality's processing, added to the session's. */
  effect: ((p: Processing) => Processing) | null;
}

/** iipsrv 1.3's IIIF_EXTENSIONS qualities are its IIP commands. */
const EFFECTS: Record<string, (p: Processing) => Processing> = {
  negative: (p) => ({ ...p, invert: true }),
  stretch: (p) => ({ ...p, contrast: STRETCH }),
  equalization: (p) => ({ ...p, equalise: true }),
  log: (p) => ({ ...p, gamma: 'log' }),
};

/**
 * Viewers ask for the same tile URLs over and over (every client, every pan): each image keeps
 * the plans of its recent requests, so that a tile request costs what an IIP JTL costs.
 */
const PLANS_PER_IMAGE = 4096;
const knownPlans = new WeakMap<LevelSize[], Map<string, ImageRequestPlan>>();

function planImageRequest(
  parts: ImageRequestParts,
  argument: string,
  levels: LevelSize[],
  limits: SizeLimits,
  version: IiifVersion,
  extensions: boolean,
): ImageRequestPlan {
  let plans = knownPlans.get(levels);
  if (!plans) knownPlans.set(levels, (plans = new Map()));
  const key = `${version}${extensions ? 'x' : ''}${argument}`;
  const known = plans.get(key);
  if (known) return known;

  const full = levels[0]!;
  const region = parseRegion(parts.region, full);
  const size = parseSize(parts.size, region, limits, version);
  const rotation = parseRotation(parts.rotation);
  const { colour, format, quality, extension } = parseQualityFormat(parts.quality, version, extensions);
  const effect = colour === 'colour' && Object.hasOwn(EFFECTS, quality) ? EFFECTS[quality]! : null;
  const plain = colour === 'colour' && rotation.degrees === 0 && !rotation.mirror && format === 'jpeg';
  const tile = plain ? tileOnGrid(levels, region, size) : null;
  const plan: ImageRequestPlan = {
    region,
    size,
    rotation,
    colour,
    format,
    tile,
    canonicalTail: canonicalParameters(region, full, size, rotation, quality, extension, version),
    effect,
  };
  // Bounded the simple way: a full table starts again.
  if (plans.size >= PLANS_PER_IMAGE) plans.clear();
  plans.set(key, plan);
  return plan;
}

export async function iiif(session: Session, argument: string): Promise<void> {
  const { config, engine } = session.context;
  const version = versionFor(session.request, config.iiifVersion);
  const path = splitIiifPath(argument);
  // The version and the media type of info.json follow the Accept header.
  if (path.kind === 'info') session.vary.push('Accept');
  session.vary.push(...baseUriVary(session));

  if (path.kind === 'base') {
    // The identifier alone: its image information is at info.json (303, as the specification asks).
    let image;
    try {
      image = await selectImage(session, path.identifier, config.iiifDelimiter);
    } catch (error) {
      // `a/b/c` names no image: more likely an image request short of parameters.
      if (!(error instanceof FileError) || !path.identifier.includes('/')) throw error;
      throw new InvalidArgumentError(
        `IIIF: not enough parameters in "${argument}": expected {identifier}/info.json or {identifier}/{region}/{size}/{rotation}/{quality}.{format}`,
      );
    }
    if (!image) return;
    session.output = {
      status: 303,
      headers: [['Location', `${baseUri(session, argument, path.identifier)}/info.json`], ['Cache-Control', config.cacheControl], ...varyHeader(session)],
      body: Buffer.alloc(0),
    };
    return;
  }

  const identifier = path.kind === 'info' ? path.identifier : path.parts.identifier;
  const image = await selectImage(session, identifier, config.iiifDelimiter);
  if (!image) return;
  const { description } = image.source;
  const { levels } = description;
  const id = baseUri(session, argument, identifier);
  const limits = limitsOf(session, levels);
  const profileLink = `<${PROFILES[version]}>;rel="profile"`;

  if (path.kind === 'info') {
    const rights = description.metadata.copyright ?? config.copyright;
    const body = Buffer.from(
      infoDocument(description, {
        id,
        version,
        limits,
        extraInfo: config.iiifExtraInfo,
        cors: config.cors !== '',
        rights,
        extensions: config.iiifExtensions,
      }),
      'utf8',
    );
    const type = infoContentType(session.request.headers.accept ?? '', version);
    session.output = imageResponse(session, body, type, [['Link', profileLink], ...varyHeader(session)]);
    return;
  }

  const plan = planImageRequest(path.parts, argument, levels, limits, version, config.iiifExtensions);
  const { region, size, rotation, colour, format, tile, canonicalTail, effect } = plan;
  const processing = effect ? effect(session.processing) : session.processing;
  let body: Buffer;
  if (tile) {
    body = session.bytesOf(await engine.tile(image, effect ? { ...session.tileRequest(tile), processing, passthrough: false } : session.tileRequest(tile)));
  } else {
    const output = { ...session.regionOutput(format, { rotation: rotation.degrees, mirror: rotation.mirror }), processing, colour };
    body = session.bytesOf(await engine.region(image, planExactRegion(levels, region, size.width, size.height), output, session.request.signal));
  }
  // One Link header with both links: clients that read a single header (the IIIF validator, many
  // HTTP libraries' get()) would otherwise miss the second. CVT's Content-Disposition, on tiles
  // too: a client cannot tell which path made its image.
  const headers: HeaderList = [
    ['Link', `<${id}/${canonicalTail}>;rel="canonical", ${profileLink}`],
    contentDisposition(image.name, format),
    ...varyHeader(session),
  ];
  session.output = imageResponse(session, body, CONTENT_TYPES[format], headers);
}
