/**
 * LLaVA checkpoints shaped like the Hub's (issue 14, section 0): their config.json files, their
 * chat templates (verbatim, see hubTemplates.ts) over multi-turn conversations, and transformers'
 * own greedy two-turn conversations on tiny checkpoints with a sliding window, an image size the
 * patch size does not divide, `vision_feature_layer` lists and SigLIP under the `default` strategy
 * (tools/model/make_hub_shapes.py).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseLlavaConfig } from '../../sidecar/src/model/architectures/llava/config.js';
import { readSafetensorsHeader, readTensorBytes, toFloat32 } from '../../sidecar/src/model/safetensors.js';
import { checkpointErrorOf } from './checkpointError.js';
import { LlavaProcessor, type ChatMessage } from '../../sidecar/src/model/processor.js';
import { tokensPerImage } from '../../sidecar/src/model/architectures/llava/graph.js';
import { SessionSettings } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { chunkMask } from '../../sidecar/src/runtime/textDecoder.js';
import { contentHash, Conversation, FeatureCache, type PersistedConversation } from '../../sidecar/src/session/conversation.js';
import { HUB_TEMPLATES, LLAVA_15 } from './hubTemplates.js';

const root = join(__dirname, '../..');
const fixtures = join(root, 'test/fixtures');
const llamaDir = join(fixtures, 'models/tiny-llava-llama');
const red = readFileSync(join(fixtures, 'images/red-square.png'));
const blue = readFileSync(join(fixtures, 'images/blue-circle.png'));
const json = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;

const tmp = mkdtempSync(join(tmpdir(), 'hub-checkpoints-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** The tiny Llama checkpoint with another chat template. */
function withTemplate(name: string, template: string): string {
  const dir = join(tmp, name.replace(/[^\w.-]/g, '_'));
  cpSync(llamaDir, dir, { recursive: true });
  writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ chat_template: template }));
  return dir;
}

const configError = (raw: unknown): string => checkpointErrorOf(() => parseLlavaConfig(raw));

describe('config.json of Hub checkpoints', () => {
  const tiny = () => json(join(llamaDir, 'config.json'));

  it("llava-1.5-7b-hf's own config.json (text sizes left to LlamaConfig's defaults) parses as transformers reads it", () => {
    const config = parseLlavaConfig(json(join(fixtures, 'configs/llava-1.5-7b-hf.config.json')));
    // LlavaConfig.from_dict in transformers 4.57.6 gives exactly these.
    assert.deepEqual(
      { ...config.text, ropeScaling: null },
      {
        modelType: 'llama', hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128, intermediateSize: 11008, rmsNormEps: 1e-5, ropeTheta: 10000,
        ropeScaling: null, vocabSize: 32064, maxPositionEmbeddings: 4096, tieWordEmbeddings: false, qkvBias: false, outputBias: false, mlpBias: false, layerWindows: new Array(32).fill(null),
      },
    );
    assert.deepEqual(config.vision, { modelType: 'clip_vision_model', hiddenSize: 1024, numLayers: 24, numHeads: 16, intermediateSize: 4096, imageSize: 336, patchSize: 14, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu' });
    assert.equal(config.imageTokenIndex, 32000);
    assert.deepEqual(config.visionFeatureLayers, [-2]);
    assert.equal(tokensPerImage(config), 576, "the processor's image_seq_length");
  });

  it("takes each text model type's defaults (MistralConfig: 8 KV heads, 14336, window 4096; Qwen2Config: 151936 tokens)", () => {
    const base = { architectures: ['LlavaForConditionalGeneration'], vision_config: { model_type: 'siglip_vision_model' } };
    const mistral = parseLlavaConfig({ ...base, text_config: { model_type: 'mistral' } });
    assert.deepEqual([mistral.text.numKvHeads, mistral.text.intermediateSize, mistral.text.vocabSize, mistral.text.maxPositionEmbeddings], [8, 14336, 32000, 131072]);
    assert.deepEqual(mistral.text.layerWindows, new Array(32).fill(4096), "Mistral's default window, every layer");
    assert.deepEqual(parseLlavaConfig({ ...base, text_config: { model_type: 'mistral', sliding_window: null } }).text.layerWindows, new Array(32).fill(null));
    const qwen = parseLlavaConfig({ ...base, text_config: { model_type: 'qwen2' } });
    assert.deepEqual([qwen.text.numKvHeads, qwen.text.intermediateSize, qwen.text.vocabSize], [32, 22016, 151936]);
    assert.deepEqual(qwen.text.layerWindows, new Array(32).fill(null), 'no window without use_sliding_window');
    assert.deepEqual(qwen.vision, { modelType: 'siglip_vision_model', hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072, imageSize: 224, patchSize: 16, numChannels: 3, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' });
    // Qwen2Config(num_hidden_layers=4, use_sliding_window=True, max_window_layers=2).layer_types
    const windowed = parseLlavaConfig({ ...base, text_config: { model_type: 'qwen2', num_hidden_layers: 4, use_sliding_window: true, max_window_layers: 2 } });
    assert.deepEqual(windowed.text.layerWindows, [null, null, 4096, 4096]);
    const typed = parseLlavaConfig({ ...base, text_config: { model_type: 'qwen2', num_hidden_layers: 2, use_sliding_window: true, sliding_window: 64, layer_types: ['sliding_attention', 'full_attention'] } });
    assert.deepEqual(typed.text.layerWindows, [64, null]);
    assert.deepEqual(parseLlavaConfig({ ...base, text_config: { model_type: 'llama', sliding_window: 16, num_hidden_layers: 1 } }).text.layerWindows, [null], 'Llama has no window');
    const missing = parseLlavaConfig({ architectures: ['LlavaForConditionalGeneration'] });
    assert.deepEqual([missing.text.modelType, missing.vision.imageSize, missing.vision.patchSize, missing.vision.numLayers], ['llama', 336, 14, 24], "LlavaConfig()'s towers");
  });

  it('refuses by name what it cannot run', () => {
    const c = tiny();
    assert.match(configError({ ...c, text_config: { ...c.text_config, model_type: 'qwen2', use_sliding_window: false, layer_types: ['sliding_attention', 'full_attention'] } }), /layer_types makes layer 0 sliding_attention, but no sliding_window applies/);
    assert.match(configError({ ...c, text_config: { ...c.text_config, model_type: 'qwen2', layer_types: ['full_attention'] } }), /layer_types has 1 entries for 2 layers/);
    assert.match(configError({ ...c, text_config: { ...c.text_config, model_type: 'qwen2', layer_types: ['chunked_attention', 'full_attention'] } }), /layer_types entry "chunked_attention" is not supported/);
    assert.match(configError({ ...c, vision_feature_layer: [-2, 3] }), /vision_feature_layer 3 is outside the vision tower's 3 hidden states/);
    assert.match(configError({ ...c, vision_feature_layer: [] }), /Too small: expected array to have >=1 items\n {2}→ at vision_feature_layer/);
    assert.match(configError({ ...c, vision_feature_select_strategy: 'cls' }), /vision_feature_select_strategy "cls" is not supported \(default, full\)/);
    assert.match(configError({ ...c, projector_hidden_act: 'relu' }), /projector_hidden_act "relu" is not supported/);
    assert.match(configError({ ...c, vision_config: { ...c.vision_config, hidden_act: 'swish' } }), /vision hidden_act "swish" is not supported/);
  });

  it("'default' drops the first position of every tower (SigLIP too), 'full' keeps them all", () => {
    const c = json(join(fixtures, 'models/tiny-llava-qwen2/config.json'));
    const siglip = (strategy: string) => tokensPerImage(parseLlavaConfig({ ...c, vision_feature_select_strategy: strategy }));
    assert.deepEqual([siglip('default'), siglip('full')], [15, 16]);
    const clip = (strategy: string) => tokensPerImage(parseLlavaConfig({ ...tiny(), vision_feature_select_strategy: strategy }));
    assert.deepEqual([clip('default'), clip('full')], [16, 17]);
    const interleave = parseLlavaConfig({ ...c, vision_feature_select_strategy: 'default', vision_config: { ...c.vision_config, image_size: 384, patch_size: 14 } });
    assert.equal(tokensPerImage(interleave), 27 * 27 - 1, 'so400m-patch14-384 under default');
  });
});

describe('chat templates of llava-hf checkpoints, verbatim', () => {
  for (const [name, template] of Object.entries(HUB_TEMPLATES)) {
    it(`${name}: a multi-turn conversation renders with every message located, typed parts or strings`, () => {
      const p = LlavaProcessor.open(withTemplate(`p-${name}`, template), 399, 4);
      const text = (t: string) => [{ type: 'text' as const, text: t }];
      const messages: ChatMessage[] = [
        { role: 'user', content: [{ type: 'image' }, ...text('What is it?')] },
        { role: 'assistant', content: text('A red square.') },
        { role: 'user', content: text('And now?') },
        { role: 'assistant', content: 'Still red.' }, // a transcript saved before answers were parts
        { role: 'user', content: text('Thanks') },
      ];
      const prompt = p.renderChatTemplate(messages);
      assert.deepEqual(prompt.content.map(([s, e]) => prompt.text.slice(s, e).trim()), ['What is it?', 'A red square.', 'And now?', 'Still red.', 'Thanks']);
      assert.deepEqual(p.encode(prompt), p.encode(prompt.text));
    });

    it(`${name}: a greedy conversation continues turn after turn, each on top of the cache`, async () => {
      const runtime = await OnnxModelRuntime.load(withTemplate(`c-${name}`, template), { threads: 1 });
      try {
        const conversation = new Conversation('c', SessionSettings.parse({ policy: 'full', maxNewTokens: 5 }));
        const turn = (text: string, images: Uint8Array[]) => conversation.turn(runtime, new FeatureCache(), { text, images, files: [] }, () => undefined, () => false);
        const first = await turn('What is in the image?', [red]);
        for (const [text, images] of [['And this one?', [blue]], ['Which is larger?', []]] as const) {
          const before = structuredClone(conversation.toJSON());
          const next = await turn(text, [...images]);
          const after = conversation.toJSON();
          assert.equal(after.segments.length, before.segments.length + 2, 'fed on top of the cache, not started over');
          assert.ok(after.fedText.startsWith(before.fedText));
          assert.equal(next.stats.newTokens, after.segments.at(-2)!.ids.length);
          assert.equal(next.stats.tokensSeen, first.stats.tokensSeen + after.segments.slice(2).reduce((n, seg) => n + seg.ids.length, 0), 'the cache grew by what was fed');
          assert.ok(!next.stats.rebuilt);
        }
        const answer = conversation.messages[1].content;
        assert.ok(Array.isArray(answer) && answer.length === 1 && answer[0].type === 'text', 'answers are kept as typed parts');
        // The prompt the cache holds is what the template renders: the rendering of the whole
        // conversation starts with it.
        const whole = runtime.processor.applyChatTemplate([...conversation.messages, { role: 'user', content: [{ type: 'text', text: 'x' }] }]);
        assert.ok(whole.startsWith(conversation.toJSON().fedText));
      } finally {
        await runtime.release();
      }
    });
  }

  it('llava-1.5: a conversation saved with a plain-string answer continues', async () => {
    const runtime = await OnnxModelRuntime.load(withTemplate('restore', LLAVA_15), { threads: 1 });
    try {
      const settings = SessionSettings.parse({ policy: 'full', maxNewTokens: 3 });
      const live = new Conversation('c', settings);
      await live.turn(runtime, new FeatureCache(), { text: 'Hi', images: [], files: [] }, () => undefined, () => false);
      const saved = live.toJSON();
      const old: PersistedConversation = { ...saved, messages: saved.messages.map((m) => (m.role === 'assistant' && typeof m.content !== 'string' ? { ...m, content: m.content.map((p) => (p.type === 'text' ? p.text : '')).join('') } : m)) };
      assert.equal(typeof old.messages[1].content, 'string');
      const restored = Conversation.restore(old, live['images']);
      const out = await restored.turn(runtime, new FeatureCache(), { text: 'More', images: [], files: [] }, () => undefined, () => false);
      assert.ok(out.stats.rebuilt);
      assert.equal(restored.toJSON().segments.length, 4, 'replayed, then fed on top');
    } finally {
      await runtime.release();
    }
  });
});

interface RecordedConversation {
  turns: string[];
  window: number;
  ids1: number[];
  generated1: number[];
  answer1: string;
  ids2: number[];
  generated2: number[];
}

for (const name of ['tiny-llava-mistral-hub', 'tiny-llava-qwen2-hub']) {
  describe(`${name}: transformers' greedy conversation`, () => {
    const recorded = json(join(fixtures, 'parity', name, 'conversation.json')) as unknown as RecordedConversation;
    const entries = readSafetensorsHeader(join(fixtures, 'parity', name, 'conversation.safetensors'));
    const tensors = new Map([...entries].map(([key, entry]) => [key, toFloat32(entry, readTensorBytes(entry))]));
    let runtime: OnnxModelRuntime;
    before(async () => {
      runtime = await OnnxModelRuntime.load(join(fixtures, 'models', name), { threads: 1 });
    });
    after(async () => runtime?.release());

    const close = (actual: Float32Array, expected: Float32Array, tolerance: number, what: string) => {
      assert.equal(actual.length, expected.length, `${what}: size`);
      let worst = 0;
      for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
      assert.ok(worst <= tolerance, `${what}: max |difference| ${worst} > ${tolerance}`);
    };

    it('the image features: a patch grid that floors, the first position dropped, feature layers concatenated', async () => {
      // transformers' pixel values (PIL's bicubic resize is not sharp's, to ~1e-2 in the features).
      const features = await runtime.vision!.encode(tensors.get('pixel_values')!, 1);
      close(features, tensors.get('image_features')!, 1e-4, 'image_features');
    });

    it('the prompt logits, whole and prefilled in chunks over the window', async () => {
      const { decoder } = runtime;
      const { embeds, modality } = runtime.embedPrompt(recorded.ids1, tensors.get('image_features')!);
      const L = recorded.ids1.length;
      assert.ok(L > 3 * recorded.window, 'the prompt is longer than the window');
      const whole = await decoder.forward(embeds, Int32Array.from({ length: L }, (_, i) => i), decoder.emptyPast(), { allLogits: true });
      close(whole.logits, tensors.get('prompt_logits')!, 1e-4, 'logits');
      const cache = runtime.createCache();
      const chunked = await runtime.prefill(cache, embeds, Int32Array.from({ length: L }, (_, i) => i), modality, { chunk: 5 });
      const V = runtime.config.text.vocabSize;
      close(chunked.logits, tensors.get('prompt_logits')!.subarray((L - 1) * V), 1e-4, 'last logits, chunks of 5');
    });

    it('two greedy turns of a Conversation: the same prompt ids and the same answers', async () => {
      const conversation = new Conversation('c', SessionSettings.parse({ policy: 'full', maxNewTokens: recorded.generated1.length }));
      const ids: number[][] = [[], []];
      // The image's features from transformers' pixel values (see above).
      const features = new FeatureCache();
      features.set(contentHash(red), await runtime.vision!.encode(tensors.get('pixel_values')!, 1));
      const turn = (i: number, images: Uint8Array[]) => conversation.turn(runtime, features, { text: recorded.turns[i], images, files: [] }, (_, id) => ids[i].push(id), () => false);
      const first = await turn(0, [red]);
      assert.deepEqual(conversation.toJSON().segments[0].ids, recorded.ids1, 'turn 1 prompt ids');
      assert.deepEqual(ids[0], recorded.generated1, 'turn 1 answer');
      assert.equal(first.text, recorded.answer1);
      await turn(1, []);
      assert.deepEqual(conversation.toJSON().segments[2].ids, recorded.ids2, 'turn 2: the text after the answer');
      assert.deepEqual(ids[1], recorded.generated2, 'turn 2 answer');
    });

    if (name === 'tiny-llava-mistral-hub') {
      it('a compressed cache: the window is applied on the kept slots\' true positions, not their indices', async () => {
        const { decoder } = runtime;
        const L = 30;
        const ids = Array.from({ length: L }, (_, i) => 5 + ((i * 37) % 380));
        const embeds = decoder.embed(ids);
        const positions = Int32Array.from({ length: L }, (_, i) => i);
        // Kept: an old stretch (outside the window of the last token) and a recent one.
        const kept = [0, 1, 2, 3, 4, 5, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28];
        const head = await decoder.forward(embeds.subarray(0, (L - 1) * 64), positions.subarray(0, L - 1), decoder.emptyPast());
        const { numKvHeads: H, headDim: D } = runtime.config.text;
        const gather = (rows: Float32Array) => {
          const out = new Float32Array(H * kept.length * D);
          for (let h = 0; h < H; h++) kept.forEach((slot, j) => out.set(rows.subarray((h * (L - 1) + slot) * D, (h * (L - 1) + slot + 1) * D), (h * kept.length + j) * D));
          return out;
        };
        const past = head.keys.map((keys, i) => ({ keys: gather(keys), values: gather(head.values[i]), length: kept.length }));
        const pastPositions = past.map(() => Int32Array.from({ length: H * kept.length }, (_, k) => kept[k % kept.length]));
        const step = await decoder.forward(embeds.subarray((L - 1) * 64), positions.subarray(L - 1), past, { pastPositions });
        // Reference: the whole sequence at once, the dropped slots masked out.
        const mask = chunkMask(L, 0);
        for (let slot = 0; slot < L - 1; slot++) if (!kept.includes(slot)) mask[(L - 1) * L + slot] = -Infinity;
        const reference = await decoder.forward(embeds, positions, decoder.emptyPast(), { mask });
        close(step.logits, reference.logits, 1e-4, 'last token on the compressed cache');
        // Slot indices taken for positions (0..16) would put the old stretch inside the window.
        const asIndices = await decoder.forward(embeds.subarray((L - 1) * 64), positions.subarray(L - 1), past, { pastPositions: past.map(() => Int32Array.from({ length: H * kept.length }, (_, k) => k % kept.length)) });
        assert.ok(asIndices.logits.some((x, i) => Math.abs(x - reference.logits[i]) > 1e-3), 'positions matter');
        await assert.rejects(decoder.forward(embeds.subarray((L - 1) * 64), positions.subarray(L - 1), past), /has a sliding window: pastPositions must give/);
      });
    }
  });
}
