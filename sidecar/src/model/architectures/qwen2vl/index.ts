/**
 * `Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration` as an architecture
 * entry: config, weight names and the decoder (M-RoPE). Not yet in `registry.ts`, because the
 * runtime around it still assumes what LLaVA does; registering it needs, in this order:
 *
 * 1. Images of any size: `ImageInput` with a per-image token count (`Qwen2VLProcessor.tokensFor`
 *    of the image's grid) instead of `tokensPerImage`; an `imageEncoder` session whose manifest
 *    has the extra inputs of `visionGraph.ts` (rotary cos/sin, image and window segments) fed from
 *    `visionInputs()`, its output un-permuted with `unpermuteMerged`; the feature cache keeping
 *    each image's grid with its rows.
 * 2. The processor: `OnnxModelRuntime` opening `Qwen2VLProcessor` (per-image expansion of
 *    `<|image_pad|>`) where it opens `LlavaProcessor`, behind `TurnProcessor`.
 * 3. Positions: `embedPrompt` returning the `[3, tokens]` M-RoPE positions (`positions.ts`), and
 *    `prefill` feeding them (the decoder already takes `[3, chunk]`; one position per token is
 *    taken as a text token's). The session decodes at `cache.tokensSeen`, which M-RoPE breaks
 *    after an image (the next text position is one past the largest component, not the token
 *    count): the cache must keep the next position (advanced by each prefill's `next`), and keep
 *    each slot's three components with the slot (the `KvLayer` positions as `[3, heads, slots]`)
 *    so compaction, persistence and the cache view (the merged-patch grid: components 2 and 3)
 *    carry them. Keys are cached after rotation, so attention itself needs no past position.
 * 4. One line in `registry.ts`, the README's model table, a sidecar multi-turn test with LOOK-M.
 */
import { minimumTextParameters } from '../../text/textConfig.js';
import type { ModelConfig } from '../../config.js';
import type { Architecture } from '../architecture.js';
import { parseQwen2VLConfig, type Qwen2VLConfig } from './config.js';
import { decoderTextConfig, qwen2VLDecoderSession } from './decoder.js';

export interface Qwen2VLModelConfig extends ModelConfig {
  qwen: Qwen2VLConfig;
  vision: Qwen2VLConfig['vision'];
}

export const qwen2vl: Architecture<Qwen2VLModelConfig> = {
  parseConfig(raw) {
    const qwen = parseQwen2VLConfig(raw);
    return { architecture: qwen.architecture, text: decoderTextConfig(qwen.text), vision: qwen.vision, qwen };
  },
  // The published checkpoints' names (`model.*`, `visual.*`) and transformers >= 4.52's (`model.language_model.*`, `model.visual.*`).
  weightPrefixes: [
    ['lm_head.', 'text.lm_head.'],
    ['visual.', 'vision.'],
    ['model.language_model.', 'text.'],
    ['model.visual.', 'vision.'],
    ['model.', 'text.'],
  ],
  minimumParameters: (config) => minimumTextParameters(config.text),
  imageInput: () => null,
  sessions: (config, options) => [qwen2VLDecoderSession(config.qwen.text, options)],
};
