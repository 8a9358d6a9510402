/**
 * The state one request builds up as its commands run left to right, whichever protocol they
 * belong to (iipsrv's semantics: IIIF, DeepZoom and Zoomify are commands too, and every command
 * sees what the commands before it set), and the response it ends with.
 */
import type { CacheResult, CacheTier, OpenImage, RegionOutput, TileRequest } from '../../engine/engine.js';
import { FULL_VIEWPORT, type Viewport } from '../../engine/geometry.js';
import { NO_PROCESSING, isIdentity, type Processing } from '../../engine/pixels/processing.js';
import type { PlainRequest, PlainResponse } from '../../request.js';
import { type IipError, InvalidArgumentError } from '../../errors.js';
import { DEFAULT_VIEW } from '../../engine/files/image-sequence.js';
import type { ProtocolContext } from './context.js';
import { keepsSixteenBits, type OutputFormat, type RequestedQuality, type TiffCompression } from '../../engine/output/encoders.js';

/**
 * One command of a request string (`FIF=`, `IIIF=`, `DeepZoom=` ...): it reads and changes the
 * session, and the first one to produce a whole response sets its output.
 */
export type Command = (session: Session, argument: string) => void | Promise<void>;

/**
 * From the cheapest answer to the dearest: a response made of several tiles (IIP's TIL) is
 * reported by the dearest of them, the one that set its time.
 */
const TIER_COST: Readonly<Record<CacheTier, number>> = { ram: 0, memcached: 1, coalesced: 2, lease: 3, passthrough: 4, computed: 5 };

export class Session {
  /** The image chosen by the last FIF (or by IIIF / DeepZoom / Zoomify naming one). */
  image: OpenImage | null = null;
  /** `IIP:1.0` when the client asked for OBJ=IIP,1.0. */
  protocolLine: string | null = null;
  /** Text answers to OBJ, one line each. */
  objectLines: string[] = [];
  /** Set by an OBJ whose answer is a document of another type (master iipsrv's JSON of OBJ=stack and OBJ=metadata). */
  objectContentType: string | null = null;
  errors: IipError[] = [];
  /** Set by the first command that produces a whole response (a tile, a region, a document). */
  output: PlainResponse | null = null;
  /** The cache tier that answered the tiles and regions of the output (the access log's); null = none went in. */
  cacheTier: CacheTier | null = null;
  /** If-Modified-Since matched the image: answer 304 and stop. */
  notModified = false;
  /**
   * Request headers the answer depends on (Vary), set before the image is chosen so that a 304
   * names them too, as HTTP asks.
   */
  vary: string[] = [];

  /**
   * QLT's factor as given: null = not given (JPEG_QUALITY and the other codecs' settings apply,
   * and stored tiles may be passed through). Each codec clamps it to its range.
   */
  quality: number | null = null;
  /** `QLT=codec:n`: the TIFF compression; null = TIFF_COMPRESSION. */
  tiffCompression: TiffCompression | null = null;
  /** BITS (our extension): 16 asks PNG and TIFF output of 16-bit images for their 16-bit samples. */
  bits: 8 | 16 = 8;
  /** WID / HEI: requested output size of a region; 0 = not given. */
  width = 0;
  height = 0;
  /** RGN: the part of the image a region export covers. */
  viewport: Viewport = FULL_VIEWPORT;
  /** ROT: clockwise degrees (multiples of 90 rotate) and `!` mirroring. */
  rotation = 0;
  mirror = false;
  /** MINMAX, CNT, GAM, INV, CMP, CTW, COL, SHD, CNV. */
  processing: Processing = NO_PROCESSING;
  /** LYR: JPEG2000 quality layers to decode; undefined = MAX_LAYERS decides. */
  layers: number | undefined = undefined;
  /** SDS: sequence angles (horizontal view, vertical view); FIF resets them, as in iipsrv. */
  horizontalView: number = DEFAULT_VIEW.horizontal;
  verticalView: number = DEFAULT_VIEW.vertical;

  constructor(
    readonly request: PlainRequest,
    readonly context: ProtocolContext,
  ) {}

  /**
   * SDS and JTLS: the view of the image sequence at these angles becomes the image later commands
   * read (a single image stays itself).
   * @throws FileError when the sequence has no such view (404, as iipsrv)
   */
  async selectView(horizontal: number, vertical: number): Promise<void> {
    this.horizontalView = horizontal;
    this.verticalView = vertical;
    if (this.image) this.image = await this.context.engine.openView(this.image, horizontal, vertical);
  }

  /** The bytes of a tile or region from the engine, noting which cache tier answered. */
  bytesOf(result: CacheResult): Buffer {
    this.answeredBy(result.tier);
    return result.bytes;
  }

  /** A part of the output came from `tier`: the dearest part so far names the whole. */
  answeredBy(tier: CacheTier): void {
    if (this.cacheTier === null || TIER_COST[tier] > TIER_COST[this.cacheTier]) this.cacheTier = tier;
  }

  /** Commands after a finished response or a 304 are not run (iipsrv would append their output). */
  get finished(): boolean {
    return this.output !== null || this.notModified;
  }

  /** Output quality for re-encoded images. */
  get effectiveQuality(): number {
    // libjpeg takes 0 as 1.
    return this.quality === null ? this.context.config.jpegQuality : Math.min(100, Math.max(1, this.quality));
  }

  /** QLT for the codecs other than JPEG. */
  get requestedQuality(): RequestedQuality | null {
    return this.quality === null ? null : { factor: this.quality, tiffCompression: this.tiffCompression };
  }

  /** No command has asked for anything but the stored pixels. */
  get unprocessed(): boolean {
    return this.quality === null && this.rotation % 360 === 0 && !this.mirror && isIdentity(this.processing);
  }

  /**
   * BITS=16 is a promise of the stored 16-bit samples: refused (400) where it cannot be kept, rather
   * than quietly answered with 8 bits.
   */
  checkBits(format: OutputFormat): void {
    if (this.bits !== 16) return;
    if (!keepsSixteenBits(format))
      throw new InvalidArgumentError(`BITS=16: ${format.toUpperCase()} output has 8-bit samples (16 bits come as PNG or TIFF: PTL, TTL, CVT=png, CVT=tiff)`);
    const compression = this.tiffCompression ?? this.context.config.tiffCompression;
    if (format === 'tiff' && (compression === 'jpeg' || compression === 'webp')) {
      throw new InvalidArgumentError(`BITS=16: TIFF with ${compression} compression has 8-bit samples (use lzw, deflate or none)`);
    }
    if (!isIdentity(this.processing)) {
      throw new InvalidArgumentError('BITS=16 cannot be combined with MINMAX, CNT, GAM, INV, CMP, CTW or COL: their output has 8-bit samples');
    }
  }

  /**
   * A region export in `format` with this session's quality, processing and JPEG2000 layers;
   * rotation and mirroring are the caller's (IIP's ROT, IIIF's rotation, none for virtual tiles),
   * and so is BITS=16, which only IIP's CVT honours.
   */
  regionOutput(format: OutputFormat, orientation: { rotation: number; mirror: boolean } = { rotation: 0, mirror: false }): RegionOutput {
    return {
      format,
      quality: this.effectiveQuality,
      requested: this.requestedQuality,
      ...orientation,
      processing: this.processing,
      layers: this.layers,
    };
  }

  /**
   * An upright JPEG of a stored tile with this session's quality and processing: what every
   * protocol asks the engine for (IIP adds its rotation and format).
   */
  tileRequest(tile: { level: number; col: number; row: number }): TileRequest {
    return {
      ...tile,
      format: 'jpeg',
      quality: this.effectiveQuality,
      requested: this.requestedQuality,
      bits: this.bits,
      passthrough: this.context.config.codecPassthrough && this.unprocessed,
      rotation: 0,
      mirror: false,
      processing: this.processing,
      layers: this.layers,
    };
  }
}
