/**
 * One answer: template the conversation, encode the images, prefill in chunks, optionally
 * compress the KV cache with a policy, then decode token by token, streaming text, until an EOS
 * id, `maxNewTokens`, or the abort signal.
 */
import { compressLayer, DEFAULT_POLICY, type Budget, type KvLayer, type Mode, type PolicyName } from '../kv/index.js';
import type { ChatMessage } from '../model/processor.js';
import { DEFAULT_PREFILL_CHUNK, type LlavaRuntime } from './llava.js';
import { createSampler, type SamplingOptions } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  signal?: AbortSignal;
  /** KV policy applied after the prefill; `null` keeps the full cache. Default LOOK-M. */
  policy?: PolicyName | null;
  budget?: Budget;
  mode?: Mode;
  prefillChunk?: number;
}

export interface GeneratedToken {
  id: number;
  /** The text this token adds to the answer (may be empty while a multi-byte character is incomplete). */
  text: string;
}

export interface GenerationStats {
  promptTokens: number;
  imageTokens: number;
  keptSlots: number;
  prefillMs: number;
  compressMs: number;
}

export async function* generate(
  runtime: LlavaRuntime,
  messages: ChatMessage[],
  images: Uint8Array[],
  options: GenerateOptions = {},
  stats?: (s: GenerationStats) => void,
): AsyncGenerator<GeneratedToken> {
  const { maxNewTokens = 128, signal, policy = DEFAULT_POLICY, budget = { hhRatio: 0.1, recentRatio: 0.1 }, mode = 'improved' } = options;
  const { processor } = runtime;
  const ids = processor.encode(processor.applyChatTemplate(messages));
  const imageTokens = ids.filter((id) => id === processor.imageTokenId).length;
  if (imageTokens !== images.length * processor.tokensPerImage) {
    throw new RangeError(`the conversation has ${imageTokens / processor.tokensPerImage} image placeholders but ${images.length} images were given`);
  }
  const started = performance.now();
  const features = images.length ? await runtime.vision.encode(await runtime.pixelValues(images), images.length) : new Float32Array(0);
  const { embeds, modality } = runtime.embedPrompt(ids, features);
  const cache: KvLayer[] = runtime.createCache();
  const prefilled = await runtime.prefill(cache, embeds, Int32Array.from(ids, (_, i) => i), modality, options.prefillChunk ?? DEFAULT_PREFILL_CHUNK);
  let logits = prefilled.logits;
  const prefillMs = performance.now() - started;
  const compressStart = performance.now();
  const numQueryHeads = runtime.config.text.numHeads;
  if (policy) {
    for (const [i, layer] of cache.entries()) {
      await compressLayer(layer, { policy, budget, mode, numQueryHeads, windowScores: prefilled.windowScores?.[i], matcher: runtime.matcher });
    }
  }
  stats?.({ promptTokens: ids.length, imageTokens, keptSlots: cache[0].length, prefillMs, compressMs: performance.now() - compressStart });

  const sample = createSampler(options);
  const generated: number[] = [];
  let text = '';
  for (let step = 0; step < maxNewTokens; step++) {
    if (signal?.aborted) return;
    const next = sample(logits);
    if (processor.eosTokenIds.includes(next)) return;
    generated.push(next);
    const full = processor.decode(generated);
    const piece = full.startsWith(text) ? full.slice(text.length) : full;
    text = full;
    yield { id: next, text: piece };
    if (step === maxNewTokens - 1) return;
    logits = await runtime.decodeStep(cache, next, ids.length + step);
  }
}
