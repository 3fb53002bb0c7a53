/**
 * Multi-turn: new slots are appended with their true positions, a new turn's attention adds to
 * the old slots' scores, and the whole cache is compressed back under the budget of every token
 * seen. What compressing turn by turn keeps, compared with compressing everything in one step,
 * is stated case by case below.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  compressLayer,
  createLayer,
  denseSlots,
  resolveBudget,
  TEXT,
  type KvLayer,
  type PolicyName,
} from '../../sidecar/src/kv/index.js';
import { mulberry32 } from '../../sidecar/src/kv/index.js';
import { gaussian, randomModality } from './helpers.js';

const H = 1;
const D = 2;

function append(layer: KvLayer, first: number, count: number, modality?: Int32Array): void {
  layer.append({
    keys: Float32Array.from({ length: H * count * D }, (_, i) => Math.sin(first * 7 + i)),
    values: Float32Array.from({ length: H * count * D }, (_, i) => Math.cos(first * 3 + i)),
    positions: Int32Array.from({ length: count }, (_, j) => first + j),
    modality: modality ?? new Int32Array(count).fill(TEXT),
  });
}

const positions = (layer: KvLayer) => Array.from(denseSlots(layer, layer.positions));
const h2o = { policy: 'h2o' as const, budget: { hhRatio: 0.2, recentRatio: 0.2 } };

describe('multi-turn H2O, two turns of 10 tokens, budget 20% + 20% of tokens seen', () => {
  const turn1Scores = [5, 1, 1, 1, 4, 1, 1, 1, 1, 1];
  // Turn 2 attends to positions 0..19; position 2 gets 10, although turn 1 already evicted it.
  const turn2ByPosition = [1, 0, 10, 0, 0, 0, 0, 0, 3, 0, 0.5, 2, 0.5, 0.5, 3, 0.5, 9, 9, 9, 9];

  it('turn by turn: turn 1 keeps [0 4 | 8 9]; turn 2 keeps 4 of the survivors and new slots, plus [16..19]', async () => {
    const layer = createLayer(H, D);
    append(layer, 0, 10);
    layer.accumulate(turn1Scores, H);
    await compressLayer(layer, h2o);
    assert.deepEqual(positions(layer), [0, 4, 8, 9]);

    append(layer, 10, 10);
    // The new turn's column sums cover the slots that exist: the 4 survivors and the 10 new ones.
    layer.accumulate(positions(layer).map((p) => turn2ByPosition[p]), H);
    assert.deepEqual(Array.from(denseSlots(layer, layer.scores)).slice(0, 4), [6, 4, 4, 1], 'old slots gained the new mass');
    await compressLayer(layer, h2o);
    assert.equal(layer.tokensSeen, 20);
    assert.deepEqual(positions(layer), [0, 4, 8, 14, 16, 17, 18, 19]);
  });

  it('one step over the same 20 tokens keeps position 2, which turn by turn could not bring back', async () => {
    const layer = createLayer(H, D);
    append(layer, 0, 20);
    layer.accumulate([...turn1Scores, ...new Array<number>(10).fill(0)], H);
    layer.accumulate(turn2ByPosition, H);
    await compressLayer(layer, h2o);
    assert.deepEqual(positions(layer), [0, 2, 4, 8, 16, 17, 18, 19]);
  });
});

describe('multi-turn invariants over random conversations (improved mode)', () => {
  const policies: PolicyName[] = ['text_prior_pivot_merge', 'text_prior_avg_merge', 'h2o', 'snapkv', 'window'];
  for (const policy of policies) {
    it(`${policy}: within budget every turn, true positions, evicted slots never return`, async () => {
      for (let seed = 0; seed < 10; seed++) {
        const next = mulberry32(seed);
        const normal = gaussian(next);
        const Hkv = 2;
        const Hq = 4;
        const layer = createLayer(Hkv, 4);
        const everEvicted = Array.from({ length: Hkv }, () => new Set<number>());
        let position = 0;
        for (let turn = 0; turn < 5; turn++) {
          const count = 5 + Math.floor(next() * 40);
          layer.append({
            keys: Float32Array.from({ length: Hkv * count * 4 }, normal),
            values: Float32Array.from({ length: Hkv * count * 4 }, normal),
            positions: Int32Array.from({ length: count }, (_, j) => position + j),
            modality: randomModality(next, count, next()),
          });
          position += count;
          layer.accumulate(Float32Array.from({ length: Hq * layer.length }, () => next()), Hq);
          const before = positions(layer);
          const beforeLength = layer.length;
          const budget = { hhRatio: 0.15, recentRatio: 0.1 };
          const queries = Float32Array.from({ length: Hq * count * 4 }, normal);
          await compressLayer(layer, { policy, budget, queries, numQueryHeads: Hq });
          const slots = resolveBudget(budget, layer.length, layer.tokensSeen, 'improved');
          assert.ok(layer.length <= slots.heavy + slots.recent, `seed ${seed} turn ${turn}`);
          assert.equal(layer.tokensSeen, position);
          const kept = positions(layer);
          for (let h = 0; h < Hkv; h++) {
            const head = kept.slice(h * layer.length, (h + 1) * layer.length);
            assert.ok(head.every((p, i) => i === 0 || p > head[i - 1]), 'positions ascend');
            assert.equal(head[head.length - 1], position - 1, 'the newest token stays');
            const had = before.slice(h * beforeLength, (h + 1) * beforeLength);
            for (const p of head) {
              assert.ok(had.includes(p), `seed ${seed} turn ${turn} head ${h}: position ${p} came from nowhere`);
              assert.ok(!everEvicted[h].has(p), `seed ${seed} turn ${turn} head ${h}: evicted position ${p} came back`);
            }
            for (const p of had) if (!head.includes(p)) everEvicted[h].add(p);
          }
        }
      }
    });
  }
});
