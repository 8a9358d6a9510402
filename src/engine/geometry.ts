/**
 * Geometry shared by every protocol: pyramid levels, tile grids, and the output size and source
 * level of a region export (IIP CVT, IIIF), so that a request never decodes more than it needs.
 *
 * Numbering: `levels` are largest first (index 0 = full resolution), as stored in files. IIP counts
 * resolutions the other way (0 = smallest); `levelForResolution` converts.
 */

export interface LevelSize {
  width: number;
  height: number;
  tileWidth: number;
  tileHeight: number;
}

export interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

export function levelForResolution(levelCount: number, resolution: number): number {
  return levelCount - 1 - resolution;
}

export function tileGrid(level: LevelSize): { across: number; down: number } {
  return { across: Math.ceil(level.width / level.tileWidth), down: Math.ceil(level.height / level.tileHeight) };
}

/** The pixels a tile covers at its level, edge tiles cropped to the image (never padded). */
export function tileRect(level: LevelSize, col: number, row: number): Rect {
  const left = col * level.tileWidth;
  const top = row * level.tileHeight;
  return {
    left,
    top,
    width: Math.min(level.tileWidth, level.width - left),
    height: Math.min(level.tileHeight, level.height - top),
  };
}

/** Viewport as fractions of the full image (IIP RGN). */
export interface Viewport {
  x: number;
  y: number;
  width: number;
  height: number;
}

export const FULL_VIEWPORT: Viewport = { x: 0, y: 0, width: 1, height: 1 };

export interface RegionRequest {
  viewport: Viewport;
  /** Requested output width / height (IIP WID / HEI); 0 = not given. */
  width: number;
  height: number;
  /** Largest output side (MAX_CVT). */
  maxSize: number;
  allowUpscaling: boolean;
}

export interface RegionPlan {
  /** Index into `levels` (0 = full resolution) to read from. */
  level: number;
  /** The pixels to read at that level. */
  source: Rect;
  /** Output size before any rotation. */
  outputWidth: number;
  outputHeight: number;
}

/**
 * Output size first, then the smallest level that still has at least that many pixels in the
 * region (a 10000 px image exported at 500 px reads a level near 500 px, not the full image).
 *
 * Sizes follow iipsrv: WID and HEI together fit the region inside the box (aspect kept); one of
 * them derives the other from the region's aspect; neither gives the region at full resolution
 * (iipsrv 1.1 stretched a partial region to the whole image's size: not copied). Then MAX_CVT caps
 * the larger side, and without ALLOW_UPSCALING the region's own pixel count caps both.
 */
export function planRegion(levels: LevelSize[], request: RegionRequest): RegionPlan {
  const full = levels[0]!;
  const { viewport } = request;
  const regionWidth = Math.max(viewport.width * full.width, 1e-9);
  const regionHeight = Math.max(viewport.height * full.height, 1e-9);

  let width: number;
  let height: number;
  if (request.width > 0 && request.height > 0) {
    const scale = Math.min(request.width / regionWidth, request.height / regionHeight);
    width = regionWidth * scale;
    height = regionHeight * scale;
  } else if (request.width > 0) {
    width = request.width;
    height = (request.width * regionHeight) / regionWidth;
  } else if (request.height > 0) {
    height = request.height;
    width = (request.height * regionWidth) / regionHeight;
  } else {
    width = regionWidth;
    height = regionHeight;
  }
  const cap = (limitWidth: number, limitHeight: number) => {
    const scale = Math.min(1, limitWidth / width, limitHeight / height);
    width *= scale;
    height *= scale;
  };
  cap(request.maxSize, request.maxSize);
  if (!request.allowUpscaling) cap(regionWidth, regionHeight);
  const outputWidth = Math.max(1, Math.round(width));
  const outputHeight = Math.max(1, Math.round(height));
  const regionPixels = { left: viewport.x * full.width, top: viewport.y * full.height, width: regionWidth, height: regionHeight };
  return planExactRegion(levels, regionPixels, outputWidth, outputHeight);
}

/**
 * The source level and rectangle for a region given in full-resolution pixels (fractions allowed)
 * and an output size already decided (IIIF `w,h` may distort): the smallest level that still has
 * at least the output's pixels in the region (1 px slack for rounding).
 */
export function planExactRegion(levels: LevelSize[], region: Rect, outputWidth: number, outputHeight: number): RegionPlan {
  const full = levels[0]!;
  let level = 0;
  for (let i = levels.length - 1; i >= 0; i--) {
    const candidate = levels[i]!;
    const w = region.width * (candidate.width / full.width);
    const h = region.height * (candidate.height / full.height);
    if (w >= outputWidth - 1 && h >= outputHeight - 1) {
      level = i;
      break;
    }
  }
  const chosen = levels[level]!;
  const sx = chosen.width / full.width;
  const sy = chosen.height / full.height;
  const left = Math.min(chosen.width - 1, Math.max(0, Math.floor(region.left * sx)));
  const top = Math.min(chosen.height - 1, Math.max(0, Math.floor(region.top * sy)));
  const source: Rect = {
    left,
    top,
    width: Math.max(1, Math.min(chosen.width - left, Math.round(region.width * sx))),
    height: Math.max(1, Math.min(chosen.height - top, Math.round(region.height * sy))),
  };
  return { level, source, outputWidth, outputHeight };
}

/**
 * A tile of a level some other scheme defines (DeepZoom, Zoomify: each level its own size, tiles
 * of `tileSize`): the stored tile when a pyramid level has that size (1 px slack: those schemes
 * round up or down where the file's writer did the other), or else the full-resolution region and
 * the size to scale it to. Null when the tile lies outside that level.
 */
export type VirtualTile = { kind: 'stored'; level: number; col: number; row: number } | { kind: 'scaled'; region: Rect; width: number; height: number };

export function virtualTile(levels: LevelSize[], virtual: { width: number; height: number }, tileSize: number, col: number, row: number): VirtualTile | null {
  const across = Math.ceil(virtual.width / tileSize);
  const down = Math.ceil(virtual.height / tileSize);
  if (!Number.isInteger(col) || !Number.isInteger(row) || col < 0 || row < 0 || col >= across || row >= down) return null;
  const stored = levels.findIndex(
    (l) => Math.abs(l.width - virtual.width) <= 1 && Math.abs(l.height - virtual.height) <= 1 && l.tileWidth === tileSize && l.tileHeight === tileSize,
  );
  if (stored >= 0) {
    const { across: storedAcross, down: storedDown } = tileGrid(levels[stored]!);
    if (col < storedAcross && row < storedDown) return { kind: 'stored', level: stored, col, row };
  }
  const full = levels[0]!;
  const scaleX = full.width / virtual.width;
  const scaleY = full.height / virtual.height;
  const width = Math.min(tileSize, virtual.width - col * tileSize);
  const height = Math.min(tileSize, virtual.height - row * tileSize);
  const left = col * tileSize * scaleX;
  const top = row * tileSize * scaleY;
  const region: Rect = { left, top, width: Math.min(width * scaleX, full.width - left), height: Math.min(height * scaleY, full.height - top) };
  return { kind: 'scaled', region, width, height };
}
