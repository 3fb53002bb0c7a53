/**
 * Qwen2-VL and Qwen2.5-VL end to end on the runtime: `OnnxModelRuntime.load` through the
 * architecture registry (each image read at its own grid, the vision tower fed its rotary and
 * segment inputs, M-RoPE positions into the decoder, the cache's next position apart from its
 * token count), transformers' ids and greedy answers reproduced by a `Conversation`, and every KV
 * policy running three-turn conversations with images on both tiny checkpoints.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { TEXT, type KvCache } from '../../sidecar/src/kv/index.js';
import { smartResize } from '../../sidecar/src/model/architectures/qwen2vl/imageProcessor.js';
import type { ChatMessage } from '../../sidecar/src/model/processor.js';
import { POLICY_NAMES, SessionSettings } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { Conversation, FeatureCache, MemoryImageStore } from '../../sidecar/src/session/conversation.js';
import { answerIds, budgetedConversation } from './conversationTurns.js';
import { argmax, maxAbsDiff, maxRelDiff, parityFixture } from './parityFixture.js';

const root = join(__dirname, '../..');

interface Case {
  messages: ChatMessage[];
  image_files: string[];
  input_ids: number[];
  image_grid_thw: [number, number, number][];
  greedy_tokens: number[];
  turn1?: { messages: ChatMessage[]; input_ids: number[]; answer_ids: number[]; continues_ids: boolean };
}

interface Fixture {
  architecture: string;
  image_processor: { max_pixels: number; patch_size: number; merge_size: number };
  images: { file: string; image_grid_thw: [number, number, number]; tokens: number }[];
  cases: { chat: Case; two_images: Case; long: Case };
}

const read = (file: string) => readFileSync(join(root, file));
const userText = (message: ChatMessage) => (typeof message.content === 'string' ? message.content : message.content.flatMap((p) => (p.type === 'text' ? [p.text] : [])).join(''));

for (const model of ['tiny-qwen2-vl', 'tiny-qwen2.5-vl']) {
  describe(`${model}: a Qwen2-VL family conversation on the runtime`, () => {
    const { case: fixture, tensor } = parityFixture<Fixture>(model);
    let runtime: OnnxModelRuntime;
    before(async () => {
      runtime = await OnnxModelRuntime.load(join(root, 'test/fixtures/models', model), { threads: 1 });
    });
    after(async () => runtime?.release());

    /** A case's prompt ids (checked against transformers') with its images' grids, and the prompt embedded with their features. */
    const embeddedCase = async (c: Case) => {
      const images = c.image_files.map(read);
      const grids = await runtime.imageGrids(images.map((bytes) => () => bytes));
      const ids = runtime.processor.encode(runtime.processor.renderChatTemplate(c.messages), true, 0, grids);
      assert.deepEqual(ids, c.input_ids);
      const features = await runtime.encodeImages(images);
      const rows = grids.map((g) => g.rows * g.cols);
      return { ids, rows, ...runtime.embedPrompt(ids, features, 0, rows, { grids }) };
    };

    /** `count` greedy tokens after `logits`, each decoded on `cache`. */
    const greedyAnswer = async (cache: KvCache, logits: Float32Array, count: number): Promise<number[]> => {
      const generated: number[] = [];
      let row = logits;
      while (generated.length < count) {
        generated.push(argmax(row));
        row = await runtime.decodeStep(cache, generated.at(-1)!, cache.tokensSeen);
      }
      return generated;
    };

    it('loads through the registry with its vision tower', () => {
      assert.equal(runtime.info.architecture, fixture.architecture);
      assert.equal(runtime.info.visionModel, model === 'tiny-qwen2-vl' ? 'qwen2_vl' : 'qwen2_5_vl');
      assert.equal(runtime.info.imageInput, true);
      // The chat's token count takes an image at its most: max_pixels in merged patches.
      const { max_pixels, patch_size, merge_size } = fixture.image_processor;
      assert.equal(runtime.info.tokensPerImage, 0);
      assert.equal(runtime.info.maxTokensPerImage, Math.floor(max_pixels / (patch_size * merge_size) ** 2));
      assert.ok(Math.max(...fixture.images.map((i) => i.tokens)) <= runtime.info.maxTokensPerImage);
    });

    it('images of several sizes and aspect ratios: transformers\' grids and image features', async () => {
      for (const [k, image] of fixture.images.entries()) {
        const [grid] = await runtime.imageGrids([() => read(image.file)]);
        assert.deepEqual(grid.patches, image.image_grid_thw, image.file);
        assert.equal(grid.rows * grid.cols, image.tokens, image.file);
        const features = await runtime.encodeImages([read(image.file)]);
        assert.ok(maxAbsDiff(features, tensor(`images.${k}.features`)) < 1e-4, `${image.file}: features`);
      }
    });

    it('two images in one prompt: ids, M-RoPE positions, logits and 32 greedy tokens (prefill chunks of 16)', async () => {
      const c = fixture.cases.two_images;
      const { ids, rows, embeds, modality, positions, rope } = await embeddedCase(c);
      assert.ok(rope, 'M-RoPE positions');
      assert.deepEqual([...rope.positions], [...tensor('two_images.position_ids')]);
      assert.deepEqual([...positions], ids.map((_, i) => i), 'the KV engine keeps each token\'s index');
      assert.ok(maxAbsDiff(embeds, tensor('two_images.inputs_embeds')) < 1e-4, 'inputs_embeds');
      assert.deepEqual(
        ids.flatMap((id, i) => (id === runtime.processor.imageTokenId ? [modality[i]] : [])),
        [...new Array<number>(rows[0]).fill(0), ...new Array<number>(rows[1]).fill(1)],
      );
      assert.ok(ids.every((id, i) => (id === runtime.processor.imageTokenId) === (modality[i] !== TEXT)));
      const cache = runtime.createCache();
      const { logits } = await runtime.prefill(cache, embeds, positions, modality, { chunk: 16, rope });
      const V = runtime.info.vocabSize;
      const wantLast = tensor('two_images.logits').subarray((ids.length - 1) * V);
      assert.ok(maxRelDiff(logits, wantLast) < 1e-4, 'last logits');
      assert.equal(cache.tokensSeen, ids.length);
      assert.equal(cache.ropeDelta, rope.next - ids.length);
      assert.ok(cache.ropeDelta < 0, 'the images take fewer positions than tokens');
      assert.deepEqual(await greedyAnswer(cache, logits, c.greedy_tokens.length), c.greedy_tokens);
    });

    it('a prompt longer than one prefill chunk: the last logits and the greedy answer', async () => {
      const c = fixture.cases.long;
      const { embeds, modality, positions, rope } = await embeddedCase(c);
      const cache = runtime.createCache();
      const { logits } = await runtime.prefill(cache, embeds, positions, modality, { chunk: 256, rope });
      const V = runtime.info.vocabSize;
      const tail = tensor('long.logits_tail');
      assert.ok(maxRelDiff(logits, tail.subarray(tail.length - V)) < 1e-4, 'last logits');
      assert.deepEqual(await greedyAnswer(cache, logits, c.greedy_tokens.length), c.greedy_tokens);
    });

    it('two greedy turns of a Conversation: transformers\' ids and answers', async () => {
      const c = fixture.cases.chat;
      const turn1 = c.turn1!;
      const [first, second] = c.image_files.map(read);
      const settings = SessionSettings.parse({ policy: 'full', maxNewTokens: turn1.answer_ids.length });
      const images = new MemoryImageStore();
      const conversation = new Conversation('c', settings, images);
      const features = new FeatureCache();
      const ids: number[] = [];
      await conversation.turn(runtime, features, { text: userText(c.messages[0]), images: [first], files: [] }, (_, id) => ids.push(id), () => false);
      assert.deepEqual(conversation.toJSON().segments[0].ids, turn1.input_ids, 'turn 1 prompt ids');
      assert.deepEqual(ids, turn1.answer_ids, 'turn 1 answer');

      // The conversation feeds turn 2 on top of its own answer ids; transformers re-tokenizes the
      // decoded answer, which here does not give them back (`continues_ids: false`: the answer's
      // broken UTF-8 decodes to U+FFFD). So only the suffix after the answer is compared...
      assert.equal(turn1.continues_ids, false);
      await conversation.turn(runtime, features, { text: userText(c.messages[2]), images: [second], files: [] }, () => undefined, () => false);
      const suffix = conversation.toJSON().segments[2].ids;
      assert.deepEqual(suffix, c.input_ids.slice(-suffix.length), 'turn 2: the text and image after the answer');

      // ...and transformers' two-turn prompt is what a conversation rebuilt from the transcript
      // (saved under another model) feeds: its ids and greedy answer must be transformers'.
      const saved = conversation.toJSON();
      const rebuilt = Conversation.restore({ ...saved, messages: c.messages.slice(0, 2), segments: saved.segments.slice(0, 2), model: 'another model' }, images);
      rebuilt.settings.maxNewTokens = c.greedy_tokens.length;
      const answer: number[] = [];
      await rebuilt.turn(runtime, new FeatureCache(), { text: userText(c.messages[2]), images: [second], files: [] }, (_, id) => answer.push(id), () => false);
      assert.deepEqual(rebuilt.toJSON().segments[0].ids, c.input_ids, 'the whole two-turn prompt');
      assert.deepEqual(answer, c.greedy_tokens, 'turn 2 answer');
    });

    it('the cache view draws each image as its grid of merged patches', async () => {
      const conversation = new Conversation('c', SessionSettings.parse({ policy: 'text_prior_pivot_merge', maxNewTokens: 2, budget: { hhRatio: 0.3, recentRatio: 0.3 } }));
      const files = ['test/fixtures/images/qwen2vl/wide-editor.png', 'test/fixtures/images/qwen2vl/tall-list.png'];
      await conversation.turn(runtime, new FeatureCache(), { text: 'Compare them.', images: files.map(read), files: [] }, () => undefined, () => false);
      const grids = await runtime.imageGrids(files.map((f) => () => read(f)));
      const map = conversation.cacheMap();
      assert.deepEqual(
        map.images.map((image) => image.grid),
        grids.map((g) => [g.rows, g.cols]),
      );
      for (const image of map.images) assert.equal(image.kept.length, image.tokens);
    });

    it('a turn cancelled after its prefill leaves the next position as it was: the retried turn answers as an uninterrupted one', async () => {
      const settings = SessionSettings.parse({ policy: 'full', maxNewTokens: 8 });
      const features = new FeatureCache();
      const turn = (conversation: Conversation, text: string, images: Uint8Array[], isCancelled = () => false) => answerIds(conversation, runtime, features, text, images, isCancelled);
      const wide = read('test/fixtures/images/qwen2vl/wide-editor.png');
      const tall = read('test/fixtures/images/qwen2vl/tall-list.png');
      const straight = new Conversation('a', settings);
      await turn(straight, 'What is this?', [wide]);
      const want = await turn(straight, 'And this one?', [tall]);

      const interrupted = new Conversation('b', settings);
      await turn(interrupted, 'What is this?', [wide]);
      // Asked before the prefill, before its one chunk, then after it: cancelled there, once the image moved the next position.
      let asked = 0;
      await assert.rejects(turn(interrupted, 'And this one?', [tall], () => ++asked === 3), /cancelled after its prefill/);
      assert.deepEqual(await turn(interrupted, 'And this one?', [tall]), want);
    });

    for (const policy of POLICY_NAMES) {
      it(`${policy}: three turns, an image in turn 1 and two in turn 2, under a budget, deterministic`, async () => {
        const run = () =>
          budgetedConversation(runtime, policy, [
            ['What is in the image?', [read('test/fixtures/images/qwen2vl/wide-editor.png')]],
            ['And these two?', [read('test/fixtures/images/qwen2vl/tall-list.png'), read('test/fixtures/images/red-square.png')]],
            ['Which one is red?', []],
          ]);
        const { answers, conversation } = await run();
        assert.equal(answers.length, 3);
        for (const a of answers) assert.ok(a.length >= 1 && a.length <= 6);
        assert.deepEqual((await run()).answers, answers, 'the same answers again');
        // After an eviction the cache is rebuilt turn by turn (grids from the image store): the next turn is the same.
        const again = await run();
        again.conversation.evict();
        const next = (c: Conversation) => answerIds(c, runtime, new FeatureCache(), 'Thanks.', []);
        assert.deepEqual(await next(again.conversation), await next(conversation), 'rebuilt after an eviction');
      });
    }

    it('the cold tier: recall scores M-RoPE queries (three turns, text_prior_pivot_merge)', async () => {
      const conversation = new Conversation('c', SessionSettings.parse({ policy: 'text_prior_pivot_merge', maxNewTokens: 4, mode: 'improved', budget: { hhRatio: 0.1, recentRatio: 0.1 }, coldTier: 'int8' }));
      const features = new FeatureCache();
      for (const [text, images] of [['What is in the image?', [read('test/fixtures/images/qwen2vl/wide-editor.png')]], ['And this?', [read('test/fixtures/images/qwen2vl/tall-list.png')]], ['Which one was wider?', []]] as const) {
        const out = await conversation.turn(runtime, features, { text, images: [...images], files: [] }, () => undefined, () => false);
        assert.ok(out.stats.generatedTokens >= 1);
      }
      assert.ok(conversation.coldBytes > 0, 'evicted slots went to the cold tier');
      assert.ok(conversation.turns.slice(1).some((t) => (t.recalledSlots ?? 0) > 0), 'later turns recalled from it');
    });
  });
}

describe('Qwen2-VL min_pixels / max_pixels from preprocessor_config.json through the runtime', () => {
  it('a checkpoint with other bounds reads the same image at the size smart_resize gives for them', async () => {
    const source = join(root, 'test/fixtures/models/tiny-qwen2-vl');
    const dir = mkdtempSync(join(tmpdir(), 'qwen2vl-pixels-'));
    try {
      for (const file of readdirSync(source)) if (file !== 'preprocessor_config.json') symlinkSync(join(source, file), join(dir, file));
      const pre = JSON.parse(readFileSync(join(source, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
      const bounds = { min_pixels: 28 * 28 * 8, max_pixels: 28 * 28 * 40 };
      writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ ...pre, ...bounds, size: { shortest_edge: bounds.min_pixels, longest_edge: bounds.max_pixels } }));
      const runtime = await OnnxModelRuntime.load(dir, { threads: 1 });
      try {
        for (const file of ['test/fixtures/images/qwen2vl/wide-editor.png', 'test/fixtures/images/qwen2vl/tiny-icon.png', 'test/fixtures/images/qwen2vl/tall-list.png']) {
          const bytes = read(file);
          const meta = await sharp(bytes).metadata();
          const want = smartResize(meta.height, meta.width, 28, bounds.min_pixels, bounds.max_pixels);
          const [grid] = await runtime.imageGrids([() => bytes]);
          assert.deepEqual(grid.patches, [1, want.height / 14, want.width / 14], file);
          const tokens = grid.rows * grid.cols;
          assert.ok(tokens >= 8 && tokens <= 40, `${file}: ${tokens} tokens within the bounds`);
          assert.equal((await runtime.encodeImages([bytes])).length, tokens * runtime.info.hiddenSize);
        }
        assert.equal(runtime.info.maxTokensPerImage, 40);
      } finally {
        await runtime.release();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
