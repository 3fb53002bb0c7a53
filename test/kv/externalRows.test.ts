/**
 * A KV cache whose K/V rows live elsewhere (a GPU): the layers keep only per-slot data, the cache
 * counts, undoes and releases the external rows, and compression selects on the host, matches
 * with the rows' own matcher and leaves the merge to their holder. The engine's pure side of
 * `runtime/deviceRows.ts` (tested on WebGPU in test/gpu/modelWebgpu.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KvCache, planCompression, SLOT_META_BYTES, slotBytes, type ExternalRows, type Matcher } from '../../sidecar/src/kv/index.js';

/** Rows that only count: `bytesPerSlot` per slot of every layer and head. */
function fakeRows(numLayers: number, numHeads: number, bytesPerSlot: number, matcher: Matcher = () => ({ target: new Int32Array(0), maxSim: new Float64Array(0) })) {
  const calls: string[] = [];
  const rows = {
    length: 0,
    get allocatedBytes(): number {
      return numLayers * numHeads * rows.length * bytesPerSlot;
    },
    truncate(length: number) {
      calls.push(`truncate ${length}`);
      rows.length = length;
    },
    release() {
      calls.push('release');
    },
    matcher: () => matcher,
    compact() {
      calls.push('compact');
      return Promise.resolve();
    },
  } satisfies ExternalRows & { length: number };
  return { rows, calls };
}

const H = 2;
const D = 4;
const none = new Float32Array(0);

function appendText(cache: KvCache, from: number, count: number, colsum = 1): void {
  const positions = Int32Array.from({ length: count }, (_, i) => from + i);
  const L = cache.length + count;
  cache.append({ keys: [none], values: [none], colsums: [new Float32Array(H * L).fill(colsum)] }, positions, new Int32Array(count).fill(-1), H);
}

describe('KV rows held elsewhere', () => {
  it('the layers keep positions, modality and scores but no rows, and count only those', () => {
    const { rows } = fakeRows(1, H, 2 * D * 4);
    const cache = new KvCache(1, H, D, rows);
    appendText(cache, 0, 10);
    rows.length = 10;
    const layer = cache.layers[0];
    assert.equal(layer.keys.length, 0);
    assert.deepEqual(Array.from(layer.positions.subarray(0, 10)), Array.from({ length: 10 }, (_, i) => i));
    assert.equal(layer.allocatedBytes, H * layer.allocatedSlots * SLOT_META_BYTES);
    assert.equal(cache.allocatedBytes, layer.allocatedBytes + rows.allocatedBytes);
    // The same cache on the host holds the rows in its layers.
    const host = new KvCache(1, H, D);
    host.append({ keys: [new Float32Array(H * 10 * D)], values: [new Float32Array(H * 10 * D)], colsums: [new Float32Array(H * 10)] }, Int32Array.from({ length: 10 }, (_, i) => i), new Int32Array(10).fill(-1), H);
    assert.equal(host.allocatedBytes, H * host.layers[0].allocatedSlots * slotBytes(D));
  });

  it('an undo truncates the external rows to the marked length; release frees them', () => {
    const { rows, calls } = fakeRows(1, H, 8);
    const cache = new KvCache(1, H, D, rows);
    appendText(cache, 0, 6);
    rows.length = 6;
    const undo = cache.mark();
    appendText(cache, 6, 3);
    rows.length = 9;
    undo();
    assert.equal(cache.length, 6);
    assert.deepEqual(calls, ['truncate 6']);
    cache.release();
    assert.deepEqual(calls, ['truncate 6', 'release']);
  });

  it('the external rows\' growth in an append reaches onGrowth (the global budget), even when the layers do not grow', () => {
    const { rows } = fakeRows(1, H, 8);
    const cache = new KvCache(1, H, D, rows);
    cache.reserve(64); // the layers have room: only the external rows grow
    let growths = 0;
    cache.onGrowth = () => growths++;
    const L = cache.length + 1;
    cache.append({ keys: [none], values: [none], colsums: [new Float32Array(H * L)], applyExternal: () => (rows.length = L) }, Int32Array.of(0), Int32Array.of(-1), H);
    assert.equal(growths, 1);
  });

  it('inserting host rows (a recall from the cold tier) is refused', () => {
    const { rows } = fakeRows(1, H, 8);
    const cache = new KvCache(1, H, D, rows);
    const one = { perHead: 1, keys: new Float32Array(H * D), values: new Float32Array(H * D), positions: new Int32Array(H), modality: new Int32Array(H), scores: new Float64Array(H) };
    assert.throws(() => cache.insert([one]), /live elsewhere/);
  });

  it('compression matches with the rows\' own matcher, in either mode, and leaves the merge to them', async () => {
    let matched = 0;
    const matcher: Matcher = (_layer, _kept, _keptPerHead, _evicted, evictedPerHead) => {
      matched++;
      return { target: new Int32Array(H * evictedPerHead), maxSim: new Float64Array(H * evictedPerHead).fill(0.5) };
    };
    const { rows } = fakeRows(1, H, 8, matcher);
    const cache = new KvCache(1, H, D, rows);
    appendText(cache, 0, 40);
    for (const mode of ['improved', 'reference'] as const) {
      const plan = await planCompression(cache.layers[0], { policy: 'pivot_merge', budget: { hhRatio: 0.2, recentRatio: 0.2 }, mode, numQueryHeads: H, matcher: rows.matcher(), rowsElsewhere: true });
      assert.ok(plan && plan.matches, `${mode}: a merge plan with its matches`);
      assert.equal(plan.merged, null, `${mode}: no merged rows computed on the host`);
    }
    assert.equal(matched, 2);
    await assert.rejects(planCompression(cache.layers[0], { policy: 'pivot_merge', budget: { hhRatio: 0.2, recentRatio: 0.2 }, numQueryHeads: H, rowsElsewhere: true }), /needs the matcher/);
  });
});
