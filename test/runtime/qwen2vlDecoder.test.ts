/**
 * The Qwen2-VL / Qwen2.5-VL language model (Qwen2 decoder with M-RoPE, `architectures/qwen2vl`)
 * against transformers on the tiny checkpoints: the prompt embeddings with the image features
 * merged in, logits, per-layer keys, values and attention column sums within 1e-4 for two images
 * in one turn, a prompt longer than one prefill chunk and a two-turn chat; chunked prefill equal to
 * whole; 3-D non-contiguous positions; 32 greedy tokens identical; the chat's second turn
 * prefilled on top of the first as the sidecar feeds it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mropePositions } from '../../sidecar/src/model/architectures/qwen2vl/positions.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { TextDecoder, type PastLayer } from '../../sidecar/src/runtime/textDecoder.js';
import { groupSums, maxAbsDiff, maxRelDiff, parityFixture } from './parityFixture.js';

const root = join(__dirname, '../..');
const TOLERANCE = 1e-4;
type Grid = [number, number, number];

interface FixtureCase {
  input_ids: number[];
  image_grid_thw: Grid[];
  rope_delta: number;
  greedy_tokens: number[];
  turn1?: { input_ids: number[] };
  position_test?: { positions: number[][]; length: number };
}
interface Fixture {
  model_dir: string;
  architecture: string;
  image_token_id: number;
  num_layers: number;
  cases: Record<'two_images' | 'long' | 'chat', FixtureCase>;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** `[H, P, D]` past with `[H, S, D]` appended. */
function appendHeads(past: Float32Array, added: Float32Array, heads: number): Float32Array {
  const out = new Float32Array(past.length + added.length);
  const p = past.length / heads;
  const s = added.length / heads;
  for (let h = 0; h < heads; h++) {
    out.set(past.subarray(h * p, (h + 1) * p), h * (p + s));
    out.set(added.subarray(h * s, (h + 1) * s), h * (p + s) + p);
  }
  return out;
}

/** The rows `[from, to)` of `[3, L]` positions, as `[3, to - from]`. */
function positionSlice(positions: Float32Array | Int32Array, L: number, from: number, to: number): Int32Array {
  const out = new Int32Array(3 * (to - from));
  for (let a = 0; a < 3; a++) for (let j = from; j < to; j++) out[a * (to - from) + j - from] = positions[a * L + j];
  return out;
}

for (const model of ['tiny-qwen2-vl', 'tiny-qwen2.5-vl']) {
  describe(`Qwen2-VL language model parity with transformers: ${model}`, () => {
    const { case: fixture, tensor } = parityFixture<Fixture>(model);
    let decoder: TextDecoder;
    const Hkv = () => decoder.shape.numKvHeads;
    const H = () => decoder.shape.numHeads;

    before(async () => {
      decoder = await TextDecoder.create(Checkpoint.open(join(root, fixture.model_dir)), { threads: 1 });
    });
    after(async () => {
      await decoder.release();
    });

    /** Prefills `embeds` in chunks on top of `past`; returns the last logits, the grown past and the summed column sums. */
    async function prefill(embeds: Float32Array, positions: Int32Array, chunk: number, past: PastLayer[] = decoder.emptyPast(), colsums?: Float32Array[]) {
      const E = decoder.shape.hiddenSize;
      const L = embeds.length / E;
      let logits: Float32Array = new Float32Array(0);
      const sums = colsums ?? past.map(() => new Float32Array(0));
      for (let from = 0; from < L; from += chunk) {
        const to = Math.min(L, from + chunk);
        const out = await decoder.forward(embeds.subarray(from * E, to * E), positionSlice(positions, L, from, to), past);
        logits = out.logits;
        past = past.map((layer, i) => ({ keys: appendHeads(layer.keys, out.keys[i], Hkv()), values: appendHeads(layer.values, out.values[i], Hkv()), length: layer.length + to - from }));
        // Column sums over every key so far: earlier chunks' grow by this chunk's rows.
        out.colsums.forEach((c, i) => {
          const total = past[i].length;
          const grown = new Float32Array(Hkv() * total);
          const before = sums[i].length / Hkv();
          for (let h = 0; h < Hkv(); h++) {
            for (let j = 0; j < total; j++) grown[h * total + j] = (j < before ? sums[i][h * before + j] : 0) + c[h * total + j];
          }
          sums[i] = grown;
        });
      }
      return { logits, past, colsums: sums };
    }

    async function greedy(past: PastLayer[], firstLogits: Float32Array, nextPosition: number, steps: number) {
      const tokens: number[] = [];
      const logits: Float32Array[] = [];
      let row = firstLogits;
      for (let i = 0; i < steps; i++) {
        logits.push(row);
        const token = argmax(row);
        tokens.push(token);
        const out = await decoder.forward(decoder.embed([token]), [nextPosition + i], past);
        past = past.map((layer, l) => ({ keys: appendHeads(layer.keys, out.keys[l], Hkv()), values: appendHeads(layer.values, out.values[l], Hkv()), length: layer.length + 1 }));
        row = out.logits;
      }
      return { tokens, logits };
    }

    it('merges the image features into the prompt embeddings as transformers does', () => {
      const c = fixture.cases.two_images;
      const embeds = decoder.embed(c.input_ids);
      const E = decoder.shape.hiddenSize;
      const features = [tensor('images.0.features'), tensor('images.2.features')];
      let k = 0;
      let row = 0;
      c.input_ids.forEach((id, i) => {
        if (id !== fixture.image_token_id) return;
        embeds.set(features[k].subarray(row * E, (row + 1) * E), i * E);
        if (++row * E === features[k].length) [k, row] = [k + 1, 0];
      });
      assert.ok(maxAbsDiff(embeds, tensor('two_images.inputs_embeds')) <= 1e-6);
    });

    for (const name of ['two_images', 'chat'] as const) {
      it(`${name}: the whole prompt to the same logits, keys, values and column sums`, async () => {
        const c = fixture.cases[name];
        const L = c.input_ids.length;
        const positions = mropePositions(c.input_ids, fixture.image_token_id, c.image_grid_thw, 2).positions;
        assert.deepEqual([...positions], [...tensor(`${name}.position_ids`)]);
        const out = await decoder.forward(tensor(`${name}.inputs_embeds`), positions, decoder.emptyPast(), { allLogits: true });
        const logitsDiff = maxAbsDiff(out.logits, tensor(`${name}.logits`));
        assert.ok(logitsDiff <= TOLERANCE, `logits max |diff| ${logitsDiff}`);
        for (let i = 0; i < fixture.num_layers; i++) {
          assert.ok(maxRelDiff(out.keys[i], tensor(`${name}.layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
          assert.ok(maxRelDiff(out.values[i], tensor(`${name}.layers.${i}.value`)) <= TOLERANCE, `layer ${i} values`);
          assert.ok(maxRelDiff(out.colsums[i], groupSums(tensor(`${name}.layers.${i}.colsum`), H(), Hkv())) <= TOLERANCE, `layer ${i} column sums`);
        }
        assert.equal(out.logits.length / L, decoder.shape.vocabSize);
      });
    }

    for (const chunk of [7, 512]) {
      it(`long (${fixture.cases.long.input_ids.length} tokens): prefilled in chunks of ${chunk} to the same last logits, cache and column sums, then 32 greedy tokens`, async () => {
        const c = fixture.cases.long;
        const L = c.input_ids.length;
        const { logits, past, colsums } = await prefill(tensor('long.inputs_embeds'), Int32Array.from(tensor('long.position_ids')), chunk);
        const V = decoder.shape.vocabSize;
        const tail = tensor('long.logits_tail');
        assert.ok(maxAbsDiff(logits, tail.subarray(tail.length - V)) <= TOLERANCE, 'last logits');
        for (let i = 0; i < fixture.num_layers; i++) {
          assert.ok(maxRelDiff(past[i].keys, tensor(`long.layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
          assert.ok(maxRelDiff(past[i].values, tensor(`long.layers.${i}.value`)) <= TOLERANCE, `layer ${i} values`);
          assert.ok(maxRelDiff(colsums[i], groupSums(tensor(`long.layers.${i}.colsum`), H(), Hkv())) <= TOLERANCE, `layer ${i} column sums`);
        }
        const { tokens, logits: steps } = await greedy(past, logits, L + c.rope_delta, 32);
        assert.deepEqual(tokens, c.greedy_tokens);
        const want = tensor('long.generate.logits');
        steps.forEach((row, i) => assert.ok(maxAbsDiff(row, want.subarray(i * V, (i + 1) * V)) <= TOLERANCE, `step ${i} logits`));
      });
    }

    it('two_images: 32 greedy tokens identical, decoding from one past the largest position', async () => {
      const c = fixture.cases.two_images;
      const L = c.input_ids.length;
      const { logits, past } = await prefill(tensor('two_images.inputs_embeds'), Int32Array.from(tensor('two_images.position_ids')), 512);
      const { tokens, logits: steps } = await greedy(past, logits, L + c.rope_delta, 32);
      assert.deepEqual(tokens, c.greedy_tokens);
      const V = decoder.shape.vocabSize;
      const want = tensor('two_images.generate.logits');
      steps.forEach((row, i) => assert.ok(maxAbsDiff(row, want.subarray(i * V, (i + 1) * V)) <= TOLERANCE, `step ${i} logits`));
    });

    it('chat: the second turn prefilled on top of the first (positions continued turn by turn) equals the whole, and greedy tokens match', async () => {
      const c = fixture.cases.chat;
      const first = c.turn1!.input_ids;
      const L = c.input_ids.length;
      const L1 = first.length;
      assert.deepEqual(c.input_ids.slice(0, L1), first);
      const embeds = tensor('chat.inputs_embeds');
      const E = decoder.shape.hiddenSize;
      const a = mropePositions(first, fixture.image_token_id, c.image_grid_thw.slice(0, 1), 2);
      const b = mropePositions(c.input_ids.slice(L1), fixture.image_token_id, c.image_grid_thw.slice(1), 2, a.next);
      const turn1 = await prefill(embeds.subarray(0, L1 * E), a.positions, 512);
      const turn2 = await prefill(embeds.subarray(L1 * E), b.positions, 512, turn1.past, turn1.colsums);
      const V = decoder.shape.vocabSize;
      assert.ok(maxAbsDiff(turn2.logits, tensor('chat.logits').subarray((L - 1) * V)) <= TOLERANCE, 'last logits');
      for (let i = 0; i < fixture.num_layers; i++) {
        assert.ok(maxRelDiff(turn2.past[i].keys, tensor(`chat.layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
        assert.ok(maxRelDiff(turn2.colsums[i], groupSums(tensor(`chat.layers.${i}.colsum`), H(), Hkv())) <= TOLERANCE, `layer ${i} column sums`);
      }
      assert.equal(b.next - L, c.rope_delta);
      const { tokens } = await greedy(turn2.past, turn2.logits, b.next, 32);
      assert.deepEqual(tokens, c.greedy_tokens);
    });

    it('3-D non-contiguous positions (each component its own) give the same logits and keys', async () => {
      const { positions, length: S } = fixture.cases.two_images.position_test!;
      const E = decoder.shape.hiddenSize;
      const out = await decoder.forward(tensor('two_images.inputs_embeds').subarray(0, S * E), Int32Array.from(positions.flat()), decoder.emptyPast(), { allLogits: true });
      assert.ok(maxAbsDiff(out.logits, tensor('two_images.position_test.logits')) <= TOLERANCE, 'logits');
      for (let i = 0; i < fixture.num_layers; i++) assert.ok(maxRelDiff(out.keys[i], tensor(`two_images.position_test.layers.${i}.key`)) <= TOLERANCE, `layer ${i} keys`);
    });
  });
}
