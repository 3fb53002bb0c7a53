/** The onnxruntime matcher finds the same most-similar kept keys as the exact JavaScript one. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compressLayer, denseSlots, matchEvicted, planCompression } from '../../sidecar/src/kv/index.js';
import { createOrtMatcher } from '../../sidecar/src/runtime/ortMatcher.js';
import { cloneLayer, randomLayer } from '../kv/helpers.js';

describe('onnxruntime matcher', () => {
  let matcher: Awaited<ReturnType<typeof createOrtMatcher>>;
  before(async () => {
    // A tiny block bound forces many chunks, to cover the chunking.
    matcher = await createOrtMatcher({ threads: 1, maxBlockBytes: 4096 });
  });
  after(async () => matcher.release());

  it('matches the exact matcher, chunk by chunk', async () => {
    for (const seed of [1, 2, 3]) {
      const { layer } = randomLayer({ seed, numHeads: 3, headDim: 16, length: 200 });
      const plan = await planCompression(layer, { policy: 'h2o', budget: { hhRatio: 0.1, recentRatio: 0.1 } });
      assert.ok(plan);
      const args = [layer, plan.kept, plan.keptPerHead, plan.evicted, plan.evictedPerHead] as const;
      const exact = matchEvicted(...args);
      const fast = await matcher(...args);
      for (let i = 0; i < exact.target.length; i++) {
        assert.ok(Math.abs(fast.maxSim[i] - exact.maxSim[i]) < 1e-5, `similarity ${i}`);
      }
      // float32 rounding may flip a target only between near-equal candidates.
      const agree = exact.target.filter((t, i) => t === fast.target[i]).length;
      assert.ok(agree / exact.target.length > 0.99, `targets agree on ${agree} of ${exact.target.length}`);
    }
  });

  it('plugs into improved-mode compression and leaves reference mode exact', async () => {
    const { layer } = randomLayer({ seed: 9, numHeads: 2, headDim: 8, length: 120, imageShare: 0.8 });
    const options = { policy: 'text_prior_pivot_merge' as const, budget: { hhRatio: 0.1, recentRatio: 0.1 } };
    const withOrt = cloneLayer(layer);
    await compressLayer(withOrt, { ...options, matcher });
    await compressLayer(layer, options);
    assert.deepEqual(denseSlots(withOrt, withOrt.positions), denseSlots(layer, layer.positions));
    let called = false;
    const spy = (...args: Parameters<typeof matcher>) => ((called = true), matcher(...args));
    const fresh = randomLayer({ seed: 9, numHeads: 2, headDim: 8, length: 120, imageShare: 0.8 }).layer;
    assert.ok(await compressLayer(fresh, { ...options, mode: 'reference', matcher: spy }));
    assert.equal(called, false);
  });
});
