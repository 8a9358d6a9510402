/**
 * iipsrv's processing of a tile or region's samples, around the float pipeline (processing.ts):
 * CIELAB to sRGB first, the contrast stretch from the image's histogram, 8-bit data passed as
 * stored when there is nothing to do, and the steps that work on the 8-bit result (grey, binary,
 * equalisation). The histogram is made once per open file, as iipsrv keeps it in its metadata.
 */
import { InvalidArgumentError } from '../../errors.js';
import { assertProcessable, type DecodeLimits } from '../decode-limits.js';
import { tileRect, type Rect } from '../geometry.js';
import type { DecodeOptions, ImageDescription, ImageSource, RawPixels, Samples } from '../source.js';
import { imageHistogram, stretchRange } from './histogram.js';
import { applyOutputSteps, hasOutputSteps } from './output-steps.js';
import { firstBands, labToSrgb } from './pixel-types.js';
import { STRETCH, isIdentity, runPipeline, type Processing } from './processing.js';

/**
 * iipsrv runs its float pipeline for data wider than 8 bits and for any processing command; the
 * pixel types libvips does not read as iipsrv (signed, CIELAB, multiband) come the same way.
 */
export function needsPipeline(d: ImageDescription, processing: Processing): boolean {
  return !isIdentity(processing) || !plainEightBit(d);
}

function plainEightBit(d: ImageDescription): boolean {
  const space = d.colourSpace === 'srgb' || d.colourSpace === 'grey' || d.colourSpace === 'binary';
  return d.sampleFormat === 'uint' && d.bitsPerSample <= 8 && space && d.channels <= 4;
}

interface BandRanges {
  min: number[];
  max: number[];
}

/** A band with no finite sample keeps the image's range for it. */
function bandRanges(samples: Samples, fallbackMin: number[], fallbackMax: number[]): BandRanges {
  const { data, width, height, channels } = samples;
  const min = new Array<number>(channels).fill(Infinity);
  const max = new Array<number>(channels).fill(-Infinity);
  for (let i = 0, n = width * height * channels; i < n; i++) {
    const v = data[i]!;
    const c = i % channels;
    // NaN fails both comparisons; infinities are no heights.
    if (v < min[c]! && v !== -Infinity) min[c] = v;
    if (v > max[c]! && v !== Infinity) max[c] = v;
  }
  for (let c = 0; c < channels; c++) {
    if (min[c]! > max[c]!) [min[c], max[c]] = [fallbackMin[c] ?? 0, fallbackMax[c] ?? 1];
  }
  return { min, max };
}

export class PixelProcessor {
  /** Each open file's histogram (CNT=st/eq, COL=binary), made on first use: a replaced file has a new source. */
  private readonly histograms = new WeakMap<ImageSource, Promise<Uint32Array>>();
  /** Each open float file's band ranges (CNT=st), made on first use. */
  private readonly ranges = new WeakMap<ImageSource, Promise<BandRanges>>();

  constructor(private readonly limits: DecodeLimits) {}

  /**
   * The samples of a rectangle at their full precision, through iipsrv's pipeline to 8 bits
   * (see processing.ts); `name` is for messages.
   */
  async processed(source: ImageSource, name: string, level: number, rect: Rect, processing: Processing, options: DecodeOptions): Promise<RawPixels> {
    const d = source.description;
    if (processing.shade && d.channels < 3) {
      throw new InvalidArgumentError(`${name}: SHD needs a surface-normal image of 3 bands; this one has ${d.channels}`);
    }
    // The level is already the smallest with enough pixels for the output (geometry.ts).
    assertProcessable(name, rect, this.limits, 'the processing pipeline');
    let samples = await source.samples(level, rect, options);
    let [minValues, maxValues] = [d.minValues, d.maxValues];
    if (d.colourSpace === 'cielab') {
      // iipsrv converts to 8-bit sRGB before anything else, so the pipeline sees 0..255.
      samples = labToSrgb(samples);
      [minValues, maxValues] = [
        [0, 0, 0],
        [255, 255, 255],
      ];
    }
    // Grey, binary and equalisation come later, on the pixels as sent (withOutputSteps).
    let floatSteps: Processing = { ...processing, grey: false, binary: false, equalise: false };
    if (processing.contrast === STRETCH) {
      // iipsrv's stretch replaces every channel's range (MINMAX too) and then contrast is 1.
      if (d.sampleFormat === 'float') {
        // iipsrv takes the histogram's bins (of 0..1, or SMin..SMax) as sample values, which
        // leaves float pictures black: floats are stretched over each band's own values instead.
        ({ min: minValues, max: maxValues } = await this.bandRanges(source));
      } else {
        const { min, max } = stretchRange(await this.histogram(source), d.bitsPerSample, d.sampleFormat === 'int');
        minValues = minValues.map(() => min);
        maxValues = maxValues.map(() => max);
      }
      floatSteps = { ...floatSteps, contrast: 1, ranges: [] };
    }
    // As in iipsrv, 8-bit data with nothing for the float pipeline to do goes out as stored.
    const stored = isIdentity(floatSteps) && processing.contrast !== STRETCH ? firstBands(samples) : null;
    const out = stored ?? runPipeline(samples, minValues, maxValues, floatSteps);
    return { data: out.data, width: samples.width, height: samples.height, channels: out.channels, stride: samples.width * out.channels };
  }

  /**
   * Each band's least and greatest finite sample, over the samples the histogram is made of (the
   * first tile of the smallest resolution), once per open file.
   */
  private bandRanges(source: ImageSource): Promise<BandRanges> {
    let ranges = this.ranges.get(source);
    if (!ranges) {
      const d = source.description;
      const smallest = d.levels.length - 1;
      ranges = source.samples(smallest, tileRect(d.levels[smallest]!, 0, 0)).then((samples) => bandRanges(samples, d.minValues, d.maxValues));
      this.ranges.set(source, ranges);
      ranges.catch(() => this.ranges.delete(source));
    }
    return ranges;
  }

  /**
   * The image's histogram, from the first tile of its smallest resolution, made once per open
   * file (iipsrv keeps it in its metadata cache).
   */
  private histogram(source: ImageSource): Promise<Uint32Array> {
    let histogram = this.histograms.get(source);
    if (!histogram) {
      const d = source.description;
      const smallest = d.levels.length - 1;
      histogram = source
        .samples(smallest, tileRect(d.levels[smallest]!, 0, 0))
        .then((samples) => imageHistogram(samples, d.bitsPerSample > 8 || d.sampleFormat === 'int', d.minValues, d.maxValues));
      this.histograms.set(source, histogram);
      histogram.catch(() => this.histograms.delete(source));
    }
    return histogram;
  }

  /** COL=grey, COL=binary and CNT=eq on the 8-bit pixels about to be mirrored, rotated and encoded. */
  async withOutputSteps(source: ImageSource, pixels: RawPixels, processing: Processing): Promise<RawPixels> {
    if (!hasOutputSteps(processing)) return pixels;
    const histogram = processing.binary || processing.equalise ? await this.histogram(source) : null;
    return applyOutputSteps(pixels, processing, source.description.colourSpace, histogram);
  }
}
