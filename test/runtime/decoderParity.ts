/**
 * The decoder half of the tiling architectures' parity tests (Idefics3, LLaVA-NeXT): transformers'
 * prefill (merged embeddings, logits, keys, values, column sums) and a chunked prefill with greedy
 * tokens on one KV cache, against a fixture recorded from transformers.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { denseRows, denseSlots, KvCache, TEXT } from '../../sidecar/src/kv/index.js';
import type { SessionSpec } from '../../sidecar/src/model/architectures/architecture.js';
import type { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { VisionEncoder } from '../../sidecar/src/runtime/visionEncoder.js';
import { argmax, groupSums, maxAbsDiff, maxRelDiff, type parityFixture } from './parityFixture.js';

const TOLERANCE = 1e-4;

/** What a fixture records of the decoder: the prompt, the greedy answer and, for a conversation, turn 2. */
export interface DecoderCase {
  input_ids: number[];
  image_token_id: number;
  greedy_tokens: number[];
  ids2?: number[];
  generated2?: number[];
}

type FixtureTensors = Pick<ReturnType<typeof parityFixture>, 'has' | 'tensor'>;

/** The image encoder and the decoder `specs` build from `checkpoint`, on one thread each. */
export async function openEncoderAndDecoder(checkpoint: Checkpoint, specs: readonly SessionSpec[]): Promise<{ vision: VisionEncoder; decoder: TextDecoder }> {
  let vision: VisionEncoder | undefined;
  let decoder: TextDecoder | undefined;
  for (const spec of specs) {
    if (spec.role === 'imageEncoder') vision = await VisionEncoder.create(checkpoint, spec, { threads: 1 });
    else decoder = await TextDecoder.fromSpec(checkpoint, spec, { threads: 1 });
  }
  if (!vision || !decoder) throw new Error('the architecture has no image encoder or no decoder session');
  return { vision, decoder };
}

/** The prompt embeddings: token rows, the image tokens' rows replaced in order by `features`. */
function embedWithFeatures(decoder: TextDecoder, ids: number[], imageId: number, features: Float32Array): Float32Array {
  const E = decoder.shape.hiddenSize;
  const embeds = decoder.embed(ids.map((id) => (id === imageId ? 0 : id)));
  let row = 0;
  ids.forEach((id, i) => {
    if (id === imageId) embeds.set(features.subarray(row * E, ++row * E), i * E);
  });
  assert.equal(row * E, features.length, 'every feature row placed');
  return embeds;
}

/** Prefills `embeds` on top of `cache` in chunks, as the runtime does; returns the last logits. */
async function prefillInChunks(decoder: TextDecoder, cache: KvCache, embeds: Float32Array, first: number, chunk: number): Promise<Float32Array> {
  const E = decoder.shape.hiddenSize;
  const n = embeds.length / E;
  let logits: Float32Array = new Float32Array(0);
  for (let start = 0; start < n; start += chunk) {
    const end = Math.min(n, start + chunk);
    const positions = Int32Array.from({ length: end - start }, (_, i) => first + start + i);
    const out = await decoder.forward(embeds.subarray(start * E, end * E), positions, cache.past());
    cache.append(out, positions, new Int32Array(end - start).fill(TEXT), decoder.shape.numKvHeads);
    logits = out.logits;
  }
  return logits;
}

/** `count` greedy tokens from `logits` on, each fed back through `cache`. */
async function greedyTokens(decoder: TextDecoder, cache: KvCache, logits: Float32Array, count: number): Promise<number[]> {
  const ids: number[] = [];
  for (let step = 0; step < count; step++) {
    const token = argmax(logits);
    ids.push(token);
    const positions = Int32Array.of(cache.tokensSeen);
    const out = await decoder.forward(decoder.embed([token]), positions, cache.past());
    cache.append(out, positions, Int32Array.of(TEXT), decoder.shape.numKvHeads);
    logits = out.logits;
  }
  return ids;
}

/**
 * The two decoder tests of case `name`: one pass over the prompt as transformers' (embeddings,
 * logits, keys, values, column sums), then chunked prefills (7, 512) equal to it and the greedy
 * answer, turn 2's too when recorded. `decoder` is asked when the tests run (after `before`).
 */
export function decoderParityTests(name: string, c: DecoderCase, { has, tensor }: FixtureTensors, decoder: () => TextDecoder): void {
  it(`${name}: the same merged embeddings, logits, keys, values and column sums over ${c.input_ids.length} tokens`, async () => {
    const d = decoder();
    const embeds = embedWithFeatures(d, c.input_ids, c.image_token_id, tensor('image_features'));
    assert.ok(maxAbsDiff(embeds, tensor('inputs_embeds')) <= 1e-6, 'merged embeddings');
    const L = c.input_ids.length;
    const out = await d.forward(embeds, Int32Array.from({ length: L }, (_, i) => i), d.emptyPast(), { allLogits: has('logits') });
    const V = d.shape.vocabSize;
    const logits = has('logits') ? tensor('logits') : tensor('logits.last');
    const got = has('logits') ? out.logits : out.logits.subarray(out.logits.length - V);
    assert.ok(maxAbsDiff(got, logits) <= TOLERANCE, `logits ${maxAbsDiff(got, logits)}`);
    for (let i = 0; i < d.shape.numLayers; i++) {
      assert.ok(maxRelDiff(out.keys[i], tensor(`layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
      assert.ok(maxRelDiff(out.values[i], tensor(`layers.${i}.value`)) <= TOLERANCE, `layer ${i} values`);
      assert.ok(maxRelDiff(out.colsums[i], groupSums(tensor(`layers.${i}.colsum`), d.shape.numHeads, d.shape.numKvHeads)) <= TOLERANCE, `layer ${i} column sums`);
    }
  });

  it(`${name}: chunked prefill (7, 512) gives the one-pass cache and last logits; 32 greedy tokens as transformers`, async () => {
    const d = decoder();
    const embeds = embedWithFeatures(d, c.input_ids, c.image_token_id, tensor('image_features'));
    const L = c.input_ids.length;
    const lastWant = tensor('logits.last');
    for (const chunk of [7, 512]) {
      const cache = new KvCache(d.shape.numLayers, d.shape.numKvHeads, d.shape.headDim);
      const last = await prefillInChunks(d, cache, embeds, 0, chunk);
      assert.ok(maxAbsDiff(last, lastWant) <= TOLERANCE, `chunk ${chunk}: last logits`);
      cache.layers.forEach((layer, i) => {
        assert.equal(layer.length, L);
        assert.ok(maxRelDiff(denseRows(layer, 'keys'), tensor(`layers.${i}.key`)) <= TOLERANCE, `chunk ${chunk}: layer ${i} keys`);
        const expected = groupSums(tensor(`layers.${i}.colsum`), d.shape.numHeads, layer.numHeads);
        assert.ok(maxRelDiff(denseSlots(layer, layer.scores), expected) <= TOLERANCE, `chunk ${chunk}: layer ${i} scores`);
      });
      if (chunk === 512) {
        assert.deepEqual(await greedyTokens(d, cache, last, c.greedy_tokens.length), c.greedy_tokens, '32 greedy tokens');
        if (c.ids2 && c.generated2) {
          // Turn 2 on the same cache: the text after the first answer, then its greedy tokens.
          const second = await prefillInChunks(d, cache, d.embed(c.ids2), cache.tokensSeen, 512);
          assert.deepEqual(await greedyTokens(d, cache, second, c.generated2.length), c.generated2, 'turn 2 greedy tokens');
        }
      }
    }
  });
}
