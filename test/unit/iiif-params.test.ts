/**
 * The IIIF request parameters as pure functions, for both versions: every region, size, rotation,
 * quality and format form of Image API 2.1 and 3.0 with its edge cases (clipping, rounding to one
 * pixel, upscaling with and without `^`, MAX_CVT, ALLOW_UPSCALING=0), the path split, the tile-grid
 * detection and the info.json media type.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError, NotImplementedError } from '../../src/errors.ts';
import type { LevelSize, Rect } from '../../src/engine/geometry.ts';
import { writesFormat } from '../../src/engine/output/encoders.ts';
import { infoContentType, tileOnGrid } from '../../src/protocols/iiif/index.ts';
import { scaleFactors } from '../../src/protocols/iiif/info.ts';
import {
  parseQualityFormat,
  parseRegion,
  parseRotation,
  parseSize,
  splitIiifPath,
  type IiifVersion,
  type SizeLimits,
} from '../../src/protocols/iiif/params.ts';

const LANDSCAPE = { width: 1000, height: 700 };
const PORTRAIT = { width: 700, height: 1000 };
const FULL: Rect = { left: 0, top: 0, width: 1000, height: 700 };
const LIMITS: SizeLimits = { maxWidth: 5000, maxHeight: 5000, allowUpscaling: true };
const UNLIMITED: SizeLimits = { maxWidth: Infinity, maxHeight: Infinity, allowUpscaling: true };
const NO_UPSCALING: SizeLimits = { ...LIMITS, allowUpscaling: false };

const rect = (left: number, top: number, width: number, height: number): Rect => ({ left, top, width, height });

function size(text: string, version: IiifVersion, region: Rect = FULL, limits: SizeLimits = LIMITS): [number, number] {
  const got = parseSize(text, region, limits, version);
  return [got.width, got.height];
}

const isBadRequest = (error: unknown) => error instanceof InvalidArgumentError;
const isNotImplemented = (error: unknown) => error instanceof NotImplementedError;

describe('region', () => {
  it('full is the whole image', () => {
    assert.deepEqual(parseRegion('full', LANDSCAPE), FULL);
  });
  it('square: the shorter side, centred in the longer one (landscape, portrait, square images)', () => {
    assert.deepEqual(parseRegion('square', LANDSCAPE), rect(150, 0, 700, 700));
    assert.deepEqual(parseRegion('square', PORTRAIT), rect(0, 150, 700, 700));
    assert.deepEqual(parseRegion('square', { width: 500, height: 500 }), rect(0, 0, 500, 500));
    // An odd difference: the extra pixel goes after the square.
    assert.deepEqual(parseRegion('square', { width: 11, height: 4 }), rect(3, 0, 4, 4));
  });
  it('x,y,w,h in pixels', () => {
    assert.deepEqual(parseRegion('10,20,30,40', LANDSCAPE), rect(10, 20, 30, 40));
    assert.deepEqual(parseRegion('0,0,1000,700', LANDSCAPE), FULL);
    assert.deepEqual(parseRegion('999,699,1,1', LANDSCAPE), rect(999, 699, 1, 1));
    // Decimal pixels are taken as iipsrv takes them (atof).
    assert.deepEqual(parseRegion('10.5,20,30.25,40', LANDSCAPE), rect(10.5, 20, 30.25, 40));
  });
  it('pct:x,y,w,h, with integers and floats', () => {
    assert.deepEqual(parseRegion('pct:10,20,30,40', LANDSCAPE), rect(100, 140, 300, 280));
    assert.deepEqual(parseRegion('pct:0,0,100,100', LANDSCAPE), FULL);
    const got = parseRegion('pct:41.6,7.5,40,70', LANDSCAPE);
    assert.ok(Math.abs(got.left - 416) < 1e-9 && Math.abs(got.top - 52.5) < 1e-9, JSON.stringify(got));
    assert.ok(Math.abs(got.width - 400) < 1e-9 && Math.abs(got.height - 490) < 1e-9, JSON.stringify(got));
    assert.deepEqual(parseRegion('pct:0.5,0.5,0.1,0.1', LANDSCAPE), rect(5, 3.5, 1, 0.7));
  });
  it('a region partly outside the image is clipped at its edges', () => {
    assert.deepEqual(parseRegion('900,600,200,200', LANDSCAPE), rect(900, 600, 100, 100));
    assert.deepEqual(parseRegion('0,0,5000,5000', LANDSCAPE), FULL);
    assert.deepEqual(parseRegion('pct:50,50,100,100', LANDSCAPE), rect(500, 350, 500, 350));
    // The specification's own example: 125,15,200,200 of a 300x200 image is 175x185.
    assert.deepEqual(parseRegion('125,15,200,200', { width: 300, height: 200 }), rect(125, 15, 175, 185));
  });
  for (const text of ['1000,0,10,10', '0,700,10,10', '2000,2000,10,10', 'pct:100,0,10,10', 'pct:0,100,10,10', 'pct:150,150,10,10']) {
    it(`a region wholly outside the image is a 400: ${text}`, () => {
      assert.throws(
        () => parseRegion(text, LANDSCAPE),
        (e: Error) => isBadRequest(e) && /outside the image/.test(e.message),
      );
    });
  }
  for (const text of ['0,0,0,10', '0,0,10,0', '5,5,0,0', 'pct:0,0,0,10', 'pct:0,0,10,0']) {
    it(`a region without width or height is a 400: ${text}`, () => {
      assert.throws(
        () => parseRegion(text, LANDSCAPE),
        (e: Error) => isBadRequest(e) && /no width or height/.test(e.message),
      );
    });
  }
  for (const text of [
    '',
    'foo',
    'FULL',
    'Square',
    '1,2,3',
    '1,2,3,4,5',
    '-1,0,10,10',
    '0,-1,10,10',
    'a,b,c,d',
    '1e2,0,10,10',
    '0x10,0,10,10',
    '.5,0,10,10',
    '5.,0,10,10',
    '1, 2,3,4',
    'pct:',
    'pct:1,2,3',
    'pct:-1,0,10,10',
    'PCT:1,2,3,4',
    'px:1,2,3,4',
    ',,,',
  ]) {
    it(`junk is a 400: "${text}"`, () => {
      assert.throws(() => parseRegion(text, LANDSCAPE), isBadRequest);
    });
  }
});

describe('size, version 2.1', () => {
  it('full and max: the region as it is', () => {
    assert.deepEqual(size('full', 2), [1000, 700]);
    assert.deepEqual(size('max', 2), [1000, 700]);
    assert.deepEqual(size('full', 2, rect(10, 10, 200, 100)), [200, 100]);
    assert.equal(parseSize('full', FULL, LIMITS, 2).max, true);
  });
  it('full and max stay inside MAX_CVT (never larger than maxWidth/maxHeight)', () => {
    const big = rect(0, 0, 10000, 7000);
    assert.deepEqual(size('full', 2, big), [5000, 3500]);
    assert.deepEqual(size('max', 2, big), [5000, 3500]);
    assert.deepEqual(size('max', 2, rect(0, 0, 7000, 10000)), [3500, 5000]);
  });
  it('w, and ,h keep the aspect ratio; the other side is derived', () => {
    assert.deepEqual(size('500,', 2), [500, 350]);
    assert.deepEqual(size(',350', 2), [500, 350]);
    assert.deepEqual(size('125,', 2), [125, 88]); // 87.5 rounds up
    assert.equal(parseSize('500,', FULL, LIMITS, 2).derived, 'height');
    assert.equal(parseSize(',350', FULL, LIMITS, 2).derived, 'width');
  });
  it('pct:n scales both sides, floats allowed', () => {
    assert.deepEqual(size('pct:50', 2), [500, 350]);
    assert.deepEqual(size('pct:12.5', 2), [125, 88]);
    assert.deepEqual(size('pct:100', 2), [1000, 700]);
  });
  it('w,h is exactly that, distorted or not', () => {
    assert.deepEqual(size('300,300', 2), [300, 300]);
    assert.equal(parseSize('300,300', FULL, LIMITS, 2).distorted, true);
    assert.deepEqual(size('500,350', 2), [500, 350]);
    assert.equal(parseSize('500,350', FULL, LIMITS, 2).distorted, false);
  });
  it('!w,h fits inside the box, aspect kept', () => {
    assert.deepEqual(size('!300,300', 2), [300, 210]);
    assert.deepEqual(size('!300,100', 2), [143, 100]);
    assert.deepEqual(size('!1000,700', 2), [1000, 700]);
  });
  it('above full size is allowed (sizeAboveFull) when the site upscales', () => {
    assert.deepEqual(size('2000,', 2), [2000, 1400]);
    assert.deepEqual(size(',1400', 2), [2000, 1400]);
    assert.deepEqual(size('pct:200', 2), [2000, 1400]);
    assert.deepEqual(size('2000,2000', 2), [2000, 2000]);
    assert.deepEqual(size('!2000,2000', 2), [2000, 1400]);
    assert.equal(parseSize('2000,', FULL, LIMITS, 2).upscaled, true);
  });
  it('^ is not 2.1 syntax, nor is 1.1 pct without a number', () => {
    for (const text of ['^max', '^500,', '^pct:50', 'pct:']) assert.throws(() => parseSize(text, FULL, LIMITS, 2), isBadRequest, text);
  });
});

describe('size, version 3.0', () => {
  it('max: the region as it is, never upscaled', () => {
    assert.deepEqual(size('max', 3), [1000, 700]);
    assert.deepEqual(size('max', 3, rect(0, 0, 10, 5)), [10, 5]);
  });
  it("full (2.1's name, which iipsrv takes in every version) is max, and ^full ^max", () => {
    assert.deepEqual(parseSize('full', FULL, LIMITS, 3), parseSize('max', FULL, LIMITS, 3));
    assert.deepEqual(parseSize('full', rect(0, 0, 10, 5), LIMITS, 3), parseSize('max', rect(0, 0, 10, 5), LIMITS, 3));
    assert.deepEqual(size('full', 3, rect(0, 0, 10000, 7000)), [5000, 3500]);
    assert.deepEqual(parseSize('^full', FULL, LIMITS, 3), parseSize('^max', FULL, LIMITS, 3));
  });
  it('^max: as large as maxWidth/maxHeight allow', () => {
    assert.deepEqual(size('^max', 3), [5000, 3500]);
    assert.deepEqual(size('^max', 3, rect(0, 0, 10, 5)), [5000, 2500]);
    const got = parseSize('^max', FULL, LIMITS, 3);
    assert.equal(got.max && got.upscaled, true);
    // Without limits there is no "largest": the region as it is (not an infinite image).
    assert.deepEqual(size('^max', 3, FULL, UNLIMITED), [1000, 700]);
  });
  it('w, ^w, ,h ^,h', () => {
    assert.deepEqual(size('500,', 3), [500, 350]);
    assert.deepEqual(size('^500,', 3), [500, 350]);
    assert.deepEqual(size('^2000,', 3), [2000, 1400]);
    assert.deepEqual(size(',350', 3), [500, 350]);
    assert.deepEqual(size('^,350', 3), [500, 350]);
    assert.deepEqual(size('^,1400', 3), [2000, 1400]);
  });
  it('pct:n ^pct:n', () => {
    assert.deepEqual(size('pct:50', 3), [500, 350]);
    assert.deepEqual(size('pct:100', 3), [1000, 700]);
    assert.deepEqual(size('^pct:50', 3), [500, 350]);
    assert.deepEqual(size('^pct:150', 3), [1500, 1050]);
    assert.deepEqual(size('^pct:12.5', 3), [125, 88]);
  });
  it('w,h ^w,h', () => {
    assert.deepEqual(size('300,300', 3), [300, 300]);
    assert.deepEqual(size('1000,700', 3), [1000, 700]);
    assert.deepEqual(size('^300,300', 3), [300, 300]);
    assert.deepEqual(size('^2000,100', 3), [2000, 100]);
  });
  it('!w,h: inside the box and never beyond the region; ^!w,h: inside the box', () => {
    assert.deepEqual(size('!300,300', 3), [300, 210]);
    assert.deepEqual(size('!2000,2000', 3), [1000, 700]);
    assert.deepEqual(size('^!300,300', 3), [300, 210]);
    assert.deepEqual(size('^!2000,2000', 3), [2000, 1400]);
    // The specification's examples on a 300x200 image.
    const spec = rect(0, 0, 300, 200);
    assert.deepEqual(size('!225,100', 3, spec), [150, 100]);
    assert.deepEqual(size('^!360,360', 3, spec), [360, 240]);
  });
  for (const text of ['1001,', ',701', 'pct:101', 'pct:100.5', '1001,700', '1000,701', '2000,2000']) {
    it(`upscaling without ^ is a 400: ${text}`, () => {
      assert.throws(
        () => parseSize(text, FULL, LIMITS, 3),
        (e: Error) => isBadRequest(e) && /prefixed with \^/.test(e.message),
      );
    });
  }
  it('a fractional region: the next pixel up is not an upscaling', () => {
    const third = parseRegion('pct:0,0,33.333,100', LANDSCAPE);
    assert.deepEqual(size('max', 3, third), [333, 700]);
    assert.deepEqual(size('334,', 3, third), [334, 701]);
    assert.throws(() => parseSize('335,', third, LIMITS, 3), isBadRequest);
  });
});

describe('size limits', () => {
  const big = rect(0, 0, 10000, 7000);
  it('sizes beyond maxWidth/maxHeight (MAX_CVT) are a 400 in both versions', () => {
    for (const [text, version] of [
      ['5001,', 2],
      [',5001', 2],
      ['5001,10', 2],
      ['pct:51', 2],
      ['^5001,', 3],
      ['5001,', 3],
      ['^pct:600', 3],
      ['^5000,5001', 3],
    ] as const) {
      assert.throws(
        () => parseSize(text, big, LIMITS, version),
        (e: Error) => isBadRequest(e) && /exceeds the largest allowed/.test(e.message),
        `${text} v${version}`,
      );
    }
    assert.deepEqual(size('5000,', 2, big), [5000, 3500]);
    assert.deepEqual(size('pct:50', 3, big), [5000, 3500]);
  });
  it('max, ^max and the confined forms stay inside the limits instead of failing', () => {
    assert.deepEqual(size('max', 3, big), [5000, 3500]);
    assert.deepEqual(size('^max', 3, big), [5000, 3500]);
    assert.deepEqual(size('!8000,8000', 3, big), [5000, 3500]);
    assert.deepEqual(size('^!8000,8000', 3, big), [5000, 3500]);
    assert.deepEqual(size('!8000,8000', 2, big), [5000, 3500]);
    assert.deepEqual(size('^max', 3, FULL, { maxWidth: 3000, maxHeight: 1400, allowUpscaling: true }), [2000, 1400]);
  });
  it('MAX_CVT=-1: no limit', () => {
    assert.deepEqual(size('max', 3, big, UNLIMITED), [10000, 7000]);
    assert.deepEqual(size('full', 2, big, UNLIMITED), [10000, 7000]);
    assert.deepEqual(size('^20000,', 3, big, UNLIMITED), [20000, 14000]);
  });
});

describe('size with ALLOW_UPSCALING=0', () => {
  it('an upscaling the syntax allows is not implemented here: 501', () => {
    for (const [text, version] of [
      ['2000,', 2],
      [',1400', 2],
      ['pct:200', 2],
      ['1001,700', 2],
      ['^2000,', 3],
      ['^,1400', 3],
      ['^pct:101', 3],
      ['^1001,700', 3],
      ['^!2000,2000', 3],
    ] as const) {
      assert.throws(
        () => parseSize(text, FULL, NO_UPSCALING, version),
        (e: Error) => isNotImplemented(e) && /does not upscale/.test(e.message),
        `${text} v${version}`,
      );
    }
  });
  it('v3 without ^ stays a 400 (a client error whatever the site allows)', () => {
    assert.throws(() => parseSize('2000,', FULL, NO_UPSCALING, 3), isBadRequest);
  });
  it('sizes that need no upscaling work; confined v2 sizes and ^max stop at the region', () => {
    assert.deepEqual(size('^500,', 3, FULL, NO_UPSCALING), [500, 350]);
    assert.deepEqual(size('^max', 3, FULL, NO_UPSCALING), [1000, 700]);
    assert.deepEqual(size('!2000,2000', 2, FULL, NO_UPSCALING), [1000, 700]);
    assert.deepEqual(size('!2000,2000', 3, FULL, NO_UPSCALING), [1000, 700]);
    assert.deepEqual(size('full', 2, FULL, NO_UPSCALING), [1000, 700]);
  });
});

describe('sizes that round to nothing become 1 px', () => {
  it('1, of a very wide region is 1x1; ,1 of a very tall one too', () => {
    assert.deepEqual(size('1,', 3, rect(0, 0, 4000, 8)), [1, 1]);
    assert.deepEqual(size('1,', 2, rect(0, 0, 4000, 8)), [1, 1]);
    assert.deepEqual(size(',1', 3, rect(0, 0, 8, 4000)), [1, 1]);
    assert.deepEqual(size('100,', 3, rect(0, 0, 4000, 8)), [100, 1]);
  });
  it('tiny percentages and maxima of tiny limits', () => {
    assert.deepEqual(size('pct:0.1', 3, rect(0, 0, 100, 100)), [1, 1]);
    assert.deepEqual(size('pct:1', 2, rect(0, 0, 4000, 8)), [40, 1]);
    assert.deepEqual(size('max', 3, rect(0, 0, 100000, 1), { maxWidth: 5000, maxHeight: 5000, allowUpscaling: true }), [5000, 1]);
    assert.deepEqual(size('!10,10', 3, rect(0, 0, 4000, 8)), [10, 1]);
    assert.deepEqual(size('max', 3, rect(0, 0, 0.4, 0.4)), [1, 1]);
  });
  it('a 1x1 region', () => {
    const one = rect(0, 0, 1, 1);
    for (const text of ['max', '1,', ',1', '1,1', 'pct:100', '!1,1', '!100,100']) assert.deepEqual(size(text, 3, one), [1, 1], text);
    assert.deepEqual(size('^100,', 3, one), [100, 100]);
    assert.throws(() => parseSize('2,', one, LIMITS, 3), isBadRequest);
  });
});

describe('sizes of zero and junk', () => {
  for (const text of ['0,', ',0', '0,0', '0,10', 'pct:0', 'pct:0.0', '!0,100', '!100,0', '^0,', '^pct:0']) {
    it(`zero pixels asked for is a 400: ${text}`, () => {
      assert.throws(
        () => parseSize(text, FULL, LIMITS, 3),
        (e: Error) => isBadRequest(e) && /zero pixels|invalid size/.test(e.message),
      );
    });
  }
  for (const text of [
    '',
    ',',
    'abc',
    '100',
    'MAX',
    'max,',
    '100,abc',
    '-5,',
    '1.5,',
    ',2.5',
    'pct:',
    'pct:abc',
    'pct:-5',
    'pct:1e2',
    '!100',
    '!,100',
    '!100,',
    '10,20,30',
    '^',
    '^^max',
    '^!',
    'full!',
    ' 100,',
  ]) {
    it(`junk is a 400: "${text}"`, () => {
      assert.throws(() => parseSize(text, FULL, LIMITS, 3), isBadRequest);
      assert.throws(() => parseSize(text, FULL, LIMITS, 2), isBadRequest);
    });
  }
});

describe('rotation', () => {
  it('0, 90, 180, 270, 360 and arbitrary angles, clockwise', () => {
    assert.deepEqual(parseRotation('0'), { degrees: 0, mirror: false });
    assert.deepEqual(parseRotation('90'), { degrees: 90, mirror: false });
    assert.deepEqual(parseRotation('180'), { degrees: 180, mirror: false });
    assert.deepEqual(parseRotation('270'), { degrees: 270, mirror: false });
    assert.deepEqual(parseRotation('360'), { degrees: 0, mirror: false });
    assert.deepEqual(parseRotation('22.5'), { degrees: 22.5, mirror: false });
    assert.deepEqual(parseRotation('0.5'), { degrees: 0.5, mirror: false });
    assert.deepEqual(parseRotation('90.0'), { degrees: 90, mirror: false });
  });
  it('! mirrors (before rotating)', () => {
    assert.deepEqual(parseRotation('!0'), { degrees: 0, mirror: true });
    assert.deepEqual(parseRotation('!180'), { degrees: 180, mirror: true });
    assert.deepEqual(parseRotation('!345'), { degrees: 345, mirror: true });
  });
  for (const text of ['361', '720', '360.5', '!361', '-90', '+90', 'abc', '', '!', '!!90', '90deg', '1e2', '.5', '90,', ' 90', '0x5a']) {
    it(`out of range or junk is a 400: "${text}"`, () => {
      assert.throws(() => parseRotation(text), isBadRequest);
    });
  }
});

describe('quality and format', () => {
  it('the four qualities of both versions', () => {
    for (const version of [2, 3] as const) {
      assert.deepEqual(parseQualityFormat('default.jpg', version), { colour: 'colour', format: 'jpeg', quality: 'default', extension: 'jpg' });
      assert.equal(parseQualityFormat('color.jpg', version).colour, 'colour');
      assert.equal(parseQualityFormat('color.jpg', version).quality, 'color');
      assert.equal(parseQualityFormat('gray.jpg', version).colour, 'grey');
      assert.equal(parseQualityFormat('bitonal.jpg', version).colour, 'bitonal');
    }
  });
  it('v2 also takes native (1.x clients), whose canonical name is default; v3 does not', () => {
    assert.deepEqual(parseQualityFormat('native.jpg', 2), { colour: 'colour', format: 'jpeg', quality: 'default', extension: 'jpg' });
    assert.throws(() => parseQualityFormat('native.jpg', 3), isBadRequest);
  });
  it('formats jpg, png, webp, tif, avif, gif, pdf, and jp2 where the encoder was built', () => {
    assert.equal(parseQualityFormat('default.jpg', 3).format, 'jpeg');
    assert.equal(parseQualityFormat('default.png', 3).format, 'png');
    assert.equal(parseQualityFormat('default.webp', 3).format, 'webp');
    assert.equal(parseQualityFormat('default.tif', 3).format, 'tiff');
    assert.equal(parseQualityFormat('gray.avif', 2).format, 'avif');
    assert.deepEqual(parseQualityFormat('gray.gif', 3), { colour: 'grey', format: 'gif', quality: 'gray', extension: 'gif' });
    assert.equal(parseQualityFormat('default.pdf', 2).format, 'pdf');
    if (writesFormat('jp2')) assert.equal(parseQualityFormat('bitonal.jp2', 3).format, 'jp2');
    else assert.throws(() => parseQualityFormat('default.jp2', 3), isNotImplemented);
  });
  it('no format at all is JPEG, as in iipsrv', () => {
    assert.deepEqual(parseQualityFormat('default', 3), { colour: 'colour', format: 'jpeg', quality: 'default', extension: 'jpg' });
  });
  for (const text of ['default.heic', 'default.jxl', 'gray.heic']) {
    it(`a IIIF format we do not write is a 501: ${text}`, () => {
      assert.throws(
        () => parseQualityFormat(text, 3),
        (e: Error) => isNotImplemented(e) && /not produced/.test(e.message),
      );
      assert.throws(() => parseQualityFormat(text, 2), isNotImplemented);
    });
  }
  for (const text of ['default.bmp', 'default.jpeg', 'default.JPG', 'default.', 'default.tiff', 'default.toString', 'default.__proto__']) {
    it(`an unknown format is a 400: ${text}`, () => {
      assert.throws(
        () => parseQualityFormat(text, 3),
        (e: Error) => isBadRequest(e) && /unknown format/.test(e.message),
      );
    });
  }
  for (const text of ['grey.jpg', 'Default.jpg', 'colour.jpg', '.jpg', 'best.png', 'toString.jpg', '__proto__.jpg', 'default.jpg.png']) {
    it(`an unknown quality is a 400: ${text}`, () => {
      assert.throws(
        () => parseQualityFormat(text, 3),
        (e: Error) => isBadRequest(e) && /unsupported quality/.test(e.message),
      );
    });
  }
  it('a sepia heic names the format problem only after the quality is known good', () => {
    assert.throws(() => parseQualityFormat('sepia.heic', 3), isBadRequest);
  });
});

describe('splitting the path', () => {
  it('info.json', () => {
    assert.deepEqual(splitIiifPath('image.tif/info.json'), { kind: 'info', identifier: 'image.tif' });
    assert.deepEqual(splitIiifPath('/image.tif/info.json'), { kind: 'info', identifier: 'image.tif' });
    assert.deepEqual(splitIiifPath('dir/sub/image.tif/info.json'), { kind: 'info', identifier: 'dir/sub/image.tif' });
    assert.deepEqual(splitIiifPath('dir%2Fimage.tif/info.json'), { kind: 'info', identifier: 'dir%2Fimage.tif' });
    assert.deepEqual(splitIiifPath('image.tif/info.json?t=1'), { kind: 'info', identifier: 'image.tif' });
    assert.throws(() => splitIiifPath('info.json'), isBadRequest);
    assert.throws(() => splitIiifPath('/info.json'), isBadRequest);
  });
  it('an image request: the last four segments are the parameters', () => {
    const parts = { identifier: 'image.tif', region: 'full', size: 'max', rotation: '0', quality: 'default.jpg' };
    assert.deepEqual(splitIiifPath('image.tif/full/max/0/default.jpg'), { kind: 'image', parts });
    assert.deepEqual(splitIiifPath('image.tif/full/max/0/default.jpg/'), { kind: 'image', parts });
    assert.deepEqual(splitIiifPath('//image.tif/full/max/0/default.jpg'), { kind: 'image', parts });
    assert.deepEqual(splitIiifPath('a/b/full/max/0/default.jpg'), { kind: 'image', parts: { ...parts, identifier: 'a/b' } });
    assert.deepEqual(splitIiifPath('a%2Fb/0,0,10,10/pct:50/!90/gray.png'), {
      kind: 'image',
      parts: { identifier: 'a%2Fb', region: '0,0,10,10', size: 'pct:50', rotation: '!90', quality: 'gray.png' },
    });
  });
  it('each parameter is decoded after the split; the identifier stays as sent', () => {
    assert.deepEqual(splitIiifPath('a%2Fb/0%2C0%2C10%2C10/%5E5000%2C/%2190/gray%2Epng'), {
      kind: 'image',
      parts: { identifier: 'a%2Fb', region: '0,0,10,10', size: '^5000,', rotation: '!90', quality: 'gray.png' },
    });
    assert.deepEqual(splitIiifPath('image.tif/full/%5Emax/0/default.jpg'), {
      kind: 'image',
      parts: { identifier: 'image.tif', region: 'full', size: '^max', rotation: '0', quality: 'default.jpg' },
    });
    // An escaped slash stays inside its parameter: it never moves the split.
    assert.deepEqual(splitIiifPath('image.tif/full/max%2F0/default.jpg/x'), {
      kind: 'image',
      parts: { identifier: 'image.tif', region: 'full', size: 'max/0', rotation: 'default.jpg', quality: 'x' },
    });
    assert.deepEqual(splitIiifPath('image.tif/full%2Fmax/0/default.jpg'), { kind: 'base', identifier: 'image.tif/full%2Fmax/0/default.jpg' });
    // Malformed escapes stay as they are (and fail their parameter's syntax).
    assert.equal((splitIiifPath('image.tif/full/%5G500,/0/default.jpg') as { parts: { size: string } }).parts.size, '%5G500,');
    assert.equal((splitIiifPath('image.tif/full/max/0/%C3%A9.jpg') as { parts: { quality: string } }).parts.quality, 'é.jpg');
  });
  it('the identifier alone is the base URI; too few parameters too', () => {
    assert.deepEqual(splitIiifPath('image.tif'), { kind: 'base', identifier: 'image.tif' });
    assert.deepEqual(splitIiifPath('image.tif/'), { kind: 'base', identifier: 'image.tif' });
    assert.deepEqual(splitIiifPath('image.tif/full/max/default.jpg'), { kind: 'base', identifier: 'image.tif/full/max/default.jpg' });
  });
});

describe('scale factors and the tile grid', () => {
  // 1000x700 with 256-px tiles, as vips writes it: 1000x700, 500x350, 250x175.
  const levels: LevelSize[] = [
    { width: 1000, height: 700, tileWidth: 256, tileHeight: 256 },
    { width: 500, height: 350, tileWidth: 256, tileHeight: 256 },
    { width: 250, height: 175, tileWidth: 256, tileHeight: 256 },
  ];
  const exact = (width: number, height: number) => ({ width, height, upscaled: false, max: false, distorted: true });
  it('scale factors are the powers of two whose halvings give the levels, rounded down (libvips) or up (OpenJPEG)', () => {
    assert.deepEqual(scaleFactors(levels), [1, 2, 4]);
    const halvings = (width: number, height: number, count: number, round: (v: number) => number): LevelSize[] =>
      Array.from({ length: count }, (_, k) => ({
        width: Math.max(1, round(width / 2 ** k)),
        height: Math.max(1, round(height / 2 ** k)),
        tileWidth: 256,
        tileHeight: 256,
      }));
    const powers = (count: number) => Array.from({ length: count }, (_, k) => 2 ** k);
    // 4000 / 62 is 64.5, 4000 / 31 is 129, 4000 / 15 is 267: the levels' own factors are 64, 128, 256.
    assert.deepEqual(scaleFactors(halvings(4000, 40, 12, Math.floor)), powers(12));
    assert.deepEqual(scaleFactors(halvings(4000, 40, 12, Math.ceil)), powers(12));
    assert.deepEqual(scaleFactors(halvings(3001, 2001, 8, Math.floor)), powers(8));
    assert.deepEqual(scaleFactors(halvings(3001, 2001, 8, Math.ceil)), powers(8));
    // Tall and narrow: the height decides where the width is down to a pixel or two.
    assert.deepEqual(scaleFactors(halvings(100, 40000, 9, Math.floor)), powers(9));
    assert.deepEqual(scaleFactors(halvings(7, 30001, 8, Math.ceil)), powers(8));
    // A pyramid that does not halve: the nearest whole ratio.
    assert.deepEqual(scaleFactors([3000, 1000, 333].map((width) => ({ width, height: width, tileWidth: 256, tileHeight: 256 }))), [1, 3, 9]);
    // 10000 / 156 is 64.1: the factor a viewer uses is 64.
    assert.deepEqual(
      scaleFactors([
        { width: 10000, height: 7000, tileWidth: 256, tileHeight: 256 },
        { width: 156, height: 109, tileWidth: 256, tileHeight: 256 },
      ]),
      [1, 64],
    );
  });
  it('tiles on the grid, edge tiles included', () => {
    assert.deepEqual(tileOnGrid(levels, rect(0, 0, 256, 256), exact(256, 256)), { level: 0, col: 0, row: 0 });
    assert.deepEqual(tileOnGrid(levels, rect(768, 512, 232, 188), exact(232, 188)), { level: 0, col: 3, row: 2 });
    assert.deepEqual(tileOnGrid(levels, rect(512, 0, 488, 512), exact(244, 256)), { level: 1, col: 1, row: 0 });
    assert.deepEqual(tileOnGrid(levels, rect(0, 0, 1000, 700), exact(250, 175)), { level: 2, col: 0, row: 0 });
  });
  it("a derived side must be the stored tile's too: the size asked for is never swapped for the tile's", () => {
    const wide: LevelSize[] = [
      { width: 10000, height: 7000, tileWidth: 256, tileHeight: 256 },
      { width: 312, height: 218, tileWidth: 256, tileHeight: 256 },
    ];
    // `256,` of 8192x7000 at factor 32 is 256x219 (218.75 rounded); the stored tile is 256x218.
    const derived = parseSize('256,', rect(0, 0, 8192, 7000), LIMITS, 2);
    assert.deepEqual([derived.width, derived.height], [256, 219]);
    assert.equal(tileOnGrid(wide, rect(0, 0, 8192, 7000), derived), null);
    assert.equal(tileOnGrid(wide, rect(0, 0, 8192, 7000), exact(256, 219)), null);
    assert.deepEqual(tileOnGrid(wide, rect(0, 0, 8192, 7000), exact(256, 218)), { level: 1, col: 0, row: 0 });
    // 3001 px halved to 1500: 2560,0,441,512 is the 220x256 tile; `220,` of it is 220x255 (255.4).
    const odd: LevelSize[] = [
      { width: 3001, height: 2001, tileWidth: 256, tileHeight: 256 },
      { width: 1500, height: 1000, tileWidth: 256, tileHeight: 256 },
    ];
    const w = parseSize('220,', rect(2560, 0, 441, 512), LIMITS, 3);
    assert.deepEqual([w.width, w.height], [220, 255]);
    assert.equal(tileOnGrid(odd, rect(2560, 0, 441, 512), w), null);
    assert.deepEqual(tileOnGrid(odd, rect(2560, 0, 441, 512), parseSize('220,256', rect(2560, 0, 441, 512), LIMITS, 3)), { level: 1, col: 5, row: 0 });
  });
  it('anything else is not a tile', () => {
    assert.equal(tileOnGrid(levels, rect(1, 0, 256, 256), exact(256, 256)), null, 'off the grid');
    assert.equal(tileOnGrid(levels, rect(0, 0, 256, 256), exact(128, 128)), null, 'scaled');
    assert.equal(tileOnGrid(levels, rect(0, 0, 255, 256), exact(255, 256)), null, 'short of a tile');
    assert.equal(tileOnGrid(levels, rect(0, 0, 512, 256), exact(512, 256)), null, 'two tiles');
    assert.equal(tileOnGrid(levels, rect(768, 512, 256, 256), exact(232, 188)), null, 'region past the edge, unclipped');
  });
});

describe('info.json media type', () => {
  const ld3 = 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"';
  const ld2 = 'application/ld+json;profile="http://iiif.io/api/image/2/context.json"';
  it('v3: JSON-LD with the context as profile, plain JSON only when asked for alone', () => {
    assert.equal(infoContentType('', 3), ld3);
    assert.equal(infoContentType('*/*', 3), ld3);
    assert.equal(infoContentType('application/ld+json', 3), ld3);
    assert.equal(infoContentType('application/json', 3), 'application/json');
    assert.equal(infoContentType('application/json, application/ld+json;q=0.9', 3), ld3);
    assert.equal(infoContentType('text/html,application/xhtml+xml,*/*;q=0.8', 3), ld3);
  });
  it('v2: plain JSON unless JSON-LD is asked for (2.1 §5.1)', () => {
    assert.equal(infoContentType('', 2), 'application/json');
    assert.equal(infoContentType('*/*', 2), 'application/json');
    assert.equal(infoContentType('application/ld+json', 2), ld2);
    assert.equal(infoContentType('application/ld+json;profile="http://iiif.io/api/image/2/context.json"', 2), ld2);
  });
});
