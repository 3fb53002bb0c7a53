/**
 * Parity of the Idefics3 (SmolVLM) architecture with transformers
 * (`Idefics3ForConditionalGeneration`, float32, eager attention) on the tiny checkpoints of
 * tools/model/make_smolvlm.py: image features (tower, post-layernorm, pixel shuffle, projection)
 * per frame, the merged prompt embeddings, the prefill's logits, keys, values and attention column
 * sums (1e-4), chunked prefill equal to one pass, 32 greedy tokens, and a two-turn greedy
 * conversation on one cache. The processor side (ids, frames) is idefics3Processor.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { denseRows, denseSlots, KvCache, TEXT } from '../../sidecar/src/kv/index.js';
import { isIdefics3Config, parseIdefics3Config } from '../../sidecar/src/model/architectures/idefics3/config.js';
import { idefics3 } from '../../sidecar/src/model/architectures/idefics3/index.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { idefics3PositionIds } from '../../sidecar/src/model/vision/towers/idefics3.js';
import { readSafetensorsHeader } from '../../sidecar/src/model/safetensors.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { VisionEncoder } from '../../sidecar/src/runtime/visionEncoder.js';
import { maxAbsDiff, maxRelDiff, parityFixture } from './parityFixture.js';

const root = join(__dirname, '../..');
const TOLERANCE = 1e-4;

interface Case {
  input_ids: number[];
  image_token_id: number;
  greedy_tokens: number[];
  ids2?: number[];
  generated2?: number[];
}

function fixture(model: string, name: string) {
  const { case: c, has, tensor } = parityFixture<Case>(model, name);
  return { c, has, tensor };
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

const CASES: [string, string[]][] = [
  ['tiny-smolvlm', ['two-images', 'small-square', 'long', 'conversation']],
  ['tiny-smolvlm-nosplit', ['two-images', 'long', 'conversation']],
];

for (const [model, names] of CASES) {
  describe(`Idefics3 parity with transformers: ${model}`, () => {
    const dir = join(root, 'test/fixtures/models', model);
    let vision: VisionEncoder;
    let decoder: TextDecoder;
    let checkpoint: Checkpoint;
    before(async () => {
      checkpoint = Checkpoint.open(dir);
      assert.ok(isIdefics3Config(checkpoint.config), 'the registry parses it as Idefics3');
      for (const spec of idefics3.sessions(checkpoint.config, { weightBits: 32 })) {
        if (spec.role === 'imageEncoder') vision = await VisionEncoder.create(checkpoint, spec, { threads: 1 });
        else decoder = await TextDecoder.fromSpec(checkpoint, spec, { threads: 1 });
      }
    });
    after(async () => {
      await vision.release();
      await decoder.release();
    });

    /** The prompt embeddings: token rows, the image tokens' rows replaced in order by `features`. */
    const embed = (ids: number[], imageId: number, features: Float32Array): Float32Array => {
      const E = decoder.shape.hiddenSize;
      const embeds = decoder.embed(ids.map((id) => (id === imageId ? 0 : id)));
      let row = 0;
      ids.forEach((id, i) => {
        if (id === imageId) embeds.set(features.subarray(row * E, ++row * E), i * E);
      });
      assert.equal(row * E, features.length, 'every feature row placed');
      return embeds;
    };

    /** Prefills `embeds` on top of `cache` in chunks, as the runtime does; returns the last logits. */
    const prefill = async (cache: KvCache, embeds: Float32Array, first: number, chunk: number): Promise<Float32Array> => {
      const E = decoder.shape.hiddenSize;
      const n = embeds.length / E;
      let logits: Float32Array = new Float32Array(0);
      for (let start = 0; start < n; start += chunk) {
        const end = Math.min(n, start + chunk);
        const positions = Int32Array.from({ length: end - start }, (_, i) => first + start + i);
        const out = await decoder.forward(embeds.subarray(start * E, end * E), positions, cache.past());
        cache.append(out, positions, new Int32Array(end - start).fill(TEXT), decoder.shape.numHeads);
        logits = out.logits;
      }
      return logits;
    };

    const greedy = async (cache: KvCache, logits: Float32Array, count: number): Promise<number[]> => {
      const ids: number[] = [];
      for (let step = 0; step < count; step++) {
        const token = argmax(logits);
        ids.push(token);
        const positions = Int32Array.of(cache.tokensSeen);
        const out = await decoder.forward(decoder.embed([token]), positions, cache.past());
        cache.append(out, positions, Int32Array.of(TEXT), decoder.shape.numHeads);
        logits = out.logits;
      }
      return ids;
    };

    for (const name of names) {
      const { c, has, tensor } = fixture(model, name);

      it(`${name}: the same image features for every frame (tower, post-layernorm, pixel shuffle, projection)`, async () => {
        const pixels = tensor('pixel_values');
        const frames = pixels.length / (3 * vision.imageSize ** 2);
        const features = await vision.encode(pixels, frames);
        const diff = maxRelDiff(features, tensor('image_features'));
        assert.ok(diff <= TOLERANCE, `image features ${diff}`);
      });

      it(`${name}: the same merged embeddings, logits, keys, values and column sums over ${c.input_ids.length} tokens`, async () => {
        const embeds = embed(c.input_ids, c.image_token_id, tensor('image_features'));
        assert.ok(maxAbsDiff(embeds, tensor('inputs_embeds')) <= 1e-6, 'merged embeddings');
        const L = c.input_ids.length;
        const out = await decoder.forward(embeds, Int32Array.from({ length: L }, (_, i) => i), decoder.emptyPast(), { allLogits: has('logits') });
        const V = decoder.shape.vocabSize;
        const logits = has('logits') ? tensor('logits') : tensor('logits.last');
        const got = has('logits') ? out.logits : out.logits.subarray(out.logits.length - V);
        assert.ok(maxAbsDiff(got, logits) <= TOLERANCE, `logits ${maxAbsDiff(got, logits)}`);
        for (let i = 0; i < decoder.shape.numLayers; i++) {
          assert.ok(maxRelDiff(out.keys[i], tensor(`layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
          assert.ok(maxRelDiff(out.values[i], tensor(`layers.${i}.value`)) <= TOLERANCE, `layer ${i} values`);
          assert.ok(maxRelDiff(out.colsums[i], tensor(`layers.${i}.colsum`)) <= TOLERANCE, `layer ${i} column sums`);
        }
      });

      it(`${name}: chunked prefill (7, 512) gives the one-pass cache and last logits; 32 greedy tokens as transformers`, async () => {
        const embeds = embed(c.input_ids, c.image_token_id, tensor('image_features'));
        const L = c.input_ids.length;
        const lastWant = tensor('logits.last');
        let tokens: number[] = [];
        for (const chunk of [7, 512]) {
          const cache = new KvCache(decoder.shape.numLayers, decoder.shape.numKvHeads, decoder.shape.headDim);
          const last = await prefill(cache, embeds, 0, chunk);
          assert.ok(maxAbsDiff(last, lastWant) <= TOLERANCE, `chunk ${chunk}: last logits`);
          cache.layers.forEach((layer, i) => {
            assert.equal(layer.length, L);
            assert.ok(maxRelDiff(denseRows(layer, 'keys'), tensor(`layers.${i}.key`)) <= TOLERANCE, `chunk ${chunk}: layer ${i} keys`);
            const colsum = tensor(`layers.${i}.colsum`);
            const group = decoder.shape.numHeads / layer.numHeads;
            const expected = Float64Array.from({ length: layer.numHeads * L }, (_, k) => {
              const [h, j] = [Math.floor(k / L), k % L];
              let sum = 0;
              for (let q = h * group; q < (h + 1) * group; q++) sum += colsum[q * L + j];
              return sum;
            });
            assert.ok(maxRelDiff(denseSlots(layer, layer.scores), expected) <= TOLERANCE, `chunk ${chunk}: layer ${i} scores`);
          });
          if (chunk === 512) {
            tokens = await greedy(cache, last, c.greedy_tokens.length);
            assert.deepEqual(tokens, c.greedy_tokens, '32 greedy tokens');
            if (c.ids2 && c.generated2) {
              // Turn 2 on the same cache: the text after the first answer, then 32 greedy tokens.
              const second = await prefill(cache, decoder.embed(c.ids2), cache.tokensSeen, 512);
              assert.deepEqual(await greedy(cache, second, c.generated2.length), c.generated2, 'turn 2 greedy tokens');
            }
          }
        }
      });
    }
  });
}

describe('Idefics3 config', () => {
  it('counts the image side\'s parameters as the checkpoint holds them (memory figures)', () => {
    for (const model of ['tiny-smolvlm', 'tiny-smolvlm-nosplit']) {
      const dir = join(root, 'test/fixtures/models', model);
      const entries = readSafetensorsHeader(join(dir, 'model.safetensors'));
      const held = [...entries].filter(([name]) => name.startsWith('model.vision_model.') || name.startsWith('model.connector.')).reduce((n, [, e]) => n + e.shape.reduce((a, b) => a * b, 1), 0);
      const config = parseIdefics3Config(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
      assert.deepEqual(idefics3.imageSideParameters!(config), { read: held, unread: 0 }, model);
    }
  });

  const raw = JSON.parse(readFileSync(join(root, 'test/fixtures/models/tiny-smolvlm/config.json'), 'utf8')) as Record<string, unknown>;

  it('refuses what it does not support, naming the option', () => {
    assert.throws(() => parseIdefics3Config({ ...raw, scale_factor: 4 }), /scale_factor 4 does not divide the vision tower's 6 x 6 patch grid/);
    assert.throws(() => parseIdefics3Config({ ...raw, scale_factor: 1.5 }), /scale_factor/);
    assert.throws(() => parseIdefics3Config({ ...raw, text_config: { ...(raw.text_config as object), model_type: 'qwen2' } }), /text_config model_type "qwen2" is not supported \(llama only/);
    assert.throws(() => parseIdefics3Config({ ...raw, vision_config: { ...(raw.vision_config as object), hidden_act: 'relu6' } }), /vision hidden_act "relu6" is not supported/);
  });

  it('takes transformers\' defaults for what config.json leaves out', () => {
    const config = parseIdefics3Config({ architectures: ['Idefics3ForConditionalGeneration'], vision_config: { image_size: 512, patch_size: 16 } });
    assert.deepEqual([config.scaleFactor, config.imageTokenIndex, config.vision.hiddenSize, config.vision.numLayers, config.text.rmsNormEps, config.text.tieWordEmbeddings], [2, 128257, 1152, 12, 1e-5, false]);
    // Idefics3VisionConfig()'s own 224 / 32 makes a 7 x 7 grid, which scale_factor 2 cannot shuffle (transformers fails there too).
    assert.throws(() => parseIdefics3Config({ architectures: ['Idefics3ForConditionalGeneration'] }), /scale_factor 2 does not divide the vision tower's 7 x 7 patch grid/);
  });

  it('numbers the patches\' positions as transformers 4.57 buckets them (rows and columns 0 and 1 share a position)', () => {
    // torch: bucketize(arange(n) / n * (1 - 1e-6), arange(1 / n, 1.0, 1 / n), right=True)
    const side = (n: number) => idefics3PositionIds(n).slice(0, n);
    assert.deepEqual(side(4), [0, 0, 1, 2]);
    assert.deepEqual(side(6), [0, 0, 1, 2, 3, 4]);
    assert.deepEqual(side(32), [0, 0, ...Array.from({ length: 30 }, (_, k) => k + 1)]);
    assert.deepEqual(idefics3PositionIds(4).slice(4, 8), [0, 0, 1, 2], 'row 1 shares row 0\'s positions');
    assert.deepEqual(idefics3PositionIds(4).slice(8, 12), [4, 4, 5, 6]);
  });
});
