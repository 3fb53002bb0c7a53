/**
 * `config.json` of a LLaVA-family checkpoint, validated and normalised in one place: the rest of
 * the runtime never reads raw Hugging Face field names. One architecture is supported
 * (`LlavaForConditionalGeneration`) with the text and vision `model_type`s listed below; anything
 * else is refused by name. (There is no architecture registry yet: adding a text or vision model
 * type touches this file, the weight names in checkpoint.ts and the graph builders.)
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

/**
 * Upper bounds on config.json's sizes, each well above any published model's (Llama 3.1 405B:
 * hidden 16384, 126 layers, 128 heads, intermediate 53248; Gemma 3: 262,144-token vocabulary;
 * Llama 4 Scout: 10M positions; SigLIP: 896-pixel images). A value past them is a typo or an
 * attack: graphs and tables are sized from these fields, so they are refused before anything is
 * allocated (a head_dim of 1e9 once took 280 s and 3.6 GB before failing).
 */
export const CONFIG_LIMITS = {
  hiddenSize: 65_536,
  layers: 1024,
  heads: 1024,
  headDim: 1024,
  intermediateSize: 262_144,
  vocabSize: 4_194_304,
  positions: 16_777_216,
  imageSize: 4096,
  patchSize: 1024,
  /** Patches per image, (image_size / patch_size)^2: each becomes a prompt token. */
  patches: 16_384,
} as const;

const size = (max: number) => positive.max(max);

/** A config value for an error message: short names are quoted, anything else only described. */
function shown(value: unknown): string {
  if (typeof value === 'string') return /^[\w.-]{1,64}$/.test(value) ? JSON.stringify(value) : `a ${value.length}-character string`;
  if (value === undefined || value === null || typeof value === 'number' || typeof value === 'boolean') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

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
    model_type: z.enum(TEXT_MODEL_TYPES, { error: (i) => `text model_type ${shown(i.input)} is not supported (supported: ${TEXT_MODEL_TYPES.join(', ')})` }),
    hidden_size: size(CONFIG_LIMITS.hiddenSize),
    num_hidden_layers: size(CONFIG_LIMITS.layers),
    num_attention_heads: size(CONFIG_LIMITS.heads),
    num_key_value_heads: size(CONFIG_LIMITS.heads).optional(),
    head_dim: size(CONFIG_LIMITS.headDim).nullish(),
    intermediate_size: size(CONFIG_LIMITS.intermediateSize),
    rms_norm_eps: z.number().positive().default(1e-6),
    rope_theta: z.number().positive().default(10000),
    rope_scaling: ropeScalingSchema.nullish(),
    vocab_size: size(CONFIG_LIMITS.vocabSize),
    max_position_embeddings: size(CONFIG_LIMITS.positions).optional(),
    tie_word_embeddings: z.boolean().optional(),
    attention_bias: z.boolean().optional(),
    hidden_act: z.literal('silu', { error: (i) => `text hidden_act ${shown(i.input)} is not supported (silu only)` }).default('silu'),
  })
  .loose();

const visionSchema = z
  .object({
    model_type: z.enum(VISION_MODEL_TYPES, { error: (i) => `vision model_type ${shown(i.input)} is not supported (supported: ${VISION_MODEL_TYPES.join(', ')})` }),
    hidden_size: size(CONFIG_LIMITS.hiddenSize),
    num_hidden_layers: size(CONFIG_LIMITS.layers),
    num_attention_heads: size(CONFIG_LIMITS.heads),
    intermediate_size: size(CONFIG_LIMITS.intermediateSize),
    image_size: size(CONFIG_LIMITS.imageSize),
    patch_size: size(CONFIG_LIMITS.patchSize),
    // Images are always decoded to RGB.
    num_channels: z.literal(3, { error: (i) => `vision num_channels ${shown(i.input)} is not supported (3 only: images are decoded to RGB)` }).default(3),
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
  throw new CheckpointError(`config.json: rope_scaling type ${shown(type)} is not supported (linear, llama3)`);
}

/**
 * The attention head size. Llama, Mistral and Qwen2 take an explicit `head_dim` (which need not
 * be hidden_size / heads); without one it is hidden_size / heads, which must then divide evenly.
 * Either way RoPE rotates pairs of dimensions, so it must be even.
 */
function textHeadDim(t: z.infer<typeof textSchema>): number {
  let headDim: number;
  if (t.head_dim !== undefined && t.head_dim !== null) {
    headDim = t.head_dim;
  } else {
    if (t.hidden_size % t.num_attention_heads !== 0) {
      throw new CheckpointError(`config.json: text_config.hidden_size ${t.hidden_size} is not divisible by num_attention_heads ${t.num_attention_heads}, and no head_dim is given`);
    }
    headDim = t.hidden_size / t.num_attention_heads;
  }
  if (headDim % 2 !== 0) throw new CheckpointError(`config.json: text_config head size ${headDim} is odd; rotary embeddings need an even head_dim`);
  return headDim;
}

/** The vision tower's sizes must fit together as CLIPAttention and the patch convolution require. */
function checkVisionSizes(v: z.infer<typeof visionSchema>): void {
  if (v.hidden_size % v.num_attention_heads !== 0) {
    throw new CheckpointError(`config.json: vision_config.hidden_size ${v.hidden_size} is not divisible by num_attention_heads ${v.num_attention_heads}`);
  }
  if (v.patch_size > v.image_size) throw new CheckpointError(`config.json: vision_config.patch_size ${v.patch_size} is larger than image_size ${v.image_size}`);
  const patches = Math.floor(v.image_size / v.patch_size) ** 2;
  if (patches > CONFIG_LIMITS.patches) {
    throw new CheckpointError(`config.json: vision_config image_size ${v.image_size} / patch_size ${v.patch_size} makes ${patches} patches per image, over the ${CONFIG_LIMITS.patches} accepted`);
  }
}

/** Validates and normalises a LLaVA `config.json` object. */
export function parseLlavaConfig(raw: unknown): LlavaConfig {
  const architecture = (raw as { architectures?: unknown[] })?.architectures?.[0];
  if (!SUPPORTED_ARCHITECTURES.includes(architecture as never)) {
    throw new CheckpointError(`config.json: architecture ${shown(architecture)} is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
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
  const headDim = textHeadDim(t);
  checkVisionSizes(v);
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
      headDim,
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

/**
 * A lower bound on the parameters a checkpoint for `config` holds: the matrices the runtime
 * certainly reads (embeddings and LM head, attention and MLP projections, the patch embedding,
 * the vision layers up to the selected one, the projector), without norms, biases and position
 * tables. Checked against the weight files before anything else is read or built.
 */
export function minimumParameterCount(config: LlavaConfig): number {
  const t = config.text;
  const v = config.vision;
  const attention = t.hiddenSize * t.headDim * 2 * (t.numHeads + t.numKvHeads);
  const mlp = 3 * t.hiddenSize * t.intermediateSize;
  const text = t.vocabSize * t.hiddenSize * (t.tieWordEmbeddings ? 1 : 2) + t.numLayers * (attention + mlp);
  const selected = config.visionFeatureLayer < 0 ? v.numLayers + 1 + config.visionFeatureLayer : config.visionFeatureLayer;
  const visionLayers = Math.min(v.numLayers, Math.max(0, selected));
  const vision = v.hiddenSize * v.numChannels * v.patchSize ** 2 + visionLayers * (4 * v.hiddenSize ** 2 + 2 * v.hiddenSize * v.intermediateSize);
  const projector = v.hiddenSize * t.hiddenSize + t.hiddenSize ** 2;
  return text + vision + projector;
}
