/**
 * `Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration` as an architecture
 * entry: config, weight names and the decoder (M-RoPE). Not yet in `registry.ts`: the runtime
 * still takes a fixed number of features per image and one position per token, so the vision
 * tower (`visionGraph.ts`, tested on its own) is not listed as a session and images would be
 * refused. What registering needs is in the module note of `processor.ts` of this folder.
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
