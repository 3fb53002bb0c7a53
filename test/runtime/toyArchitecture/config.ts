/**
 * The toy architecture's config.json: a decoder described by its own fields (a LayerNorm epsilon,
 * a GELU activation), normalised into the `TextConfig` every architecture's decoder has.
 */
import { z } from 'zod';
import { CheckpointError } from '../../../sidecar/src/model/checkpointError.js';
import type { ModelConfig, TextConfig } from '../../../sidecar/src/model/config.js';

export interface ToyConfig extends ModelConfig {
  text: TextConfig;
  vision: null;
  layerNormEps: number;
  hiddenAct: 'gelu_pytorch_tanh';
}

const schema = z.object({
  hidden_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  vocab_size: z.number().int().positive(),
  max_position_embeddings: z.number().int().positive(),
  layer_norm_eps: z.number().positive().default(1e-5),
  rope_theta: z.number().positive().default(10000),
  hidden_act: z.literal('gelu_pytorch_tanh'),
  tie_word_embeddings: z.boolean().default(false),
});

export function parseToyConfig(raw: unknown, name: string): ToyConfig {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new CheckpointError(`config.json: ${z.prettifyError(parsed.error)}`);
  const c = parsed.data;
  if (c.hidden_size % c.num_attention_heads !== 0 || c.num_attention_heads % c.num_key_value_heads !== 0) throw new CheckpointError('config.json: heads do not divide the hidden size, or key/value heads the heads');
  const text: TextConfig = {
    modelType: 'toy_gelu',
    hiddenSize: c.hidden_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads: c.num_key_value_heads,
    headDim: c.hidden_size / c.num_attention_heads,
    intermediateSize: c.intermediate_size,
    // The decoder's shared pieces read no RMSNorm here: the toy's own norm takes layerNormEps.
    rmsNormEps: c.layer_norm_eps,
    ropeTheta: c.rope_theta,
    ropeScaling: null,
    vocabSize: c.vocab_size,
    maxPositionEmbeddings: c.max_position_embeddings,
    tieWordEmbeddings: c.tie_word_embeddings,
    qkvBias: false,
    outputBias: false,
    mlpBias: true,
    layerWindows: new Array<null>(c.num_hidden_layers).fill(null),
  };
  return { architecture: name, text, vision: null, layerNormEps: c.layer_norm_eps, hiddenAct: c.hidden_act };
}
