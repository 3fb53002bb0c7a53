/**
 * A decoder's fields of config.json (`text_config` of a LLaVA model, the top level of a causal
 * LM), validated and normalised into `TextConfig` with transformers' defaults for its model type
 * (`models/registry.ts`): llava-1.5-7b-hf's text_config gives none of the sizes.
 */
import { z } from 'zod';
import { CheckpointError } from '../checkpointError.js';
import { CONFIG_LIMITS, shown, size, type RopeScaling, type TextConfig } from '../config.js';
import { TEXT_MODEL_TYPES, TEXT_MODELS } from './models/registry.js';

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

/** A text `model_type` of the registry, or an error listing them. */
export const textModelTypeSchema = z.enum(TEXT_MODEL_TYPES, { error: (i) => `text model_type ${shown(i.input)} is not supported (supported: ${TEXT_MODEL_TYPES.join(', ')})` });

/** The decoder's fields (the architecture decides what a missing model_type means). */
export const textSchema = z
  .object({
    model_type: textModelTypeSchema,
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

export type RawText = z.infer<typeof textSchema>;

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

/** The scaling part of transformers 5's `rope_parameters`, in rope_scaling's form (null: plain RoPE). */
function savedRopeScaling(p: RawText['rope_parameters']): z.infer<typeof ropeScalingSchema> | null {
  const type = p?.rope_type ?? p?.type ?? 'default';
  if (!p || type === 'default') return null;
  if (p.factor === undefined) throw new CheckpointError(`config.json: rope_parameters rope_type ${shown(type)} has no factor`);
  return { ...p, factor: p.factor };
}

/** The text sizes config.json gives, the others at transformers' defaults for its model type. */
function textSizes(t: RawText) {
  const d = TEXT_MODELS[t.model_type].defaults;
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
 * The text model's config from its raw fields (`at`: where they sit in config.json, for errors),
 * `tieFallback` the top-level `tie_word_embeddings` of a LLaVA config.
 */
export function parseText(t: RawText, tieFallback: boolean | undefined, at: string): TextConfig {
  const model = TEXT_MODELS[t.model_type];
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
    ...model.biases(t),
    layerWindows: model.layerWindows(t, text.numLayers, at),
  };
}

/** A lower bound on the decoder's parameters: embeddings and LM head, attention and MLP projections. */
export function minimumTextParameters(t: TextConfig): number {
  const attention = t.hiddenSize * t.headDim * 2 * (t.numHeads + t.numKvHeads);
  const mlp = 3 * t.hiddenSize * t.intermediateSize;
  return t.vocabSize * t.hiddenSize * (t.tieWordEmbeddings ? 1 : 2) + t.numLayers * (attention + mlp);
}
