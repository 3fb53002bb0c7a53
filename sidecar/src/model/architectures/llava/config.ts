/**
 * `LlavaForConditionalGeneration`'s config.json: a text model (`text_config`, see
 * `text/textConfig.ts`), a vision tower (`vision_config`, see `vision/visionConfig.ts`) and the
 * projector between them, with transformers' `LlavaConfig` defaults.
 */
import { z } from 'zod';
import { CheckpointError } from '../../checkpointError.js';
import { CONFIG_LIMITS, shown, type ModelConfig, type TextConfig, type VisionConfig } from '../../config.js';
import { parseText, textModelTypeSchema, textSchema } from '../../text/textConfig.js';
import { activationSchema, parseVision, visionModelTypeSchema, visionSchema } from '../../vision/visionConfig.js';

export interface LlavaConfig extends ModelConfig {
  architecture: 'LlavaForConditionalGeneration';
  text: TextConfig;
  vision: VisionConfig;
  imageTokenIndex: number;
  /**
   * The hidden states of the vision tower that feed the projector (negative counts from the end;
   * hidden state 0 is the embeddings), concatenated along the features when there are several
   * (`vision_feature_layer` given as a list).
   */
  visionFeatureLayers: number[];
  /** `default` drops each selected hidden state's first position (whatever the tower), `full` keeps every position. */
  selectStrategy: 'default' | 'full';
  projectorAct: string;
  projectorBias: boolean;
}

/** What the image encoder graph reads of a LLaVA-shaped config (LLaVA-NeXT and OneVision share it). */
export type LlavaImageSide = Pick<LlavaConfig, 'text' | 'vision' | 'visionFeatureLayers' | 'selectStrategy' | 'projectorAct' | 'projectorBias'>;

/** A config parsed by this architecture (the others have other vision sides, or none). */
export function isLlavaConfig(config: ModelConfig): config is LlavaConfig {
  return config.architecture === 'LlavaForConditionalGeneration';
}

/** `LlavaConfig`'s vision tower when config.json has no vision_config at all (CLIP ViT-L/14-336). */
const LLAVA_DEFAULT_VISION = { model_type: 'clip_vision_model' as const, hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16, image_size: 336, patch_size: 14 };

/** LlavaConfig's fields (LLaVA-NeXT and OneVision extend it with their own defaults). */
export const llavaSchema = z
  .object({
    architectures: z.array(z.string()).min(1),
    // A missing text_config is LlamaConfig(); a missing vision_config is LlavaConfig's CLIP ViT-L/14-336.
    // LlavaConfig reads a text_config without model_type as Llama's, a vision_config without one as CLIP's.
    text_config: textSchema.extend({ model_type: textModelTypeSchema.default('llama') }).prefault({}),
    vision_config: visionSchema.extend({ model_type: visionModelTypeSchema.default('clip_vision_model') }).prefault(LLAVA_DEFAULT_VISION),
    image_token_index: z.number().int().nonnegative().optional(),
    image_token_id: z.number().int().nonnegative().optional(),
    vision_feature_layer: z.union([z.number().int(), z.array(z.number().int()).min(1).max(CONFIG_LIMITS.layers)], { error: (i) => `vision_feature_layer ${shown(i.input)} is not supported (an integer, or a non-empty list of integers)` }).default(-2),
    vision_feature_select_strategy: z.enum(['default', 'full'], { error: (i) => `vision_feature_select_strategy ${shown(i.input)} is not supported (default, full)` }).default('default'),
    projector_hidden_act: activationSchema('projector_hidden_act').default('gelu'),
    multimodal_projector_bias: z.boolean().default(true),
    tie_word_embeddings: z.boolean().optional(),
  })
  .loose();

/** `vision_feature_layer` as a list of hidden-state indices, each checked against the tower's depth (Python indexing of numLayers + 1 states). */
export function featureLayers(raw: number | number[], numLayers: number): number[] {
  const layers = typeof raw === 'number' ? [raw] : raw;
  for (const layer of layers) {
    if (layer < -(numLayers + 1) || layer > numLayers) {
      throw new CheckpointError(`config.json: vision_feature_layer ${layer} is outside the vision tower's ${numLayers + 1} hidden states (0..${numLayers}, or -${numLayers + 1}..-1)`);
    }
  }
  return layers;
}

/** Encoder layers to build: enough for the deepest selected hidden state (hidden state 0 is the embeddings). */
export function selectedLayerCount(numLayers: number, featureLayers: readonly number[]): number {
  return Math.max(...featureLayers.map((layer) => (layer < 0 ? numLayers + 1 + layer : layer)));
}

/** Validates and normalises a LLaVA `config.json` object. */
export function parseLlavaConfig(raw: unknown): LlavaConfig {
  const architecture = (raw as { architectures?: unknown[] })?.architectures?.[0];
  if (architecture !== 'LlavaForConditionalGeneration') throw new CheckpointError(`config.json: architecture ${shown(architecture)} is not LlavaForConditionalGeneration`);
  const parsed = llavaSchema.safeParse(raw);
  if (!parsed.success) throw new CheckpointError(`config.json: ${z.prettifyError(parsed.error)}`);
  const c = parsed.data;
  const text = parseText(c.text_config, c.tie_word_embeddings, 'text_config.');
  const vision = parseVision(c.vision_config);
  // LlavaConfig's default image token (llava-hf's <image> = 32000); the tokenizer must have it.
  const imageTokenIndex = c.image_token_index ?? c.image_token_id ?? 32000;
  return {
    architecture,
    imageTokenIndex,
    visionFeatureLayers: featureLayers(c.vision_feature_layer, vision.numLayers),
    selectStrategy: c.vision_feature_select_strategy,
    projectorAct: c.projector_hidden_act,
    projectorBias: c.multimodal_projector_bias,
    text,
    vision,
  };
}
