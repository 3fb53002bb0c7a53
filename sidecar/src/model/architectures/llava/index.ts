/**
 * `LlavaForConditionalGeneration`: a vision tower (any of `vision/towers/`) and a projector whose
 * features replace the image tokens of a decoder (any of `text/models/`).
 */
import type { Architecture } from '../architecture.js';
import { decoderSession } from '../decoderSession.js';
import { parseLlavaConfig, type LlavaConfig } from './config.js';
import { buildLlavaImageGraph, tokensPerImage } from './graph.js';
import { LLAVA_WEIGHT_PREFIXES, llavaImageSideParameters, llavaMinimumParameters } from './parameters.js';

export const llava: Architecture<LlavaConfig> = {
  parseConfig: parseLlavaConfig,
  weightPrefixes: LLAVA_WEIGHT_PREFIXES,
  minimumParameters: llavaMinimumParameters,
  imageSideParameters: llavaImageSideParameters,
  imageInput: (config) => ({ imageTokenIndex: config.imageTokenIndex, tokensPerImage: tokensPerImage(config), imageSize: config.vision.imageSize, visionModel: config.vision.modelType }),
  sessions: (config, options) => [{ role: 'imageEncoder', build: (weights) => buildLlavaImageGraph(config, weights) }, decoderSession(config.text, options)],
};
