/** Behaviour of individual policies and of the pieces they share, on hand-made layers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compressLayer,
  createLayer,
  DEFAULT_SNAPKV_WINDOW,
  denseRows,
  denseSlots,
  observedRows,
  planCompression,
  resolveBudget,
  TEXT,
  type KvLayer,
} from '../../sidecar/src/kv/index.js';
import { matchEvicted } from '../../sidecar/src/kv/similarity.js';
import { randomLayer } from './helpers.js';

/** One prefill of `scores.length` tokens; keys/values default to distinct rows. */
function layerWith(opts: { scores: number[][]; modality?: number[]; headDim?: number; keys?: (h: number, j: number, d: number) => number; values?: (h: number, j: number, d: number) => number }): KvLayer {
  const H = opts.scores.length;
  const L = opts.scores[0].length;
  const D = opts.headDim ?? 2;
  const fill = (f: (h: number, j: number, d: number) => number) => Float32Array.from({ length: H * L * D }, (_, i) => f(Math.floor(i / (L * D)), Math.floor(i / D) % L, i % D));
  const layer = createLayer(H, D);
  layer.append({
    keys: fill(opts.keys ?? ((h, j, d) => Math.sin(1 + h * 31 + j * 7 + d * 3))),
    values: fill(opts.values ?? ((h, j, d) => Math.cos(2 + h * 17 + j * 5 + d))),
    positions: Int32Array.from({ length: L }, (_, j) => j),
    modality: Int32Array.from(opts.modality ?? new Array<number>(L).fill(TEXT)),
  });
  layer.accumulate(opts.scores.flat(), H);
  return layer;
}

const keptPositions = (layer: KvLayer) => Array.from(denseSlots(layer, layer.positions));

describe('budgets', () => {
  it('truncate the float product like Python int() in reference mode', () => {
    assert.deepEqual(resolveBudget({ hhRatio: 0.29, recentRatio: 0.1 }, 100, 100, 'reference'), { heavy: 28, recent: 10 });
    assert.deepEqual(resolveBudget({ hhRatio: 0.1, recentRatio: 0.1 }, 40, 40, 'reference'), { heavy: 4, recent: 4 });
  });

  it('take ratios of every token seen in improved mode, and cap them keeping the split', () => {
    assert.deepEqual(resolveBudget({ hhRatio: 0.1, recentRatio: 0.1 }, 30, 200, 'improved'), { heavy: 20, recent: 20 });
    assert.deepEqual(resolveBudget({ hhRatio: 0.3, recentRatio: 0.1, maxSlots: 20 }, 200, 200, 'improved'), { heavy: 15, recent: 5 });
    assert.deepEqual(resolveBudget({ maxSlots: 9 }, 100, 100, 'improved'), { heavy: 4, recent: 5 });
    assert.deepEqual(resolveBudget({ hhRatio: 0.1, recentRatio: 0 }, 100, 100, 'improved'), { heavy: 9, recent: 1 });
  });

  it('reject nonsense with a message naming the field', () => {
    assert.throws(() => resolveBudget({ hhRatio: 1.5 }, 10, 10, 'improved'), /hhRatio must be in \[0, 1\]/);
    assert.throws(() => resolveBudget({ maxSlots: 0 }, 10, 10, 'improved'), /maxSlots must be a positive integer/);
    assert.throws(() => resolveBudget({ maxSlots: 4 }, 10, 10, 'reference'), /improved-mode budget/);
  });
});

describe('GQA', () => {
  it('sums the scores of the query heads of one KV group and ranks each KV head on its sum', async () => {
    const L = 10;
    const layer = createLayer(2, 2);
    layer.append({
      keys: new Float32Array(2 * L * 2).map((_, i) => i + 1),
      values: new Float32Array(2 * L * 2),
      positions: Int32Array.from({ length: L }, (_, j) => j),
      modality: new Int32Array(L).fill(TEXT),
    });
    // Query heads 0,1 -> KV head 0; 2,3 -> KV head 1. Slot 3 wins head 0 only through the sum.
    const colsum = new Float32Array(4 * L);
    colsum[0 * L + 3] = 2; colsum[1 * L + 3] = 2; colsum[0 * L + 5] = 3;
    colsum[2 * L + 1] = 5; colsum[3 * L + 6] = 4;
    layer.accumulate(colsum, 4);
    assert.deepEqual(Array.from(denseSlots(layer, layer.scores)).slice(0, L), [0, 0, 0, 4, 0, 3, 0, 0, 0, 0]);
    await compressLayer(layer, { policy: 'h2o', budget: { hhRatio: 0.1, recentRatio: 0.1 } });
    assert.deepEqual(keptPositions(layer), [3, 9, 1, 9]);
  });

  it('refuses query heads that do not group onto the KV heads', () => {
    const { layer } = randomLayer({ seed: 1, numHeads: 3, length: 10 });
    assert.throws(() => layer.accumulate(new Float32Array(4 * 10), 4), /cannot be grouped/);
  });
});

describe('text-prior selection', () => {
  // 12 tokens: text 0-3, image 4-9, text 10-11. Recent window 2 (10, 11).
  const modality = [TEXT, TEXT, TEXT, TEXT, 0, 0, 0, 0, 0, 0, TEXT, TEXT];
  const scores = [[5, 1, 3, 2, 9, 8, 0.5, 7, 0.1, 6, 1, 1]];

  it('keeps all text, then the best images, within the heavy budget', async () => {
    const layer = layerWith({ scores, modality });
    const plan = await compressLayer(layer, { policy: 'text_prior', budget: { hhRatio: 0.5, recentRatio: 0.2 } });
    // heavy 6: text 0-3, then images 4 (9) and 5 (8).
    assert.deepEqual(keptPositions(layer), [0, 1, 2, 3, 4, 5, 10, 11]);
    assert.deepEqual(plan?.trace, { textNonRecent: 4, imagesSelected: 2 });
  });

  it('reference mode keeps every text slot even past the budget (lookm-spec §8.6)', async () => {
    const layer = layerWith({ scores, modality });
    await compressLayer(layer, { policy: 'text_prior', budget: { hhRatio: 0.25, recentRatio: 0.2 }, mode: 'reference' });
    assert.deepEqual(keptPositions(layer), [0, 1, 2, 3, 10, 11]); // 6 slots for a nominal 3 + 2
  });

  it('improved mode holds the budget: the lowest-scored text goes, images go first', async () => {
    const layer = layerWith({ scores, modality });
    await compressLayer(layer, { policy: 'text_prior', budget: { hhRatio: 0.25, recentRatio: 0.2 } });
    assert.deepEqual(keptPositions(layer), [0, 2, 3, 10, 11]);
  });

  it('reference mode fails like the official class when the recent window is empty', async () => {
    const layer = layerWith({ scores, modality });
    await assert.rejects(compressLayer(layer, { policy: 'text_prior', budget: { hhRatio: 0.25, recentRatio: 0 }, mode: 'reference' }), /recent_size 0/);
  });

  it('ranks images by raw score in improved mode, by the float32 penalty in reference mode', async () => {
    // Two image scores 0.001 apart tie after float32(S - 65516) (resolution ~0.004): reference
    // keeps the lower position, improved the higher score.
    const tied = [[5, 5, 1.0, 1.001, 5, 5]];
    const mod = [TEXT, TEXT, 0, 0, TEXT, TEXT];
    const reference = layerWith({ scores: tied, modality: mod });
    await compressLayer(reference, { policy: 'text_prior', budget: { hhRatio: 0.5, recentRatio: 0.34 }, mode: 'reference' });
    assert.deepEqual(keptPositions(reference), [0, 1, 2, 4, 5]);
    const improved = layerWith({ scores: tied, modality: mod });
    await compressLayer(improved, { policy: 'text_prior', budget: { hhRatio: 0.5, recentRatio: 0.34 } });
    assert.deepEqual(keptPositions(improved), [0, 1, 3, 4, 5]);
  });
});

describe('H2O with sinks', () => {
  it('always keeps the first four slots', async () => {
    const layer = layerWith({ scores: [[0, 0, 0, 0, 9, 8, 7, 1, 1, 1]] });
    await compressLayer(layer, { policy: 'pivot_merge', budget: { hhRatio: 0.5, recentRatio: 0.1 } });
    assert.deepEqual(keptPositions(layer), [0, 1, 2, 3, 4, 9]);
  });

  it('keeps as many sinks as options.sinks asks in improved mode; the reference keeps its 4', async () => {
    const scores = [[0, 0, 0, 0, 0, 0, 9, 8, 7, 6, 1, 1]];
    const budget = { hhRatio: 0.5, recentRatio: 0.1 }; // heavy 6, recent 1
    const kept = async (options: { sinks?: number; mode?: 'reference' | 'improved' }) => Array.from((await planCompression(layerWith({ scores }), { policy: 'pivot_merge', budget, ...options }))!.kept);
    assert.deepEqual(await kept({}), [0, 1, 2, 3, 6, 7, 11]);
    assert.deepEqual(await kept({ sinks: 0 }), [0, 6, 7, 8, 9, 10, 11], 'plain H2O: slot 0 only as the lowest of the tied zeros');
    assert.deepEqual(await kept({ sinks: 6 }), [0, 1, 2, 3, 4, 5, 11]);
    await assert.rejects(kept({ sinks: 6, mode: 'reference' }), /reference H2O-with-sinks protects 4 sinks/);
    await assert.rejects(kept({ sinks: -1 }), /sinks must be a non-negative integer/);
  });

  it('reference mode fails like the official class with fewer than four candidates', async () => {
    const layer = layerWith({ scores: [[1, 2, 3, 4, 5]] });
    await assert.rejects(compressLayer(layer, { policy: 'avg_merge', budget: { hhRatio: 0.2, recentRatio: 0.4 }, mode: 'reference' }), /at least 4 slots/);
  });
});

describe('merging', () => {
  // 10 identical keys: every evicted slot matches kept slot 0 with similarity 1, and all pass the filter.
  const identical = () => layerWith({ scores: [[9, 9, 0, 0, 0, 0, 0, 0, 1, 1]], headDim: 3, keys: (_h, _j, d) => d + 1, values: (_h, j, d) => j * 10 + d });
  const budget = { hhRatio: 0.2, recentRatio: 0.2 }; // kept 0, 1, 8, 9; evicted 2..7

  it('averaged and weighted merges of identical keys are the plain mean of the values', async () => {
    for (const policy of ['avg_merge', 'weighted_merge'] as const) {
      const layer = identical();
      const plan = await compressLayer(layer, { policy, budget });
      assert.deepEqual(Array.from(plan?.matches?.target ?? []), [0, 0, 0, 0, 0, 0]);
      const values = denseRows(layer, 'values');
      // Slot 0 = mean of rows 0, 2..7 -> (0 + 20 + 30 + ... + 70) / 7 = 270 / 7.
      for (let d = 0; d < 3; d++) assert.ok(Math.abs(values[d] - (270 / 7 + (7 * d) / 7)) < 1e-4, `${policy} dim ${d}: ${values[d]}`);
      assert.deepEqual(Array.from(values.subarray(3, 6)), [10, 11, 12], `${policy}: unmatched slots are untouched`);
      assert.deepEqual(Array.from(denseRows(layer, 'keys').subarray(0, 3)), [1, 2, 3], `${policy}: identical keys stay`);
    }
  });

  it('pivotal merge averages each evicted row with its pivot first', async () => {
    const layer = identical();
    await compressLayer(layer, { policy: 'pivot_merge', budget });
    const values = denseRows(layer, 'values');
    // (v0 + sum_e (v_e + v0) / 2) / 7 with v0 = 0: (20 + ... + 70) / 2 / 7 = 135 / 7 (dim 0).
    assert.ok(Math.abs(values[0] - 135 / 7) < 1e-4, String(values[0]));
  });

  it('improved averaged merge adds the filtered rows themselves; reference adds the first m rows (spec §5.7)', async () => {
    const { layer, queries } = randomLayer({ seed: 21, numHeads: 3, headDim: 6, length: 60, imageShare: 0.7 });
    const options = { policy: 'text_prior_avg_merge' as const, budget: { hhRatio: 0.1, recentRatio: 0.1 }, queries };
    const improved = await planCompression(layer, options);
    const reference = await planCompression(layer, { ...options, mode: 'reference' });
    assert.ok(improved?.merged?.sourceSlot && reference?.merged?.sourceSlot);
    const filtered = Array.from(improved.merged.filter ?? []).flatMap((f, e) => (f ? [e] : []));
    assert.deepEqual(Array.from(improved.merged.sourceSlot), filtered);
    assert.deepEqual(Array.from(reference.merged.sourceSlot), filtered.map((_, k) => k));
    assert.notDeepEqual(improved.merged.keys, reference.merged.keys);
  });

  it('streams the same max/argmax as a brute-force cosine matrix', async () => {
    for (const seed of [1, 2, 3]) {
      const { layer } = randomLayer({ seed, numHeads: 2, headDim: 16, length: 150 });
      const plan = await planCompression(layer, { policy: 'h2o', budget: { hhRatio: 0.1, recentRatio: 0.1 } });
      assert.ok(plan);
      const { kept, keptPerHead: N, evicted, evictedPerHead: E } = plan;
      const got = matchEvicted(layer, kept, N, evicted, E);
      const D = layer.headDim;
      for (let h = 0; h < 2; h++) {
        const row = (slot: number) => Array.from(layer.keys.subarray((h * layer.length + slot) * D, (h * layer.length + slot + 1) * D));
        const cos = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0) / Math.hypot(...a) / Math.hypot(...b);
        for (let e = 0; e < E; e++) {
          const sims = Array.from(kept.subarray(h * N, (h + 1) * N), (k) => cos(row(evicted[h * E + e]), row(k)));
          const best = Math.max(...sims);
          assert.equal(got.target[h * E + e], sims.indexOf(best));
          assert.ok(Math.abs(got.maxSim[h * E + e] - best) < 1e-12);
        }
      }
    }
  });

  it('gives zero keys similarity 0 instead of NaN', async () => {
    const layer = layerWith({ scores: [[9, 0, 0, 0, 0, 0, 0, 0, 1, 1]], keys: (_h, j, d) => (j === 3 ? 0 : j + d + 1) });
    const plan = await compressLayer(layer, { policy: 'text_prior_pivot_merge', budget: { hhRatio: 0.1, recentRatio: 0.2 } });
    assert.ok(plan?.matches);
    assert.ok(plan.matches.maxSim.every((s) => Number.isFinite(s)));
    assert.ok(denseRows(layer, 'keys').every((x) => Number.isFinite(x)));
  });
});

describe('SnapKV', () => {
  it('orders kept slots by position in improved mode and by pooled score in reference mode', async () => {
    const { layer, queries } = randomLayer({ seed: 4, numHeads: 2, headDim: 8, length: 50 });
    const budget = { hhRatio: 0.2, recentRatio: 0.2 };
    const improved = await planCompression(layer, { policy: 'snapkv', budget, queries });
    const reference = await planCompression(layer, { policy: 'snapkv', budget, queries, mode: 'reference' });
    assert.ok(improved && reference);
    const heavy = (plan: typeof improved) => Array.from(plan.kept.subarray(0, 10));
    assert.deepEqual(heavy(improved), [...heavy(improved)].sort((a, b) => a - b));
    const pooled = reference.trace.snapkvPooledScores!;
    const ranks = heavy(reference).map((slot) => pooled[slot]);
    assert.deepEqual(ranks, [...ranks].sort((a, b) => b - a));
  });

  it('takes the window attention precomputed, with the same result as from the queries', async () => {
    const { layer, queries, numQueryHeads } = randomLayer({ seed: 6, numHeads: 2, numQueryHeads: 4, headDim: 8, length: 60 });
    const L = layer.length;
    const D = layer.headDim;
    const window = 6; // = recent window at 10%
    // Independent naive computation: softmax rows of the last `window` queries over the keys they may see.
    const windowScores = new Float32Array(numQueryHeads * L);
    for (let q = 0; q < numQueryHeads; q++) {
      const kv = Math.floor(q / 2);
      for (let i = L - window; i < L; i++) {
        const logits = Array.from({ length: i + 1 }, (_, j) => {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += queries[(q * L + i) * D + d] * layer.keys[(kv * layer.length + j) * D + d];
          return dot / Math.sqrt(D);
        });
        const max = Math.max(...logits);
        const total = logits.reduce((s, x) => s + Math.exp(x - max), 0);
        logits.forEach((x, j) => (windowScores[q * L + j] += Math.exp(x - max) / total));
      }
    }
    const budget = { hhRatio: 0.2, recentRatio: 0.1 };
    const fromQueries = await planCompression(layer, { policy: 'snapkv', budget, queries, numQueryHeads, snapkvWindow: window });
    const given = await planCompression(layer, { policy: 'snapkv', budget, windowScores, numQueryHeads });
    assert.deepEqual(given?.kept, fromQueries?.kept);
    const a = fromQueries!.trace.snapkvPooledScores!;
    given!.trace.snapkvPooledScores!.forEach((x, i) => assert.ok(Math.abs(x - a[i]) < 1e-5, `pooled ${i}`));
  });

  it('observes options.snapkvWindow query rows in improved mode, the recent window in the reference', async () => {
    const { layer, queries, numQueryHeads } = randomLayer({ seed: 7, numHeads: 2, numQueryHeads: 4, headDim: 8, length: 200 });
    const budget = { hhRatio: 0.1, recentRatio: 0.4 }; // recent 80
    assert.equal(observedRows({ policy: 'snapkv', budget }, 200, 200), DEFAULT_SNAPKV_WINDOW);
    assert.equal(observedRows({ policy: 'snapkv', budget, snapkvWindow: 4 }, 200, 200), 4);
    assert.equal(observedRows({ policy: 'snapkv', budget, snapkvWindow: 500 }, 200, 200), 80, 'at most the recent window');
    assert.equal(observedRows({ policy: 'snapkv', budget, mode: 'reference' }, 200, 200), 80);
    assert.equal(observedRows({ policy: 'text_prior_pivot_merge', budget }, 200, 200), 0, 'observes nothing');
    assert.throws(() => observedRows({ policy: 'snapkv', budget, snapkvWindow: 0 }, 200, 200), /snapkvWindow must be a positive integer/);
    const plan = async (snapkvWindow?: number) => Array.from((await planCompression(layer, { policy: 'snapkv', budget, queries, numQueryHeads, snapkvWindow }))!.kept);
    assert.notDeepEqual(await plan(2), await plan(), 'the window changes what is kept');
    assert.deepEqual(await plan(DEFAULT_SNAPKV_WINDOW), await plan());
  });

  it('asks for the queries it needs', async () => {
    const { layer } = randomLayer({ seed: 4, length: 50 });
    await assert.rejects(compressLayer(layer, { policy: 'snapkv', budget: {} }), /needs the queries of the newest tokens/);
  });
});
