/** What every protocol runs against: the configuration, the tile engine and the log, one per worker. */
import type { Config } from '../../config.js';
import type { Engine } from '../../engine/engine.js';
import type { Log } from '../../log.js';

export interface ProtocolContext {
  config: Config;
  engine: Engine;
  log: Log;
}
