/**
 * IIIF through the real program: `iipsrv --http`, and FastCGI behind nginx with
 * examples/nginx/iipsrv.conf (URI_MAP path style `/iiif/<id>/...` and the classic query style
 * `/fcgi-bin/iipsrv.fcgi?IIIF=<id>/...`). The id in info.json must be the URL the client used,
 * host and port included, whichever way the request arrived; tiles, pixels, redirects and errors
 * must be what the router tests see.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon } from '../helpers/daemon.ts';
import { freePort, stopGroup, type Started } from '../helpers/processes.ts';
import { validatorImage } from '../helpers/iiif-fixtures.ts';
import { decodePixels, type Pixels } from '../helpers/images.ts';
import {
  nginxAvailability,
  nginxErrors,
  nginxSiteReplacements,
  renderExample,
  request,
  startNginx,
  webTempDir,
  type Reply,
  type Replacements,
  type WebServer,
} from '../helpers/webservers.ts';
import { parseJson } from '../helpers/json.ts';

const SCRIPT = '/fcgi-bin/iipsrv.fcgi';
const CONTEXT2 = 'http://iiif.io/api/image/2/context.json';
const LD3 = 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"';

interface FrontEnd {
  /** The port clients talk to. */
  port: number;
  daemon: Started;
  nginx: WebServer | null;
}

let images: string;
let truth: Pixels;

async function prepareImages(dir: string): Promise<string> {
  const folder = path.join(dir, 'images') + '/';
  mkdirSync(path.join(folder, 'sub'), { recursive: true });
  truth = await validatorImage([path.join(folder, 'validator.tif'), path.join(folder, 'sub', 'validator.tif')]);
  return folder;
}

function pixelAt(p: Pixels, x: number, y: number): number[] {
  const i = (y * p.width + x) * p.channels;
  return [...p.data.subarray(i, i + p.channels)];
}

function medianColour(p: Pixels): number[] {
  const bands: number[][] = Array.from({ length: p.channels }, () => []);
  for (let i = 0; i < p.data.length; i++) bands[i % p.channels]!.push(p.data[i]!);
  return bands.map((values) => values.sort((a, b) => a - b)[values.length >> 1]!);
}

const json = (reply: Reply) => parseJson(reply.body);

function okReply(reply: Reply, what: string): Reply {
  assert.equal(reply.status, 200, `${what}: ${reply.status} ${reply.body.toString().slice(0, 200)}`);
  return reply;
}

/**
 * The daemon (one worker, FastCGI) behind nginx with examples/nginx/iipsrv.conf, changed by
 * `changes` (beyond the ports); stopped again if nginx does not start.
 */
async function startBehindNginx(tempPrefix: string, env: Record<string, string> = {}, changes: Replacements = []): Promise<FrontEnd> {
  const dir = webTempDir(tempPrefix);
  images = await prepareImages(dir);
  const port = await freePort();
  const fastcgiPort = await freePort();
  const daemon = await startDaemon(['--bind', `127.0.0.1:${fastcgiPort}`, '--workers', '1'], {
    env: { FILESYSTEM_PREFIX: images, URI_MAP: 'iiif=>IIIF iip=>IIP', VERBOSITY: '0', ...env },
    waitPort: fastcgiPort,
  });
  try {
    const site = renderExample('nginx/iipsrv.conf', [...nginxSiteReplacements({ port, fastcgiPort }), ...changes]);
    return { port, daemon, nginx: await startNginx({ dir, port, site }) };
  } catch (error) {
    await stopGroup(daemon);
    throw error;
  }
}

async function stopFront(front: FrontEnd | undefined): Promise<void> {
  if (front) await Promise.allSettled([front.nginx?.stop(), stopGroup(front.daemon)]);
}

/** The checks every way of reaching the server must pass. */
function iiifChecks(get: () => FrontEnd, label: string): void {
  const fetch = (pathAndQuery: string, headers: Record<string, string> = {}, method = 'GET') => request(get().port, pathAndQuery, { headers, method });
  const host = () => `127.0.0.1:${get().port}`;

  it(`${label}: info.json by path (URI_MAP): the id is the URL used, host and port included`, async () => {
    const reply = okReply(await fetch('/iiif/validator.tif/info.json'), 'info.json');
    const info = json(reply);
    assert.equal(info.id, `http://${host()}/iiif/validator.tif`);
    assert.equal(info['@context'], 'http://iiif.io/api/image/3/context.json');
    assert.deepEqual([info.width, info.height, info.tiles], [1000, 1000, [{ width: 128, height: 128, scaleFactors: [1, 2, 4, 8] }]]);
    assert.equal(reply.headers['content-type'], LD3);
    assert.equal(reply.headers.link, '<http://iiif.io/api/image/3/level2.json>;rel="profile"');
    assert.equal(reply.headers.vary, 'Accept');
    assert.equal(reply.headers['content-length'], String(reply.body.length));
  });
  it(`${label}: info.json by query string: the id keeps the script and ?IIIF=`, async () => {
    const info = json(okReply(await fetch(`${SCRIPT}?IIIF=validator.tif/info.json`), 'query info.json'));
    assert.equal(info.id, `http://${host()}${SCRIPT}?IIIF=validator.tif`);
  });
  it(`${label}: another Host, an encoded slash`, async () => {
    const proxied = json(okReply(await fetch('/iiif/validator.tif/info.json', { Host: 'iiif.example.org:8443' }), 'proxied'));
    assert.equal(proxied.id, 'http://iiif.example.org:8443/iiif/validator.tif');
    const encoded = json(okReply(await fetch('/iiif/sub%2Fvalidator.tif/info.json'), 'encoded'));
    assert.equal(encoded.id, `http://${host()}/iiif/sub%2Fvalidator.tif`);
    const byQuery = json(okReply(await fetch(`${SCRIPT}?IIIF=sub%2Fvalidator.tif/info.json`), 'encoded query'));
    assert.equal(byQuery.id, `http://${host()}${SCRIPT}?IIIF=sub%2Fvalidator.tif`);
    okReply(await fetch('/iiif/sub%2Fvalidator.tif/full/max/0/default.jpg'), 'encoded image');
  });
  it(`${label}: X-IIIF-ID, X-Forwarded-Host and -Proto from a client change no id or redirect (no TRUSTED_HEADERS)`, async () => {
    const hostile = { 'X-IIIF-ID': 'https://evil.example/phish', 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'https' };
    assert.equal(json(okReply(await fetch(`${SCRIPT}?IIIF=validator.tif/info.json`, hostile), 'info.json')).id, `http://${host()}${SCRIPT}?IIIF=validator.tif`);
    const redirect = await fetch(`${SCRIPT}?IIIF=validator.tif`, hostile);
    assert.equal(redirect.status, 303);
    assert.equal(redirect.headers.location, `http://${host()}${SCRIPT}?IIIF=validator.tif/info.json`);
    assert.equal(redirect.headers.vary, undefined);
  });
  it(`${label}: an Accept header naming the 2.1 context gives the 2.1 document`, async () => {
    const reply = okReply(await fetch('/iiif/validator.tif/info.json', { Accept: `application/ld+json;profile="${CONTEXT2}"` }), 'v2');
    const info = json(reply);
    assert.equal(info['@context'], CONTEXT2);
    assert.equal(info['@id'], `http://${host()}/iiif/validator.tif`);
    assert.equal(info.profile[0], 'http://iiif.io/api/image/2/level2.json');
    assert.equal(reply.headers['content-type'], `application/ld+json;profile="${CONTEXT2}"`);
    assert.equal((await fetch('/iiif/validator.tif/info.json', { Accept: 'application/json' })).headers['content-type'], 'application/json');
  });
  it(`${label}: the identifier alone redirects (303) to its info.json, absolute`, async () => {
    const byPath = await fetch('/iiif/validator.tif');
    assert.equal(byPath.status, 303);
    assert.equal(byPath.headers.location, `http://${host()}/iiif/validator.tif/info.json`);
    const byQuery = await fetch(`${SCRIPT}?IIIF=validator.tif`);
    assert.equal(byQuery.status, 303);
    assert.equal(byQuery.headers.location, `http://${host()}${SCRIPT}?IIIF=validator.tif/info.json`);
  });
  it(`${label}: a viewer's tiles of one level (v3 w,h and v2 w, by Accept) are the IIP JTL bytes`, async () => {
    // Scale factor 2: a 500x500 level of 4x4 tiles of 128 px, spanning 256 full-resolution pixels.
    for (let row = 0; row < 4; row++) {
      for (let col = 0; col < 4; col++) {
        const [x, y] = [col * 256, row * 256];
        const [w, h] = [Math.min(256, 1000 - x), Math.min(256, 1000 - y)];
        const [sw, sh] = [Math.ceil(w / 2), Math.ceil(h / 2)];
        const jtl = okReply(await fetch(`${SCRIPT}?FIF=validator.tif&JTL=2,${row * 4 + col}`), 'JTL');
        const v3 = okReply(await fetch(`/iiif/validator.tif/${x},${y},${w},${h}/${sw},${sh}/0/default.jpg`), `v3 ${col},${row}`);
        const v2 = okReply(
          await fetch(`/iiif/validator.tif/${x},${y},${w},${h}/${sw},/0/default.jpg`, { Accept: `application/ld+json;profile="${CONTEXT2}"` }),
          `v2 ${col},${row}`,
        );
        assert.ok(v3.body.equals(jtl.body), `v3 tile ${col},${row}`);
        assert.ok(v2.body.equals(jtl.body), `v2 tile ${col},${row}`);
        assert.equal(v3.headers['content-type'], 'image/jpeg');
        const size = await decodePixels(v3.body);
        assert.deepEqual([size.width, size.height], [sw, sh]);
      }
    }
  });
  it(`${label}: pixels, rotation and quality survive the transport`, async () => {
    const square = await decodePixels(okReply(await fetch('/iiif/validator.tif/313,513,74,74/max/0/default.jpg'), 'square').body);
    const expected = pixelAt(truth, 350, 550);
    assert.ok(
      medianColour(square).every((v, i) => Math.abs(v - expected[i]!) < 6),
      `${medianColour(square)} vs ${expected}`,
    );
    const rotated = await decodePixels(okReply(await fetch(`${SCRIPT}?IIIF=validator.tif/0,0,200,100/max/90/default.png`), 'rotated').body);
    assert.deepEqual([rotated.width, rotated.height], [100, 200]);
    const bitonal = await decodePixels(okReply(await fetch('/iiif/validator.tif/full/200,/0/bitonal.png'), 'bitonal').body);
    assert.equal(bitonal.channels, 1);
    assert.ok(bitonal.data.every((v) => v === 0 || v === 255));
    const reply = okReply(await fetch('/iiif/validator.tif/full/max/0/default.jpg'), 'canonical');
    assert.equal(
      reply.headers.link,
      `<http://${host()}/iiif/validator.tif/full/max/0/default.jpg>;rel="canonical", <http://iiif.io/api/image/3/level2.json>;rel="profile"`,
    );
  });
  it(`${label}: HEAD of info.json has the length and no body`, async () => {
    const got = await fetch('/iiif/validator.tif/info.json');
    const head = await fetch('/iiif/validator.tif/info.json', {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers['content-length'], got.headers['content-length']);
  });
  it(`${label}: 400, 404 and 501 with plain-text messages`, async () => {
    for (const [pathAndQuery, status] of [
      ['/iiif/validator.tif/full/max/0/default.bmp', 400],
      ['/iiif/validator.tif/0,0,0,0/max/0/default.jpg', 400],
      ['/iiif/validator.tif/full/1001,/0/default.jpg', 400],
      [`${SCRIPT}?IIIF=validator.tif/full/max/400/default.jpg`, 400],
      ['/iiif/nope.tif/info.json', 404],
      [`${SCRIPT}?IIIF=nope.tif/full/max/0/default.jpg`, 404],
      ['/iiif/validator.tif/full/max/0/default.heic', 501],
    ] as const) {
      const reply = await fetch(pathAndQuery);
      assert.equal(reply.status, status, `${pathAndQuery}: ${reply.body.toString()}`);
      assert.equal(reply.headers['content-type'], 'text/plain; charset=utf-8', pathAndQuery);
      assert.ok(reply.body.length > 0 && !reply.body.toString().includes(images), pathAndQuery);
    }
  });
}

describe('IIIF through iipsrv --http', () => {
  let front: FrontEnd | undefined;
  const get = () => {
    assert.ok(front, 'set-up failed');
    return front;
  };
  before(async () => {
    const dir = webTempDir('iipsrv-iiif-http-');
    images = await prepareImages(dir);
    const port = await freePort();
    const daemon = await startDaemon(['--http', `127.0.0.1:${port}`, '--workers', '1'], {
      env: { FILESYSTEM_PREFIX: images, URI_MAP: 'iiif=>IIIF', VERBOSITY: '0' },
      waitPort: port,
    });
    front = { port, daemon, nginx: null };
  });
  after(async () => {
    if (front) await stopGroup(front.daemon);
  });
  iiifChecks(get, '--http');
});

describe('IIIF through nginx and FastCGI (examples/nginx/iipsrv.conf)', { skip: nginxAvailability().skip ?? false }, () => {
  let front: FrontEnd | undefined;
  const get = () => {
    assert.ok(front, 'set-up failed');
    return front;
  };
  before(async () => {
    front = await startBehindNginx('iipsrv-iiif-nginx-');
  });
  after(() => stopFront(front));
  iiifChecks(get, 'nginx');
  it('nginx: no upstream errors were logged', () => {
    const errors = nginxErrors(get().nginx!.errorLog());
    assert.deepEqual(errors, [], errors.join('\n'));
  });
});

describe('IIIF ids nginx imposes (the ways examples/nginx/iipsrv_fastcgi_params documents)', { skip: nginxAvailability().skip ?? false }, () => {
  let front: FrontEnd | undefined;
  before(async () => {
    // The query-style location sets iipsrv's header, the path-style one the parameter no client can send.
    front = await startBehindNginx('iipsrv-iiif-nginx-id-', { TRUSTED_HEADERS: 'X-IIIF-ID' }, [
      ['location /fcgi-bin/iipsrv.fcgi {', 'location /fcgi-bin/iipsrv.fcgi {\n        fastcgi_param HTTP_X_IIIF_ID https://cdn.example.org/by-header;'],
      ['fastcgi_split_path_info ^(/[^/]+)(/.*)$;', 'fastcgi_split_path_info ^(/[^/]+)(/.*)$;\n        fastcgi_param IIIF_ID https://cdn.example.org/by-param;'],
    ]);
  });
  after(() => stopFront(front));
  it("fastcgi_param HTTP_X_IIIF_ID replaces the client's X-IIIF-ID (with TRUSTED_HEADERS=X-IIIF-ID)", async () => {
    assert.ok(front, 'set-up failed');
    const evil = { 'X-IIIF-ID': 'https://evil.example/phish' };
    const info = okReply(await request(front.port, `${SCRIPT}?IIIF=validator.tif/info.json`, { headers: evil }), 'info.json');
    assert.equal(json(info).id, 'https://cdn.example.org/by-header');
    assert.equal(info.headers.vary, 'Accept, X-IIIF-ID');
    const redirect = await request(front.port, `${SCRIPT}?IIIF=validator.tif`, { headers: evil });
    assert.equal(redirect.headers.location, 'https://cdn.example.org/by-header/info.json');
  });
  it('fastcgi_param IIIF_ID, which no request header can produce, is used as it is', async () => {
    assert.ok(front, 'set-up failed');
    const info = okReply(await request(front.port, '/iiif/validator.tif/info.json', { headers: { 'X-IIIF-ID': 'https://evil.example/phish' } }), 'info.json');
    assert.equal(json(info).id, 'https://cdn.example.org/by-param');
    assert.equal(info.headers.vary, 'Accept');
  });
});

describe(
  "IIIF behind nginx with Debian's stock fastcgi_params (HTTP_HOST $host: no port) on a port other than 80",
  { skip: nginxAvailability().skip ?? false },
  () => {
    let front: FrontEnd | undefined;
    const get = () => {
      assert.ok(front, 'set-up failed');
      return front;
    };
    before(async () => {
      // Debian's file, and the HTTP_HOST line its current package ends with where an older one lacks it.
      const stock = '/etc/nginx/fastcgi_params';
      const hostLine = /HTTP_HOST/.test(readFileSync(stock, 'utf8')) ? '' : '\n        fastcgi_param HTTP_HOST $host;';
      front = await startBehindNginx('iipsrv-iiif-nginx-stock-', {}, [['include iipsrv_fastcgi_params;', `include ${stock};${hostLine}`]]);
    });
    after(() => stopFront(front));
    const fetch = (pathAndQuery: string) => request(get().port, pathAndQuery);
    it('info.json ids and the redirect keep the port', async () => {
      const origin = `http://127.0.0.1:${get().port}`;
      assert.equal(json(okReply(await fetch('/iiif/validator.tif/info.json'), 'info.json')).id, `${origin}/iiif/validator.tif`);
      assert.equal(json(okReply(await fetch(`${SCRIPT}?IIIF=validator.tif/info.json`), 'query info.json')).id, `${origin}${SCRIPT}?IIIF=validator.tif`);
      const redirect = await fetch('/iiif/validator.tif');
      assert.equal(redirect.status, 303);
      assert.equal(redirect.headers.location, `${origin}/iiif/validator.tif/info.json`);
    });
    it("a viewer's walk from info.json over every tile of every scale factor: each answer at the size asked", async () => {
      const info = json(okReply(await fetch('/iiif/validator.tif/info.json'), 'info.json'));
      const id = info.id as string;
      assert.ok(id.startsWith(`http://127.0.0.1:${get().port}/`), id);
      const [width, height] = [info.width as number, info.height as number];
      const { width: tile, scaleFactors } = (info.tiles as Array<{ width: number; scaleFactors: number[] }>)[0]!;
      let walked = 0;
      for (const s of scaleFactors) {
        const span = tile * s;
        for (let y = 0; y < height; y += span) {
          for (let x = 0; x < width; x += span) {
            const [w, h] = [Math.min(span, width - x), Math.min(span, height - y)];
            const size = [Math.ceil(w / s), Math.ceil(h / s)];
            // The URL the viewer builds from the id, as it would fetch it.
            const url = new URL(`${id}/${x},${y},${w},${h}/${size[0]},${size[1]}/0/default.jpg`);
            const reply = okReply(await fetch(url.pathname), url.pathname);
            const pixels = await decodePixels(reply.body);
            assert.deepEqual([pixels.width, pixels.height], size, url.pathname);
            // One Link header with both links, the canonical one on this server's origin, port included.
            const [canonical, profile] = String(reply.headers.link).split(', ');
            assert.ok(canonical!.startsWith(`<${id}/`) && canonical!.endsWith('/0/default.jpg>;rel="canonical"'), canonical);
            assert.equal(profile, '<http://iiif.io/api/image/3/level2.json>;rel="profile"');
            assert.equal(reply.headers['content-disposition'], 'inline;filename="validator.jpg"');
            walked++;
          }
        }
      }
      assert.ok(walked > 20, `${walked} tiles`);
    });
    it('nginx: no upstream errors were logged', () => {
      const errors = nginxErrors(get().nginx!.errorLog());
      assert.deepEqual(errors, [], errors.join('\n'));
    });
  },
);
