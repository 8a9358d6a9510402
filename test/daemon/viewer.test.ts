/**
 * The viewer page (VIEWER=1) on the real daemon over HTTP: the list, OpenSeadragon's files served
 * from its npm package, and Debian's Chromium (driven by playwright-core) opening images by IIIF
 * until their tiles have loaded and the canvas shows the image's own colours where the image is.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { startDaemon, tempDir, which } from '../helpers/daemon.ts';
import { decodePixels, makePyramidTiff, type Pixels } from '../helpers/images.ts';
import { freePort, stopGroup, type Started } from '../helpers/processes.ts';
import { request } from '../helpers/webservers.ts';

const chromiumBinary = which('chromium');
const osdScript = readFileSync(createRequire(import.meta.url).resolve('openseadragon/build/openseadragon/openseadragon.min.js'));

/** A name with every character HTML gives a meaning to. */
const STRANGE = `a<b>"&'.png`;
const STRANGE_COLOUR = { r: 200, g: 30, b: 160 };

async function startViewerDaemon(images: string, env: Record<string, string> = {}): Promise<{ port: number; daemon: Started }> {
  const port = await freePort();
  const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
    env: { FILESYSTEM_PREFIX: images + '/', ...env },
    waitPort: port,
  });
  return { port, daemon };
}

/**
 * The box of the image in a screenshot: the rows and columns mostly made of pixels `inside` says
 * are the image's (the viewer's background is black; OpenSeadragon's buttons are too small to count).
 */
function imageBox(pixels: Pixels, inside: (r: number, g: number, b: number) => boolean) {
  const rows = new Array<number>(pixels.height).fill(0);
  const columns = new Array<number>(pixels.width).fill(0);
  for (let y = 0; y < pixels.height; y++) {
    for (let x = 0; x < pixels.width; x++) {
      const i = (y * pixels.width + x) * pixels.channels;
      if (!inside(pixels.data[i]!, pixels.data[i + 1]!, pixels.data[i + 2]!)) continue;
      rows[y]!++;
      columns[x]!++;
    }
  }
  const span = (counts: number[], length: number) => {
    const first = counts.findIndex((n) => n > length / 2);
    const last = counts.findLastIndex((n) => n > length / 2);
    return { start: first, size: first < 0 ? 0 : last - first + 1 };
  };
  const across = span(columns, pixels.height);
  const down = span(rows, pixels.width);
  return { left: across.start, top: down.start, width: across.size, height: down.size };
}

/** Mean of one band over a box. */
function mean(pixels: Pixels, band: number, box: { left: number; top: number; width: number; height: number }): number {
  let sum = 0;
  for (let y = box.top; y < box.top + box.height; y++) {
    for (let x = box.left; x < box.left + box.width; x++) sum += pixels.data[(y * pixels.width + x) * pixels.channels + band]!;
  }
  return sum / (box.width * box.height);
}

/** What the tests read of the page's OpenSeadragon viewer. */
interface OpenSeadragonViewer {
  world: { getItemAt(index: number): { getFullyLoaded(): boolean } | undefined };
}

describe('viewer page over HTTP (VIEWER=1)', () => {
  let images: string;
  let port: number;
  let daemon: Started;

  before(async () => {
    images = path.join(tempDir(), 'images');
    mkdirSync(path.join(images, 'sub'), { recursive: true });
    // Red grows to the right, green downwards: where the image shows, its colours say which way up.
    await makePyramidTiff(path.join(images, 'ramp.tif'), { width: 2048, height: 1536, compression: 'jpeg' });
    await sharp({ create: { width: 600, height: 400, channels: 3, background: STRANGE_COLOUR } })
      .png()
      .toFile(path.join(images, 'sub', STRANGE));
    writeFileSync(path.join(images, 'notes.txt'), 'not an image');
    writeFileSync(path.join(images, '.hidden.tif'), 'hidden');
    ({ port, daemon } = await startViewerDaemon(images, { VIEWER: '1' }));
  });
  after(async () => {
    await stopGroup(daemon);
  });

  it('lists the images of the folder and its subfolders, names escaped, nothing from another site', async () => {
    const reply = await request(port, '/viewer/');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(String(reply.headers['content-security-policy']), /script-src 'self';/);
    const html = reply.body.toString();
    assert.ok(html.includes('<a href="/viewer/?image=ramp.tif">ramp.tif</a>'), html);
    const escaped = 'sub/a&lt;b&gt;&quot;&amp;&#39;.png';
    assert.ok(html.includes(`<a href="/viewer/?image=${encodeURIComponent(`sub/${STRANGE}`).replace(/'/g, '&#39;')}">${escaped}</a>`), html);
    assert.ok(!html.includes(STRANGE), 'the raw name is nowhere in the page');
    assert.ok(!html.includes('notes.txt') && !html.includes('hidden'), 'other files and hidden files are not listed');
    assert.doesNotMatch(html, /https?:|"\/\//, 'no URL of another site');
  });

  it('opens a chosen image by the IIIF info.json of this server', async () => {
    const html = (await request(port, '/viewer/?image=ramp.tif')).body.toString();
    const info = /data-info="([^"]+)"/.exec(html)?.[1];
    assert.equal(info, '/?IIIF=ramp.tif/info.json');
    const reply = await request(port, info);
    assert.equal(reply.status, 200);
    assert.equal((JSON.parse(reply.body.toString()) as { width: number }).width, 2048);
  });

  it("serves OpenSeadragon's script and buttons from its package, typed and kept for good", async () => {
    const html = (await request(port, '/viewer/')).body.toString();
    const script = /<script src="([^"]*openseadragon\.min\.js)"/.exec(html)?.[1];
    assert.ok(script, html);
    const js = await request(port, script);
    assert.equal(js.status, 200);
    assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(js.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.ok(js.body.equals(osdScript), 'the package file, byte for byte');
    const button = await request(port, script.replace('openseadragon.min.js', 'images/zoomin_rest.png'));
    assert.equal(button.status, 200);
    assert.equal(button.headers['content-type'], 'image/png');
    assert.ok(button.body.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])));
    const own = await request(port, '/viewer/viewer.js');
    assert.equal(own.status, 200);
    assert.equal(own.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.match(own.body.toString(), /OpenSeadragon\(/);
    assert.match((await request(port, '/')).body.toString(), /<a href="\/viewer\/">viewer<\/a>/, 'the banner page links to it');
    const bare = await request(port, '/viewer');
    assert.equal(bare.status, 301);
    assert.equal(bare.headers.location, '/viewer/');
  });

  it('refuses every path that is not one of those files: traversal, other package files, another version', async () => {
    const html = (await request(port, '/viewer/')).body.toString();
    const dir = /<script src="([^"]*\/)openseadragon\.min\.js"/.exec(html)![1]!;
    for (const attempt of [
      `${dir}../../../package.json`,
      `${dir}images/../../../package.json`,
      `${dir}images/..%2F..%2F..%2Fpackage.json`,
      `${dir}%2e%2e/%2e%2e/package.json`,
      `${dir}openseadragon.js.map`,
      `${dir}images/missing.png`,
      '/viewer/openseadragon/0.0.1/openseadragon.min.js',
      '/viewer/../package.json',
      '/viewer/anything',
    ]) {
      const reply = await request(port, attempt);
      assert.equal(reply.status, 404, attempt);
      assert.equal(reply.headers['content-type'], 'text/plain; charset=utf-8', attempt);
      assert.doesNotMatch(reply.body.toString(), /"name"|"version"/, attempt);
    }
  });

  it("is counted as the server's viewer in the metrics", async () => {
    const text = (await request(port, '/metrics')).body.toString();
    assert.match(text, /^iipsrv_requests_total\{[^}]*kind="viewer"[^}]*status="200"[^}]*\} [1-9]/m);
    assert.match(text, /^iipsrv_requests_total\{[^}]*kind="viewer"[^}]*status="404"[^}]*\} [1-9]/m);
  });

  describe('in Chromium', { skip: chromiumBinary ? false : 'Chromium is not installed (Debian package chromium)' }, () => {
    let browser: Browser;
    let page: Page;
    /** Everything the page asked for, and what went wrong in it. */
    let requested: string[];
    let problems: string[];
    let tiles: number;

    before(async () => {
      browser = await chromium.launch({ executablePath: chromiumBinary!, args: ['--no-sandbox'] });
      page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
      requested = [];
      problems = [];
      tiles = 0;
      page.on('request', (r) => requested.push(r.url()));
      page.on('response', (r) => {
        if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
        if (r.status() === 200 && /[?&]IIIF=.*\/default\.jpg$/.test(r.url())) tiles++;
      });
      page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    });
    after(async () => {
      await browser?.close();
    });

    /** Clicks an image of the list and waits until OpenSeadragon has drawn all the tiles it wants. */
    async function open(name: string): Promise<Pixels> {
      await page.goto(`http://127.0.0.1:${port}/viewer/`);
      await Promise.all([page.waitForURL(/\?image=/), page.getByRole('link', { name }).click()]);
      await page.waitForFunction(
        () => {
          // Run in the page, where globalThis is its window.
          const viewer = (globalThis as unknown as { iipsrvViewer?: OpenSeadragonViewer }).iipsrvViewer;
          return viewer?.world.getItemAt(0)?.getFullyLoaded() === true;
        },
        undefined,
        { timeout: 30_000 },
      );
      return decodePixels(await page.locator('#viewer').screenshot());
    }

    it('shows a pyramid TIFF: its tiles load from this server and the canvas shows its colours, the right way up', async () => {
      const pixels = await open('ramp.tif');
      assert.ok(tiles >= 2, `tiles answered 200: ${tiles}`);
      assert.deepEqual(problems, []);
      const origin = `http://127.0.0.1:${port}/`;
      assert.deepEqual(
        requested.filter((url) => !url.startsWith(origin)),
        [],
        'every request went to this server',
      );
      assert.match((await page.locator('#status').textContent()) ?? '', /^ramp\.tif: 2048 x 1536 px$/);

      // Blue is 128 all over the image, 0 in the black around it (68 in the status line's border).
      const box = imageBox(pixels, (_r, _g, b) => Math.abs(b - 128) < 28);
      assert.ok(box.width > 200 && box.height > 150, `image area ${JSON.stringify(box)} of ${pixels.width}x${pixels.height}`);
      assert.ok(Math.abs(box.width / box.height - 4 / 3) < 0.05, `image area ${box.width}x${box.height}, not 4:3`);
      const quarter = { width: Math.floor(box.width / 4), height: Math.floor(box.height / 4) };
      const leftStrip = { left: box.left, top: box.top, width: quarter.width, height: box.height };
      const rightStrip = { left: box.left + box.width - quarter.width, top: box.top, width: quarter.width, height: box.height };
      const topStrip = { left: box.left, top: box.top, width: box.width, height: quarter.height };
      const bottomStrip = { left: box.left, top: box.top + box.height - quarter.height, width: box.width, height: quarter.height };
      assert.ok(mean(pixels, 0, rightStrip) - mean(pixels, 0, leftStrip) > 150, 'red grows to the right');
      assert.ok(mean(pixels, 1, bottomStrip) - mean(pixels, 1, topStrip) > 150, 'green grows downwards');
      assert.ok(Math.abs(mean(pixels, 2, box) - 128) < 12, 'blue is the image’s 128');
    });

    it('shows an image without a pyramid whose name HTML and URLs give meanings to', async () => {
      problems.length = 0;
      const pixels = await open(`sub/${STRANGE}`);
      assert.deepEqual(problems, []);
      assert.equal(await page.locator('#status').textContent(), `sub/${STRANGE}: 600 x 400 px`);
      const box = imageBox(pixels, (r) => r > 100);
      assert.ok(Math.abs(box.width / box.height - 3 / 2) < 0.05, `image area ${box.width}x${box.height}, not 3:2`);
      const centre = { left: box.left + box.width / 4, top: box.top + box.height / 4, width: box.width / 2, height: box.height / 2 };
      const whole = (b: typeof centre) => ({ left: Math.round(b.left), top: Math.round(b.top), width: Math.round(b.width), height: Math.round(b.height) });
      for (const [band, expected] of [STRANGE_COLOUR.r, STRANGE_COLOUR.g, STRANGE_COLOUR.b].entries()) {
        assert.ok(Math.abs(mean(pixels, band, whole(centre)) - expected) < 8, `band ${band}: ${mean(pixels, band, whole(centre))}, not ${expected}`);
      }
    });
  });
});

describe('viewer page off (the default)', () => {
  let port: number;
  let daemon: Started;

  before(async () => {
    const images = path.join(tempDir(), 'images');
    mkdirSync(images);
    ({ port, daemon } = await startViewerDaemon(images));
  });
  after(async () => {
    await stopGroup(daemon);
  });

  it('serves neither the page nor OpenSeadragon', async () => {
    assert.doesNotMatch((await request(port, '/')).body.toString(), /viewer/);
    const page = await request(port, '/viewer/');
    assert.doesNotMatch(page.body.toString(), /openseadragon|viewer\.js/i);
    const script = await request(port, '/viewer/viewer.js');
    assert.doesNotMatch(String(script.headers['content-type']), /javascript/);
    const osd = await request(port, '/viewer/openseadragon/6.1.1/openseadragon.min.js');
    assert.doesNotMatch(String(osd.headers['content-type']), /javascript/);
    assert.ok(!osd.body.includes(osdScript.subarray(0, 200)), 'not the script');
  });
});

describe('viewer page with a missing image folder', () => {
  let port: number;
  let daemon: Started;

  before(async () => {
    ({ port, daemon } = await startViewerDaemon(path.join(tempDir(), 'gone'), { VIEWER: '1' }));
  });
  after(async () => {
    await stopGroup(daemon);
  });

  it('says so in the page, and keeps serving', async () => {
    const reply = await request(port, '/viewer/');
    assert.equal(reply.status, 200);
    assert.match(reply.body.toString(), /The image folder \(FILESYSTEM_PREFIX\) cannot be read \(ENOENT\)/);
    assert.equal((await request(port, '/viewer/')).status, 200);
  });
});

describe('viewer page with URI_MAP taking every path to IIIF', () => {
  let port: number;
  let daemon: Started;

  before(async () => {
    const images = path.join(tempDir(), 'images');
    mkdirSync(images);
    await makePyramidTiff(path.join(images, 'a.tif'), { width: 512, height: 512 });
    ({ port, daemon } = await startViewerDaemon(images, { VIEWER: '1', URI_MAP: '=>IIIF' }));
  });
  after(async () => {
    await stopGroup(daemon);
  });

  it('keeps its own paths, and opens images by path-style IIIF', async () => {
    const html = (await request(port, '/viewer/?image=a.tif')).body.toString();
    const info = /data-info="([^"]+)"/.exec(html)?.[1];
    assert.equal(info, '/a.tif/info.json');
    const reply = await request(port, info);
    assert.equal(reply.status, 200, reply.body.toString());
    assert.equal((JSON.parse(reply.body.toString()) as { id: string }).id, `http://127.0.0.1:${port}/a.tif`);
    assert.equal((await request(port, '/viewer/viewer.js')).status, 200);
  });
});
