/**
 * `LlavaNextForConditionalGeneration` (LLaVA-NeXT, llava-v1.6) and
 * `LlavaOnevisionForConditionalGeneration` (LLaVA-OneVision): LLaVA's tower and projector read
 * per tile of an any-resolution layout plus a base image (`anyres.ts`, `processor.ts`), the tiles'
 * features unpadded with image_newline after every row (`pack.ts`; OneVision downscales a large
 * grid), replacing the image tokens of a decoder (any of `text/models/`).
 */
import type { Architecture } from '../architecture.js';
import { decoderSession } from '../decoderSession.js';
import { patchGrid } from '../../vision/patches.js';
import { LLAVA_WEIGHT_PREFIXES, llavaImageSideParameters, llavaMinimumParameters } from '../llava/parameters.js';
import { parseLlavaNextConfig, type LlavaNextConfig } from './config.js';
import { buildLlavaNextImageGraph, NEWLINE_WEIGHT } from './graph.js';
import { LlavaNextProcessor } from './processor.js';

export const llavaNext: Architecture<LlavaNextConfig> = {
  parseConfig: parseLlavaNextConfig,
  // image_newline (legacy and current names), then LLaVA's layouts.
  weightPrefixes: [['image_newline', NEWLINE_WEIGHT], ['model.image_newline', NEWLINE_WEIGHT], ...LLAVA_WEIGHT_PREFIXES],
  /** LLaVA's lower bound and image_newline. */
  minimumParameters: (config) => llavaMinimumParameters(config) + config.text.hiddenSize,
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
