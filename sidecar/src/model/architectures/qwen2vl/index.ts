/**
 * `Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration` as an architecture
 * entry: config, weight names, the processor (dynamic resolution: each image becomes as many
 * tokens as its merged patches), the vision tower read at each image's own grid (`feeds`: rotary
 * cos/sin, image and window segments from `visionInputs.ts`, the merged rows put back in raster
 * order), and the M-RoPE decoder. The runtime feeds the `[3, tokens]` positions
 * (`ropePositions`) and the KV cache keeps the next position apart from the token count
 * (`KvCache.ropeDelta`); the KV engine's per-slot positions stay token indices, from which the
 * cache view draws each image's merged-patch grid.
 */
import { minimumTextParameters } from '../../text/textConfig.js';
import type { ModelConfig } from '../../config.js';
import { MAX_INPUT_PIXELS } from '../../processor.js';
import type { Architecture } from '../architecture.js';
import { parseQwen2VLConfig, type Qwen2VLConfig } from './config.js';
import { decoderTextConfig, qwen2VLDecoderSession } from './decoder.js';
import { Qwen2VLProcessor } from './processor.js';
import { Qwen2VLTurnProcessor } from './turnProcessor.js';
import { buildQwen2VLImageGraph } from './visionGraph.js';
import { imageEncoderFeeds } from './visionInputs.js';

export interface Qwen2VLModelConfig extends ModelConfig {
  qwen: Qwen2VLConfig;
  vision: Qwen2VLConfig['vision'];
}

/** The vision tower's `model_type` for the model info. */
const VISION_MODEL = { Qwen2VLForConditionalGeneration: 'qwen2_vl', Qwen2_5_VLForConditionalGeneration: 'qwen2_5_vl' } as const;

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
  /** The decoder's, the patch embedding, every vision block's attention and MLP, the merger. */
  minimumParameters(config) {
    const v = config.vision;
    const E = v.hiddenSize;
    const unit = v.spatialMergeSize ** 2;
    const mlp = (v.mlp === 'swiglu' ? 3 : 2) * E * v.intermediateSize;
    const vision = E * 3 * v.temporalPatchSize * v.patchSize ** 2 + v.depth * (4 * E * E + mlp) + (E * unit) ** 2 + E * unit * v.outHiddenSize;
    return minimumTextParameters(config.text) + vision;
  },
  /** The tower (patch embedding, blocks with norms and biases) and the merger: all read. */
  imageSideParameters(config) {
    const v = config.vision;
    const E = v.hiddenSize;
    const I = v.intermediateSize;
    const unit = v.spatialMergeSize ** 2;
    const norm = v.mlp === 'swiglu' ? E : 2 * E;
    const mlp = v.mlp === 'swiglu' ? 3 * E * I + 2 * I + E : 2 * E * I + I + E;
    const block = 2 * norm + 3 * E * E + 3 * E + E * E + E + mlp;
    const merger = norm + (E * unit) ** 2 + E * unit + E * unit * v.outHiddenSize + v.outHiddenSize;
    return { read: E * 3 * v.temporalPatchSize * v.patchSize ** 2 + v.depth * block + merger, unread: 0 };
  },
  // tokensPerImage 0: an image's tokens are its merged patches, which its size decides (`Qwen2VLTurnProcessor.imageGrid`).
  imageInput: (config) => ({
    imageTokenIndex: config.qwen.imageTokenId,
    tokensPerImage: 0,
    imageSize: config.vision.patchSize * config.vision.spatialMergeSize,
    visionModel: VISION_MODEL[config.qwen.architecture],
  }),
  openProcessor: (dir, config, maxInputPixels = MAX_INPUT_PIXELS) => new Qwen2VLTurnProcessor(Qwen2VLProcessor.open(dir, config.qwen, maxInputPixels), maxInputPixels),
  sessions: (config, options) => [
    { role: 'imageEncoder', build: (weights) => buildQwen2VLImageGraph(config.vision, weights), feeds: (images) => imageEncoderFeeds(config.vision, images) },
    qwen2VLDecoderSession(config.qwen.text, options),
  ],
};
