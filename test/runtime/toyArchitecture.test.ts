/**
 * Adding an architecture (issue 14, acceptance 2): `toyArchitecture/` holds a whole one,
 * `ToyGeluForCausalLM` (LayerNorm and a GELU MLP in place of Llama's RMSNorm and SwiGLU, composed
 * from the runtime's graph pieces, weights named `transformer.*`), and this test adds it with one
 * registry line. It loads a checkpoint the test writes through the same loader as every other
 * model, matches a plain TypeScript forward of the same weights, and holds multi-turn
 * conversations through `Conversation` and the KV engine, compressed and rebuilt.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TEXT } from '../../sidecar/src/kv/index.js';
import { registerArchitecture, supportedArchitectures } from '../../sidecar/src/model/architectures/registry.js';
import { Checkpoint } from '../../sidecar/src/model/checkpoint.js';
import { SessionSettings } from '../../sidecar/src/protocol/index.js';
import { OnnxModelRuntime } from '../../sidecar/src/runtime/onnxModelRuntime.js';
import { Conversation, FeatureCache, MemoryImageStore } from '../../sidecar/src/session/conversation.js';
import { toyWeights, writeToyCheckpoint } from './toyArchitecture/checkpoint.js';
import { TOY_NAME, toyGelu } from './toyArchitecture/index.js';
import { referenceGreedy, referenceLogits } from './toyArchitecture/reference.js';

const TOLERANCE = 1e-4;
const QUESTIONS = ['Hello there.', 'What is a cat?', 'And a dog?'];
const noop = () => undefined;
const never = () => false;

function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, 'sizes');
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  return worst;
}

describe('an architecture added from one folder and one registry line (ToyGeluForCausalLM)', () => {
  const weights = toyWeights();
  let dir: string;
  let unregister: () => void;
  let runtime: OnnxModelRuntime;
  before(async () => {
    unregister = registerArchitecture(TOY_NAME, toyGelu);
    dir = mkdtempSync(join(tmpdir(), 'toy-architecture-'));
    writeToyCheckpoint(dir, join(__dirname, '../fixtures/models/tiny-llama-text'), weights);
    runtime = await OnnxModelRuntime.load(dir, { threads: 1 });
  });
  after(async () => {
    await runtime?.release();
    unregister?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('loads through the common loader as its own architecture, reading text only', () => {
    assert.ok(supportedArchitectures().includes(TOY_NAME));
    assert.deepEqual(runtime.info, {
      architecture: TOY_NAME,
      textModel: 'toy_gelu',
      imageInput: false,
      visionModel: null,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      headDim: 8,
      hiddenSize: 32,
      vocabSize: 416,
      imageSize: null,
      tokensPerImage: 0,
      device: { provider: 'cpu', adapter: 'CPU', reason: 'default', kvOnDevice: false },
    });
    assert.equal(runtime.contextLength, 512);
    assert.ok(Checkpoint.open(dir).has('text.layers.1.mlp.fc1.bias'), 'transformer.* renamed by the toy\'s own prefixes');
  });

  it('computes what a plain TypeScript forward of the same weights computes, whole and in chunks', async () => {
    const prompt = runtime.processor.renderChatTemplate([{ role: 'user', content: [{ type: 'text', text: QUESTIONS[1] }] }]);
    const ids = runtime.processor.encode(prompt);
    assert.ok(ids.length > 8, `${ids.length} tokens`);
    const { embeds, modality, positions } = runtime.embedPrompt(ids, new Float32Array(0));
    assert.ok(modality.every((m) => m === TEXT));
    assert.deepEqual([...positions], ids.map((_, i) => i));
    const expected = referenceLogits(weights, ids);
    for (const chunk of [ids.length, 5]) {
      const { logits } = await runtime.prefill(runtime.createCache(), embeds, positions, modality, { chunk });
      const diff = maxAbsDiff(logits, expected);
      assert.ok(diff <= TOLERANCE, `chunks of ${chunk}: last logits max |diff| ${diff}`);
    }
    const spread = Math.max(...expected) - Math.min(...expected);
    assert.ok(spread > 1, `the logits are not flat (spread ${spread}): greedy choices below mean something`);
  });

  it('holds a three-turn conversation whose answers are the reference\'s greedy tokens (full cache)', async () => {
    const conversation = new Conversation('toy-full', SessionSettings.parse({ policy: 'full', maxNewTokens: 6 }));
    const eos = runtime.processor.eosTokenIds;
    for (const text of QUESTIONS) {
      await conversation.turn(runtime, new FeatureCache(), { text, images: [], files: [] }, noop, never);
      const segments = conversation.toJSON().segments.map((s) => s.ids);
      const generated = segments[segments.length - 1];
      assert.ok(generated.length > 0, 'an answer');
      assert.deepEqual(generated, referenceGreedy(weights, segments.slice(0, -1).flat(), 6, eos), `turn "${text}"`);
    }
  });

  it('compresses under LOOK-M, and a conversation restored without its cache rebuilds it and answers the same', async () => {
    const settings = SessionSettings.parse({ policy: 'text_prior_pivot_merge', budget: { hhRatio: 0.2, recentRatio: 0.2 }, maxNewTokens: 6 });
    const live = new Conversation('toy-lookm', settings);
    for (const text of QUESTIONS.slice(0, 2)) {
      const { stats } = await live.turn(runtime, new FeatureCache(), { text, images: [], files: [] }, noop, never);
      assert.ok(stats.keptSlots.every((kept) => kept < stats.tokensSeen), `compressed: kept ${stats.keptSlots.join(', ')} of ${stats.tokensSeen}`);
    }
    const restored = Conversation.restore(JSON.parse(JSON.stringify(live.toJSON())) as ReturnType<Conversation['toJSON']>, new MemoryImageStore());
    const next = { text: QUESTIONS[2], images: [], files: [] };
    const a = await live.turn(runtime, new FeatureCache(), next, noop, never);
    const b = await restored.turn(runtime, new FeatureCache(), next, noop, never);
    assert.equal(b.stats.rebuilt, true);
    assert.equal(b.text, a.text);
    assert.deepEqual(restored.toJSON().segments, live.toJSON().segments);
  });

  it('is refused by name once unregistered, like any architecture not in the registry', () => {
    const first = unregister;
    first();
    try {
      assert.throws(() => Checkpoint.open(dir), /architecture "ToyGeluForCausalLM" is not supported \(supported: LlavaForConditionalGeneration, Idefics3ForConditionalGeneration, Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration, LlavaNextForConditionalGeneration, LlavaOnevisionForConditionalGeneration, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM\)/);
      assert.throws(() => registerArchitecture('LlamaForCausalLM', toyGelu), /already registered/);
    } finally {
      unregister = registerArchitecture(TOY_NAME, toyGelu);
    }
    first();
    assert.ok(supportedArchitectures().includes(TOY_NAME), 'a spent undo removes no later registration');
  });
});
