/**
 * SnapKV's observation window over a chunked prefill: the last `window` query rows of the whole
 * prompt, whichever chunks they fall in, so the sidecar's plan does not depend on the chunk size.
 * The reference for the window's attention is independent of the window code: the column sums of
 * one pass over the whole prompt minus those of a pass over the tokens before the window (causal
 * attention: those rows attend the same in both).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { observedRows, planCompression, TEXT, type CompressOptions } from '../../sidecar/src/kv/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';

const model = join(__dirname, '../fixtures/models/tiny-llava-qwen2');

describe('SnapKV window across prefill chunks', () => {
  let runtime: OnnxModelRuntime;
  before(async () => {
    runtime = await OnnxModelRuntime.load(model, { threads: 1 });
  });
  after(async () => runtime.release());

  const promptIds = (n: number) => Array.from({ length: n }, (_, i) => 4 + ((i * 7919 + (i >> 3) * 31) % 390));

  /** What the sidecar does: prefill in chunks, observing the rows the policy asks for, then plan every layer. */
  async function chunkedPlans(ids: number[], chunk: number, options: CompressOptions) {
    const cache = runtime.createCache();
    const windowRows = observedRows(options, ids.length, ids.length);
    const positions = Int32Array.from(ids, (_, i) => i);
    const prefilled = await runtime.prefill(cache, runtime.decoder.embed(ids), positions, new Int32Array(ids.length).fill(TEXT), { chunk, windowRows });
    assert.equal(prefilled.windowRows, windowRows);
    const plans = await Promise.all(cache.layers.map((layer, i) => planCompression(layer, { ...options, windowScores: prefilled.windowScores![i] })));
    return { cache, windowRows, windowScores: prefilled.windowScores!, plans };
  }

  /** The window's attention from two single passes (all rows, and the rows before the window). */
  async function referenceWindowScores(ids: number[], window: number): Promise<Float32Array[]> {
    const { decoder } = runtime;
    const N = ids.length;
    const before = N - window;
    const positions = (n: number) => Int32Array.from({ length: n }, (_, i) => i);
    // Per query head: the window sums of a window as long as each pass.
    const all = await decoder.forward(decoder.embed(ids), positions(N), decoder.emptyPast(), { windowRows: N });
    const head = before > 0 ? await decoder.forward(decoder.embed(ids.slice(0, before)), positions(before), decoder.emptyPast(), { windowRows: before }) : null;
    const H = decoder.config.numHeads;
    return all.windowColsums!.map((sums, layer) =>
      Float32Array.from(sums, (x, k) => {
        const [h, j] = [Math.floor(k / N), k % N];
        return j < before ? x - head!.windowColsums![layer][h * before + j] : x;
      }).subarray(0, H * N),
    );
  }

  const cases: { name: string; tokens: number; chunk: number; options: CompressOptions; window: number }[] = [
    { name: '513 tokens in chunks of 512, improved (window 64)', tokens: 513, chunk: 512, options: { policy: 'snapkv', budget: { hhRatio: 0.1, recentRatio: 0.2 }, mode: 'improved' }, window: 64 },
    { name: '700 tokens in chunks of 256, improved, window 256 over two chunks', tokens: 700, chunk: 256, options: { policy: 'snapkv', budget: { hhRatio: 0.1, recentRatio: 0.5 }, mode: 'improved', snapkvWindow: 256 }, window: 256 },
    { name: '700 tokens in chunks of 256, reference (window = the recent window, 210 rows)', tokens: 700, chunk: 256, options: { policy: 'snapkv', budget: { hhRatio: 0.1, recentRatio: 0.3 }, mode: 'reference' }, window: 210 },
  ];

  for (const c of cases) {
    it(`observes the last ${c.window} rows of the whole prompt: ${c.name}`, async () => {
      const ids = promptIds(c.tokens);
      const options = { ...c.options, numQueryHeads: runtime.config.text.numHeads };
      const chunked = await chunkedPlans(ids, c.chunk, options);
      assert.equal(chunked.windowRows, c.window, 'the rows the policy observes under this budget');
      const expected = await referenceWindowScores(ids, c.window);
      chunked.windowScores.forEach((scores, layer) => {
        let worst = 0;
        scores.forEach((x, k) => (worst = Math.max(worst, Math.abs(x - expected[layer][k]))));
        assert.ok(worst < 1e-4, `layer ${layer}: window scores off by ${worst}`);
      });
      // The plans: from the reference scores, and from one chunk holding the whole prompt.
      const single = await chunkedPlans(ids, c.tokens, options);
      for (const [layer, plan] of chunked.plans.entries()) {
        assert.ok(plan, `layer ${layer} is compressed`);
        const fromReference = await planCompression(chunked.cache.layers[layer], { ...options, windowScores: expected[layer] });
        assert.deepEqual(Array.from(plan.kept), Array.from(fromReference!.kept), `layer ${layer}: kept slots vs the reference window`);
        assert.deepEqual(Array.from(plan.kept), Array.from(single.plans[layer]!.kept), `layer ${layer}: kept slots vs an unchunked prefill`);
      }
    });
  }

  it('holds at most the tokens prefilled: a window longer than the prompt observes every new row', async () => {
    const ids = promptIds(40);
    const cache = runtime.createCache();
    const prefilled = await runtime.prefill(cache, runtime.decoder.embed(ids), Int32Array.from(ids, (_, i) => i), new Int32Array(40).fill(TEXT), { chunk: 16, windowRows: 64 });
    assert.equal(prefilled.windowRows, 40);
    const expected = await referenceWindowScores(ids, 40);
    prefilled.windowScores!.forEach((scores, layer) => scores.forEach((x, k) => assert.ok(Math.abs(x - expected[layer][k]) < 1e-4, `layer ${layer} column ${k}`)));
    const none = await runtime.prefill(runtime.createCache(), runtime.decoder.embed(ids), Int32Array.from(ids, (_, i) => i), new Int32Array(40).fill(TEXT));
    assert.equal(none.windowScores, null, 'no window asked, none summed');
  });
});
