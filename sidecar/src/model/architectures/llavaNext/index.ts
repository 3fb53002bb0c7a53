/**
 * `LlavaNextForConditionalGeneration` (LLaVA-NeXT, llava-v1.6) and
 * `LlavaOnevisionForConditionalGeneration` (LLaVA-OneVision): LLaVA's tower and projector read
 * per tile of an any-resolution layout plus a base image (`anyres.ts`, `processor.ts`), the tiles'
 * features unpadded with image_newline after every row (`pack.ts`; OneVision downscales a large
 * grid), replacing the image tokens of a decoder (any of `text/models/`).
 */
import type { Architecture } from '../architecture.js';
import { decoderSession } from '../decoderSession.js';
import { minimumTextParameters } from '../../text/textConfig.js';
import { patchGrid } from '../../vision/patches.js';
import { selectedLayerCount } from '../llava/config.js';
import { llavaImageSideParameters } from '../llava/parameters.js';
import { parseLlavaNextConfig, type LlavaNextConfig } from './config.js';
import { buildLlavaNextImageGraph, NEWLINE_WEIGHT } from './graph.js';
import { LlavaNextProcessor } from './processor.js';

export const llavaNext: Architecture<LlavaNextConfig> = {
  parseConfig: parseLlavaNextConfig,
  // The Hub's legacy layout (`language_model.model.*`, `vision_tower.vision_model.*`, `image_newline`) and the current one (`model.*`).
  weightPrefixes: [
    ['image_newline', NEWLINE_WEIGHT],
    ['model.image_newline', NEWLINE_WEIGHT],
    ['language_model.model.', 'text.'],
    ['language_model.lm_head.', 'text.lm_head.'],
    ['model.language_model.', 'text.'],
    ['lm_head.', 'text.lm_head.'],
    ['vision_tower.vision_model.', 'vision.'],
    ['model.vision_tower.vision_model.', 'vision.'],
    ['multi_modal_projector.', 'projector.'],
    ['model.multi_modal_projector.', 'projector.'],
  ],
  /** The decoder's, the patch embedding, the vision layers up to the selected one, the projector, image_newline. */
  minimumParameters(config) {
    const t = config.text;
    const v = config.vision;
    const visionLayers = selectedLayerCount(v.numLayers, config.visionFeatureLayers);
    const vision = v.hiddenSize * v.numChannels * v.patchSize ** 2 + visionLayers * (4 * v.hiddenSize ** 2 + 2 * v.hiddenSize * v.intermediateSize);
    const projector = v.hiddenSize * config.visionFeatureLayers.length * t.hiddenSize + t.hiddenSize ** 2;
    return minimumTextParameters(t) + vision + projector + t.hiddenSize;
  },
  /** LLaVA's image side and image_newline (read). */
  imageSideParameters(config) {
    const { read, unread } = llavaImageSideParameters(config);
    return { read: read + config.text.hiddenSize, unread };
  },
  // tokensPerImage: per tile; an image is its layout's feature rows (the processor's).
  imageInput: (config) => ({ imageTokenIndex: config.imageTokenIndex, tokensPerImage: patchGrid(config.vision) ** 2, imageSize: config.vision.imageSize, visionModel: config.vision.modelType }),
  openProcessor: (dir, config, maxInputPixels) => LlavaNextProcessor.open(dir, config, maxInputPixels),
  sessions: (config, options) => [{ role: 'imageEncoder', build: (weights) => buildLlavaNextImageGraph(config, weights) }, decoderSession(config.text, options)],
};
