/**
 * `LlavaForConditionalGeneration`: a vision tower (any of `vision/towers/`) and a projector whose
 * features replace the image tokens of a decoder (any of `text/models/`).
 */
import type { Architecture } from '../architecture.js';
import { decoderSession } from '../decoderSession.js';
import { minimumTextParameters } from '../../text/textConfig.js';
import { parseLlavaConfig, selectedLayerCount, type LlavaConfig } from './config.js';
import { buildLlavaImageGraph, tokensPerImage } from './graph.js';
import { llavaImageSideParameters } from './parameters.js';

export const llava: Architecture<LlavaConfig> = {
  parseConfig: parseLlavaConfig,
  // The Hub's legacy layout (`language_model.model.*`, `vision_tower.vision_model.*`) and the current one (`model.language_model.*`, `model.vision_tower.*`).
  weightPrefixes: [
    ['language_model.model.', 'text.'],
    ['language_model.lm_head.', 'text.lm_head.'],
    ['model.language_model.', 'text.'],
    ['lm_head.', 'text.lm_head.'],
    ['vision_tower.vision_model.', 'vision.'],
    ['model.vision_tower.vision_model.', 'vision.'],
    ['multi_modal_projector.', 'projector.'],
    ['model.multi_modal_projector.', 'projector.'],
  ],
  /** The decoder's, the patch embedding, the vision layers up to the selected one, the projector (no norms, biases, position tables). */
  minimumParameters(config) {
    const t = config.text;
    const v = config.vision;
    const visionLayers = selectedLayerCount(v.numLayers, config.visionFeatureLayers);
    const vision = v.hiddenSize * v.numChannels * v.patchSize ** 2 + visionLayers * (4 * v.hiddenSize ** 2 + 2 * v.hiddenSize * v.intermediateSize);
    const projector = v.hiddenSize * config.visionFeatureLayers.length * t.hiddenSize + t.hiddenSize ** 2;
    return minimumTextParameters(t) + vision + projector;
  },
  imageSideParameters: llavaImageSideParameters,
  imageInput: (config) => ({ imageTokenIndex: config.imageTokenIndex, tokensPerImage: tokensPerImage(config), imageSize: config.vision.imageSize, visionModel: config.vision.modelType }),
  sessions: (config, options) => [{ role: 'imageEncoder', build: (weights) => buildLlavaImageGraph(config, weights) }, decoderSession(config.text, options)],
};
