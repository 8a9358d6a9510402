/**
 * IIIF Image API 2.1 and 3.0 (`IIIF=` in the query string, or a URI_MAP prefix such as
 * `iiif=>IIIF`). It enters through the IIP command table, as in iipsrv, so IIP modifiers given
 * before it apply. Tiles that fall exactly on the pyramid's grid go through the engine's tile path
 * (caches, stored-JPEG passthrough), so they cost what an IIP JTL costs; everything else is a
 * region export.
 */
import { FileError, InvalidArgumentError } from '../../errors.js';
import { tileGrid, tileRect, planExactRegion, type LevelSize, type Rect } from '../../engine/view.js';
import { decodeImageName } from '../../engine/image-path.js';
import { CONTENT_TYPES } from '../../engine/encoders.js';
import type { HeaderList, IipRequest } from '../../request.js';
import { selectImage } from '../iip/fif.js';
import { imageResponse } from '../iip/responses.js';
import type { IipSession } from '../iip/session.js';
import { CONTEXTS, PROFILES, infoDocument, scaleFactors } from './info.js';
import {
  parseQualityFormat,
  parseRegion,
  parseRotation,
  parseSize,
  splitIiifPath,
  type IiifVersion,
  type ImageSize,
  type SizeLimits,
} from './params.js';

/** The version of a request: an Accept header naming a context wins over IIIF_VERSION. */
function versionFor(request: IipRequest, configured: IiifVersion): IiifVersion {
  const accept = request.headers.accept ?? '';
  if (accept.includes(CONTEXTS[2])) return 2;
  if (accept.includes(CONTEXTS[3])) return 3;
  return configured;
}

/**
 * The identifier's URI as the client reached it: BASE_URL, else the scheme and host it used
 * (behind a proxy, X-Forwarded-Proto and -Host) and the path up to the identifier. A front end may
 * impose its own with X-IIIF-ID.
 */
export function baseUri(session: IipSession, rawArgument: string, identifier: string): string {
  const { request } = session;
  const override = request.headers['x-iiif-id'];
  if (override) return override;
  const { baseUrl } = session.context.config;
  if (baseUrl !== '') return baseUrl + identifier;
  const forwardedProto = request.headers['x-forwarded-proto']?.split(',')[0]?.trim();
  const scheme = forwardedProto === 'https' || (forwardedProto === undefined && request.https) ? 'https' : 'http';
  const host = request.headers['x-forwarded-host']?.split(',')[0]?.trim() || request.headers.host || 'localhost';
  const argument = rawArgument.replace(/^\/+/, '');
  const queryStyle = /(^|&)iiif=/i.test(request.query) && request.query.includes(argument);
  if (queryStyle) return `${scheme}://${host}${request.path}?IIIF=${identifier}`;
  // Path style: the path ends with the argument; what comes before the identifier is the base.
  const path = request.path;
  const tail = argument.slice(identifier.length);
  const prefix = path.endsWith(argument) ? path.slice(0, path.length - argument.length) : path.endsWith(tail) ? path.slice(0, path.length - tail.length - identifier.length) : '/';
  return `${scheme}://${host}${prefix}${identifier}`;
}

function limitsOf(session: IipSession): SizeLimits {
  const { config } = session.context;
  return { maxWidth: config.maxCvt, maxHeight: config.maxCvt, allowUpscaling: config.allowUpscaling };
}

/**
 * The tile (level, column, row) whose pixels a region and size are exactly, as viewers ask for
 * them from info.json's tile size and scale factors; null for anything else.
 */
export function tileOnGrid(levels: LevelSize[], region: Rect, size: ImageSize): { level: number; col: number; row: number } | null {
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

function canonicalParameters(region: Rect, full: LevelSize, size: ImageSize, rotation: { degrees: number; mirror: boolean }, quality: string, extension: string, version: IiifVersion): string {
  const whole = region.left === 0 && region.top === 0 && region.width === full.width && region.height === full.height;
  const regionText = whole ? 'full' : [region.left, region.top, region.width, region.height].map((v) => Math.round(v)).join(',');
  const natural = size.width === Math.round(region.width) && size.height === Math.round(region.height);
  const sizeText = natural ? (version === 3 ? 'max' : 'full') : version === 3 ? `${size.width},${size.height}` : `${size.width},`;
  return `${regionText}/${sizeText}/${rotation.mirror ? '!' : ''}${rotation.degrees}/${quality}.${extension}`;
}

export async function iiif(session: IipSession, argument: string): Promise<void> {
  const { config, engine } = session.context;
  const version = versionFor(session.request, config.iiifVersion);
  const path = splitIiifPath(argument);

  if (path.kind === 'base') {
    // The identifier alone: its image information is at info.json (303, as the specification asks).
    try {
      await selectImage(session, decodeImageName(path.identifier));
    } catch (error) {
      // `a/b/c` names no image: more likely an image request short of parameters.
      if (!(error instanceof FileError) || !path.identifier.includes('/')) throw error;
      throw new InvalidArgumentError(
        `IIIF: not enough parameters in "${argument}": expected {identifier}/info.json or {identifier}/{region}/{size}/{rotation}/{quality}.{format}`,
      );
    }
    if (session.notModified) return;
    session.output = {
      status: 303,
      headers: [
        ['Location', `${baseUri(session, argument, path.identifier)}/info.json`],
        ['Cache-Control', config.cacheControl],
      ],
      body: Buffer.alloc(0),
    };
    return;
  }

  const identifier = path.kind === 'info' ? path.identifier : path.parts.identifier;
  await selectImage(session, decodeImageName(identifier));
  if (session.notModified) return;
  const image = session.image!;
  const { levels } = image.source.description;
  const full = levels[0]!;
  const id = baseUri(session, argument, identifier);
  const limits = limitsOf(session);
  const profileLink: [string, string] = ['Link', `<${PROFILES[version]}>;rel="profile"`];

  if (path.kind === 'info') {
    const body = Buffer.from(infoDocument(image.source.description, { id, version, limits, extraInfo: config.iiifExtraInfo }), 'utf8');
    // JSON-LD for clients that ask for it (or for nothing in particular), plain JSON otherwise.
    const accept = session.request.headers.accept ?? '';
    const ld = accept === '' || accept.includes('application/ld+json') || !accept.includes('application/json');
    const type = ld ? `application/ld+json;profile="${CONTEXTS[version]}"` : 'application/json';
    const extra: HeaderList = [profileLink];
    // A version chosen by the Accept header must not be served from a shared cache to others.
    if (version !== config.iiifVersion) extra.push(['Vary', 'Accept']);
    session.output = imageResponse(session, body, type, extra);
    return;
  }

  const { parts } = path;
  const region = parseRegion(parts.region, full);
  const size = parseSize(parts.size, region, limits, version);
  const rotation = parseRotation(parts.rotation);
  const { colour, format } = parseQualityFormat(parts.quality, version);
  const qualityName = parts.quality.replace(/\..*$/, '');
  const extension = parts.quality.includes('.') ? parts.quality.slice(parts.quality.lastIndexOf('.') + 1) : 'jpg';
  const canonical = `${id}/${canonicalParameters(region, full, size, rotation, qualityName === 'native' ? 'default' : qualityName, extension, version)}`;
  const headers: HeaderList = [
    ['Link', `<${canonical}>;rel="canonical"`],
    profileLink,
  ];

  const plain = colour === 'colour' && rotation.degrees === 0 && !rotation.mirror && format === 'jpeg';
  const tile = plain ? tileOnGrid(levels, region, size) : null;
  let body: Buffer;
  if (tile) {
    body = await engine.tile(image, {
      ...tile,
      format: 'jpeg',
      quality: session.effectiveQuality,
      passthrough: config.codecPassthrough && session.unprocessed,
      rotation: 0,
      mirror: false,
    });
  } else {
    body = await engine.region(image, planExactRegion(levels, region, size.width, size.height), {
      format,
      quality: session.effectiveQuality,
      rotation: rotation.degrees,
      mirror: rotation.mirror,
      colour,
    });
  }
  session.output = imageResponse(session, body, CONTENT_TYPES[format], headers);
}
