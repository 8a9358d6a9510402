/**
 * The image sources by file format: one entry a format, each opening a file it has been told is
 * of that format (by its magic bytes, files/image-file.ts). What sources of a format share across
 * files (the JPEG2000 decoder processes and the levels they decoded whole) is made on first use,
 * so a server that never sees a JPEG2000 file starts no decoder.
 */
import type { DecodeLimits } from './decode-limits.js';
import type { ImageFileInfo } from './files/image-file.js';
import { Jp2Decoder, type Jp2DecoderOptions } from './jp2/decoder.js';
import { Jp2Source } from './jp2/jp2-source.js';
import { DecodedLevelCache } from './jp2/level-cache.js';
import type { ImageFormat, ImageSource } from './source.js';
import { TiffSource } from './tiff/tiff-source.js';

export interface FormatSettings {
  /** MAX_LAYERS: JPEG2000 quality layers decoded when a request gives no LYR. */
  maxLayers: number;
  /** How JPEG2000 is decoded (the helper, opj_decompress, time and memory limits); defaults suit a server. */
  jp2Decoder?: Jp2DecoderOptions;
  /** Most memory one JPEG2000 decode may need by its header's account; 0 = no check. */
  jp2MaxDecodeBytes?: number;
  /** MAX_TILE_BYTES, MAX_SAMPLES_PER_PIXEL, MAX_PROCESSING_PIXELS (decode-limits.ts). */
  limits: DecodeLimits;
}

/** Decoded whole JPEG2000 levels kept per worker (each at most 1 Mpx). */
const JP2_LEVEL_CACHE_BYTES = 32 * 1024 * 1024;

export class Formats {
  private jp2: { decoder: Jp2Decoder; levelCache: DecodedLevelCache } | null = null;

  private readonly openers: Readonly<Record<ImageFormat, (path: string, name: string) => Promise<ImageSource>>> = {
    tiff: (path, name) => TiffSource.open(path, name, this.settings.limits),
    jp2: (path, name) =>
      Jp2Source.open(path, name, { ...this.jp2Shared(), maxLayers: this.settings.maxLayers, maxDecodeBytes: this.settings.jp2MaxDecodeBytes }),
  };

  constructor(private readonly settings: FormatSettings) {}

  /** The source of a file whose format is known; `name` is for messages. */
  open(file: ImageFileInfo, name: string): Promise<ImageSource> {
    return this.openers[file.format](file.path, name);
  }

  /** SIGHUP: forget decoded pixels kept across requests. */
  flush(): void {
    this.jp2?.levelCache.clear();
  }

  /** JPEG2000 decoder helpers that went and were replaced (see HelperPool.restarts). */
  jp2HelperRestarts(): number {
    return this.jp2?.decoder.helpers?.restarts ?? 0;
  }

  /** Ends the decoder processes (they would also end by themselves when this process goes). */
  close(): void {
    this.jp2?.decoder.close();
  }

  private jp2Shared(): { decoder: Jp2Decoder; levelCache: DecodedLevelCache } {
    this.jp2 ??= { decoder: new Jp2Decoder(this.settings.jp2Decoder), levelCache: new DecodedLevelCache(JP2_LEVEL_CACHE_BYTES) };
    return this.jp2;
  }
}
