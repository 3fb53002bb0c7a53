/** The cache view's summary of a cache: columns, kept shares, image heat-maps (pure). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TEXT, KvLayer } from '../../sidecar/src/kv/index.js';
import { CacheTally, cacheMap } from '../../sidecar/src/session/cacheMap.js';

/** One layer of `heads` heads keeping the given positions (same count per head). */
function layerKeeping(kept: number[][]) {
  const layer = KvLayer.blank(kept.length, 2, kept[0].length);
  kept.forEach((positions, h) => layer.positions.set(positions, h * layer.length));
  return layer;
}

describe('cache map', () => {
  // 12 positions: text 0-3, image 0 (4 tokens, 2x2) at 4-7, text 8-11.
  const tally = new CacheTally();
  tally.fed(Array.from({ length: 12 }, (_, p) => (p >= 4 && p < 8 ? 0 : TEXT)));
  tally.merged[6] = 2;
  const cache = [layerKeeping([[0, 4, 5, 11], [1, 4, 6, 11]]), layerKeeping([[2, 4, 7, 10], [3, 5, 7, 10]])];

  it('gives per head the kept share of each column and per patch the share of layer-heads keeping or merging it', () => {
    const map = cacheMap(cache, tally);
    assert.equal(map.bucket, 1);
    assert.deepEqual(map.layers[0].heads[0], [1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual(map.images, [{ index: 0, firstPosition: 4, tokens: 4, grid: [2, 2], kept: [0.75, 0.5, 0.25, 0.5], merged: [0, 0, 0.5, 0] }]);
    assert.equal(map.keptPerHead, 4);
  });

  it('buckets a long conversation to maxColumns columns, shares still adding up to the slots kept', () => {
    const map = cacheMap(cache, tally, 4);
    assert.equal(map.bucket, 3);
    assert.deepEqual(map.columnModality, [TEXT, 0, 0, TEXT], 'the most frequent modality of positions 0-2, 3-5, 6-8, 9-11');
    for (const layer of map.layers) for (const head of layer.heads) assert.ok(Math.abs(head.reduce((a, b) => a + b * 3, 0) - 4) < 0.01, 'shares are rounded to 3 decimals');
  });

  it('is empty but well-formed for an evicted cache', () => {
    const map = cacheMap(null, tally);
    assert.deepEqual(map.layers, []);
    assert.equal(map.keptPerHead, 0);
    assert.deepEqual(map.images[0].kept, [0, 0, 0, 0]);
  });

  it('draws an image read as several frames (SmolVLM\'s tiles, then its global image) frame by frame', () => {
    // Text 0, image 0's tile (4 tokens) at 1-4, markup 5, its global image at 6-9, text 10, image 1 (one frame) at 11-14.
    const tiles = new CacheTally();
    tiles.fed([TEXT, 0, 0, 0, 0, TEXT, 0, 0, 0, 0, TEXT, 1, 1, 1, 1]);
    const kept = [layerKeeping([[1, 6, 7, 11], [2, 6, 8, 12]])];
    const map = cacheMap(kept, tiles);
    assert.deepEqual(
      map.images.map(({ index, firstPosition, tokens, grid, frame, frames }) => ({ index, firstPosition, tokens, grid, frame, frames })),
      [
        { index: 0, firstPosition: 1, tokens: 4, grid: [2, 2], frame: 0, frames: 2 },
        { index: 0, firstPosition: 6, tokens: 4, grid: [2, 2], frame: 1, frames: 2 },
        { index: 1, firstPosition: 11, tokens: 4, grid: [2, 2], frame: undefined, frames: undefined },
      ],
    );
    assert.deepEqual(map.images[0].kept, [0.5, 0.5, 0, 0], 'the tile\'s own positions, not the markup after it');
    assert.deepEqual(map.images[1].kept, [1, 0.5, 0.5, 0]);
  });

  it('draws an image whose architecture says how (LLaVA-NeXT) part by part: its base image, then its tile grid with a row-end column', () => {
    // Text 0, image 0 at 1-10: a 2 x 2 base image, then 2 rows of 2 features and a row end; text 11.
    const tally = new CacheTally();
    tally.fed([TEXT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, TEXT]);
    const kept = [layerKeeping([[1, 5, 7, 11], [2, 5, 8, 11]])];
    const parts = [{ name: 'base image', rows: 2, cols: 2 }, { name: 'tiles', rows: 2, cols: 3 }];
    const map = cacheMap(kept, tally, undefined, (index) => (index === 0 ? parts : undefined));
    assert.deepEqual(
      map.images.map(({ index, firstPosition, tokens, grid, frame, frames, part }) => ({ index, firstPosition, tokens, grid, frame, frames, part })),
      [
        { index: 0, firstPosition: 1, tokens: 4, grid: [2, 2], frame: 0, frames: 2, part: 'base image' },
        { index: 0, firstPosition: 5, tokens: 6, grid: [2, 3], frame: 1, frames: 2, part: 'tiles' },
      ],
    );
    assert.deepEqual(map.images[1].kept, [1, 0, 0.5, 0.5, 0, 0]);
    // A drawing that does not cover the image's tokens is not used: the plain drawing instead.
    const plain = cacheMap(kept, tally, undefined, () => [{ name: 'base image', rows: 2, cols: 2 }]);
    assert.deepEqual(plain.images.map((i) => [i.tokens, i.grid, i.part]), [[10, [1, 10], undefined]]);
  });
});
