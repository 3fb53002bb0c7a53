/**
 * config.json of `Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration`,
 * validated and normalised with transformers 4.57's defaults. Both layouts load: the published
 * Qwen2-VL-Instruct configs keep the text fields at the top level, configs saved by newer
 * transformers put them under `text_config`. Every value the runtime cannot honour is refused by
 * name (video inputs are not read, so the video fields are only checked for shape).
 */
import { z } from 'zod';
import { CheckpointError } from '../../checkpointError.js';
import { CONFIG_LIMITS, shown } from '../../config.js';

export const QWEN2VL_ARCHITECTURES = ['Qwen2VLForConditionalGeneration', 'Qwen2_5_VLForConditionalGeneration'] as const;
export type Qwen2VLArchitecture = (typeof QWEN2VL_ARCHITECTURES)[number];

export interface Qwen2VLTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Rotary frequency pairs given to the temporal, height and width position ids, in that order (sums to headDim / 2). */
  mropeSection: [number, number, number];
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
}

export interface Qwen2VLVisionConfig {
  depth: number;
  /** Width of the vision blocks (Qwen2-VL's `embed_dim`, Qwen2.5-VL's `hidden_size`). */
  hiddenSize: number;
  numHeads: number;
  intermediateSize: number;
  /** Qwen2-VL: LayerNorm and a two-layer MLP (`quick_gelu`, ...); Qwen2.5-VL: RMSNorm and a SwiGLU MLP (`silu`). */
  mlp: 'two-layer' | 'swiglu';
  hiddenAct: string;
  patchSize: number;
  temporalPatchSize: number;
  spatialMergeSize: number;
  /** The patch merger's output: the text model's hidden size. */
  outHiddenSize: number;
  /** Qwen2.5-VL: the side of an attention window in pixels, and the blocks that attend to the whole image; Qwen2-VL: null, every block full. */
  windowSize: number | null;
  fullAttentionBlocks: number[];
}

export interface Qwen2VLConfig {
  architecture: Qwen2VLArchitecture;
  text: Qwen2VLTextConfig;
  vision: Qwen2VLVisionConfig;
  imageTokenId: number;
  videoTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
}


const size = (max: number) => z.number().int().positive().max(max);
const tokenId = z.number().int().nonnegative().max(CONFIG_LIMITS.vocabSize);

const ropeScalingSchema = z
  .object({
    type: z.string().optional(),
    rope_type: z.string().optional(),
    mrope_section: z.array(z.number().int().nonnegative()).optional(),
  })
  .loose();

/** `Qwen2VLTextConfig()` / `Qwen2_5_VLTextConfig()` in transformers 4.57 (the same defaults). */
const textSchema = z
  .object({
    vocab_size: size(CONFIG_LIMITS.vocabSize).default(152064),
    hidden_size: size(CONFIG_LIMITS.hiddenSize).default(8192),
    intermediate_size: size(CONFIG_LIMITS.intermediateSize).default(29568),
    num_hidden_layers: size(CONFIG_LIMITS.layers).default(80),
    num_attention_heads: size(CONFIG_LIMITS.heads).default(64),
    // Absent: 8; null: as many as attention heads (transformers' __init__).
    num_key_value_heads: size(CONFIG_LIMITS.heads).nullable().default(8),
    hidden_act: z.literal('silu', { error: (i) => `text hidden_act ${shown(i.input)} is not supported (silu only)` }).default('silu'),
    max_position_embeddings: size(CONFIG_LIMITS.positions).default(32768),
    rms_norm_eps: z.number().positive().default(1e-5),
    rope_theta: z.number().positive().default(1_000_000),
    rope_scaling: ropeScalingSchema.nullish(),
    tie_word_embeddings: z.boolean().default(false),
    use_sliding_window: z.boolean().default(false),
  })
  .loose();

const qwen2VisionSchema = z
  .object({
    depth: size(CONFIG_LIMITS.layers).default(32),
    embed_dim: size(CONFIG_LIMITS.hiddenSize).default(1280),
    hidden_size: size(CONFIG_LIMITS.hiddenSize).default(3584),
    hidden_act: z.enum(['quick_gelu', 'gelu', 'gelu_pytorch_tanh', 'gelu_new'], { error: (i) => `vision hidden_act ${shown(i.input)} is not supported (quick_gelu, gelu, gelu_pytorch_tanh, gelu_new)` }).default('quick_gelu'),
    mlp_ratio: z.number().positive().max(64).default(4),
    num_heads: size(CONFIG_LIMITS.heads).default(16),
    in_channels: z.literal(3, { error: (i) => `vision in_channels ${shown(i.input)} is not supported (3 only: images are decoded to RGB)` }).default(3),
    patch_size: size(CONFIG_LIMITS.patchSize).default(14),
    spatial_merge_size: size(16).default(2),
    temporal_patch_size: size(16).default(2),
  })
  .loose();

const qwen25VisionSchema = z
  .object({
    depth: size(CONFIG_LIMITS.layers).default(32),
    hidden_size: size(CONFIG_LIMITS.hiddenSize).default(3584),
    hidden_act: z.literal('silu', { error: (i) => `vision hidden_act ${shown(i.input)} is not supported (silu only)` }).default('silu'),
    intermediate_size: size(CONFIG_LIMITS.intermediateSize).default(3420),
    num_heads: size(CONFIG_LIMITS.heads).default(16),
    in_channels: z.literal(3, { error: (i) => `vision in_channels ${shown(i.input)} is not supported (3 only: images are decoded to RGB)` }).default(3),
    patch_size: size(CONFIG_LIMITS.patchSize).default(14),
    spatial_merge_size: size(16).default(2),
    temporal_patch_size: size(16).default(2),
    window_size: size(CONFIG_LIMITS.imageSize).default(112),
    out_hidden_size: size(CONFIG_LIMITS.hiddenSize).default(3584),
    fullatt_block_indexes: z.array(z.number().int().nonnegative()).default([7, 15, 23, 31]),
  })
  .loose();

const topSchema = z
  .object({
    architectures: z.array(z.string()).min(1),
    model_type: z.string().optional(),
    text_config: z.record(z.string(), z.unknown()).optional(),
    vision_config: z.record(z.string(), z.unknown()).default({}),
    image_token_id: tokenId.default(151655),
    video_token_id: tokenId.default(151656),
    vision_start_token_id: tokenId.default(151652),
    vision_end_token_id: tokenId.default(151653),
  })
  .loose();

function parsed<T extends z.ZodType>(schema: T, raw: unknown, where: string): z.infer<T> {
  const result = schema.safeParse(raw);
  if (!result.success) throw new CheckpointError(`config.json${where}: ${z.prettifyError(result.error)}`);
  return result.data;
}

function refuse(message: string): never {
  throw new CheckpointError(`config.json: ${message}`);
}

function parseText(raw: Record<string, unknown>, where: string): Qwen2VLTextConfig {
  const t = parsed(textSchema, raw, where);
  if (t.hidden_size % t.num_attention_heads !== 0) refuse(`text hidden_size ${t.hidden_size} is not a multiple of num_attention_heads ${t.num_attention_heads}`);
  const numKvHeads = t.num_key_value_heads ?? t.num_attention_heads;
  if (t.num_attention_heads % numKvHeads !== 0) refuse(`num_attention_heads ${t.num_attention_heads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (t.use_sliding_window) refuse('use_sliding_window true is not supported (the Qwen2-VL models attend to the whole context)');
  const headDim = t.hidden_size / t.num_attention_heads;
  // transformers reads rope_scaling["mrope_section"] unconditionally: a config without it does not load there either.
  const rope = t.rope_scaling;
  if (!rope?.mrope_section) refuse('rope_scaling.mrope_section is missing (the multimodal rotary sections: three numbers that sum to head_dim / 2)');
  const type = rope.rope_type ?? rope.type ?? 'default';
  if (type !== 'mrope' && type !== 'default') refuse(`rope_scaling type ${shown(type)} is not supported (mrope only; no scaling of the rotary frequencies)`);
  for (const key of ['factor', 'original_max_position_embeddings', 'beta_fast', 'attention_factor'] as const) {
    if (key in rope) refuse(`rope_scaling.${key} is not supported (mrope without frequency scaling only)`);
  }
  const section = rope.mrope_section;
  if (section.length !== 3 || section.reduce((a, b) => a + b, 0) !== headDim / 2) {
    refuse(`rope_scaling.mrope_section ${JSON.stringify(section)} is not supported: it needs three numbers (temporal, height, width) that sum to head_dim / 2 = ${headDim / 2}`);
  }
  return {
    vocabSize: t.vocab_size,
    hiddenSize: t.hidden_size,
    intermediateSize: t.intermediate_size,
    numLayers: t.num_hidden_layers,
    numHeads: t.num_attention_heads,
    numKvHeads,
    headDim,
    rmsNormEps: t.rms_norm_eps,
    ropeTheta: t.rope_theta,
    mropeSection: [section[0], section[1], section[2]],
    maxPositionEmbeddings: t.max_position_embeddings,
    tieWordEmbeddings: t.tie_word_embeddings,
  };
}

function parseVision(architecture: Qwen2VLArchitecture, raw: Record<string, unknown>): Qwen2VLVisionConfig {
  if (architecture === 'Qwen2VLForConditionalGeneration') {
    const v = parsed(qwen2VisionSchema, raw, ' vision_config');
    if (v.embed_dim % v.num_heads !== 0 || (v.embed_dim / v.num_heads) % 4 !== 0) refuse(`vision embed_dim ${v.embed_dim} / num_heads ${v.num_heads} must be a multiple of 4 (the 2-D rotary splits each head in quarters)`);
    return {
      depth: v.depth,
      hiddenSize: v.embed_dim,
      numHeads: v.num_heads,
      intermediateSize: Math.trunc(v.embed_dim * v.mlp_ratio), // transformers: int(embed_dim * mlp_ratio)
      mlp: 'two-layer',
      hiddenAct: v.hidden_act,
      patchSize: v.patch_size,
      temporalPatchSize: v.temporal_patch_size,
      spatialMergeSize: v.spatial_merge_size,
      outHiddenSize: v.hidden_size,
      windowSize: null,
      fullAttentionBlocks: [],
    };
  }
  const v = parsed(qwen25VisionSchema, raw, ' vision_config');
  if (v.hidden_size % v.num_heads !== 0 || (v.hidden_size / v.num_heads) % 4 !== 0) refuse(`vision hidden_size ${v.hidden_size} / num_heads ${v.num_heads} must be a multiple of 4 (the 2-D rotary splits each head in quarters)`);
  const mergeUnit = v.spatial_merge_size * v.patch_size;
  if (v.window_size % mergeUnit !== 0) refuse(`vision window_size ${v.window_size} is not supported: it must be a multiple of spatial_merge_size x patch_size = ${mergeUnit}`);
  const outside = v.fullatt_block_indexes.find((i) => i >= v.depth);
  if (outside !== undefined) refuse(`vision fullatt_block_indexes names block ${outside}, but depth is ${v.depth}`);
  return {
    depth: v.depth,
    hiddenSize: v.hidden_size,
    numHeads: v.num_heads,
    intermediateSize: v.intermediate_size,
    mlp: 'swiglu',
    hiddenAct: v.hidden_act,
    patchSize: v.patch_size,
    temporalPatchSize: v.temporal_patch_size,
    spatialMergeSize: v.spatial_merge_size,
    outHiddenSize: v.out_hidden_size,
    windowSize: v.window_size,
    fullAttentionBlocks: [...new Set(v.fullatt_block_indexes)].sort((a, b) => a - b),
  };
}

export function isQwen2VLArchitecture(name: string): name is Qwen2VLArchitecture {
  return (QWEN2VL_ARCHITECTURES as readonly string[]).includes(name);
}

export function parseQwen2VLConfig(raw: unknown): Qwen2VLConfig {
  const top = parsed(topSchema, raw, '');
  const architecture = top.architectures[0];
  if (!isQwen2VLArchitecture(architecture)) refuse(`architecture ${shown(architecture)} is not a Qwen2-VL family model (${QWEN2VL_ARCHITECTURES.join(', ')})`);
  // The published Qwen2-VL configs are flat; newer ones nest the text fields (transformers reads text_config when present).
  const text = parseText(top.text_config ?? (raw as Record<string, unknown>), top.text_config ? ' text_config' : '');
  const vision = parseVision(architecture, top.vision_config);
  if (vision.outHiddenSize !== text.hiddenSize) {
    refuse(`the vision merger's output (${architecture === 'Qwen2VLForConditionalGeneration' ? 'vision_config.hidden_size' : 'vision_config.out_hidden_size'} ${vision.outHiddenSize}) differs from the text hidden_size ${text.hiddenSize}`);
  }
  const ids = [top.image_token_id, top.vision_start_token_id, top.vision_end_token_id];
  if (ids.some((id) => id >= text.vocabSize)) refuse(`image_token_id, vision_start_token_id and vision_end_token_id (${ids.join(', ')}) must be below vocab_size ${text.vocabSize}`);
  return {
    architecture,
    text,
    vision,
    imageTokenId: top.image_token_id,
    videoTokenId: top.video_token_id,
    visionStartTokenId: top.vision_start_token_id,
    visionEndTokenId: top.vision_end_token_id,
  };
}
