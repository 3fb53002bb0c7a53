/**
 * The cold tier in the KV engine: quantization error bounds, recall spans, the cold store, recall
 * planning (best spans first, whole spans, equal per head and layer, within the budget), insertion
 * at true positions, and random multi-turn runs of recall and compression: the hot cache never
 * ends a turn longer than it would without the cold tier, the cold store never exceeds its byte
 * budget, and nothing evicted is lost (hot and cold together hold every position seen).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ColdLayer,
  ColdStore,
  compressToCold,
  createLayer,
  deferredBudget,
  deferredWindowScores,
  dequantizeRows,
  groupsPerRow,
  codeBytes,
  mulberry32,
  planRecall,
  quantFormat,
  quantizeRows,
  rankSpans,
  resolveBudget,
  SpanIndex,
  TEXT,
  KvLayer,
  type Budget,
  type PolicyName,
} from '../../sidecar/src/kv/index.js';
import { gaussian } from './helpers.js';

describe('cold-tier quantization', () => {
  for (const [kind, levels] of [['int8', 127], ['int4', 7]] as const) {
    it(`${kind} round-trips every value within half its group's step (max|x| / ${2 * levels})`, () => {
      const next = mulberry32(3);
      const normal = gaussian(next);
      for (const D of [4, 31, 32, 64, 96]) {
        const f = quantFormat(kind, D, 32);
        const rows = 17;
        const x = Float32Array.from({ length: rows * D }, (_, i) => normal() * (i % 7 === 0 ? 30 : 1));
        x.fill(0, 0, D); // an all-zero row has scale 0
        const codes = new Uint8Array(rows * codeBytes(f));
        const scales = new Float32Array(rows * groupsPerRow(f));
        quantizeRows(f, x, codes, scales);
        const y = new Float32Array(rows * D);
        dequantizeRows(f, codes, scales, 0, rows, y);
        let worstRatio = 0;
        for (let r = 0; r < rows; r++) {
          for (let g = 0; g * 32 < D; g++) {
            const group = Array.from(x.subarray(r * D + g * 32, r * D + Math.min(D, (g + 1) * 32)));
            const max = Math.max(...group.map(Math.abs));
            for (let i = g * 32; i < Math.min(D, (g + 1) * 32); i++) {
              const error = Math.abs(x[r * D + i] - y[r * D + i]);
              assert.ok(error <= max / (2 * levels) + 1e-6 * max, `${kind} D ${D} row ${r} value ${i}: error ${error} over the bound ${max / (2 * levels)}`);
              if (max > 0) worstRatio = Math.max(worstRatio, error / max);
            }
          }
        }
        assert.ok(worstRatio > 0, 'the codes are lossy (a bound of 0 would mean nothing was quantized)');
        assert.deepEqual(Array.from(y.subarray(0, D)), new Array(D).fill(0));
      }
    });
  }

  it('int4 packs two codes a byte; int8 one', () => {
    assert.equal(codeBytes(quantFormat('int4', 32)), 16);
    assert.equal(codeBytes(quantFormat('int4', 33)), 17);
    assert.equal(codeBytes(quantFormat('int8', 32)), 32);
    assert.equal(groupsPerRow(quantFormat('int8', 96)), 3);
    assert.throws(() => quantFormat('int2' as never, 32), /int8 or int4/);
  });
});

describe('recall spans', () => {
  it('close at the span length, a modality change, a line end and a new message', () => {
    const spans = new SpanIndex(3);
    spans.feed([TEXT, TEXT, TEXT, TEXT, 0, 0, 0, 0, TEXT], [false, false, false, false, false, false, false, false, false]);
    assert.deepEqual(Array.from({ length: 9 }, (_, p) => spans.of(p)), [0, 0, 0, 1, 2, 2, 2, 3, 4]);
    spans.feed([TEXT, TEXT, TEXT, TEXT], [false, true, false, false]);
    assert.deepEqual([9, 10, 11, 12].map((p) => spans.of(p)), [5, 5, 6, 6]);
    assert.equal(spans.spans, 7);
    assert.throws(() => spans.of(13), /no span for position 13/);
    assert.throws(() => new SpanIndex(0), /positive integer/);
  });
});

/** A cold layer of `H` heads whose entries are given per head as span ids (positions = index). */
function coldLayerOf(H: number, D: number, spansPerHead: number[][], seed = 1): ColdLayer {
  const layer = new ColdLayer(H, D, 'int8');
  const n = spansPerHead[0].length;
  const normal = gaussian(mulberry32(seed));
  layer.add({
    perHead: n,
    keys: Float32Array.from({ length: H * n * D }, normal),
    values: Float32Array.from({ length: H * n * D }, normal),
    positions: Int32Array.from({ length: H * n }, (_, i) => 100 * spansPerHead[Math.floor(i / n)][i % n] + (i % n)),
    modality: new Int32Array(H * n).fill(TEXT),
    scores: new Float64Array(H * n),
    spans: Int32Array.from(spansPerHead.flat()),
  });
  return layer;
}

function storeOf(layers: ColdLayer[]): ColdStore {
  const store = new ColdStore(layers.length, layers[0].numHeads, layers[0].headDim, 'int8');
  (store as { layers: readonly ColdLayer[] }).layers = layers;
  return store;
}

describe('the cold store', () => {
  it('gives back what it took, dequantized, and forgets it; drops the oldest first; counts its bytes', () => {
    const H = 2;
    const D = 32;
    const layer = new ColdLayer(H, D, 'int8');
    const rows = (first: number, n: number) => ({
      perHead: n,
      keys: Float32Array.from({ length: H * n * D }, (_, i) => Math.sin(first + i)),
      values: Float32Array.from({ length: H * n * D }, (_, i) => Math.cos(first + i)),
      positions: Int32Array.from({ length: H * n }, (_, i) => first + (i % n) + 10 * Math.floor(i / n)),
      modality: new Int32Array(H * n).fill(TEXT),
      scores: Float64Array.from({ length: H * n }, (_, i) => i),
      spans: Int32Array.from({ length: H * n }, (_, i) => first + (i % n)),
    });
    layer.add(rows(0, 3));
    layer.add(rows(100, 2));
    assert.equal(layer.count, 5);
    assert.equal(layer.bytes, H * 5 * (2 * (32 + 4) + 20));
    // head 0 takes its entries 4 and 0, head 1 its entry 2 and 3
    const taken = layer.take(Int32Array.of(4, 0, 2, 3), 2);
    assert.deepEqual(Array.from(taken.positions), [101, 0, 12, 110]);
    assert.deepEqual(Array.from(taken.spans), [101, 0, 2, 100]);
    assert.ok(Math.abs(taken.keys[0] - Math.sin(100 + 1 * D)) < 1 / 127);
    assert.equal(layer.count, 3);
    assert.deepEqual(Array.from(layer.positions), [1, 2, 100, 10, 11, 111]);
    assert.throws(() => layer.take(Int32Array.of(5, 0), 1), /not there/);
    assert.throws(() => layer.take(Int32Array.of(0, 0, 0, 1), 2), /not there or taken twice/);
    assert.equal(layer.count, 3, 'a refused take changes nothing');
    layer.dropOldest(2);
    assert.deepEqual(Array.from(layer.positions), [100, 111]);
  });

  it('trims to a byte budget by dropping as many of the oldest entries from every head of every layer', () => {
    const store = storeOf([coldLayerOf(2, 8, [[1, 2, 3, 4], [1, 2, 3, 4]]), coldLayerOf(2, 8, [[5, 6, 7, 8], [5, 6, 7, 8]])]);
    const per = store.bytes / 4;
    const freed = store.trim(store.bytes - per - 1);
    assert.equal(store.count, 2, 'two entries per head dropped: one was not enough');
    assert.equal(freed, 2 * per);
    assert.deepEqual(Array.from(store.layers[1].spans), [7, 8, 7, 8]);
    assert.equal(store.trim(0), 2 * per);
    assert.equal(store.bytes, 0);
  });
});

describe('recall planning', () => {
  it('takes the highest-scoring spans, whole, first fit within the budget', () => {
    // one head; spans 0..3 with 2, 3, 2, 1 entries
    const layer = coldLayerOf(1, 4, [[0, 0, 1, 1, 1, 2, 2, 3]]);
    const score = (bySpan: Record<number, number>) => Float64Array.from(layer.spans, (s) => bySpan[s] / 2);
    assert.deepEqual(rankSpans(layer, score({ 0: 1, 1: 9, 2: 5, 3: 0 })), [1, 2, 0, 3]);
    // budget 5: span 1 (3 entries) then span 2 (2)
    let plan = planRecall(storeOf([layer]), [score({ 0: 1, 1: 9, 2: 5, 3: 0 })], 5);
    assert.equal(plan.perHead, 5);
    assert.deepEqual(plan.spans, [[1, 2]]);
    assert.deepEqual(Array.from(plan.indices[0]), [2, 3, 4, 5, 6]);
    // budget 4: span 1 (3), span 2 does not fit, span 0 does not fit, span 3 (1) does
    plan = planRecall(storeOf([layer]), [score({ 0: 1, 1: 9, 2: 5, 3: 0 })], 4);
    assert.deepEqual(plan.spans, [[1, 3]]);
    // budget 2: the best span (3) does not fit at all
    plan = planRecall(storeOf([layer]), [score({ 0: 1, 1: 9, 2: 5, 3: 0 })], 2);
    assert.deepEqual(plan.spans, [[2]]);
    assert.equal(planRecall(storeOf([layer]), [score({ 0: 1, 1: 9, 2: 5, 3: 0 })], 0).perHead, 0);
  });

  it('recalls as many slots in every head and layer, whole spans only, best first, never over the budget (random stores)', () => {
    for (let seed = 1; seed <= 150; seed++) {
      const next = mulberry32(seed);
      const H = 1 + Math.floor(next() * 3);
      const count = 1 + Math.floor(next() * 40);
      const layers = Array.from({ length: 1 + Math.floor(next() * 3) }, (_, l) =>
        coldLayerOf(H, 4, Array.from({ length: H }, () => Array.from({ length: count }, () => Math.floor(next() * (2 + count / 3))).sort((a, b) => a - b)), seed * 10 + l),
      );
      const store = storeOf(layers);
      const scores = layers.map(() => Float64Array.from({ length: H * count }, () => next()));
      const budget = Math.floor(next() * (count + 3));
      const plan = planRecall(store, scores, budget);
      const context = `seed ${seed}, H ${H}, count ${count}, budget ${budget}`;
      assert.ok(plan.perHead <= budget && plan.perHead <= count, context);
      layers.forEach((layer, l) => {
        const ranking = rankSpans(layer, scores[l]);
        assert.equal(plan.indices[l].length, H * plan.perHead, context);
        for (let h = 0; h < H; h++) {
          const taken = new Set(plan.indices[l].subarray(h * plan.perHead, (h + 1) * plan.perHead));
          assert.equal(taken.size, plan.perHead, `${context}: an entry taken twice`);
          const size = (span: number) => Array.from(layer.spans.subarray(h * count, (h + 1) * count)).filter((s) => s === span).length;
          const takenOf = (span: number) => [...taken].filter((j) => layer.spans[h * count + j] === span).length;
          let used = 0;
          for (const span of ranking) {
            const t = takenOf(span);
            assert.ok(t === 0 || t === size(span), `${context}: layer ${l} head ${h} span ${span} recalled in part (${t} of ${size(span)})`);
            // first fit: a span left out did not fit beside the better ones taken
            if (t === 0 && size(span) > 0 && used < plan.perHead) assert.ok(used + size(span) > plan.perHead, `${context}: layer ${l} head ${h} skipped span ${span} that fits`);
            used += t;
          }
        }
      });
    }
  });
});

describe('KvLayer.insert', () => {
  it('puts slots that differ per head at their true positions, leaves tokensSeen alone', () => {
    const layer = createLayer(2, 2);
    layer.append({ keys: Float32Array.from({ length: 2 * 3 * 2 }, (_, i) => i), values: new Float32Array(12), positions: Int32Array.of(0, 5, 9), modality: new Int32Array(3).fill(TEXT) });
    layer.insert({ perHead: 2, keys: Float32Array.of(70, 70, 10, 10, 30, 30, 110, 110), values: new Float32Array(8), positions: Int32Array.of(7, 1, 3, 11), modality: Int32Array.of(TEXT, 0, 0, TEXT), scores: Float64Array.of(1, 2, 3, 4) });
    assert.deepEqual(Array.from(layer.positions), [0, 1, 5, 7, 9, 0, 3, 5, 9, 11]);
    assert.deepEqual(Array.from(layer.keys.subarray(0, 10)), [0, 1, 10, 10, 2, 3, 70, 70, 4, 5]);
    assert.deepEqual(Array.from(layer.modality), [TEXT, 0, TEXT, TEXT, TEXT, TEXT, 0, TEXT, TEXT, TEXT]);
    assert.deepEqual(Array.from(layer.scores), [0, 2, 0, 1, 0, 0, 3, 0, 0, 4]);
    assert.equal(layer.tokensSeen, 3);
    assert.equal(layer.length, 5);
  });
});

/** Random multi-turn runs: recall, prefill, decode, deferred compression to cold, a cold byte budget. */
async function randomConversation(seed: number, policy: PolicyName, budget: Budget, coldMaxBytes: number | null) {
  const next = mulberry32(seed);
  const normal = gaussian(next);
  const H = 1 + Math.floor(next() * 3);
  const D = 8;
  const numLayers = 2;
  const layers = Array.from({ length: numLayers }, () => new KvLayer(H, D));
  const store = new ColdStore(numLayers, H, D, next() < 0.5 ? 'int8' : 'int4');
  const spans = new SpanIndex(1 + Math.floor(next() * 6));
  const recallBudget = Math.floor(next() * 12);
  let seen = 0;
  for (let turn = 0; turn < 5; turn++) {
    const context = `seed ${seed} ${policy} ${JSON.stringify(budget)} turn ${turn}`;
    if (store.count > 0) {
      const plan = planRecall(store, store.layers.map((layer) => Float64Array.from({ length: H * layer.count }, () => next())), recallBudget);
      assert.ok(plan.perHead <= recallBudget, context);
      layers.forEach((layer, i) => layer.insert(store.layers[i].take(plan.indices[i], plan.perHead)));
    }
    const fed = (n: number, image: boolean) => {
      const modality = Int32Array.from({ length: n }, (_, j) => (image && j > n / 3 && j < (2 * n) / 3 ? turn : TEXT));
      for (const layer of layers) {
        layer.append({ keys: Float32Array.from({ length: H * n * D }, normal), values: Float32Array.from({ length: H * n * D }, normal), positions: Int32Array.from({ length: n }, (_, j) => seen + j), modality });
        layer.accumulate(Float32Array.from({ length: H * layer.length }, () => next()), H);
      }
      spans.feed(modality, Array.from({ length: n }, () => next() < 0.1));
      seen += n;
    };
    fed(5 + Math.floor(next() * 60), next() < 0.5);
    const atPrefill = layers.map((layer) => resolveBudget(budget, layer.length, layer.tokensSeen, 'improved'));
    const generated = Math.floor(next() * 6);
    for (let g = 0; g < generated; g++) fed(1, false);
    for (const [i, layer] of layers.entries()) {
      const options = { policy, budget, numQueryHeads: H, seed, slots: deferredBudget(atPrefill[i], generated) };
      await compressToCold(layer, { ...options, windowScores: deferredWindowScores(layer, options, undefined) }, store.layers[i], spans);
      // the end of the turn: no longer than without the cold tier (the budget at the prefill, plus the answer)
      assert.ok(layer.length <= atPrefill[i].heavy + atPrefill[i].recent + generated, `${context}: layer ${i} holds ${layer.length} slots`);
      assert.equal(layer.length, layers[0].length, `${context}: layers differ in length`);
    }
    if (coldMaxBytes !== null) {
      store.trim(coldMaxBytes);
      assert.ok(store.bytes <= coldMaxBytes, `${context}: cold ${store.bytes} B over ${coldMaxBytes}`);
    }
    // Hot and cold never hold a position twice; without a byte budget, together they hold every position seen.
    for (const [i, layer] of layers.entries()) {
      for (let h = 0; h < H; h++) {
        const hot = Array.from(layer.positions.subarray(h * layer.length, (h + 1) * layer.length));
        const cold = Array.from(store.layers[i].positions.subarray(h * store.count, (h + 1) * store.count));
        const all = [...hot, ...cold].sort((a, b) => a - b);
        assert.equal(new Set(all).size, all.length, `${context}: layer ${i} head ${h} holds a position twice`);
        if (coldMaxBytes === null) assert.deepEqual(all, Array.from({ length: seen }, (_, p) => p), `${context}: layer ${i} head ${h} lost positions`);
        for (let j = 1; j < hot.length; j++) assert.ok(hot[j - 1] < hot[j], `${context}: hot slots out of position order`);
      }
    }
  }
}

describe('multi-turn compression and recall (random runs)', () => {
  const policies: PolicyName[] = ['text_prior_pivot_merge', 'text_prior', 'h2o', 'snapkv', 'window', 'pivot_merge', 'random'];
  const budgets: Budget[] = [{ hhRatio: 0.05, recentRatio: 0.05 }, { hhRatio: 0.1, recentRatio: 0.1 }, { hhRatio: 0.2, recentRatio: 0.1, maxSlots: 9 }];
  it('keep the hot cache within its budget at the end of every turn and lose nothing evicted', async () => {
    for (const policy of policies) for (const budget of budgets) for (let seed = 1; seed <= 12; seed++) await randomConversation(seed, policy, budget, null);
  });
  it('keep the cold store within its byte budget', async () => {
    for (const policy of policies) for (let seed = 1; seed <= 12; seed++) await randomConversation(seed, policy, { hhRatio: 0.05, recentRatio: 0.05 }, 400 + seed * 300);
  });
});
