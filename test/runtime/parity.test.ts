/**
 * Parity with Hugging Face transformers (`LlavaForConditionalGeneration`, float32, eager
 * attention) on the tiny checkpoints of tools/model/make_tiny.py, against the fixtures recorded by
 * tools/model/record_fixtures.py. Tolerances from the runtime issue: logits max |diff| <= 1e-4,
 * K/V and column sums <= 1e-4 relative, greedy tokens identical.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { denseRows, denseSlots } from '../../sidecar/src/kv/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { generate } from '../../sidecar/src/session/generate.js';
import { groupSums, maxAbsDiff, maxRelDiff, parityFixture } from './parityFixture.js';

const root = join(__dirname, '../..');
const TOLERANCE = 1e-4;

interface Case {
  messages: Parameters<OnnxModelRuntime['processor']['applyChatTemplate']>[0];
  prompt: string;
  input_ids: number[];
  image_files: string[];
  greedy_tokens: number[];
  position_test: { positions: number[] };
}

const fixtures = (model: string) => parityFixture<Case>(model);

for (const model of ['tiny-llava-llama', 'tiny-llava-qwen2']) {
  describe(`parity with transformers: ${model}`, () => {
    const { case: c, tensor } = fixtures(model);
    // The fixture's one user turn: its images, then this question.
    const content = c.messages[0].content;
    const question = typeof content === 'string' ? content : content.flatMap((part) => (part.type === 'text' ? [part.text] : [])).join('');
    let runtime: OnnxModelRuntime;
    /**
     * The fixture's images, with the runtime's preprocessing replaced by transformers' pixel
     * values for them (sharp resamples slightly differently from Pillow; see processor.ts).
     */
    const useTransformersPixels = (): Uint8Array[] => {
      const images: Uint8Array[] = c.image_files.map((file) => readFileSync(join(root, file)));
      const pixels = tensor('pixel_values');
      const per = pixels.length / images.length;
      runtime.pixelValues = (batch) => {
        const out = new Float32Array(per * batch.length);
        batch.forEach((bytes, i) => {
          const k = images.indexOf(bytes);
          assert.ok(k >= 0, 'an image the fixture does not have');
          out.set(pixels.subarray(k * per, (k + 1) * per), i * per);
        });
        return Promise.resolve(out);
      };
      return images;
    };
    before(async () => {
      runtime = await OnnxModelRuntime.load(join(root, 'test/fixtures/models', model), { threads: 1 });
    });
    after(async () => runtime.release());

    it('renders the chat template and expands the image tokens like LlavaProcessor', () => {
      const prompt = runtime.processor.applyChatTemplate(c.messages);
      assert.equal(prompt, c.prompt);
      assert.deepEqual(runtime.processor.encode(prompt), c.input_ids);
    });

    it('preprocesses images close to the PIL-based processor (sharp resamples differently)', async () => {
      const want = tensor('pixel_values');
      const got = await runtime.pixelValues(c.image_files.map((file) => readFileSync(join(root, file))));
      let sum = 0;
      for (let i = 0; i < want.length; i++) sum += Math.abs(got[i] - want[i]);
      const mean = sum / want.length;
      const max = maxAbsDiff(got, want);
      console.log(`${model}: pixel values vs transformers: mean |diff| ${mean.toFixed(5)}, max ${max.toFixed(4)} (normalised units)`);
      assert.ok(mean < 0.005 && max < 0.15, `mean ${mean}, max ${max}`);
    });

    it('encodes images to the same projected features', async () => {
      const features = await runtime.vision!.encode(tensor('pixel_values'), c.image_files.length);
      assert.ok(maxRelDiff(features, tensor('image_features')) <= TOLERANCE);
    });

    it('prefills to the same logits, keys, values and attention column sums', async () => {
      const embeds = tensor('inputs_embeds');
      const { embeds: ours } = runtime.embedPrompt(c.input_ids, tensor('image_features'));
      assert.ok(maxAbsDiff(ours, embeds) <= 1e-6, 'merged prompt embeddings');
      const L = c.input_ids.length;
      const out = await runtime.decoder.forward(embeds, Int32Array.from({ length: L }, (_, i) => i), runtime.decoder.emptyPast(), { allLogits: true });
      const logitsDiff = maxAbsDiff(out.logits, tensor('logits'));
      assert.ok(logitsDiff <= TOLERANCE, `logits max |diff| ${logitsDiff}`);
      for (let i = 0; i < runtime.config.text.numLayers; i++) {
        assert.ok(maxRelDiff(out.keys[i], tensor(`layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
        assert.ok(maxRelDiff(out.values[i], tensor(`layers.${i}.value`)) <= TOLERANCE, `layer ${i} values`);
        assert.ok(maxRelDiff(out.colsums[i], groupSums(tensor(`layers.${i}.colsum`), runtime.config.text.numHeads, runtime.config.text.numKvHeads)) <= TOLERANCE, `layer ${i} column sums`);
      }
    });

    for (const chunk of [1, 7, 512]) {
      it(`prefills in chunks of ${chunk} to the same cache, scores and last logits`, async () => {
        const cache = runtime.createCache();
        const L = c.input_ids.length;
        const { modality } = runtime.embedPrompt(c.input_ids, tensor('image_features'));
        const { logits: last } = await runtime.prefill(cache, tensor('inputs_embeds'), Int32Array.from({ length: L }, (_, i) => i), modality, { chunk });
        const V = runtime.config.text.vocabSize;
        assert.ok(maxAbsDiff(last, tensor('logits').subarray((L - 1) * V, L * V)) <= TOLERANCE, 'last logits');
        cache.layers.forEach((layer, i) => {
          assert.equal(layer.length, L);
          assert.deepEqual(Array.from(denseSlots(layer, layer.positions).subarray(0, L)), Array.from({ length: L }, (_, j) => j));
          assert.ok(maxRelDiff(denseRows(layer, 'keys'), tensor(`layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
          // Scores: the column sums of every chunk add up to those of one pass, summed per KV group.
          const expected = groupSums(tensor(`layers.${i}.colsum`), runtime.config.text.numHeads, layer.numHeads);
          assert.ok(maxRelDiff(denseSlots(layer, layer.scores), expected) <= TOLERANCE, `layer ${i} scores`);
        });
      });
    }

    it('follows explicit non-contiguous positions like transformers given the same position_ids', async () => {
      const positions = Int32Array.from(c.position_test.positions);
      const S = positions.length;
      const E = runtime.config.text.hiddenSize;
      const out = await runtime.decoder.forward(tensor('inputs_embeds').subarray(0, S * E), positions, runtime.decoder.emptyPast(), { allLogits: true });
      assert.ok(maxAbsDiff(out.logits, tensor('position_test.logits')) <= TOLERANCE, 'logits');
      for (let i = 0; i < runtime.config.text.numLayers; i++) assert.ok(maxRelDiff(out.keys[i], tensor(`position_test.layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
    });

    it('decodes on a full cache exactly as a single pass over prompt and answer recomputes', async () => {
      const L = c.input_ids.length;
      const V = runtime.config.text.vocabSize;
      const { embeds, modality } = runtime.embedPrompt(c.input_ids, tensor('image_features'));
      const cache = runtime.createCache();
      const stepLogits = [(await runtime.prefill(cache, embeds, Int32Array.from({ length: L }, (_, i) => i), modality)).logits];
      const answer = c.greedy_tokens.slice(0, 5);
      for (const [step, token] of answer.entries()) stepLogits.push(await runtime.decodeStep(cache, token, L + step));
      const all = new Float32Array(embeds.length + answer.length * runtime.config.text.hiddenSize);
      all.set(embeds);
      all.set(runtime.decoder.embed(answer), embeds.length);
      const single = await runtime.decoder.forward(all, Int32Array.from({ length: L + answer.length }, (_, i) => i), runtime.decoder.emptyPast(), { allLogits: true });
      stepLogits.forEach((logits, k) => {
        const diff = maxAbsDiff(logits, single.logits.subarray((L - 1 + k) * V, (L + k) * V));
        assert.ok(diff <= TOLERANCE, `step ${k}: ${diff}`);
      });
    });

    it('decodes on a LOOK-M-compressed cache, and like the full cache when the budget covers everything', async () => {
      const images = useTransformersPixels();
      const answer = async (options: Parameters<typeof generate>[3]) => {
        const tokens: number[] = [];
        await generate(runtime, question, images, { maxNewTokens: 12, ...options }, (_text, id) => tokens.push(id));
        return tokens;
      };
      const compressed = await answer({ budget: { hhRatio: 0.1, recentRatio: 0.1 } });
      assert.equal(compressed.length, 12);
      assert.deepEqual(await answer({ budget: { hhRatio: 0.1, recentRatio: 0.1 } }), compressed, 'deterministic');
      assert.deepEqual(await answer({ budget: { hhRatio: 0.6, recentRatio: 0.5 } }), c.greedy_tokens.slice(0, 12));
    });

    it('decodes the same 32 greedy tokens on a full cache', async () => {
      const images = useTransformersPixels();
      const tokens: number[] = [];
      await generate(runtime, question, images, { maxNewTokens: 32, policy: 'full' }, (_text, id) => tokens.push(id));
      assert.deepEqual(tokens, c.greedy_tokens);
    });
  });
}
