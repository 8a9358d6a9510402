/**
 * The IIIF image information document (info.json), for Image API 2.1 and 3.0, at compliance
 * level 2: the size, every pyramid level as a preferred size, the tile grid with the scale factors
 * of the pyramid, the limits (MAX_CVT, ALLOW_UPSCALING) and the optional features we support.
 */
import type { ImageDescription } from '../../engine/source.js';
import type { LevelSize } from '../../engine/geometry.js';
import { EXTENSION_QUALITIES, FORMAT_EXTENSIONS, type IiifVersion, type SizeLimits } from './params.js';

export const CONTEXTS: Record<IiifVersion, string> = {
  2: 'http://iiif.io/api/image/2/context.json',
  3: 'http://iiif.io/api/image/3/context.json',
};

export const PROFILES: Record<IiifVersion, string> = {
  2: 'http://iiif.io/api/image/2/level2.json',
  3: 'http://iiif.io/api/image/3/level2.json',
};

/**
 * Scale factor of each level against full resolution, as viewers compute tile regions with it: the
 * power of two whose halvings give the level, rounded either way (4000 px halved six times is 62
 * or 63, factor 64, where 4000 / 62 would say 65 and put every region off the stored grid); a
 * level that is no halving of the image gets its nearest whole ratio.
 */
export function scaleFactors(levels: LevelSize[]): number[] {
  let factors = knownFactors.get(levels);
  if (!factors) {
    const full = levels[0]!;
    factors = [];
    for (const level of levels) factors.push(factorOf(full, level, factors.at(-1) ?? 0));
    knownFactors.set(levels, factors);
  }
  return factors;
}

/** @param previous the factor of the level before (0 for the first) */
function factorOf(full: LevelSize, level: LevelSize, previous: number): number {
  // The longer side says the most; a level of a pixel or two is several halvings at once, so the
  // usual one, the level before halved again, is tried first.
  const ratio = full.width >= full.height ? full.width / level.width : full.height / level.height;
  const nearest = Math.round(Math.log2(ratio));
  for (const factor of [previous * 2, 2 ** nearest, 2 ** (nearest - 1), 2 ** (nearest + 1)]) {
    if (factor >= 1 && halvedTo(full.width, level.width, factor) && halvedTo(full.height, level.height, factor)) return factor;
  }
  return Math.max(1, Math.round(ratio));
}

/** `side` divided by `factor` and rounded either way is `reduced`. */
function halvedTo(side: number, reduced: number, factor: number): boolean {
  return reduced >= Math.floor(side / factor) && reduced <= Math.max(1, Math.ceil(side / factor));
}

/** Every tile request needs them: computed once per opened image (its levels array). */
const knownFactors = new WeakMap<LevelSize[], number[]>();

export interface InfoOptions {
  id: string;
  version: IiifVersion;
  limits: SizeLimits;
  /** IIIF_EXTRA_INFO: JSON members added as they are. */
  extraInfo: string;
  /** CORS headers are sent (CORS is set). */
  cors: boolean;
  /** The image's copyright, or COPYRIGHT; empty for none. */
  rights: string;
  /** IIIF_EXTENSIONS: the extra qualities (negative, stretch, equalization, log) are offered. */
  extensions?: boolean;
}

/** The limits as info.json states them: none where they do not restrict this image. */
function statedLimits(description: ImageDescription, limits: SizeLimits): { maxWidth?: number; maxHeight?: number } {
  const full = description.levels[0]!;
  const maxWidth = limits.allowUpscaling ? limits.maxWidth : Math.min(limits.maxWidth, full.width);
  const maxHeight = limits.allowUpscaling ? limits.maxHeight : Math.min(limits.maxHeight, full.height);
  const stated: { maxWidth?: number; maxHeight?: number } = {};
  // maxHeight may only be stated with maxWidth.
  if (Number.isFinite(maxWidth)) {
    stated.maxWidth = maxWidth;
    if (Number.isFinite(maxHeight)) stated.maxHeight = maxHeight;
  }
  return stated;
}

/** Rights as each version can carry them: a URI (v3 `rights`, v2 `license`), or v2 text (`attribution`). */
function rightsMembers(rights: string, version: IiifVersion): Record<string, string> {
  if (rights === '') return {};
  const uri = /^https?:\/\/\S+$/i.test(rights);
  if (version === 3) return uri ? { rights } : {};
  return uri ? { license: rights } : { attribution: rights };
}

/**
 * The physical dimensions service (IIIF services annex) from the file's resolution, as iipsrv
 * master adds it: the size of a pixel in inches or centimetres. A TIFF without ResolutionUnit is
 * in inches (the TIFF default; master says cm), one whose unit is "none" has no physical size
 * (master says cm), and a JPEG2000 resolution box counts too (per centimetre).
 */
function physicalDimensions(description: ImageDescription, options: InfoOptions): Record<string, unknown> | null {
  const { resolution } = description;
  const units = resolution?.unit === 2 ? 'in' : resolution?.unit === 3 ? 'cm' : null;
  if (!resolution || !units) return null;
  // 3.0 §5.7: every service has an id and a type (master's has neither, which fails the
  // validator's info_json). The annex's optional @id is a URI that returns the information: this
  // document does; the annex names no type, so it is the service's own name.
  const identity = options.version === 3 ? { '@id': `${options.id}/info.json#physdim`, '@type': 'PhysicalDimensions' } : {};
  return {
    '@context': 'http://iiif.io/api/annex/services/physdim/1/context.json',
    ...identity,
    profile: 'http://iiif.io/api/annex/services/physdim',
    // Six significant digits, as iipsrv prints it: TIFF resolutions are often single-precision
    // floats in disguise (libvips' 25.4 is 25.399999...), whose further digits mean nothing.
    physicalScale: Number((1 / resolution.x).toPrecision(6)),
    physicalUnits: units,
  };
}

export function infoDocument(description: ImageDescription, options: InfoOptions): string {
  const { levels } = description;
  const full = levels[0]!;
  const { limits } = options;
  const stated = statedLimits(description, options.limits);
  // Every level a client may ask for whole, smallest first.
  const sizes = [...levels]
    .reverse()
    .filter((l) => l.width <= limits.maxWidth && l.height <= limits.maxHeight)
    .map((l) => ({ width: l.width, height: l.height }));
  // One entry per tile size (levels may differ), each with the scale factors of its levels.
  const factors = scaleFactors(levels);
  const tiles: Array<{ width: number; height: number; scaleFactors: number[] }> = [];
  levels.forEach((level, i) => {
    let entry = tiles.find((t) => t.width === level.tileWidth && t.height === level.tileHeight);
    if (!entry) tiles.push((entry = { width: level.tileWidth, height: level.tileHeight, scaleFactors: [] }));
    if (!entry.scaleFactors.includes(factors[i]!)) entry.scaleFactors.push(factors[i]!);
  });
  for (const entry of tiles) entry.scaleFactors.sort((a, b) => a - b);
  const colour = description.channels >= 3;
  const extensionQualities = options.extensions ? EXTENSION_QUALITIES : [];
  // Upscaling is offered only where the site allows it; v3 also wants a maxWidth with it.
  const upscaling = limits.allowUpscaling && (options.version === 2 || stated.maxWidth !== undefined);

  let document: Record<string, unknown>;
  if (options.version === 3) {
    // Level 2 already has every region, size and 90-degree rotation form, CORS, JSON-LD and the
    // base URI redirect; these are beyond it.
    const extraFeatures = ['canonicalLinkHeader', 'mirroring', 'profileLinkHeader', 'rotationArbitrary'];
    if (upscaling) extraFeatures.push('sizeUpscaling');
    document = {
      '@context': CONTEXTS[3],
      id: options.id,
      type: 'ImageService3',
      protocol: 'http://iiif.io/api/image',
      profile: 'level2',
      width: full.width,
      height: full.height,
      ...stated,
      sizes,
      tiles,
      // Level 2 has jpg and png already.
      extraFormats: FORMAT_EXTENSIONS.filter((extension) => extension !== 'jpg' && extension !== 'png'),
      extraQualities: [...(colour ? ['color', 'gray', 'bitonal'] : ['gray', 'bitonal']), ...extensionQualities],
      extraFeatures,
      ...rightsMembers(options.rights, 3),
    };
  } else {
    const supports = [
      'baseUriRedirect',
      'canonicalLinkHeader',
      ...(options.cors ? ['cors'] : []),
      'jsonldMediaType',
      'mirroring',
      'profileLinkHeader',
      'regionByPct',
      'regionByPx',
      'regionSquare',
      'rotationArbitrary',
      'rotationBy90s',
      ...(upscaling ? ['sizeAboveFull'] : []),
      'sizeByConfinedWh',
      'sizeByDistortedWh',
      'sizeByForcedWh',
      'sizeByH',
      'sizeByPct',
      'sizeByW',
      'sizeByWh',
    ];
    document = {
      '@context': CONTEXTS[2],
      '@id': options.id,
      protocol: 'http://iiif.io/api/image',
      width: full.width,
      height: full.height,
      sizes,
      tiles,
      profile: [
        PROFILES[2],
        {
          formats: FORMAT_EXTENSIONS,
          qualities: [...(colour ? ['default', 'color', 'gray', 'bitonal'] : ['default', 'gray', 'bitonal']), ...extensionQualities],
          supports,
          ...stated,
        },
      ],
      ...rightsMembers(options.rights, 2),
    };
  }
  const physical = physicalDimensions(description, options);
  if (physical) document.service = [physical];
  if (options.extraInfo !== '') {
    // IIIF_EXTRA_INFO was checked as JSON members at start-up. New members come last; one that
    // names a member of ours (rights, say) replaces its value rather than duplicating the key.
    Object.assign(document, JSON.parse(`{${options.extraInfo}}`) as Record<string, unknown>);
  }
  return JSON.stringify(document, null, 2);
}
