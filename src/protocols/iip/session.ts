/**
 * The state one IIP request builds up as its commands run left to right (iipsrv's semantics: every
 * command sees what the commands before it set), and the response it ends with.
 */
import type { Config } from '../../config.js';
import type { Engine } from '../../engine/engine.js';
import type { ImageFileInfo } from '../../engine/image-file.js';
import type { Log } from '../../log.js';
import type { IipRequest, IipResponse } from '../../request.js';
import { IipError } from '../../errors.js';

export interface ProtocolContext {
  config: Config;
  engine: Engine;
  log: Log;
}

export class IipSession {
  /** The image chosen by the last FIF (or by IIIF / DeepZoom / Zoomify naming one). */
  image: ImageFileInfo | null = null;
  /** The image name as the client sent it, decoded; used in messages and cache keys. */
  imageName = '';
  /** `IIP:1.0` when the client asked for OBJ=IIP,1.0. */
  protocolLine: string | null = null;
  /** Text answers to OBJ, one line each. */
  objectLines: string[] = [];
  errors: IipError[] = [];
  /** Set by the first command that produces a whole response (a tile, a region, a document). */
  output: IipResponse | null = null;
  /** If-Modified-Since matched the image: answer 304 and stop. */
  notModified = false;

  constructor(
    readonly request: IipRequest,
    readonly context: ProtocolContext,
  ) {}

  /** Commands after a finished response or a 304 are not run (iipsrv would append their output). */
  get finished(): boolean {
    return this.output !== null || this.notModified;
  }
}
