/**
 * The image histogram behind CNT=st, CNT=eq and COL=binary, with iipsrv's definitions: one
 * 256-bin histogram of the channel mean (rounded) over the first tile of the smallest resolution,
 * data wider than 8 bits first normalised by the image's range and truncated to 8 bits. It is
 * computed once per image (the engine keeps it with the open file). The arithmetic on the table
 * follows iipsrv's single-precision floats (Math.fround) so that thresholds and tables land on the
 * same integers.
 */
import type { Samples } from '../source.js';

export const BINS = 256;

/**
 * @param samples the smallest resolution's first tile, as stored
 * @param wide whether the samples are wider than 8 bits or signed (normalised by minValues/maxValues)
 */
export function imageHistogram(samples: Samples, wide: boolean, minValues: number[], maxValues: number[]): Uint32Array {
  const { data, width, height, channels } = samples;
  const histogram = new Uint32Array(BINS);
  const scale = minValues.slice(0, channels).map((min, c) => {
    const span = (maxValues[c] ?? 255) - min;
    return Math.abs(span) < 1e-30 ? 1e30 : Math.fround(1 / span);
  });
  const eightBit = (value: number, c: number): number => {
    if (!wide) return value;
    const v = Math.fround((value - (minValues[c] ?? 0)) * scale[c]!) * 255;
    return v <= 0 || !Number.isFinite(v) ? 0 : v >= 255 ? 255 : Math.trunc(v);
  };
  for (let i = 0, n = width * height; i < n; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += eightBit(data[i * channels + c]!, c);
    histogram[Math.min(BINS - 1, Math.round(sum / channels))]!++;
  }
  return histogram;
}

/**
 * CNT=st: the range of the first and last non-empty bins, scaled back to the image's depth as
 * iipsrv does (a shift, so 16-bit data stretches from n0 << 8 to n1 << 8), for every channel;
 * signed data from the type's least value on (-32768 + (n0 << 8)).
 */
export function stretchRange(histogram: Uint32Array, bitsPerSample: number, signed = false): { min: number; max: number } {
  let first = 0;
  while (first < BINS - 1 && histogram[first] === 0) first++;
  let last = BINS - 1;
  while (last > 0 && histogram[last] === 0) last--;
  const shift = bitsPerSample > 8 ? 2 ** (bitsPerSample - 8) : 1;
  const base = signed ? -(2 ** (bitsPerSample - 1)) : 0;
  return { min: base + first * shift, max: base + last * shift };
}

/** COL=binary: Otsu's threshold (maximum between-class variance) of the histogram. */
export function otsuThreshold(histogram: Uint32Array): number {
  const f = Math.fround;
  let total = 0;
  let sum = 0;
  for (let n = 0; n < BINS; n++) {
    total += histogram[n]!;
    sum = f(sum + f(n * histogram[n]!));
  }
  let below = 0;
  let sumBelow = 0;
  let best = 0;
  let threshold = 0;
  for (let n = 0; n < BINS; n++) {
    below = f(below + histogram[n]!);
    if (below === 0) continue;
    const above = f(total - below);
    if (above === 0) break;
    sumBelow = f(sumBelow + f(n * histogram[n]!));
    const meanBelow = f(sumBelow / below);
    const meanAbove = f(f(sum - sumBelow) / above);
    const difference = f(meanBelow - meanAbove);
    const variance = f(f(f(below * above) * difference) * difference);
    if (variance > best) {
      threshold = n;
      best = variance;
    }
  }
  return threshold;
}

/**
 * CNT=eq: the table from the histogram's cumulative distribution,
 * `round(255 / cdf[255] * (cdf[i] - cdf[first non-empty] / pixels))`, where `pixels` is the size of
 * the image being served (iipsrv's formula: the subtracted minimum is tiny). Values below 0 (bins
 * under the first non-empty one, for very small outputs) are 0 rather than iipsrv's wrapped bytes.
 */
export function equalisationTable(histogram: Uint32Array, pixels: number): Uint8Array {
  const f = Math.fround;
  const cdf = new Float64Array(BINS);
  let first = 0;
  while (first < BINS - 1 && histogram[first] === 0) first++;
  let running = 0;
  for (let n = 0; n < BINS; n++) cdf[n] = running = f(running + histogram[n]!);
  const table = new Uint8Array(BINS);
  if (running === 0) return table;
  const scale = f((BINS - 1) / running);
  const minimum = f(cdf[first]! / Math.max(1, pixels));
  for (let n = 0; n < BINS; n++) {
    const v = Math.round(f(scale * f(cdf[n]! - minimum)));
    table[n] = v <= 0 ? 0 : v >= 255 ? 255 : v;
  }
  return table;
}
