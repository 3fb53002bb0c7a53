/** The evaluation harness on the tiny checkpoint: sanity of the scores it reports. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { evalSet } from '../../tools/eval/dataset.js';
import { evaluate, klDivergence } from '../../tools/eval/run.js';

describe('evaluation against the full cache', () => {
  let runtime: OnnxModelRuntime;
  before(async () => {
    runtime = await OnnxModelRuntime.load(join(__dirname, '../fixtures/models/tiny-llava-llama'), { threads: 1 });
  });
  after(async () => runtime.release());

  it('KL divergence is 0 for equal logits and positive otherwise', () => {
    const p = Float32Array.from([1, 2, 3]);
    assert.equal(klDivergence(p, p), 0);
    assert.ok(klDivergence(p, Float32Array.from([3, 2, 1])) > 0.5);
  });

  it('generates every kind of item, reproducibly', async () => {
    const items = await evalSet(6, 3);
    assert.deepEqual(new Set(items.map((i) => i.kind)), new Set(['multi-image', 'follow-up', 'file-lookup']));
    assert.deepEqual((await evalSet(6, 3)).map((i) => i.turns.map((t) => t.expected)), items.map((i) => i.turns.map((t) => t.expected)));
  });

  it('a budget that covers everything agrees exactly; a 5% one does not', async () => {
    // Two items: the third (a file lookup, 776 tokens on the tiny tokenizer) does not fit its 512-token context.
    const items = await evalSet(2, 5);
    const { scores } = await evaluate(runtime, items, [
      { policy: 'full', mode: 'improved', budget: 0.2 },
      { policy: 'text_prior_pivot_merge', mode: 'improved', budget: 1 },
      { policy: 'h2o', mode: 'improved', budget: 0.05 },
    ], 6);
    for (const s of scores.slice(0, 2)) {
      assert.deepEqual([s.answersIdentical, s.stepAgreement, s.meanKl], [1, 1, 0], `${s.policy} ${s.budget}`);
      assert.equal(s.followUpFirstToken, 1);
    }
    assert.ok(scores[2].meanKl > 0 && scores[2].stepAgreement < 1, JSON.stringify(scores[2]));
  });

  it('keepCorrect drops the items the full cache answers wrong before the other configurations run', async () => {
    const items = await evalSet(2, 5);
    // The tiny checkpoint's answers are not right: an empty expected answer is in every answer.
    for (const turn of items[0].turns) turn.expected = '';
    const expectedFirst = items[0].turns.map((t) => t.expected);
    items[1].turns[items[1].turns.length - 1].expected = 'an answer no model gives';
    items[1].kind = items[0].kind; // one kind, half of it right with the full cache
    const full = await evaluate(runtime, items, [{ policy: 'h2o', mode: 'improved', budget: 0.05 }], 6);
    const seen: number[] = [];
    const kept = await evaluate(runtime, items, [{ policy: 'h2o', mode: 'improved', budget: 0.05 }, { policy: 'full', mode: 'improved', budget: 1 }], 6, undefined, { keepCorrect: true, onScore: (scores) => seen.push(scores.length) });
    assert.deepEqual(full.dropped, []);
    assert.deepEqual(seen, [1, 2], 'reported after each configuration');
    assert.deepEqual(kept.dropped, [items[1].id]);
    // Relative to the full cache on the items kept (all right), not on all items.
    assert.deepEqual(Object.values(kept.scores[1].relativeByKind), [1]);
    assert.equal(kept.scores[0].steps < full.scores[0].steps, true, 'the dropped item is not run');
    assert.deepEqual(items[0].turns.map((t) => t.expected), expectedFirst);
  });
});
