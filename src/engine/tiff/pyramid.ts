/**
 * Pyramid discovery (iipsrv 1.2+ behaviour, a superset of 1.1): IFD 0 must be tiled; if its SubIFDs
 * hold successively smaller images (OME-TIFF style) the pyramid is IFD 0 + those SubIFDs, otherwise
 * it is IFD 0 + the main-chain IFDs that are tiled, not masks, of the same sample layout as IFD 0 and
 * each smaller than the previous level (thumbnails, labels and other pages are skipped).
 */
import { TiffFormatError } from './errors.js';
import { type Ifd, isUnsignedIntegerType, readIfd, StructureBudget, type IfdEntry, type TiffHeader } from './ifd.js';
import type { RandomAccessFile } from './positioned-file.js';
import { Tag, tagName } from './tags.js';
import type { StackPage, TiffLevel } from './types.js';

/**
 * Longest main IFD chain read, and most SubIFDs of IFD 0: a pyramid has a level per halving (30
 * for a gigapixel side), multi-page files a few hundred pages; beyond these a file is refused as
 * corrupt. (Before, a crafted chain of 65,530 directories cost 5 s to open, 65,530 SubIFDs 3.6 s
 * of a blocked event loop.)
 */
export const MAX_IFDS = 1024;
export const MAX_SUBIFDS = 64;
/** Directories read between two turns of the event loop while following a long chain. */
const IFDS_PER_TURN = 64;
/** Largest tile edge accepted. */
export const MAX_TILE_SIZE = 65536;
const MAX_DIMENSION = 0xffff_ffff;

/** The tags needed to describe a directory as a (candidate) pyramid level. */
const DIRECTORY_TAGS: readonly number[] = [
  Tag.NewSubfileType,
  Tag.ImageWidth,
  Tag.ImageLength,
  Tag.BitsPerSample,
  Tag.Compression,
  Tag.Photometric,
  Tag.SamplesPerPixel,
  Tag.RowsPerStrip,
  Tag.PlanarConfig,
  Tag.TileWidth,
  Tag.TileLength,
  Tag.Predictor,
  Tag.ExtraSamples,
  Tag.SampleFormat,
  Tag.JPEGTables,
];

/**
 * Tags of one value that shape how a level is read: libtiff refuses a level whose core tags have
 * another count; a Predictor of several values (libtiff drops it with a warning, and decodes the
 * tiles as if unpredicted) is refused as well rather than guessed at.
 */
const SINGLE_VALUED: readonly number[] = [
  Tag.ImageWidth,
  Tag.ImageLength,
  Tag.Compression,
  Tag.Photometric,
  Tag.SamplesPerPixel,
  Tag.PlanarConfig,
  Tag.TileWidth,
  Tag.TileLength,
  Tag.Predictor,
];

/** The compressions libtiff applies a predictor to (others ignore the tag). */
const PREDICTED_COMPRESSIONS = new Set([5, 8, 32946, 34925, 50000]);

/** A directory's image properties, as stored (not validated). */
export interface Directory {
  ifd: Ifd;
  /** Main-chain index (of the parent for SubIFDs) and SubIFD index (-1 for main-chain IFDs). */
  page: number;
  subifd: number;
  what: string;
  newSubfileType: number;
  width: number;
  height: number;
  tiled: boolean;
  tileWidth: number;
  tileHeight: number;
  rowsPerStrip: number;
  compression: number;
  photometric: number;
  samplesPerPixel: number;
  bitsPerSample: number;
  sampleFormat: number;
  planarConfig: number;
  predictor: number;
  extraSamples: number[];
}

/** Where a level's TileOffsets or TileByteCounts (StripOffsets/StripByteCounts) array is. */
export interface ArrayRef {
  tag: number;
  type: number;
  position: number;
  byteLength: number;
  /** The bytes, when they came with the directory (inline or right after it). */
  bytes: Buffer | undefined;
}

export interface LevelLayout {
  level: TiffLevel;
  what: string;
  offsets: ArrayRef;
  byteCounts: ArrayRef;
  tilesPerPlane: number;
  planes: number;
}

export interface Pyramid {
  first: Directory;
  levels: LevelLayout[];
  /** The pages of a stack, or empty when the file is one image. */
  stack: StackPage[];
}

async function describe(
  source: RandomAccessFile,
  ifd: Ifd,
  page: number,
  subifd: number,
  what: string,
  extraTags: readonly number[] = [],
  optionalTags: readonly number[] = [],
): Promise<Directory> {
  await Promise.all([
    ifd.preload(source, extraTags.length > 0 ? [...DIRECTORY_TAGS, ...extraTags] : DIRECTORY_TAGS),
    optionalTags.length > 0 ? ifd.preloadOptional(source, optionalTags) : undefined,
  ]);
  const samplesPerPixel = ifd.number(Tag.SamplesPerPixel, 1);
  const height = ifd.number(Tag.ImageLength, 0);
  const tiled = ifd.has(Tag.TileWidth) && ifd.has(Tag.TileLength);
  return {
    ifd,
    page,
    subifd,
    what,
    newSubfileType: ifd.number(Tag.NewSubfileType, 0),
    width: ifd.number(Tag.ImageWidth, 0),
    height,
    tiled,
    tileWidth: ifd.number(Tag.TileWidth, 0),
    tileHeight: ifd.number(Tag.TileLength, 0),
    rowsPerStrip: ifd.number(Tag.RowsPerStrip, MAX_DIMENSION),
    compression: ifd.number(Tag.Compression, 1),
    // Photometric is required; guess like most readers do when a writer forgot it.
    photometric: ifd.number(Tag.Photometric, samplesPerPixel >= 3 ? 2 : 1),
    samplesPerPixel,
    bitsPerSample: ifd.number(Tag.BitsPerSample, 1),
    sampleFormat: ifd.number(Tag.SampleFormat, 1),
    planarConfig: ifd.number(Tag.PlanarConfig, 1),
    predictor: ifd.number(Tag.Predictor, 1),
    extraSamples: ifd.numbers(Tag.ExtraSamples, samplesPerPixel) ?? [],
  };
}

function corrupt(what: string, problem: string): TiffFormatError {
  return new TiffFormatError(`corrupt TIFF: ${what} ${problem}`);
}

function arrayRef(source: RandomAccessFile, d: Directory, tag: number, needed: number): ArrayRef {
  const entry: IfdEntry | undefined = d.ifd.entry(tag);
  if (!entry) throw new TiffFormatError(`corrupt TIFF: ${d.what} has no ${tagName(tag)}`);
  if (!isUnsignedIntegerType(entry.type)) throw corrupt(d.what, `has ${tagName(tag)} of field type ${entry.type}`);
  if (entry.count < needed) throw corrupt(d.what, `has ${entry.count} ${tagName(tag)} values for ${needed} tiles`);
  if (!entry.inline && !source.contains(entry.position, entry.byteLength)) {
    throw new TiffFormatError(
      `truncated TIFF: ${tagName(tag)} of ${d.what} (${entry.byteLength} bytes at offset ${entry.position}) is beyond the end of the file (${source.size} bytes)`,
    );
  }
  const peeked = d.ifd.peek(entry);
  return {
    tag,
    type: entry.type,
    position: entry.position,
    byteLength: entry.byteLength,
    bytes: peeked ? Buffer.from(peeked) : undefined,
  };
}

/** Validate a directory chosen as a pyramid level and locate its tile arrays. */
export function layoutLevel(source: RandomAccessFile, d: Directory): LevelLayout {
  const { what } = d;
  if (!d.ifd.has(Tag.ImageWidth) || !d.ifd.has(Tag.ImageLength)) throw corrupt(what, 'has no ImageWidth/ImageLength');
  for (const tag of SINGLE_VALUED) {
    const count = d.ifd.entry(tag)?.count ?? 1;
    if (count !== 1) throw corrupt(what, `has ${count} values of ${tagName(tag)}, where one is expected`);
  }
  const valid = (n: number, max: number) => Number.isInteger(n) && n >= 1 && n <= max;
  if (!valid(d.width, MAX_DIMENSION) || !valid(d.height, MAX_DIMENSION)) throw corrupt(what, `has an invalid image size ${d.width}x${d.height}`);
  if (!valid(d.samplesPerPixel, 0xffff)) throw corrupt(what, `has an invalid SamplesPerPixel ${d.samplesPerPixel}`);
  if (!valid(d.bitsPerSample, 64)) throw corrupt(what, `has an unsupported BitsPerSample ${d.bitsPerSample}`);
  if (!Number.isSafeInteger(d.width * d.height * d.samplesPerPixel * Math.ceil(d.bitsPerSample / 8))) {
    throw corrupt(what, `has an absurd image size ${d.width}x${d.height}x${d.samplesPerPixel} (overflow)`);
  }
  if (d.planarConfig !== 1 && d.planarConfig !== 2) throw corrupt(what, `has an invalid PlanarConfiguration ${d.planarConfig}`);
  if (PREDICTED_COMPRESSIONS.has(d.compression) && d.predictor !== 1 && d.predictor !== 2 && d.predictor !== 3) {
    throw corrupt(what, `has an unsupported Predictor ${d.predictor} (1, 2 and 3 are defined)`);
  }

  let tileWidth: number;
  let tileHeight: number;
  if (d.tiled) {
    if (!valid(d.tileWidth, MAX_TILE_SIZE) || !valid(d.tileHeight, MAX_TILE_SIZE)) {
      throw corrupt(what, `has an invalid tile size ${d.tileWidth}x${d.tileHeight}`);
    }
    tileWidth = d.tileWidth;
    tileHeight = d.tileHeight;
  } else {
    if (!Number.isInteger(d.rowsPerStrip) || d.rowsPerStrip < 1) throw corrupt(what, `has an invalid RowsPerStrip ${d.rowsPerStrip}`);
    tileWidth = d.width;
    tileHeight = Math.min(d.rowsPerStrip, d.height);
  }
  const tilesAcross = Math.ceil(d.width / tileWidth);
  const tilesDown = Math.ceil(d.height / tileHeight);
  const tilesPerPlane = tilesAcross * tilesDown;
  const planes = d.planarConfig === 2 ? d.samplesPerPixel : 1;
  const needed = tilesPerPlane * planes;
  if (!Number.isSafeInteger(needed)) throw corrupt(what, 'has too many tiles');
  const offsets = arrayRef(source, d, d.tiled ? Tag.TileOffsets : Tag.StripOffsets, needed);
  const byteCounts = arrayRef(source, d, d.tiled ? Tag.TileByteCounts : Tag.StripByteCounts, needed);

  const tables = d.ifd.bytes(Tag.JPEGTables);
  return {
    what,
    offsets,
    byteCounts,
    tilesPerPlane,
    planes,
    level: {
      width: d.width,
      height: d.height,
      tileWidth,
      tileHeight,
      tiled: d.tiled,
      page: d.page,
      subifd: d.subifd,
      compression: d.compression,
      photometric: d.photometric,
      samplesPerPixel: d.samplesPerPixel,
      bitsPerSample: d.bitsPerSample,
      sampleFormat: d.sampleFormat,
      planarConfig: d.planarConfig,
      predictor: d.predictor,
      extraSamples: d.extraSamples,
      jpegTables: tables && tables.length > 0 ? Buffer.from(tables) : null,
      tilesAcross,
      tilesDown,
    },
  };
}

/**
 * Levels are shown as IFD 0 says (iipsrv takes its colour space for all) but decoded as their own
 * tags say: a MinIsWhite page in an RGB pyramid is not one of its levels. YCbCr and RGB are the
 * same pixels once decoded (JPEG pyramids mix them).
 */
function samePhotometric(a: number, b: number): boolean {
  const rgb = (p: number) => (p === 6 ? 2 : p);
  return rgb(a) === rgb(b);
}

/** True if `d` can be the next (smaller) level after `previous` in a pyramid whose full resolution is `first`. */
function isReduction(d: Directory, previous: Directory, first: Directory): boolean {
  // libvips (8.14) writes SampleFormat in IFD 0 only of a float pyramid; iipsrv takes IFD 0's for every level.
  if (!d.ifd.has(Tag.SampleFormat)) d.sampleFormat = first.sampleFormat;
  return (
    (d.newSubfileType & 4) === 0 &&
    d.samplesPerPixel === first.samplesPerPixel &&
    samePhotometric(d.photometric, first.photometric) &&
    d.bitsPerSample === first.bitsPerSample &&
    d.sampleFormat === first.sampleFormat &&
    d.width >= 1 &&
    d.height >= 1 &&
    d.width <= previous.width &&
    d.height <= previous.height &&
    (d.width < previous.width || d.height < previous.height)
  );
}

/** The tags a main-chain directory is read with beyond {@link DIRECTORY_TAGS}: a stack page's name and scale. */
const PAGE_TAGS: readonly number[] = [Tag.DocumentName, Tag.StoNits];

function stackPage(d: Directory): StackPage {
  const scale = d.ifd.number(Tag.StoNits);
  return { name: d.ifd.text(Tag.DocumentName) ?? '', scale: scale !== undefined && Number.isFinite(scale) ? scale : 1 };
}

/** Master iipsrv takes the main-chain directories of NewSubfileType 2 (a page) as the pages of a stack. */
function isPage(d: Directory): boolean {
  return d.ifd.has(Tag.NewSubfileType) && d.newSubfileType === 2;
}

/** `d` and the reductions among its SubIFDs (OME-TIFF style), largest first. */
async function withSubIfdLevels(
  source: RandomAccessFile,
  header: TiffHeader,
  d: Directory,
  budget: StructureBudget,
  seen: Set<number>,
): Promise<LevelLayout[]> {
  const levels = [layoutLevel(source, d)];
  const count = d.ifd.entry(Tag.SubIFDs)?.count ?? 0;
  if (count > MAX_SUBIFDS) throw corrupt(d.what, `has ${count} SubIFDs, more than ${MAX_SUBIFDS} (the most read)`);
  const subOffsets = d.ifd.numbers(Tag.SubIFDs) ?? [];
  subOffsets.forEach((offset, i) => {
    if (seen.has(offset)) throw new TiffFormatError(`corrupt TIFF: IFD loop (SubIFD ${i} of ${d.what} at offset ${offset} was already read)`);
    seen.add(offset);
  });
  const subDirectories = await Promise.all(
    subOffsets.map(async (offset, i) => {
      const what = `SubIFD ${i} of ${d.what}`;
      return describe(source, await readIfd(source, header, offset, what, budget), d.page, i, what);
    }),
  );
  let previous = d;
  for (const sub of subDirectories) {
    if (!isReduction(sub, previous, d)) continue;
    levels.push(layoutLevel(source, sub));
    previous = sub;
  }
  return levels;
}

/**
 * Read the directories and choose the pyramid levels, and tell a stack of pages from a pyramid as
 * master iipsrv does: when IFD 0 has reduced resolutions in its SubIFDs, or when the first tiled
 * directory after it has IFD 0's size (pages too small for a pyramid), the main-chain directories of
 * NewSubfileType 2 are the pages of a stack, each its own image (IFD and SubIFD reductions, or a
 * single level). A pyramid whose levels are in the main chain (libvips, vips) is one image.
 * @param firstTags extra tags of the chosen page's IFD to preload (the caller's metadata; unreadable ones are dropped)
 * @param page the page of a stack to describe, counted from 0 among the pages (0 for any other TIFF)
 */
export async function discoverPyramid(source: RandomAccessFile, header: TiffHeader, firstTags: readonly number[], page = 0): Promise<Pyramid> {
  if (header.firstIfd === 0) throw new TiffFormatError('TIFF file has no image (no IFD)');
  const budget = new StructureBudget();
  const seen = new Set<number>([header.firstIfd]);
  const ifd0 = await readIfd(source, header, header.firstIfd, 'IFD 0', budget);
  const first = await describe(source, ifd0, 0, -1, 'IFD 0', [Tag.SubIFDs], [...firstTags, ...PAGE_TAGS]);
  if (!first.tiled) throw new TiffFormatError('TIFF image is not tiled');
  const firstLevels = await withSubIfdLevels(source, header, first, budget, seen);
  const subIfdPyramid = firstLevels.length > 1;

  // The main chain: reductions of a classic pyramid, and the pages of a stack.
  const pages: Directory[] = isPage(first) ? [first] : [];
  const reductions = [firstLevels[0]!];
  let previous = first;
  let firstTiled: Directory | null = null;
  let offset = ifd0.next;
  for (let index = 1; offset !== 0; index++) {
    const what = `IFD ${index}`;
    if (index >= MAX_IFDS) throw new TiffFormatError(`corrupt TIFF: more than ${MAX_IFDS} IFDs in the main chain (the most read)`);
    if (seen.has(offset)) throw new TiffFormatError(`corrupt TIFF: IFD loop (${what} at offset ${offset} was already read)`);
    seen.add(offset);
    // Reads from the page cache are synchronous: a long chain would otherwise hold the event loop.
    if (index % IFDS_PER_TURN === 0) await new Promise((resolve) => setImmediate(resolve));
    const ifd = await readIfd(source, header, offset, what, budget);
    const d = await describe(source, ifd, index, -1, what, [], PAGE_TAGS);
    if (isPage(d)) pages.push(d);
    if (d.tiled) {
      firstTiled ??= d;
      if (!subIfdPyramid && isReduction(d, previous, first)) {
        reductions.push(layoutLevel(source, d));
        previous = d;
      }
    }
    offset = ifd.next;
  }

  const isStack = pages.length > 0 && (subIfdPyramid || (firstTiled !== null && firstTiled.width === first.width && firstTiled.height === first.height));
  if (!isStack) {
    if (page !== 0) throw new TiffFormatError(`the image is not a stack of pages: there is no page ${page}`);
    return { first, levels: subIfdPyramid ? firstLevels : reductions, stack: [] };
  }
  const stack = pages.map(stackPage);
  if (!Number.isInteger(page) || page < 0 || page >= pages.length) {
    throw new TiffFormatError(`there is no page ${page}: the stack has ${pages.length} page${pages.length === 1 ? '' : 's'} (counted from 0)`);
  }
  if (page === 0 && pages[0] === first) return { first, levels: subIfdPyramid ? firstLevels : [firstLevels[0]!], stack };
  // The chosen page, read again with the tags of its metadata.
  const chosen = pages[page]!;
  const what = `${chosen.what} (page ${page})`;
  const pageDirectory = await describe(source, chosen.ifd, chosen.page, -1, what, [Tag.SubIFDs], firstTags);
  if (!pageDirectory.tiled) throw new TiffFormatError(`TIFF page ${page} is not tiled`);
  const levels = subIfdPyramid ? await withSubIfdLevels(source, header, pageDirectory, budget, seen) : [layoutLevel(source, pageDirectory)];
  return { first: pageDirectory, levels, stack };
}
