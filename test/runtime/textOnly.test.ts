/**
 * Text-only causal LMs (issue 14, section 2): `LlamaForCausalLM`, `MistralForCausalLM` and
 * `Qwen2ForCausalLM` checkpoints load through `OnnxModelRuntime` with no vision encoder and match
 * transformers on tiny seeded checkpoints (tools/model/make_text_only.py): the ids of a rendered
 * multi-turn prompt, its logits within 1e-4 whole and prefilled in chunks, and 32 greedy tokens;
 * a prompt with a file longer than one 512-token prefill chunk and than the sliding window.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { parseModelConfig } from '../../sidecar/src/model/architectures/registry.js';
import type { ChatMessage } from '../../sidecar/src/model/processor.js';
import { readSafetensorsHeader, readTensorBytes, toFloat32 } from '../../sidecar/src/model/safetensors.js';
import { checkpointErrorOf } from './checkpointError.js';
import { SidecarError } from '../../sidecar/src/protocol/errors.js';
import { ErrorCode, SessionSettings } from '../../sidecar/src/protocol/index.js';
import { DEFAULT_PREFILL_CHUNK, OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { Conversation, FeatureCache, MemoryImageStore } from '../../sidecar/src/session/conversation.js';
import { TEXT } from '../../sidecar/src/kv/index.js';

const fixtures = join(__dirname, '../fixtures');
const TOLERANCE = 1e-4;

interface RecordedCase {
  messages: ChatMessage[];
  prompt: string;
  ids: number[];
  generated: number[];
}
interface Recorded {
  window: number;
  chat: RecordedCase;
  long: RecordedCase;
}

const MODELS = [
  { name: 'tiny-llama-text', architecture: 'LlamaForCausalLM', windows: [null, null] },
  { name: 'tiny-mistral-text', architecture: 'MistralForCausalLM', windows: [48, 48] },
  { name: 'tiny-qwen2-text', architecture: 'Qwen2ForCausalLM', windows: [null, 48] },
] as const;

function maxAbsDiff(actual: Float32Array, expected: Float32Array): number {
  assert.equal(actual.length, expected.length, 'sizes');
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  return worst;
}

const argmax = (logits: Float32Array) => logits.reduce((best, x, i) => (x > logits[best] ? i : best), 0);
const range = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

for (const model of MODELS) {
  describe(`${model.name} (${model.architecture}): parity with transformers`, () => {
    const dir = join(fixtures, 'models', model.name);
    const recorded = JSON.parse(readFileSync(join(fixtures, 'parity', model.name, 'text.json'), 'utf8')) as Recorded;
    const entries = readSafetensorsHeader(join(fixtures, 'parity', model.name, 'text.safetensors'));
    const tensor = (name: string) => {
      const entry = entries.get(name);
      assert.ok(entry, `fixture tensor ${name}`);
      return toFloat32(entry, readTensorBytes(entry));
    };
    let runtime: OnnxModelRuntime;
    before(async () => {
      runtime = await OnnxModelRuntime.load(dir, { threads: 1 });
    });
    after(async () => runtime?.release());

    /** The prompt prefilled on a fresh cache in chunks of `chunk`, then 32 greedy steps at their true positions. */
    async function greedy(ids: number[], chunk: number): Promise<{ last: Float32Array; generated: number[] }> {
      const cache = runtime.createCache();
      const { embeds, modality } = runtime.embedPrompt(ids, new Float32Array(0));
      const { logits: last } = await runtime.prefill(cache, embeds, range(ids.length), modality, { chunk });
      const generated: number[] = [];
      let logits = last;
      for (let k = 0; k < 32; k++) {
        generated.push(argmax(logits));
        logits = await runtime.decodeStep(cache, generated[k], ids.length + k);
      }
      return { last, generated };
    }

    it('loads with no vision encoder and no image token; config at the top level, as transformers reads it', () => {
      assert.equal(runtime.vision, null);
      assert.equal(runtime.imageInput, false);
      assert.equal(runtime.processor.imageTokenId, null);
      assert.equal(runtime.processor.tokensPerImage, 0);
      assert.equal(runtime.config.architecture, model.architecture);
      assert.deepEqual(runtime.config.text.layerWindows, model.windows);
      assert.equal(runtime.config.text.maxPositionEmbeddings, 2048);
    });

    it('renders the multi-turn conversation and tokenizes it as transformers does', () => {
      for (const c of [recorded.chat, recorded.long]) {
        const prompt = runtime.processor.renderChatTemplate(c.messages);
        assert.equal(prompt.text, c.prompt);
        assert.deepEqual(runtime.processor.encode(prompt), c.ids);
      }
      assert.equal(recorded.chat.messages.length, 3, 'user, assistant, user');
    });

    it('the prompt logits of every position, and the last when prefilled in chunks (every token is TEXT)', async () => {
      const { ids } = recorded.chat;
      const L = ids.length;
      assert.ok(L > recorded.window, 'the prompt is longer than the sliding window');
      const { embeds, modality } = runtime.embedPrompt(ids, new Float32Array(0));
      assert.ok(modality.every((m) => m === TEXT));
      const whole = await runtime.decoder.forward(embeds, range(L), runtime.decoder.emptyPast(), { allLogits: true });
      const diff = maxAbsDiff(whole.logits, tensor('chat_logits'));
      assert.ok(diff <= TOLERANCE, `logits max |diff| ${diff}`);
      const V = runtime.config.text.vocabSize;
      for (const chunk of [7, 32, DEFAULT_PREFILL_CHUNK]) {
        const cache = runtime.createCache();
        const { logits } = await runtime.prefill(cache, embeds, range(L), modality, { chunk });
        assert.ok(maxAbsDiff(logits, tensor('chat_logits').subarray((L - 1) * V)) <= TOLERANCE, `last logits, chunks of ${chunk}`);
        assert.equal(cache.length, L);
      }
    });

    it('32 greedy tokens after the multi-turn prompt, prefilled whole or in chunks', async () => {
      for (const chunk of [DEFAULT_PREFILL_CHUNK, 16]) {
        assert.deepEqual((await greedy(recorded.chat.ids, chunk)).generated, recorded.chat.generated, `chunks of ${chunk}`);
      }
    });

    it('a file longer than one prefill chunk (and the window): the last logits and 32 greedy tokens', async () => {
      const { ids } = recorded.long;
      assert.ok(ids.length > DEFAULT_PREFILL_CHUNK, `${ids.length} tokens`);
      const { last, generated } = await greedy(ids, DEFAULT_PREFILL_CHUNK);
      assert.ok(maxAbsDiff(last, tensor('long_logits')) <= TOLERANCE, 'last logits');
      assert.deepEqual(generated, recorded.long.generated);
    });

    it('refuses images before any work, saying the model reads text only', () => {
      assert.throws(
        () => runtime.refuseImages(1),
        (error: unknown) => error instanceof SidecarError && error.code === ErrorCode.InvalidParams && /^this model reads text only; the message has 1 image/.test(error.message),
      );
      assert.doesNotThrow(() => runtime.refuseImages(0));
    });

    if (model.name === 'tiny-qwen2-text') {
      it('a Conversation refuses a turn with images, and a saved conversation that shows images, leaving both as they were', async () => {
        const isCode = (pattern: RegExp) => (error: unknown) => error instanceof SidecarError && error.code === ErrorCode.InvalidParams && pattern.test(error.message);
        const settings = SessionSettings.parse({ policy: 'text_prior_pivot_merge', maxNewTokens: 2 });
        const fresh = new Conversation('fresh', settings);
        const red = readFileSync(join(fixtures, 'images/red-square.png'));
        await assert.rejects(fresh.turn(runtime, new FeatureCache(), { text: 'What is this?', images: [red], files: [] }, () => undefined, () => false), isCode(/^this model reads text only/));
        assert.equal(fresh.tokensSeen, 0);
        const saved = fresh.toJSON();
        const withImage = Conversation.restore({ ...saved, id: 'saved', segments: [{ ids: [5, 6], imageHashes: ['0'.repeat(64)] }, { ids: [7], imageHashes: [] }], fedText: 'x' }, new MemoryImageStore());
        await assert.rejects(withImage.turn(runtime, new FeatureCache(), { text: 'Go on.', images: [], files: [] }, () => undefined, () => false), isCode(/conversation saved holds 1 image\(s\) from a model that reads images: start a new conversation/));
        assert.equal((await fresh.turn(runtime, new FeatureCache(), { text: 'Hello.', images: [], files: [] }, () => undefined, () => false)).stats.generatedTokens, 2);
      });
    }
  });
}

describe('text-only config.json and weights', () => {
  const llama = () => JSON.parse(readFileSync(join(fixtures, 'models/tiny-llama-text/config.json'), 'utf8')) as Record<string, unknown>;
  const error = (raw: unknown) => checkpointErrorOf(() => parseModelConfig(raw));

  it("transformers' per-type defaults apply to top-level fields (MistralConfig(): a 4096 window; Qwen2Config(): none)", () => {
    const mistral = parseModelConfig({ architectures: ['MistralForCausalLM'], model_type: 'mistral', num_hidden_layers: 2 });
    assert.equal(mistral.vision, null);
    assert.deepEqual(mistral.text.layerWindows, [4096, 4096]);
    assert.equal(mistral.text.numKvHeads, 8);
    const qwen = parseModelConfig({ architectures: ['Qwen2ForCausalLM'], num_hidden_layers: 2 });
    assert.equal(qwen.text.modelType, 'qwen2', 'model_type left out: the architecture says');
    assert.deepEqual(qwen.text.layerWindows, [null, null]);
    assert.equal(qwen.text.qkvBias, true);
  });

  it('refuses a model_type that is not the architecture\'s, and bad top-level fields, naming them', () => {
    assert.match(error({ ...llama(), model_type: 'qwen2' }), /architecture LlamaForCausalLM has model_type "qwen2"; it must be "llama"/);
    assert.match(error({ ...llama(), hidden_act: 'gelu' }), /text hidden_act "gelu" is not supported/);
    assert.match(error({ ...llama(), hidden_size: 30, num_attention_heads: 4, head_dim: null }), /hidden_size 30 is not divisible by num_attention_heads 4/);
    assert.match(error({ ...llama(), architectures: ['GPT2LMHeadModel'] }), /architecture "GPT2LMHeadModel" is not supported \(supported: LlavaForConditionalGeneration, Idefics3ForConditionalGeneration, Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration, LlavaNextForConditionalGeneration, LlavaOnevisionForConditionalGeneration, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM\)/);
  });

  it('a text-only checkpoint needs no preprocessor_config.json; config sizes larger than the weights are refused', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'text-only-'));
    try {
      cpSync(join(fixtures, 'models/tiny-llama-text'), tmp, { recursive: true });
      assert.ok(Checkpoint.open(tmp).has('text.layers.1.self_attn.q_proj.bias'), 'model.layers.* is the text model');
      writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...llama(), num_hidden_layers: 64 }));
      assert.throws(() => Checkpoint.open(tmp), /config.json does not describe these weights/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
