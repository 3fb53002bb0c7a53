/**
 * `LlavaNextForConditionalGeneration`'s and `LlavaOnevisionForConditionalGeneration`'s
 * config.json: LLaVA's fields (`llava/config.ts`: tower, projector, feature layers, strategy) with
 * each class's own defaults, plus the any-resolution layout: `image_grid_pinpoints` (the
 * resolutions an image may be tiled at) and OneVision's `vision_aspect_ratio` (`anyres_max_N`:
 * the unpadded features are downscaled when they would exceed about N tiles).
 */
import { z } from 'zod';
import { CheckpointError } from '../../checkpointError.js';
import { CONFIG_LIMITS, shown, type ModelConfig } from '../../config.js';
import { parseText, textModelTypeSchema, textSchema } from '../../text/textConfig.js';
import { patchGrid } from '../../vision/patches.js';
import { parseVision, visionModelTypeSchema, visionSchema } from '../../vision/visionConfig.js';
import { featureLayers, llavaSchema, type LlavaConfig } from '../llava/config.js';
import { tokensPerImage } from '../llava/graph.js';

export const LLAVA_NEXT = 'LlavaNextForConditionalGeneration';
export const LLAVA_ONEVISION = 'LlavaOnevisionForConditionalGeneration';

/** LLaVA's fields (tower, projector, feature layers, strategy) and the any-resolution layout. */
export interface LlavaNextConfig extends Omit<LlavaConfig, 'architecture'> {
  architecture: typeof LLAVA_NEXT | typeof LLAVA_ONEVISION;
  /** The resolutions an image may be tiled at, `[height, width]` each, in config order (the first best one wins). */
  pinpoints: [height: number, width: number][];
  /** OneVision's `anyres_max_N`: N, the tiles' worth of unpadded features kept before a downscale; null for LLaVA-NeXT (never downscaled). */
  maxTiles: number | null;
}

export function isLlavaNextConfig(config: ModelConfig): config is LlavaNextConfig {
  return config.architecture === LLAVA_NEXT || config.architecture === LLAVA_ONEVISION;
}

const pinpoint = z.tuple([z.number().int().positive().max(CONFIG_LIMITS.imageSize * 64), z.number().int().positive().max(CONFIG_LIMITS.imageSize * 64)]);
const pinpointsSchema = z.array(pinpoint, { error: (i) => `image_grid_pinpoints ${shown(i.input)} is not supported (a non-empty list of [height, width] pairs of positive integers)` }).min(1).max(1024);

/** LlavaNextConfig's: llava-v1.6's five resolutions for a 336-pixel tile. */
const NEXT_PINPOINTS: [number, number][] = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];
/** LlavaOnevisionConfig's: every 1..6 x 1..6 multiple of a 384-pixel tile. */
const ONEVISION_PINPOINTS: [number, number][] = Array.from({ length: 36 }, (_, k) => [384 * (Math.floor(k / 6) + 1), 384 * ((k % 6) + 1)]);
/** LlavaOnevisionConfig's tower when vision_config is absent (SigLIP so400m-patch14-384 without its head). */
const ONEVISION_DEFAULT_VISION = { model_type: 'siglip_vision_model' as const, hidden_size: 1152, intermediate_size: 4304, patch_size: 14, image_size: 384, num_hidden_layers: 26, num_attention_heads: 16 };

const nextSchema = llavaSchema.extend({
  image_grid_pinpoints: pinpointsSchema.default(NEXT_PINPOINTS),
});

const onevisionSchema = llavaSchema.extend({
  // LlavaOnevisionConfig reads a text_config without model_type as Qwen2's, a vision_config without one as SigLIP's.
  text_config: textSchema.extend({ model_type: textModelTypeSchema.default('qwen2') }).prefault({ model_type: 'qwen2' }),
  vision_config: visionSchema.extend({ model_type: visionModelTypeSchema.default('siglip_vision_model') }).prefault(ONEVISION_DEFAULT_VISION),
  vision_feature_layer: z.union([z.number().int(), z.array(z.number().int()).min(1).max(CONFIG_LIMITS.layers)], { error: (i) => `vision_feature_layer ${shown(i.input)} is not supported (an integer, or a non-empty list of integers)` }).default(-1),
  vision_feature_select_strategy: z.enum(['default', 'full'], { error: (i) => `vision_feature_select_strategy ${shown(i.input)} is not supported (default, full)` }).default('full'),
  image_grid_pinpoints: pinpointsSchema.default(ONEVISION_PINPOINTS),
  vision_aspect_ratio: z
    .string()
    .regex(/^anyres_max_[1-9][0-9]{0,3}$/, { error: (i) => `vision_aspect_ratio ${shown(i.input)} is not supported (anyres_max_N, N a positive integer)` })
    .default('anyres_max_9'),
});

/** Validates and normalises a LLaVA-NeXT or LLaVA-OneVision `config.json` object. */
export function parseLlavaNextConfig(raw: unknown): LlavaNextConfig {
  const architecture = (raw as { architectures?: unknown[] })?.architectures?.[0];
  if (architecture !== LLAVA_NEXT && architecture !== LLAVA_ONEVISION) throw new CheckpointError(`config.json: architecture ${shown(architecture)} is neither ${LLAVA_NEXT} nor ${LLAVA_ONEVISION}`);
  const onevision = architecture === LLAVA_ONEVISION;
  const parsed = (onevision ? onevisionSchema : nextSchema).safeParse(raw);
  if (!parsed.success) throw new CheckpointError(`config.json: ${z.prettifyError(parsed.error)}`);
  const c = parsed.data;
  const text = parseText(c.text_config, c.tie_word_embeddings ?? false, 'text_config.');
  const vision = parseVision(c.vision_config);
  const config: LlavaNextConfig = {
    architecture,
    // Each class's default image token: llava-hf's <image> (32000), Qwen2's added <image> (151646).
    imageTokenIndex: c.image_token_index ?? c.image_token_id ?? (onevision ? 151646 : 32000),
    visionFeatureLayers: featureLayers(c.vision_feature_layer, vision.numLayers),
    selectStrategy: c.vision_feature_select_strategy,
    projectorAct: c.projector_hidden_act,
    projectorBias: c.multimodal_projector_bias,
    pinpoints: c.image_grid_pinpoints,
    maxTiles: onevision ? Number((c as z.infer<typeof onevisionSchema>).vision_aspect_ratio.slice('anyres_max_'.length)) : null,
    text,
    vision,
  };
  refuseMisfits(config);
  return config;
}

/**
 * The layout views each tile's features as the tower's patch grid, so a tile must give exactly
 * grid x grid of them (transformers fails there too); and the tiles cut a pinpoint into whole tiles.
 */
function refuseMisfits(config: LlavaNextConfig): void {
  const grid = patchGrid(config.vision);
  const rows = tokensPerImage(config);
  if (rows !== grid * grid) {
    throw new CheckpointError(
      `config.json: vision_feature_select_strategy "${config.selectStrategy}" with a ${config.vision.modelType} tower gives ${rows} features per tile, not the ${grid} x ${grid} patch grid the any-resolution layout needs (use "default" for a CLIP tower, "full" for SigLIP)`,
    );
  }
  const side = config.vision.imageSize;
  const odd = config.pinpoints.find(([h, w]) => h % side !== 0 || w % side !== 0);
  if (odd) throw new CheckpointError(`config.json: image_grid_pinpoints [${odd.join(', ')}] is not a multiple of the tile side ${side} (vision_config image_size): only whole tiles are supported`);
}
