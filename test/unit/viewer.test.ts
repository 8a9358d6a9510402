/**
 * The viewer page's pieces without a server: the bounded folder walk (limits, prefixes that end in
 * a file-name start, FILESYSTEM_SUFFIX, symbolic links), the IIIF URLs it writes and its escaping.
 */
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseUriMap } from '../../src/config.ts';
import { decodeImageName } from '../../src/engine/files/image-path.ts';
import { LIST_LIMITS, listImages, type ImageList, type ListRules } from '../../src/protocols/viewer/image-list.ts';
import { escapeHtml, infoUrl, viewerPage } from '../../src/protocols/viewer/page.ts';
import { tempDir } from '../helpers/daemon.ts';

/** Empty files are enough: the walk goes by names, never by contents. */
function files(root: string, names: string[]): void {
  for (const name of names) {
    mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    writeFileSync(path.join(root, name), '');
  }
}

function rules(prefix: string, extra: Partial<ListRules> = {}): ListRules {
  return { prefix, suffix: '', confineSymlinks: false, ...extra };
}

function names(list: ImageList): string[] {
  assert.ok(list.ok, JSON.stringify(list));
  return list.names;
}

describe('viewer: the image list', () => {
  it('lists images of the folder and its subfolders by suffix, sorted; no hidden files, no other files', async () => {
    const root = tempDir();
    files(root, ['b.tif', 'a.JP2', 'c.jpeg', 'd.png', 'e.ptif', 'sub/deeper/f.webp', 'notes.txt', 'tif', '.hidden.tif', '.git/x.tif']);
    const list = await listImages(rules(root + '/'));
    assert.deepEqual(names(list), ['a.JP2', 'b.tif', 'c.jpeg', 'd.png', 'e.ptif', 'sub/deeper/f.webp']);
    assert.equal(list.ok && list.truncated, false);
  });

  it('stops at the limits and says the list is cut short', async () => {
    const root = tempDir();
    files(root, ['1.tif', '2.tif', '3.tif', '4.tif', '5.tif', 'a/b/c/deep.tif']);
    const few = await listImages(rules(root + '/'), { ...LIST_LIMITS, maxImages: 3 });
    assert.equal(names(few).length, 3);
    assert.equal(few.ok && few.truncated, true);
    const shallow = await listImages(rules(root + '/'), { ...LIST_LIMITS, maxDepth: 2 });
    assert.deepEqual(names(shallow), ['1.tif', '2.tif', '3.tif', '4.tif', '5.tif']);
    assert.equal(shallow.ok && shallow.truncated, true);
    const read = await listImages(rules(root + '/'), { ...LIST_LIMITS, maxEntries: 2 });
    assert.ok(names(read).length <= 2);
    assert.equal(read.ok && read.truncated, true);
  });

  it('takes a prefix without a final slash as the start of file names, as the server resolves them', async () => {
    const root = tempDir();
    files(root, ['img_001.tif', 'img_/x.tif', 'img_old/y.tif', 'other.tif']);
    assert.deepEqual(names(await listImages(rules(path.join(root, 'img_')))), ['/x.tif', '001.tif']);
  });

  it('lists names without FILESYSTEM_SUFFIX, and only files that have it', async () => {
    const root = tempDir();
    files(root, ['a.tif', 'b.png', 'sub/c.tif']);
    assert.deepEqual(names(await listImages(rules(root + '/', { suffix: '.tif' }))), ['a', 'sub/c']);
  });

  it('lists linked files, confined to the folder with FILESYSTEM_CONFINE_SYMLINKS; never enters linked folders', async () => {
    const outside = tempDir();
    files(outside, ['secret.tif', 'dir/in-linked-dir.tif']);
    const root = tempDir();
    files(root, ['real.tif']);
    symlinkSync(path.join(outside, 'secret.tif'), path.join(root, 'out.tif'));
    symlinkSync(path.join(root, 'real.tif'), path.join(root, 'in.tif'));
    symlinkSync(path.join(outside, 'dir'), path.join(root, 'linked'));
    symlinkSync(path.join(root, 'nowhere.tif'), path.join(root, 'broken.tif'));
    symlinkSync(root, path.join(root, 'loop'));
    assert.deepEqual(names(await listImages(rules(root + '/'))), ['in.tif', 'out.tif', 'real.tif']);
    assert.deepEqual(names(await listImages(rules(root + '/', { confineSymlinks: true }))), ['in.tif', 'real.tif']);
  });

  it('says why there is nothing to list: no prefix, no folder', async () => {
    const unset = await listImages(rules(''));
    assert.ok(!unset.ok && /FILESYSTEM_PREFIX is not set/.test(unset.reason));
    const missing = await listImages(rules(path.join(tempDir(), 'gone') + '/'));
    assert.ok(!missing.ok && /cannot be read \(ENOENT\)/.test(missing.reason), JSON.stringify(missing));
  });
});

describe('viewer: IIIF URLs and escaping', () => {
  it('asks IIIF by the query string, or below the URI_MAP prefix mapped to it', () => {
    assert.equal(infoUrl('a.tif', []), '/?IIIF=a.tif/info.json');
    assert.equal(infoUrl('a.tif', parseUriMap('deepzoom=>DeepZoom iiif=>IIIF')), '/iiif/a.tif/info.json');
    assert.equal(infoUrl('a.tif', parseUriMap('=>IIIF')), '/a.tif/info.json');
    assert.equal(infoUrl('a.tif', parseUriMap('=>IIIF, images=>IIIF')), '/images/a.tif/info.json');
  });

  it('encodes identifiers so that the server decodes the same name back', () => {
    for (const name of ['sub/a b+c.tif', `a<b>"&'%41.png`, 'ünïcode/名前.jp2', '/x.tif']) {
      const url = infoUrl(name, []);
      const identifier = /^\/\?IIIF=(.*)\/info\.json$/.exec(url)![1]!;
      assert.ok(!identifier.includes('/') && !identifier.includes('&') && !identifier.includes('+'), url);
      assert.equal(decodeImageName(identifier), name);
    }
  });

  it('escapes names in the list, the title, the status line and the attributes', () => {
    const evil = `<img src=x onerror="alert(1)">'.tif`;
    const html = viewerPage({
      base: '/viewer/',
      openSeadragon: '/viewer/openseadragon/1.0.0/',
      list: { ok: true, names: [evil], truncated: false },
      chosen: evil,
      uriMap: [],
    });
    assert.ok(!html.includes('<img'), html);
    assert.ok(!html.includes(`"alert`), html);
    assert.equal(html.split(escapeHtml(evil)).length - 1, 4, 'the link, the title, data-name and the status line');
  });
});
