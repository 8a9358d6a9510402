/**
 * The state one IIP request builds up as its commands run left to right (iipsrv's semantics: every
 * command sees what the commands before it set), and the response it ends with.
 */
import type { Config } from '../../config.js';
import type { Engine, OpenImage, TileRequest } from '../../engine/engine.js';
import { FULL_VIEWPORT, type Viewport } from '../../engine/view.js';
import { NO_PROCESSING, isIdentity, type Processing } from '../../engine/processing.js';
import type { Log } from '../../log.js';
import type { IipRequest, IipResponse } from '../../request.js';
import { IipError } from '../../errors.js';
import { DEFAULT_VIEW } from '../../engine/image-sequence.js';

export interface ProtocolContext {
  config: Config;
  engine: Engine;
  log: Log;
}

export class IipSession {
  /** The image chosen by the last FIF (or by IIIF / DeepZoom / Zoomify naming one). */
  image: OpenImage | null = null;
  /** `IIP:1.0` when the client asked for OBJ=IIP,1.0. */
  protocolLine: string | null = null;
  /** Text answers to OBJ, one line each. */
  objectLines: string[] = [];
  errors: IipError[] = [];
  /** Set by the first command that produces a whole response (a tile, a region, a document). */
  output: IipResponse | null = null;
  /** If-Modified-Since matched the image: answer 304 and stop. */
  notModified = false;

  /** QLT: null = not given (JPEG_QUALITY applies and stored tiles may be passed through). */
  quality: number | null = null;
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
    readonly request: IipRequest,
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

  /** Commands after a finished response or a 304 are not run (iipsrv would append their output). */
  get finished(): boolean {
    return this.output !== null || this.notModified;
  }

  /** Output quality for re-encoded images. */
  get effectiveQuality(): number {
    return this.quality ?? this.context.config.jpegQuality;
  }

  /** No command has asked for anything but the stored pixels. */
  get unprocessed(): boolean {
    return this.quality === null && this.rotation % 360 === 0 && !this.mirror && isIdentity(this.processing);
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
      passthrough: this.context.config.codecPassthrough && this.unprocessed,
      rotation: 0,
      mirror: false,
      processing: this.processing,
      layers: this.layers,
    };
  }
}
