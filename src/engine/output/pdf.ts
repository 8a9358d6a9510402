/**
 * A one-page PDF holding one JPEG, as PDF 1.4 describes it (ISO 32000-1 §7.5, §8.9): the catalog,
 * the page tree, the page, the image as an XObject with the JPEG bytes as they are (DCTDecode), the
 * content stream that draws it over the whole page, and the cross-reference table with each
 * object's byte offset. Written here rather than through a PDF library: this one file is all the
 * server makes, and libvips in sharp's binaries writes no PDF.
 *
 * The page is the image at 72 pixels per inch (a pixel is a point), scaled down as a whole where a
 * side would pass 14400 points, the largest page PDF readers promise to show (Annex C.2); the
 * image keeps every pixel. The image's ICC profile becomes an ICCBased colour space (a reader
 * ignores the profile inside a JPEG), its XMP packet the image's metadata stream.
 */

/** The largest page side readers support, in points (200 inches). */
export const MAX_PAGE_SIDE = 14_400;

export interface PdfImage {
  /** A baseline JPEG of one (grey) or three (RGB) components. */
  jpeg: Buffer;
  width: number;
  height: number;
  channels: 1 | 3;
  icc?: Buffer | null;
  xmp?: string | null;
}

/** A number as PDF writes it: no exponent, at most three decimals. */
function pdfNumber(value: number): string {
  return String(Number(value.toFixed(3)));
}

function stream(dictionary: string, data: Buffer): Buffer[] {
  return [Buffer.from(`<< ${dictionary} /Length ${data.length} >>\nstream\n`, 'latin1'), data, Buffer.from('\nendstream', 'latin1')];
}

export function pdfWithJpeg(image: PdfImage): Buffer {
  const { width, height, channels } = image;
  const device = channels === 1 ? '/DeviceGray' : '/DeviceRGB';
  // Objects in the order they are written; numbers are their places, from 1.
  const objects: Array<Buffer[] | string> = [];
  const add = (body: Buffer[] | string): number => objects.push(body);
  const catalog = add('');
  const pages = add('');
  const page = add('');
  const picture = add('');
  const contents = add('');
  let colourSpace = device;
  if (image.icc) colourSpace = `[/ICCBased ${add(stream(`/N ${channels} /Alternate ${device}`, image.icc))} 0 R]`;
  const metadata = image.xmp ? ` /Metadata ${add(stream('/Type /Metadata /Subtype /XML', Buffer.from(image.xmp, 'utf8')))} 0 R` : '';

  const scale = Math.min(1, MAX_PAGE_SIDE / Math.max(width, height));
  const [pageWidth, pageHeight] = [pdfNumber(width * scale), pdfNumber(height * scale)];
  objects[catalog - 1] = `<< /Type /Catalog /Pages ${pages} 0 R >>`;
  objects[pages - 1] = `<< /Type /Pages /Kids [${page} 0 R] /Count 1 >>`;
  objects[page - 1] =
    `<< /Type /Page /Parent ${pages} 0 R /MediaBox [0 0 ${pageWidth} ${pageHeight}] ` +
    `/Resources << /XObject << /Im0 ${picture} 0 R >> >> /Contents ${contents} 0 R >>`;
  objects[picture - 1] = stream(
    `/Type /XObject /Subtype /Image /Width ${width} /Height ${height} /ColorSpace ${colourSpace} /BitsPerComponent 8 /Filter /DCTDecode${metadata}`,
    image.jpeg,
  );
  // The image space is the unit square: the matrix stretches it over the page.
  objects[contents - 1] = stream('', Buffer.from(`q ${pageWidth} 0 0 ${pageHeight} 0 0 cm /Im0 Do Q`, 'latin1'));

  // The second line's bytes above 127 tell transfer programs the file is binary (§7.5.2).
  const parts: Buffer[] = [Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  let offset = parts[0]!.length;
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(offset);
    const chunks = [
      Buffer.from(`${i + 1} 0 obj\n`, 'latin1'),
      ...(typeof body === 'string' ? [Buffer.from(body, 'latin1')] : body),
      Buffer.from('\nendobj\n', 'latin1'),
    ];
    for (const chunk of chunks) offset += chunk.length;
    parts.push(...chunks);
  });
  // Each entry is exactly 20 bytes, its end of line a space and a line feed (§7.5.4).
  const entries = offsets.map((at) => `${String(at).padStart(10, '0')} 00000 n \n`).join('');
  const table = `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${entries}`;
  const trailer = `trailer\n<< /Size ${objects.length + 1} /Root ${catalog} 0 R >>\nstartxref\n${offset}\n%%EOF\n`;
  parts.push(Buffer.from(table + trailer, 'latin1'));
  return Buffer.concat(parts);
}
