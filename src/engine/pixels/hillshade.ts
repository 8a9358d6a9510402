/**
 * SHD, iipsrv's hill shading: a surface-normal image (RGB = the normal's x, y, z, each mapped to
 * 0..1) lit by a distant light, giving one band of brightness. iipsrv 1.1 loops over three times
 * the pixel count and reads past its buffer (it crashes); here each pixel is computed once from
 * its own three bands, and an image with fewer bands is refused by the engine before it gets here.
 */

export type Light = readonly [number, number, number];

/**
 * The unit vector towards the light, in iipsrv's conventions: azimuth in degrees clockwise from 12
 * o'clock (its x component negated past 180), elevation in degrees above the horizon, z pointing
 * into the image.
 */
export function lightVector(azimuth: number, elevation: number): Light {
  const y = Math.cos((azimuth * Math.PI) / 180);
  let x = Math.sqrt(Math.max(0, 1 - y * y));
  if (azimuth > 180) x = -x;
  const z = -Math.sin((elevation * Math.PI) / 180);
  const norm = Math.sqrt(x * x + y * y + z * z);
  return [x / norm, y / norm, z / norm];
}

/**
 * One pixel: the normal is `-(rgb - 0.5) * 2`, except that a pixel of exactly (0, 0, 0) (no data)
 * has none; the brightness is half the dot product with the light, clipped to 0..1.
 * @param pixel normalised bands of one pixel; only the first three are read
 */
export function shade(pixel: ArrayLike<number>, channels: number, light: Light): number {
  if (channels < 3) return 0;
  const r = pixel[0]!;
  const g = pixel[1]!;
  const b = pixel[2]!;
  if (r === 0 && g === 0 && b === 0) return 0;
  const dot = light[0] * (1 - 2 * r) + light[1] * (1 - 2 * g) + light[2] * (1 - 2 * b);
  const v = 0.5 * dot;
  return v <= 0 ? 0 : v >= 1 ? 1 : v;
}
