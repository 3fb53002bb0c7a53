/**
 * A vision tower's fields of config.json (`vision_config`), validated and normalised into
 * `VisionConfig` with transformers' defaults for its tower type (`towers/registry.ts`).
 */
import { z } from 'zod';
import { CheckpointError } from '../checkpointError.js';
import { CONFIG_LIMITS, shown, size, type VisionConfig } from '../config.js';
import { ACTIVATIONS } from '../graph/layers/activations.js';
import { VISION_MODEL_TYPES, VISION_TOWERS } from './towers/registry.js';

/** An activation the graph builds, or an error naming the field (`what`) and the ones supported. */
export const activationSchema = (what: string) => z.enum(ACTIVATIONS, { error: (i) => `${what} ${shown(i.input)} is not supported (supported: ${ACTIVATIONS.join(', ')})` });

/** A vision tower `model_type` of the registry, or an error listing them. */
export const visionModelTypeSchema = z.enum(VISION_MODEL_TYPES, { error: (i) => `vision model_type ${shown(i.input)} is not supported (supported: ${VISION_MODEL_TYPES.join(', ')})` });

/** A tower's fields (the architecture decides what a missing model_type means). */
export const visionSchema = z
  .object({
    model_type: visionModelTypeSchema,
    hidden_size: size(CONFIG_LIMITS.hiddenSize).optional(),
    num_hidden_layers: size(CONFIG_LIMITS.layers).optional(),
    num_attention_heads: size(CONFIG_LIMITS.heads).optional(),
    intermediate_size: size(CONFIG_LIMITS.intermediateSize).optional(),
    image_size: size(CONFIG_LIMITS.imageSize).optional(),
    patch_size: size(CONFIG_LIMITS.patchSize).optional(),
    // Images are always decoded to RGB.
    num_channels: z.literal(3, { error: (i) => `vision num_channels ${shown(i.input)} is not supported (3 only: images are decoded to RGB)` }).default(3),
    layer_norm_eps: z.number().positive().optional(),
    hidden_act: activationSchema('vision hidden_act').optional(),
  })
  .loose();

export type RawVision = z.infer<typeof visionSchema>;

/** The vision sizes config.json gives, the others at transformers' defaults for its tower type. */
function visionSizes(v: RawVision) {
  const d = VISION_TOWERS[v.model_type].defaults;
  return {
    hiddenSize: v.hidden_size ?? d.hiddenSize,
    numLayers: v.num_hidden_layers ?? d.numLayers,
    numHeads: v.num_attention_heads ?? d.numHeads,
    intermediateSize: v.intermediate_size ?? d.intermediateSize,
    imageSize: v.image_size ?? d.imageSize,
    patchSize: v.patch_size ?? d.patchSize,
    layerNormEps: v.layer_norm_eps ?? d.layerNormEps,
    hiddenAct: v.hidden_act ?? d.hiddenAct,
  };
}

/** The vision tower's sizes must fit together as CLIPAttention and the patch convolution require. */
function checkVisionSizes(v: ReturnType<typeof visionSizes>): void {
  if (v.hiddenSize % v.numHeads !== 0) {
    throw new CheckpointError(`config.json: vision_config.hidden_size ${v.hiddenSize} is not divisible by num_attention_heads ${v.numHeads}`);
  }
  if (v.patchSize > v.imageSize) throw new CheckpointError(`config.json: vision_config.patch_size ${v.patchSize} is larger than image_size ${v.imageSize}`);
  const patches = Math.floor(v.imageSize / v.patchSize) ** 2;
  if (patches > CONFIG_LIMITS.patches) {
    throw new CheckpointError(`config.json: vision_config image_size ${v.imageSize} / patch_size ${v.patchSize} makes ${patches} patches per image, over the ${CONFIG_LIMITS.patches} accepted`);
  }
}

/** The tower's config from its raw fields. */
export function parseVision(v: RawVision): VisionConfig {
  const sizes = visionSizes(v);
  checkVisionSizes(sizes);
  return { modelType: v.model_type, ...sizes, numChannels: v.num_channels };
}
