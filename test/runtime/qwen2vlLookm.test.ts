/**
 * The Qwen2-VL family with the KV engine, end to end below the session: a two-turn conversation
 * with an image in each turn (the family's processor, vision tower and M-RoPE decoder), prefilled
 * in chunks into a `KvCache` with each token's modality and column sums, compressed after every
 * prompt by each policy (LOOK-M included), answered greedily on top. With the full cache the
 * second turn fed on top of the first equals a whole prefill of the conversation; every policy
 * keeps its budget and the image slots labelled by image, and the merging ones (LOOK-M's
 * text_prior_pivot_merge among them) merge what they evict.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KvCache, planCompression, POLICY_NAMES, TEXT, type PolicyName } from '../../sidecar/src/kv/index.js';
import { parseQwen2VLConfig, type Qwen2VLConfig } from '../../sidecar/src/model/architectures/qwen2vl/config.js';
import { Qwen2VLProcessor } from '../../sidecar/src/model/architectures/qwen2vl/processor.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import type { ChatMessage } from '../../sidecar/src/model/processor.js';
import { TextDecoder } from '../../sidecar/src/runtime/textDecoder.js';
import { visionEncoder } from './qwen2vlWeights.js';

const root = join(__dirname, '../..');
const ANSWER_TOKENS = 6;
const MAX_SLOTS = 40;
/** Query rows SnapKV observes at the end of each prompt. */
const WINDOW = 8;

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

for (const model of ['tiny-qwen2-vl', 'tiny-qwen2.5-vl']) {
  describe(`Qwen2-VL family with the KV engine, two turns with images: ${model}`, () => {
    const dir = join(root, 'test/fixtures/models', model);
    const config: Qwen2VLConfig = parseQwen2VLConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
    const processor = Qwen2VLProcessor.open(dir, config);
    let decoder: TextDecoder;
    let vision: Awaited<ReturnType<typeof visionEncoder>>;

    before(async () => {
      decoder = await TextDecoder.create(Checkpoint.open(dir), { threads: 1 });
      vision = await visionEncoder(dir, config.vision, config.text.hiddenSize);
    });
    after(async () => {
      await Promise.all([decoder.release(), vision.release()]);
    });

    /** A prompt segment's ids, embeddings, modality (image numbered from `firstImage`) and M-RoPE positions from `start`. */
    async function segment(prompt: ReturnType<Qwen2VLProcessor['renderChatTemplate']>, from: number, files: string[], firstImage: number, start: number) {
      const patches = await Promise.all(files.map((f) => processor.preprocessImage(readFileSync(join(root, f)))));
      const grids = patches.map((p) => p.grid);
      const ids = processor.encode(prompt, grids, from);
      const { positions, next } = processor.positions(ids, grids, start);
      const features = files.length > 0 ? await vision.encode(patches.map((p) => p.pixels), grids) : new Float32Array(0);
      const E = config.text.hiddenSize;
      const embeds = decoder.embed(ids.map((id) => (id === config.imageTokenId ? 0 : id)));
      const modality = new Int32Array(ids.length).fill(TEXT);
      let row = 0;
      let image = 0;
      ids.forEach((id, i) => {
        if (id !== config.imageTokenId) return;
        embeds.set(features.subarray(row * E, (row + 1) * E), i * E);
        modality[i] = firstImage + image;
        row++;
        if (row === grids.slice(0, image + 1).reduce((n, g) => n + processor.tokensFor(g), 0)) image++;
      });
      return { ids, embeds, modality, positions, next };
    }

    /**
     * Prefills in chunks of 16, appending K/V, modality and column sums to the cache; returns the
     * last logits and, per layer, the attention the last `windowRows` tokens paid to every slot
     * (what SnapKV observes), summed over the chunks those rows fell in.
     */
    async function prefill(cache: KvCache, s: Awaited<ReturnType<typeof segment>>, windowRows = 0): Promise<{ logits: Float32Array; windowScores: Float32Array[] }> {
      const E = config.text.hiddenSize;
      const H = decoder.shape.numHeads;
      const L = s.ids.length;
      const total = cache.length + L;
      const windowScores = cache.layers.map(() => new Float32Array(H * total));
      let logits: Float32Array = new Float32Array(0);
      for (let from = 0; from < L; from += 16) {
        const to = Math.min(L, from + 16);
        const rows = new Int32Array(3 * (to - from));
        for (let a = 0; a < 3; a++) rows.set(s.positions.subarray(a * L + from, a * L + to), a * (to - from));
        const observed = Math.max(0, to - Math.max(from, L - windowRows));
        const out = await decoder.forward(s.embeds.subarray(from * E, to * E), rows, cache.past(), { windowRows: observed });
        // The engine keeps one position per slot: the token's place in the conversation.
        cache.append(out, Int32Array.from({ length: to - from }, (_, j) => cache.tokensSeen + j), s.modality.slice(from, to), decoder.shape.numKvHeads);
        const width = cache.length;
        out.windowColsums?.forEach((sums, i) => {
          for (let h = 0; h < H; h++) for (let j = 0; j < width; j++) windowScores[i][h * total + j] += sums[h * width + j];
        });
        logits = out.logits;
      }
      return { logits, windowScores };
    }

    async function compress(cache: KvCache, policy: PolicyName, windowScores: Float32Array[]): Promise<number> {
      let merged = 0;
      if (policy === 'full') return merged;
      for (const [i, layer] of cache.layers.entries()) {
        const plan = await planCompression(layer, { policy, budget: { maxSlots: MAX_SLOTS }, numQueryHeads: decoder.shape.numHeads, seed: 7, windowScores: windowScores[i] });
        if (!plan) continue;
        if (plan.merged) merged++;
        cache.compact(i, plan);
      }
      return merged;
    }

    async function answer(cache: KvCache, logits: Float32Array, position: number): Promise<{ tokens: number[]; next: number }> {
      const tokens: number[] = [];
      for (let i = 0; i < ANSWER_TOKENS; i++) {
        const token = argmax(logits);
        tokens.push(token);
        const out = await decoder.forward(decoder.embed([token]), [position + i], cache.past());
        cache.append(out, Int32Array.of(cache.tokensSeen), Int32Array.of(TEXT), decoder.shape.numKvHeads);
        logits = out.logits;
      }
      return { tokens, next: position + ANSWER_TOKENS };
    }

    async function conversation(policy: PolicyName) {
      const cache = new KvCache(decoder.shape.numLayers, decoder.shape.numKvHeads, decoder.shape.headDim);
      const first: ChatMessage[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in this image?' }] }];
      const prompt1 = processor.renderChatTemplate(first);
      const s1 = await segment(prompt1, 0, ['test/fixtures/images/qwen2vl/wide-editor.png'], 0, 0);
      const p1 = await prefill(cache, s1, WINDOW);
      const mergedAfter1 = await compress(cache, policy, p1.windowScores);
      const a1 = await answer(cache, p1.logits, s1.next);
      const answerText = processor.decode(a1.tokens);
      const messages: ChatMessage[] = [...first, { role: 'assistant', content: [{ type: 'text', text: answerText }] }, { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'And this one?' }] }];
      const prompt2 = processor.renderChatTemplate(messages);
      const fed = prompt1.text + answerText;
      assert.ok(prompt2.text.startsWith(fed), 'the second prompt continues the first and its answer');
      const s2 = await segment(prompt2, fed.length, ['test/fixtures/images/qwen2vl/tall-list.png'], 1, a1.next);
      const p2 = await prefill(cache, s2, WINDOW);
      const mergedAfter2 = await compress(cache, policy, p2.windowScores);
      const a2 = await answer(cache, p2.logits, s2.next);
      return { cache, s1, s2, a1, a2, merged: mergedAfter1 + mergedAfter2 };
    }

    it('full cache: the second turn on top of the first equals one prefill of the whole conversation', async () => {
      const run = await conversation('full');
      const whole = new KvCache(decoder.shape.numLayers, decoder.shape.numKvHeads, decoder.shape.headDim);
      const ids = [...run.s1.ids, ...run.a1.tokens, ...run.s2.ids];
      const E = config.text.hiddenSize;
      const embeds = new Float32Array(ids.length * E);
      embeds.set(run.s1.embeds);
      embeds.set(decoder.embed(run.a1.tokens), run.s1.ids.length * E);
      embeds.set(run.s2.embeds, (run.s1.ids.length + ANSWER_TOKENS) * E);
      const L = ids.length;
      const positions = new Int32Array(3 * L);
      const parts = [
        { p: run.s1.positions, n: run.s1.ids.length },
        { p: Int32Array.from({ length: 3 * ANSWER_TOKENS }, (_, j) => run.s1.next + (j % ANSWER_TOKENS)), n: ANSWER_TOKENS },
        { p: run.s2.positions, n: run.s2.ids.length },
      ];
      for (let a = 0; a < 3; a++) {
        let at = 0;
        for (const { p, n } of parts) {
          positions.set(p.subarray(a * n, (a + 1) * n), a * L + at);
          at += n;
        }
      }
      const { logits } = await prefill(whole, { ids, embeds, modality: new Int32Array(L).fill(TEXT), positions, next: run.s2.next });
      const { tokens } = await answer(whole, logits, run.s2.next);
      assert.deepEqual(tokens, run.a2.tokens);
    });

    for (const policy of POLICY_NAMES.filter((p) => p !== 'full')) {
      it(`${policy}: compresses after each prompt within ${MAX_SLOTS} slots, image slots keep their image, and answers`, async () => {
        const run = await conversation(policy);
        const seen = run.s1.ids.length + ANSWER_TOKENS * 2 + run.s2.ids.length;
        assert.equal(run.cache.tokensSeen, seen);
        // After the last compression only the answer's decode steps were added.
        assert.ok(run.cache.length <= MAX_SLOTS + ANSWER_TOKENS, `${run.cache.length} slots`);
        for (const layer of run.cache.layers) {
          for (const m of layer.modality) assert.ok(m === TEXT || m === 0 || m === 1, `modality ${m}`);
        }
        assert.equal(run.a2.tokens.length, ANSWER_TOKENS);
        assert.ok(run.a2.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < config.text.vocabSize));
        // The merging policies (LOOK-M's text_prior_pivot_merge among them) fold evicted slots into kept ones.
        if (policy.endsWith('_merge')) assert.ok(run.merged > 0, `${policy} merged evicted slots`);
      });
    }
  });
}
