/**
 * The parameters of LLaVA's image side (the vision tower and the projector), counted from the
 * config the way transformers' model holds them; `model/footprint.ts` adds the decoder's.
 */
import type { VisionConfig } from '../../config.js';
import { minimumTextParameters } from '../../text/textConfig.js';
import { selectedLayerCount, type LlavaImageSide } from './config.js';

/**
 * The Hub's legacy tensor names (`language_model.model.*`, `vision_tower.vision_model.*`) and the
 * current ones (`model.language_model.*`, `model.vision_tower.*`), with the canonical prefixes they become.
 */
export const LLAVA_WEIGHT_PREFIXES = [
  ['language_model.model.', 'text.'],
  ['language_model.lm_head.', 'text.lm_head.'],
  ['model.language_model.', 'text.'],
  ['lm_head.', 'text.lm_head.'],
  ['vision_tower.vision_model.', 'vision.'],
  ['model.vision_tower.vision_model.', 'vision.'],
  ['multi_modal_projector.', 'projector.'],
  ['model.multi_modal_projector.', 'projector.'],
] as const;

/** A lower bound: the decoder's, the patch embedding, the vision layers up to the selected one, the projector (no norms, biases, position tables). */
export function llavaMinimumParameters(config: LlavaImageSide): number {
  const t = config.text;
  const v = config.vision;
  const visionLayers = selectedLayerCount(v.numLayers, config.visionFeatureLayers);
  const vision = v.hiddenSize * v.numChannels * v.patchSize ** 2 + visionLayers * (4 * v.hiddenSize ** 2 + 2 * v.hiddenSize * v.intermediateSize);
  const projector = v.hiddenSize * config.visionFeatureLayers.length * t.hiddenSize + t.hiddenSize ** 2;
  return minimumTextParameters(t) + vision + projector;
}

/** What the runtime reads of the image side, and what the checkpoint holds that it never reads. */
export function llavaImageSideParameters(config: LlavaImageSide): { read: number; unread: number } {
  const v = config.vision;
  const t = config.text;
  const layer = visionLayer(v);
  const postLayerNorm = 2 * v.hiddenSize;
  const unread = (v.numLayers - selectedLayerCount(v.numLayers, config.visionFeatureLayers)) * layer + postLayerNorm;
  const features = v.hiddenSize * config.visionFeatureLayers.length;
  const bias = config.projectorBias ? 1 : 0;
  const projector = (features + bias) * t.hiddenSize + (t.hiddenSize + bias) * t.hiddenSize;
  const total = visionEmbeddings(v) + v.numLayers * layer + postLayerNorm + projector;
  return { read: total - unread, unread };
}

/** One encoder layer of a CLIP or SigLIP tower: attention and MLP with biases, two layer norms. */
function visionLayer(v: VisionConfig): number {
  const h = v.hiddenSize;
  return 4 * (h * h + h) + 2 * h * v.intermediateSize + v.intermediateSize + h + 4 * h;
}

/**
 * The patch embedding and position table (CLIP: no conv bias, a class embedding and a
 * pre-layernorm). SigLIP's pooling head is not counted: the LLaVA checkpoints set vision_use_head false.
 */
function visionEmbeddings(v: VisionConfig): number {
  const h = v.hiddenSize;
  const grid = Math.floor(v.imageSize / v.patchSize) ** 2;
  const conv = v.numChannels * v.patchSize ** 2 * h;
  if (v.modelType === 'clip_vision_model') return conv + h + (grid + 1) * h + 2 * h;
  return conv + h + grid * h;
}

