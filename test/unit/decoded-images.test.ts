/**
 * The byte-bounded cache of small non-pyramidal images' decoded levels: a level is decoded once
 * however many tiles ask for it at once, the least recently used go when the bytes run out, an
 * entry larger than the whole budget is never kept, and a closed file's entries go with it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodedImages } from '../../src/engine/plain/decoded-images.ts';
import type { RawPixels } from '../../src/engine/source.ts';

function pixels(bytes: number): RawPixels {
  return { data: Buffer.alloc(bytes), width: bytes / 3, height: 1, channels: 3, stride: bytes };
}

describe('decoded images', () => {
  it('requests for one level at once share one decode; later ones are served from memory', async () => {
    const cache = new DecodedImages(1000);
    let decodes = 0;
    const decode = async () => {
      decodes++;
      await new Promise((resolve) => setTimeout(resolve, 20));
      return pixels(300);
    };
    const all = await Promise.all([cache.get('a\0' + 0, decode), cache.get('a\0' + 0, decode), cache.get('a\0' + 0, decode)]);
    assert.equal(decodes, 1);
    assert.ok(all.every((p) => p === all[0]));
    assert.equal(await cache.get('a\0' + 0, decode), all[0]);
    assert.equal(decodes, 1);
    assert.equal(cache.bytes, 300);
  });

  it('stays within its bytes: the least recently used go first, one larger than the budget is never kept', async () => {
    const cache = new DecodedImages(900);
    let decodes = 0;
    const decode = (bytes: number) => async () => {
      decodes++;
      return pixels(bytes);
    };
    await cache.get('a', decode(300));
    await cache.get('b', decode(300));
    await cache.get('c', decode(300));
    // A use of a makes b the least recently used.
    await cache.get('a', decode(300));
    await cache.get('d', decode(300));
    assert.equal(cache.bytes, 900);
    decodes = 0;
    await cache.get('a', decode(300));
    await cache.get('c', decode(300));
    await cache.get('d', decode(300));
    assert.equal(decodes, 0, 'a, c and d were kept');
    await cache.get('huge', decode(3000));
    assert.equal(cache.bytes, 900, 'the oversized level was served, not kept');
  });

  it('forgets a closed file by its key prefix, and everything on flush', async () => {
    const cache = new DecodedImages(10_000);
    await cache.get('/img/a.jpg\0' + 0, async () => pixels(300));
    await cache.get('/img/a.jpg\0' + 1, async () => pixels(75));
    await cache.get('/img/b.jpg\0' + 0, async () => pixels(300));
    cache.forget('/img/a.jpg\0');
    assert.equal(cache.bytes, 300);
    cache.clear();
    assert.equal(cache.bytes, 0);
  });
});
