/**
 * `config.json` of a checkpoint, validated and normalised in one place: the rest of the runtime
 * never reads raw Hugging Face field names. Supported: `LlavaForConditionalGeneration` with the
 * text and vision `model_type`s listed below, and the text-only causal LMs of those text model
 * types (`LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`: the text fields at the top
 * level, no vision tower); anything else is refused by name. (There is no architecture registry
 * yet: adding a text or vision model type touches this file, the weight names in checkpoint.ts
 * and the graph builders.)
 */
import { z } from 'zod';
import { CheckpointError } from './safetensors.js';

export const TEXT_MODEL_TYPES = ['llama', 'mistral', 'qwen2'] as const;
/** Text-only causal LMs, each with the `model_type` transformers' Auto classes pair it with. */
export const TEXT_ONLY_ARCHITECTURES = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2' } as const satisfies Record<string, (typeof TEXT_MODEL_TYPES)[number]>;
export const SUPPORTED_ARCHITECTURES = ['LlavaForConditionalGeneration', ...(Object.keys(TEXT_ONLY_ARCHITECTURES) as (keyof typeof TEXT_ONLY_ARCHITECTURES)[])] as const;
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
  /** Bias on the MLP's gate, up and down projections (Llama's `mlp_bias`). */
  mlpBias: boolean;
  /**
   * Per layer, the sliding attention window (a query at position q sees keys at positions
   * k with q - window < k <= q, as transformers' `sliding_window_overlay`), or null: full attention.
   */
  layerWindows: (number | null)[];
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

export type TextOnlyArchitecture = keyof typeof TEXT_ONLY_ARCHITECTURES;

export interface LlavaConfig {
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

/** A text-only causal LM: every token is text; there is no vision tower and no image token. */
export interface TextOnlyConfig {
  architecture: TextOnlyArchitecture;
  text: TextConfig;
  vision: null;
}

/** What a checkpoint folder holds: a LLaVA model, or a text-only causal LM. */
export type ModelConfig = LlavaConfig | TextOnlyConfig;

/** Whether the model reads images (a LLaVA model) or only text. */
export function isLlavaConfig(config: ModelConfig): config is LlavaConfig {
  return config.vision !== null;
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

/**
 * transformers' defaults per text model type (`LlamaConfig()`, `MistralConfig()`, `Qwen2Config()`
 * in 4.57), for the fields a config.json leaves out: llava-1.5-7b-hf's text_config gives none of
 * the sizes. `numKvHeads: null`: as many as attention heads. `slidingWindow`: Mistral's default
 * window; Qwen2's, used only with `use_sliding_window`.
 */
const TEXT_DEFAULTS: Record<TextModelType, { vocabSize: number; hiddenSize: number; intermediateSize: number; numLayers: number; numHeads: number; numKvHeads: number | null; maxPositions: number; slidingWindow: number | null }> = {
  llama: { vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: null, maxPositions: 2048, slidingWindow: null },
  mistral: { vocabSize: 32000, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32, numKvHeads: 8, maxPositions: 4096 * 32, slidingWindow: 4096 },
  qwen2: { vocabSize: 151936, hiddenSize: 4096, intermediateSize: 22016, numLayers: 32, numHeads: 32, numKvHeads: 32, maxPositions: 32768, slidingWindow: 4096 },
};

/** transformers' defaults per vision model type (`CLIPVisionConfig()`, `SiglipVisionConfig()`). */
const VISION_DEFAULTS: Record<VisionModelType, { hiddenSize: number; intermediateSize: number; numLayers: number; numHeads: number; imageSize: number; patchSize: number; layerNormEps: number; hiddenAct: string }> = {
  clip_vision_model: { hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, imageSize: 224, patchSize: 32, layerNormEps: 1e-5, hiddenAct: 'quick_gelu' },
  siglip_vision_model: { hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, imageSize: 224, patchSize: 16, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' },
};

/** `LlavaConfig`'s vision tower when config.json has no vision_config at all (CLIP ViT-L/14-336). */
const LLAVA_DEFAULT_VISION = { model_type: 'clip_vision_model' as const, hidden_size: 1024, intermediate_size: 4096, num_hidden_layers: 24, num_attention_heads: 16, image_size: 336, patch_size: 14 };

/** Activations the vision graph builds (vision tower and projector); any other is refused by name. */
export const ACTIVATIONS = ['quick_gelu', 'gelu', 'gelu_pytorch_tanh', 'gelu_new'] as const;
const activation = (what: string) => z.enum(ACTIVATIONS, { error: (i) => `${what} ${shown(i.input)} is not supported (supported: ${ACTIVATIONS.join(', ')})` });

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
    // LlavaConfig reads a text_config without model_type as Llama's.
    model_type: z.enum(TEXT_MODEL_TYPES, { error: (i) => `text model_type ${shown(i.input)} is not supported (supported: ${TEXT_MODEL_TYPES.join(', ')})` }).default('llama'),
    hidden_size: size(CONFIG_LIMITS.hiddenSize).optional(),
    num_hidden_layers: size(CONFIG_LIMITS.layers).optional(),
    num_attention_heads: size(CONFIG_LIMITS.heads).optional(),
    num_key_value_heads: size(CONFIG_LIMITS.heads).nullish(),
    head_dim: size(CONFIG_LIMITS.headDim).nullish(),
    intermediate_size: size(CONFIG_LIMITS.intermediateSize).optional(),
    rms_norm_eps: z.number().positive().default(1e-6),
    rope_theta: z.number().positive().optional(),
    rope_scaling: ropeScalingSchema.nullish(),
    // transformers 5 saves rope_theta and the scaling together here (rope_type "default": none).
    rope_parameters: ropeScalingSchema.extend({ rope_theta: z.number().positive().optional(), factor: z.number().positive().optional() }).nullish(),
    vocab_size: size(CONFIG_LIMITS.vocabSize).optional(),
    max_position_embeddings: size(CONFIG_LIMITS.positions).optional(),
    tie_word_embeddings: z.boolean().optional(),
    attention_bias: z.boolean().optional(),
    mlp_bias: z.boolean().optional(),
    sliding_window: size(CONFIG_LIMITS.positions).nullish(),
    use_sliding_window: z.boolean().optional(),
    max_window_layers: z.number().int().nonnegative().optional(),
    layer_types: z.array(z.enum(['full_attention', 'sliding_attention'], { error: (i) => `text layer_types entry ${shown(i.input)} is not supported (full_attention, sliding_attention)` })).nullish(),
    hidden_act: z.literal('silu', { error: (i) => `text hidden_act ${shown(i.input)} is not supported (silu only)` }).default('silu'),
  })
  .loose();

const visionSchema = z
  .object({
    // LlavaConfig reads a vision_config without model_type as CLIP's.
    model_type: z.enum(VISION_MODEL_TYPES, { error: (i) => `vision model_type ${shown(i.input)} is not supported (supported: ${VISION_MODEL_TYPES.join(', ')})` }).default('clip_vision_model'),
    hidden_size: size(CONFIG_LIMITS.hiddenSize).optional(),
    num_hidden_layers: size(CONFIG_LIMITS.layers).optional(),
    num_attention_heads: size(CONFIG_LIMITS.heads).optional(),
    intermediate_size: size(CONFIG_LIMITS.intermediateSize).optional(),
    image_size: size(CONFIG_LIMITS.imageSize).optional(),
    patch_size: size(CONFIG_LIMITS.patchSize).optional(),
    // Images are always decoded to RGB.
    num_channels: z.literal(3, { error: (i) => `vision num_channels ${shown(i.input)} is not supported (3 only: images are decoded to RGB)` }).default(3),
    layer_norm_eps: z.number().positive().optional(),
    hidden_act: activation('vision hidden_act').optional(),
  })
  .loose();

const llavaSchema = z
  .object({
    architectures: z.array(z.string()).min(1),
    // A missing text_config is LlamaConfig(); a missing vision_config is LlavaConfig's CLIP ViT-L/14-336.
    text_config: textSchema.prefault({}),
    vision_config: visionSchema.prefault(LLAVA_DEFAULT_VISION),
    image_token_index: z.number().int().nonnegative().optional(),
    image_token_id: z.number().int().nonnegative().optional(),
    vision_feature_layer: z.union([z.number().int(), z.array(z.number().int()).min(1).max(CONFIG_LIMITS.layers)], { error: (i) => `vision_feature_layer ${shown(i.input)} is not supported (an integer, or a non-empty list of integers)` }).default(-2),
    vision_feature_select_strategy: z.enum(['default', 'full'], { error: (i) => `vision_feature_select_strategy ${shown(i.input)} is not supported (default, full)` }).default('default'),
    projector_hidden_act: activation('projector_hidden_act').default('gelu'),
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

type RawText = z.infer<typeof textSchema>;

/** The scaling part of transformers 5's `rope_parameters`, in rope_scaling's form (null: plain RoPE). */
function savedRopeScaling(p: RawText['rope_parameters']): z.infer<typeof ropeScalingSchema> | null {
  const type = p?.rope_type ?? p?.type ?? 'default';
  if (!p || type === 'default') return null;
  if (p.factor === undefined) throw new CheckpointError(`config.json: rope_parameters rope_type ${shown(type)} has no factor`);
  return { ...p, factor: p.factor };
}
type RawVision = z.infer<typeof visionSchema>;

/** The text sizes config.json gives, the others at transformers' defaults for its model type. */
function textSizes(t: RawText) {
  const d = TEXT_DEFAULTS[t.model_type];
  const numHeads = t.num_attention_heads ?? d.numHeads;
  return {
    hiddenSize: t.hidden_size ?? d.hiddenSize,
    numLayers: t.num_hidden_layers ?? d.numLayers,
    numHeads,
    numKvHeads: t.num_key_value_heads ?? d.numKvHeads ?? numHeads,
    intermediateSize: t.intermediate_size ?? d.intermediateSize,
    vocabSize: t.vocab_size ?? d.vocabSize,
    maxPositionEmbeddings: t.max_position_embeddings ?? d.maxPositions,
  };
}

/**
 * The attention head size. Llama, Mistral and Qwen2 take an explicit `head_dim` (which need not
 * be hidden_size / heads); without one it is hidden_size / heads, which must then divide evenly.
 * Either way RoPE rotates pairs of dimensions, so it must be even.
 */
function textHeadDim(t: RawText, hiddenSize: number, numHeads: number, at: string): number {
  let headDim: number;
  if (t.head_dim !== undefined && t.head_dim !== null) {
    headDim = t.head_dim;
  } else {
    if (hiddenSize % numHeads !== 0) {
      throw new CheckpointError(`config.json: ${at}hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}, and no head_dim is given`);
    }
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw new CheckpointError(`config.json: ${at}head size ${headDim} is odd; rotary embeddings need an even head_dim`);
  return headDim;
}

/**
 * Each layer's attention window, as transformers 4.57 decides it. Llama: none. Mistral: every
 * layer, `sliding_window` (default 4096; null: none). Qwen2: only with `use_sliding_window`, then
 * the layers `layer_types` marks `sliding_attention`, or without layer_types those from
 * `max_window_layers` (default 28) on.
 */
function layerWindows(t: RawText, numLayers: number, at: string): (number | null)[] {
  const defaultWindow = TEXT_DEFAULTS[t.model_type].slidingWindow;
  const window = t.sliding_window === undefined ? defaultWindow : t.sliding_window;
  if (t.model_type === 'llama') return new Array<null>(numLayers).fill(null);
  if (t.model_type === 'mistral') return new Array<number | null>(numLayers).fill(window);
  const qwenWindow = t.use_sliding_window === true ? window : null;
  const types = t.layer_types ?? Array.from({ length: numLayers }, (_, i) => (qwenWindow !== null && i >= (t.max_window_layers ?? 28) ? 'sliding_attention' : 'full_attention'));
  if (types.length !== numLayers) throw new CheckpointError(`config.json: ${at}layer_types has ${types.length} entries for ${numLayers} layers`);
  return types.map((type, i) => {
    if (type === 'full_attention') return null;
    if (qwenWindow === null) throw new CheckpointError(`config.json: ${at}layer_types makes layer ${i} sliding_attention, but no sliding_window applies (use_sliding_window is not true, or sliding_window is null)`);
    return qwenWindow;
  });
}

/** The vision sizes config.json gives, the others at transformers' defaults for its model type. */
function visionSizes(v: RawVision) {
  const d = VISION_DEFAULTS[v.model_type];
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

/** `vision_feature_layer` as a list of hidden-state indices, each checked against the tower's depth (Python indexing of numLayers + 1 states). */
function featureLayers(raw: number | number[], numLayers: number): number[] {
  const layers = typeof raw === 'number' ? [raw] : raw;
  for (const layer of layers) {
    if (layer < -(numLayers + 1) || layer > numLayers) {
      throw new CheckpointError(`config.json: vision_feature_layer ${layer} is outside the vision tower's ${numLayers + 1} hidden states (0..${numLayers}, or -${numLayers + 1}..-1)`);
    }
  }
  return layers;
}

/**
 * The text model's config from its raw fields (`at`: where they sit in config.json, for errors),
 * `tieFallback` the top-level `tie_word_embeddings` of a LLaVA config.
 */
function parseText(t: RawText, tieFallback: boolean | undefined, at: string): TextConfig {
  const text = textSizes(t);
  if (text.numHeads % text.numKvHeads !== 0) {
    throw new CheckpointError(`config.json: ${text.numHeads} attention heads cannot be grouped onto ${text.numKvHeads} key/value heads`);
  }
  return {
    modelType: t.model_type,
    ...text,
    headDim: textHeadDim(t, text.hiddenSize, text.numHeads, at),
    rmsNormEps: t.rms_norm_eps,
    ropeTheta: t.rope_parameters?.rope_theta ?? t.rope_theta ?? 10000,
    ropeScaling: ropeScaling(t.rope_scaling ?? savedRopeScaling(t.rope_parameters)),
    tieWordEmbeddings: t.tie_word_embeddings ?? tieFallback ?? false,
    qkvBias: t.model_type === 'qwen2' || t.attention_bias === true,
    outputBias: t.model_type !== 'qwen2' && t.attention_bias === true,
    mlpBias: t.model_type === 'llama' && t.mlp_bias === true,
    layerWindows: layerWindows(t, text.numLayers, at),
  };
}

/** Validates and normalises a `config.json` object: a LLaVA model or a text-only causal LM. */
export function parseModelConfig(raw: unknown): ModelConfig {
  const architecture = (raw as { architectures?: unknown[] })?.architectures?.[0];
  return Object.hasOwn(TEXT_ONLY_ARCHITECTURES, architecture as string) ? parseTextOnlyConfig(raw) : parseLlavaConfig(raw);
}

function unsupportedArchitecture(architecture: unknown): CheckpointError {
  return new CheckpointError(`config.json: architecture ${shown(architecture)} is not supported (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
}

/**
 * A text-only causal LM's `config.json`: the text fields at the top level. A `model_type` other
 * than the architecture's (a Qwen2ForCausalLM with "llama") is refused: the graph follows
 * model_type (biases, windows, defaults), so the two must agree.
 */
export function parseTextOnlyConfig(raw: unknown): TextOnlyConfig {
  const architecture = (raw as { architectures?: unknown[] })?.architectures?.[0];
  if (!Object.hasOwn(TEXT_ONLY_ARCHITECTURES, architecture as string)) throw unsupportedArchitecture(architecture);
  const arch = architecture as TextOnlyArchitecture;
  const expected = TEXT_ONLY_ARCHITECTURES[arch];
  const modelType = (raw as { model_type?: unknown }).model_type ?? expected;
  if (modelType !== expected) {
    throw new CheckpointError(`config.json: architecture ${arch} has model_type ${shown(modelType)}; it must be ${JSON.stringify(expected)} (or left out)`);
  }
  const parsed = textSchema.extend({ architectures: z.array(z.string()).min(1) }).safeParse({ ...(raw as object), model_type: expected });
  if (!parsed.success) throw new CheckpointError(`config.json: ${z.prettifyError(parsed.error)}`);
  return { architecture: arch, text: parseText(parsed.data, undefined, ''), vision: null };
}

/** Validates and normalises a LLaVA `config.json` object. */
export function parseLlavaConfig(raw: unknown): LlavaConfig {
  const architecture = (raw as { architectures?: unknown[] })?.architectures?.[0];
  if (architecture !== 'LlavaForConditionalGeneration') throw unsupportedArchitecture(architecture);
  const parsed = llavaSchema.safeParse(raw);
  if (!parsed.success) throw new CheckpointError(`config.json: ${z.prettifyError(parsed.error)}`);
  const c = parsed.data;
  const text = parseText(c.text_config, c.tie_word_embeddings, 'text_config.');
  const vision = visionSizes(c.vision_config);
  // LlavaConfig's default image token (llava-hf's <image> = 32000); the tokenizer must have it.
  const imageTokenIndex = c.image_token_index ?? c.image_token_id ?? 32000;
  checkVisionSizes(vision);
  return {
    architecture,
    imageTokenIndex,
    visionFeatureLayers: featureLayers(c.vision_feature_layer, vision.numLayers),
    selectStrategy: c.vision_feature_select_strategy,
    projectorAct: c.projector_hidden_act,
    projectorBias: c.multimodal_projector_bias,
    text,
    vision: { modelType: c.vision_config.model_type, ...vision, numChannels: c.vision_config.num_channels },
  };
}

/**
 * A lower bound on the parameters a checkpoint for `config` holds: the matrices the runtime
 * certainly reads (embeddings and LM head, attention and MLP projections, the patch embedding,
 * the vision layers up to the selected one, the projector), without norms, biases and position
 * tables. Checked against the weight files before anything else is read or built.
 */
export function minimumParameterCount(config: ModelConfig): number {
  const t = config.text;
  const attention = t.hiddenSize * t.headDim * 2 * (t.numHeads + t.numKvHeads);
  const mlp = 3 * t.hiddenSize * t.intermediateSize;
  const text = t.vocabSize * t.hiddenSize * (t.tieWordEmbeddings ? 1 : 2) + t.numLayers * (attention + mlp);
  if (!isLlavaConfig(config)) return text;
  const v = config.vision;
  const visionLayers = selectedLayerCount(v.numLayers, config.visionFeatureLayers);
  const vision = v.hiddenSize * v.numChannels * v.patchSize ** 2 + visionLayers * (4 * v.hiddenSize ** 2 + 2 * v.hiddenSize * v.intermediateSize);
  const projector = v.hiddenSize * config.visionFeatureLayers.length * t.hiddenSize + t.hiddenSize ** 2;
  return text + vision + projector;
}

/** Encoder layers to build: enough for the deepest selected hidden state (hidden state 0 is the embeddings). */
export function selectedLayerCount(numLayers: number, featureLayers: readonly number[]): number {
  return Math.max(...featureLayers.map((layer) => (layer < 0 ? numLayers + 1 + layer : layer)));
}
