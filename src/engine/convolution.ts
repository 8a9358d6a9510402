/**
 * CNV (iipsrv 1.3): a square convolution kernel of odd side up to 5 over the floating-point bands,
 * after the colour map and before contrast and clipping. Pixels beyond the rectangle's edges are
 * its edge pixels repeated, and the result is divided by the kernel's sum when that is positive
 * (so that smoothing kernels keep the brightness and derivative kernels, summing to 0, are left
 * as they are). The kernel is applied as written (correlation, not flipped), as iipsrv does.
 */

export const MAX_KERNEL_SIDE = 5;

/** iipsrv's named kernels, 3x3, row by row (x grows to the right, y downwards). */
export const KERNEL_PRESETS: Readonly<Record<string, readonly number[]>> = {
  // Horizontal derivatives: bright where the image grows brighter to the right.
  sobel: [-1, 0, 1, -2, 0, 2, -1, 0, 1],
  prewitt: [-1, 0, 1, -1, 0, 1, -1, 0, 1],
  scharr: [-3, 0, 3, -10, 0, 10, -3, 0, 3],
  laplace: [0, 1, 0, 1, -4, 1, 0, 1, 0],
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
  // Clamped source offsets of each kernel column for every x, and of each row for every y, so that
  // the inner loop does no edge tests.
  const columns = new Int32Array(width * side);
  for (let x = 0; x < width; x++) for (let k = 0; k < side; k++) columns[x * side + k] = Math.min(width - 1, Math.max(0, x + k - half)) * bands;
  const rows = new Int32Array(height * side);
  for (let y = 0; y < height; y++) for (let k = 0; k < side; k++) rows[y * side + k] = Math.min(height - 1, Math.max(0, y + k - half)) * width * bands;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * bands;
      for (let c = 0; c < bands; c++) {
        let sum = 0;
        for (let ky = 0; ky < side; ky++) {
          const row = rows[y * side + ky]! + c;
          for (let kx = 0; kx < side; kx++) sum += data[row + columns[x * side + kx]!]! * kernel[ky * side + kx]!;
        }
        out[o + c] = sum / divisor;
      }
    }
  }
  return out;
}
