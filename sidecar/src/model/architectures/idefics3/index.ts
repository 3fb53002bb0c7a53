/**
 * `Idefics3ForConditionalGeneration` (SmolVLM): an Idefics3 (SigLIP-shaped) vision tower read per
 * frame (each tile of an image and its global image, see `processor.ts`), the connector's pixel
 * shuffle and projection, and a Llama decoder whose image tokens the features replace.
 */
import type { Architecture } from '../architecture.js';
import { decoderSession } from '../decoderSession.js';
import { minimumTextParameters } from '../../text/textConfig.js';
import { patchGrid } from '../../vision/patches.js';
import { parseIdefics3Config, tokensPerFrame, type Idefics3Config } from './config.js';
import { buildIdefics3ImageGraph } from './graph.js';
import { Idefics3Processor } from './processor.js';

export const idefics3: Architecture<Idefics3Config> = {
  parseConfig: parseIdefics3Config,
  weightPrefixes: [
    ['model.text_model.', 'text.'],
    ['lm_head.', 'text.lm_head.'],
    ['model.vision_model.', 'vision.'],
    ['model.connector.modality_projection.', 'projector.'],
  ],
  /** The decoder's, the patch embedding, every vision layer, the projection (no norms, biases, position tables). */
  minimumParameters(config) {
    const v = config.vision;
    const vision = v.hiddenSize * v.numChannels * v.patchSize ** 2 + v.numLayers * (4 * v.hiddenSize ** 2 + 2 * v.hiddenSize * v.intermediateSize);
    return minimumTextParameters(config.text) + vision + v.hiddenSize * config.scaleFactor ** 2 * config.text.hiddenSize;
  },
  /** The tower (patch convolution with bias, position table, layers, post-layernorm) and the projection: all read. */
  imageSideParameters(config) {
    const v = config.vision;
    const h = v.hiddenSize;
    const embeddings = v.numChannels * v.patchSize ** 2 * h + h + patchGrid(v) ** 2 * h;
    const layer = 4 * (h * h + h) + 2 * h * v.intermediateSize + v.intermediateSize + h + 4 * h;
    const read = embeddings + v.numLayers * layer + 2 * h + h * config.scaleFactor ** 2 * config.text.hiddenSize;
    return { read, unread: 0 };
  },
  // tokensPerImage: per frame; an image is as many frames as its tiles and its global image (the processor's layout).
  imageInput: (config) => ({ imageTokenIndex: config.imageTokenIndex, tokensPerImage: tokensPerFrame(config), imageSize: config.vision.imageSize, visionModel: config.vision.modelType }),
  openProcessor: (dir, config, maxInputPixels) =>
    Idefics3Processor.open(dir, { imageSize: config.vision.imageSize, patchSize: config.vision.patchSize, scaleFactor: config.scaleFactor, imageTokenId: config.imageTokenIndex }, maxInputPixels),
  sessions: (config, options) => [{ role: 'imageEncoder', build: (weights) => buildIdefics3ImageGraph(config, weights) }, decoderSession(config.text, options)],
};
