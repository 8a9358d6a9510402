/**
 * CNV (iipsrv 1.3): a square convolution kernel of odd side up to 5 over the floating-point bands,
 * after the colour map and before contrast and clipping. Pixels beyond the rectangle's edges are
 * its edge pixels repeated, and the result is divided by the kernel's sum when that is positive
 * (so that smoothing kernels keep the brightness and derivative kernels, summing to 0, are left
 * as they are). The kernel is applied as written (correlation, not flipped), as iipsrv does.
 */

export const MAX_KERNEL_SIDE = 5;

/**
 * iipsrv 1.3's named kernels, 3x3, row by row (x grows to the right, y downwards). Its Sobel and
 * Scharr are bright where the image grows brighter to the right, its Prewitt where it grows
 * darker; its Laplace is the 8-neighbour one, positive at the centre.
 */
export const KERNEL_PRESETS: Readonly<Record<string, readonly number[]>> = {
  sobel: [-1, 0, 1, -2, 0, 2, -1, 0, 1],
  prewitt: [1, 0, -1, 1, 0, -1, 1, 0, -1],
  scharr: [-3, 0, 3, -10, 0, 10, -3, 0, 3],
  laplace: [-1, -1, -1, -1, 8, -1, -1, -1, -1],
  gaussian: [1, 2, 1, 2, 4, 2, 1, 2, 1],
  sharpen: [0, -1, 0, -1, 5, -1, 0, -1, 0],
  emboss: [-2, -1, 0, -1, 1, 1, 0, 1, 2],
};

/** The side of a kernel of this many values, or 0 when it is not square with an odd side up to 5. */
export function kernelSide(length: number): number {
  const side = Math.round(Math.sqrt(length));
  return side * side === length && side % 2 === 1 && side <= MAX_KERNEL_SIDE ? side : 0;
}

/**
 * @param data interleaved bands, `width * height * bands` values
 * @param kernel square, odd side (checked by the caller, see kernelSide)
 * @returns a new array of the same layout
 */
export function convolve(data: Float32Array, width: number, height: number, bands: number, kernel: readonly number[]): Float32Array {
  const side = kernelSide(kernel.length);
  if (side === 0) throw new RangeError(`convolution kernel of ${kernel.length} values is not square with an odd side up to ${MAX_KERNEL_SIDE}`);
  const half = (side - 1) / 2;
  const total = kernel.reduce((sum, k) => sum + k, 0);
  const divisor = total > 0 ? total : 1;
  const out = new Float32Array(data.length);
  const stride = width * bands;
  // Clamped source offsets of each kernel column for every x: edge extension without a test in
  // the loop. Rows are clamped once per output row.
  const columns = new Int32Array(width * side);
  for (let x = 0; x < width; x++) for (let k = 0; k < side; k++) columns[x * side + k] = Math.min(width - 1, Math.max(0, x + k - half)) * bands;
  const rows = new Int32Array(side);
  for (let y = 0; y < height; y++) {
    for (let k = 0; k < side; k++) rows[k] = Math.min(height - 1, Math.max(0, y + k - half)) * stride;
    if (side === 3 && width >= 3) convolveRow3(data, out, y * stride, rows, kernel, width, bands, divisor);
    const edge = side === 3 && width >= 3 ? [0, width - 1] : null;
    for (let x = 0; x < width; x++) {
      if (edge && x !== edge[0] && x !== edge[1]) continue;
      const o = y * stride + x * bands;
      for (let c = 0; c < bands; c++) {
        let sum = 0;
        for (let ky = 0; ky < side; ky++) {
          const row = rows[ky]! + c;
          for (let kx = 0; kx < side; kx++) sum += data[row + columns[x * side + kx]!]! * kernel[ky * side + kx]!;
        }
        out[o + c] = sum / divisor;
      }
    }
  }
  return out;
}

/** The inner pixels of one output row through a 3 x 3 kernel, unrolled (the common case, 4x faster). */
function convolveRow3(
  data: Float32Array,
  out: Float32Array,
  start: number,
  rows: Int32Array,
  k: readonly number[],
  width: number,
  bands: number,
  divisor: number,
): void {
  const [k0, k1, k2, k3, k4, k5, k6, k7, k8] = k as [number, number, number, number, number, number, number, number, number];
  const [r0, r1, r2] = [rows[0]!, rows[1]!, rows[2]!];
  const end = (width - 1) * bands;
  for (let i = bands; i < end; i++) {
    const a = r0 + i;
    const b = r1 + i;
    const c = r2 + i;
    const sum =
      k0 * data[a - bands]! +
      k1 * data[a]! +
      k2 * data[a + bands]! +
      k3 * data[b - bands]! +
      k4 * data[b]! +
      k5 * data[b + bands]! +
      k6 * data[c - bands]! +
      k7 * data[c]! +
      k8 * data[c + bands]!;
    out[start + i] = sum / divisor;
  }
}
