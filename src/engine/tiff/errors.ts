/** A file that is not a TIFF we can serve: not a TIFF at all, truncated, corrupt or unsupported. */
export class TiffFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TiffFormatError';
  }
}
