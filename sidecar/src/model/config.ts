/**
 * `config.json` of a LLaVA-family checkpoint, validated and normalised in one place: the rest of
 * the runtime never reads raw Hugging Face field names. Architectures are looked up in a
 * registry keyed on `architectures[0]` and the text / vision `model_type`.
 */
import { z } from 'zod';
import { CheckpointError } from './safetensors.js';

export const SUPPORTED_ARCHITECTURES = ['LlavaForConditionalGeneration'] as const;
export const TEXT_MODEL_TYPES = ['llama', 'mistral', 'qwen2'] as const;
export const VISION_MODEL_TYPES = ['clip_vision_model', 'siglip_vision_model'] as const;

export type TextModelType = (typeof TEXT_MODEL_TYPES)[number];
export type VisionModelType = (typeof VISION_MODEL_TYPES)[number];

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface TextConfig {
  modelType: TextModelType;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  vocabSize: number;
  /** The context length: positions 0 .. maxPositionEmbeddings - 1 (prompt and answers together). */
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Bias on the q/k/v projections (Qwen2 always; Llama with `attention_bias`). */
  qkvBias: boolean;
  /** Bias on the output projection (Llama's `attention_bias` covers it too). */
  outputBias: boolean;
}

export interface VisionConfig {
  modelType: VisionModelType;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  hiddenAct: string;
}

export interface LlavaConfig {
  architecture: (typeof SUPPORTED_ARCHITECTURES)[number];
  text: TextConfig;
  vision: VisionConfig;
  imageTokenIndex: number;
  /** Which hidden state of the vision tower feeds the projector (negative counts from the end). */
  visionFeatureLayer: number;
  /** `default` drops the CLS token, `full` keeps every position. */
  selectStrategy: 'default' | 'full';
  projectorAct: string;
  projectorBias: boolean;
}

const positive = z.number().int().positive();

/** transformers' default `max_position_embeddings` per text model type, for configs that leave it out. */
const DEFAULT_MAX_POSITIONS: Record<TextModelType, number> = { llama: 2048, mistral: 4096 * 32, qwen2: 32768 };

const ropeScalingSchema = z
  .object({
    rope_type: z.string().optional(),
    type: z.string().optional(),
    factor: z.number().positive(),
    low_freq_factor: z.number().optional(),
    high_freq_factor: z.number().optional(),
    original_max_position_embeddings: z.number().optional(),
  })
  .loose();

const textSchema = z
  .object({
    model_type: z.enum(TEXT_MODEL_TYPES, { error: (i) => `text model_type ${JSON.stringify(i.input)} is not supported (supported: ${TEXT_MODEL_TYPES.join(', ')})` }),
    hidden_size: positive,
    num_hidden_layers: positive,
    num_attention_heads: positive,
    num_key_value_heads: positive.optional(),
    head_dim: positive.nullish(),
    intermediate_size: positive,
    rms_norm_eps: z.number().positive().default(1e-6),
    rope_theta: z.number().positive().default(10000),
    rope_scaling: ropeScalingSchema.nullish(),
    vocab_size: positive,
    max_position_embeddings: positive.optional(),
    tie_word_embeddings: z.boolean().optional(),
    attention_bias: z.boolean().optional(),
    hidden_act: z.literal('silu', { error: (i) => `text hidden_act ${JSON.stringify(i.input)} is not supported (silu only)` }).default('silu'),
  })
  .loose();

const visionSchema = z
  .object({
    model_type: z.enum(VISION_MODEL_TYPES, { error: (i) => `vision model_type ${JSON.stringify(i.input)} is not supported (supported: ${VISION_MODEL_TYPES.join(', ')})` }),
    hidden_size: positive,
    num_hidden_layers: positive,
    num_attention_heads: positive,
    intermediate_size: positive,
    image_size: positive,
    patch_size: positive,
    num_channels: positive.default(3),
    layer_norm_eps: z.number().positive().optional(),
    hidden_act: z.string().optional(),
  })
  .loose();

const llavaSchema = z
  .object({
    architectures: z.array(z.string()).min(1),
    text_config: textSchema,
    vision_config: visionSchema,
    image_token_index: z.number().int().nonnegative().optional(),
    image_token_id: z.number().int().nonnegative().optional(),
    vision_feature_layer: z.number().int().default(-2),
    vision_feature_select_strategy: z.enum(['default', 'full']).default('default'),
    projector_hidden_act: z.string().default('gelu'),
    multimodal_projector_bias: z.boolean().default(true),
    tie_word_embeddings: z.boolean().optional(),
  })
  .loose();

function ropeScaling(raw: z.infer<typeof ropeScalingSchema> | null | undefined): RopeScaling | null {
  if (!raw) return null;
  const type = raw.rope_type ?? raw.type;
  if (type === 'linear') return { type, factor: raw.factor };
  if (type === 'llama3') {
    return {
      type,
      factor: raw.factor,
      lowFreqFactor: raw.low_freq_factor ?? 1,
      highFreqFactor: raw.high_freq_factor ?? 4,
      originalMaxPositions: raw.original_max_position_embeddings ?? 8192,
    };
  }
  if (type === 'default') return null;
  throw new CheckpointError(`config.json: rope_scaling type ${JSON.stringify(type)} is not supported (linear, llama3)`);
}

/** Validates and normalises a LLaVA `config.json` object. */
export function parseLlavaConfig(raw: unknown): LlavaConfig {
  const architecture = (raw as { architectures?: unknown[] })?.architectures?.[0];
  if (!SUPPORTED_ARCHITECTURES.includes(architecture as never)) {
    throw new CheckpointError(`config.json: architecture ${JSON.stringify(architecture)} is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  }
  const parsed = llavaSchema.safeParse(raw);
  if (!parsed.success) throw new CheckpointError(`config.json: ${z.prettifyError(parsed.error)}`);
  const c = parsed.data;
  const t = c.text_config;
  const v = c.vision_config;
  const imageTokenIndex = c.image_token_index ?? c.image_token_id;
  if (imageTokenIndex === undefined) throw new CheckpointError('config.json: image_token_index is missing');
  const numKvHeads = t.num_key_value_heads ?? t.num_attention_heads;
  if (t.num_attention_heads % numKvHeads !== 0) {
    throw new CheckpointError(`config.json: ${t.num_attention_heads} attention heads cannot be grouped onto ${numKvHeads} key/value heads`);
  }
  const isSiglip = v.model_type === 'siglip_vision_model';
  return {
    architecture: architecture as LlavaConfig['architecture'],
    imageTokenIndex,
    visionFeatureLayer: c.vision_feature_layer,
    selectStrategy: c.vision_feature_select_strategy,
    projectorAct: c.projector_hidden_act,
    projectorBias: c.multimodal_projector_bias,
    text: {
      modelType: t.model_type,
      hiddenSize: t.hidden_size,
      numLayers: t.num_hidden_layers,
      numHeads: t.num_attention_heads,
      numKvHeads,
      headDim: t.head_dim ?? t.hidden_size / t.num_attention_heads,
      intermediateSize: t.intermediate_size,
      rmsNormEps: t.rms_norm_eps,
      ropeTheta: t.rope_theta,
      ropeScaling: ropeScaling(t.rope_scaling),
      vocabSize: t.vocab_size,
      maxPositionEmbeddings: t.max_position_embeddings ?? DEFAULT_MAX_POSITIONS[t.model_type],
      tieWordEmbeddings: t.tie_word_embeddings ?? c.tie_word_embeddings ?? false,
      qkvBias: t.model_type === 'qwen2' || t.attention_bias === true,
      outputBias: t.model_type !== 'qwen2' && t.attention_bias === true,
    },
    vision: {
      modelType: v.model_type,
      hiddenSize: v.hidden_size,
      numLayers: v.num_hidden_layers,
      numHeads: v.num_attention_heads,
      intermediateSize: v.intermediate_size,
      imageSize: v.image_size,
      patchSize: v.patch_size,
      numChannels: v.num_channels,
      layerNormEps: v.layer_norm_eps ?? (isSiglip ? 1e-6 : 1e-5),
      hiddenAct: v.hidden_act ?? (isSiglip ? 'gelu_pytorch_tanh' : 'quick_gelu'),
    },
  };
}
