/** Invariants every policy keeps in improved mode, over random shapes and many seeds. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compressLayer,
  denseRows,
  denseSlots,
  POLICY_NAMES,
  resolveBudget,
  type Budget,
  type KvLayer,
} from '../../sidecar/src/kv/index.js';
import { cloneLayer, randomLayer } from './helpers.js';

const SEEDS = Array.from({ length: 40 }, (_, i) => 1000 + i);
const BUDGETS: Budget[] = [
  { hhRatio: 0.1, recentRatio: 0.1 },
  { hhRatio: 0.3, recentRatio: 0.05 },
  { hhRatio: 0.05, recentRatio: 0.3 },
  { hhRatio: 0.2, recentRatio: 0.2, maxSlots: 7 },
  { maxSlots: 5 },
  { hhRatio: 0, recentRatio: 0 },
];

/** position -> original slot data, to check that kept slots carry their own position and modality. */
function snapshot(layer: KvLayer): { positions: Int32Array; modality: Int32Array; length: number } {
  return { positions: denseSlots(layer, layer.positions), modality: denseSlots(layer, layer.modality), length: layer.length };
}

for (const policy of POLICY_NAMES) {
  describe(`${policy} (improved mode)`, () => {
    it('never exceeds the budget, keeps the same count per head, and preserves positions and modality', async () => {
      for (const seed of SEEDS) {
        for (const budget of BUDGETS) {
          const { layer, queries, numQueryHeads } = randomLayer({ seed });
          const before = snapshot(layer);
          const slots = resolveBudget(budget, layer.length, layer.tokensSeen, 'improved');
          const plan = await compressLayer(layer, { policy, budget, queries, numQueryHeads, seed });
          const context = `seed ${seed}, budget ${JSON.stringify(budget)}, L ${before.length}`;
          if (policy === 'full') {
            assert.equal(plan, null, context);
            continue;
          }
          assert.ok(layer.length <= slots.heavy + slots.recent, `${context}: kept ${layer.length} > ${slots.heavy + slots.recent}`);
          if (budget.maxSlots) assert.ok(layer.length <= budget.maxSlots, context);
          assert.ok(layer.length >= 1, `${context}: a compressed cache keeps at least one slot`);
          if (!plan) {
            assert.equal(layer.length, before.length, context);
            continue;
          }
          assert.equal(plan.kept.length, layer.numHeads * plan.keptPerHead, context);
          assert.equal(plan.evicted.length, layer.numHeads * plan.evictedPerHead, context);
          const positions = denseSlots(layer, layer.positions);
          const modality = denseSlots(layer, layer.modality);
          for (let h = 0; h < layer.numHeads; h++) {
            for (let n = 0; n < layer.length; n++) {
              const slot: number = plan.kept[h * layer.length + n];
              assert.equal(positions[h * layer.length + n], before.positions[h * before.length + slot], `${context}: position of head ${h} slot ${n}`);
              assert.equal(modality[h * layer.length + n], before.modality[h * before.length + slot], `${context}: modality of head ${h} slot ${n}`);
              if (n > 0) assert.ok(positions[h * layer.length + n] > positions[h * layer.length + n - 1], `${context}: positions ascend`);
            }
            // The newest slot is always kept.
            assert.equal(positions[(h + 1) * layer.length - 1], before.positions[(h + 1) * before.length - 1], context);
          }
        }
      }
    });

    it('is deterministic', async () => {
      const { layer, queries, numQueryHeads } = randomLayer({ seed: 7, length: 90, headDim: 8, numHeads: 3 });
      const copy = cloneLayer(layer);
      const options = { policy, budget: { hhRatio: 0.2, recentRatio: 0.1 }, queries, numQueryHeads, seed: 3 };
      await compressLayer(layer, options);
      await compressLayer(copy, options);
      assert.deepEqual(denseRows(layer, 'keys'), denseRows(copy, 'keys'));
      assert.deepEqual(denseSlots(layer, layer.positions), denseSlots(copy, copy.positions));
    });
  });
}

describe('full policy', () => {
  it('is the identity in both modes', async () => {
    for (const mode of ['improved', 'reference'] as const) {
      const { layer } = randomLayer({ seed: 5 });
      const copy = cloneLayer(layer);
      assert.equal(await compressLayer(layer, { policy: 'full', budget: { hhRatio: 0.1, recentRatio: 0.1 }, mode }), null);
      assert.deepEqual(layer, copy);
    }
  });
});

describe('random policy', () => {
  it('depends only on its seed', async () => {
    const run = async (seed: number) => {
      const { layer } = randomLayer({ seed: 11, length: 100, numHeads: 2 });
      await compressLayer(layer, { policy: 'random', budget: { hhRatio: 0.2, recentRatio: 0.1 }, seed });
      return denseSlots(layer, layer.positions);
    };
    assert.deepEqual(await run(1), await run(1));
    assert.notDeepEqual(await run(1), await run(2));
  });
});
