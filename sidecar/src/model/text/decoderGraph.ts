/**
 * A decoder-only transformer (Llama, Mistral, Qwen2, and any architecture that swaps its norm or
 * MLP) as one ONNX graph for prefill chunks and decode steps alike, composed from the pieces of
 * `graph/layers/`. Batch 1, activations `[S, hidden]`.
 *
 * Inputs: `inputs_embeds [S, hidden]` (image features go straight in), `position_ids [S]` (int64,
 * the true positions: a compressed cache's positions are not 0..n-1), `attention_mask [S, T]`
 * (additive, T = past + S), `window_rows [1]`, and per layer the past (see `CachedAttention`).
 * Outputs: `logits [S, vocab]` (or only `last_logits [1, vocab]` when that is what is fetched),
 * per layer the chunk's new keys and values and the attention column sums LOOK-M accumulates.
 * A window longer than a chunk spans several chunks: each emits its share (the rows' attention
 * over the keys that existed then) and the caller adds them up, so no chunk size limits it.
 * Every value is listed with its role in the graph's manifest, which is all the runtime reads.
 */
import type { TextConfig } from '../config.js';
import type { GraphContext } from '../graph/layers/context.js';
import { CachedAttention, orderAfter } from '../graph/layers/attention.js';
import { linear2d, type Linear, type WeightBits } from '../graph/layers/linear.js';
import { swiGluMlp } from '../graph/layers/mlp.js';
import { rmsNorm } from '../graph/layers/norms.js';
import { rotaryTables, rotateHalf } from '../graph/layers/rotary.js';
import type { BuiltGraph, ManifestValue } from '../graph/manifest.js';
import { buildModel, GraphBuilder } from '../graph/onnxBuilder.js';
import type { WeightPool } from '../graph/weightPool.js';
import { ropeInverseFrequencies } from './rope.js';

export type { WeightBits } from '../graph/layers/linear.js';

/** A `--weight-bits` value as a WeightBits, or a clear error. */
export function parseWeightBits(value: string | undefined): WeightBits {
  if (value === undefined || value === '32') return 32;
  if (value === '4') return 4;
  throw new Error(`--weight-bits must be 32 or 4, got ${value}`);
}

/** The blocks an architecture chooses; attention, rotary embeddings and the LM head are shared. */
export interface DecoderBlocks {
  /** The norm before attention, before the MLP and after the last layer; weights under `prefix`. */
  norm: (x: string, prefix: string, name: string) => string;
  /** Layer `prefix`'s feed-forward block (`text.layers.i.mlp`), without the residual. */
  mlp: (x: string, prefix: string, name: string) => string;
}

export type DecoderBlocksFactory = (context: GraphContext, config: TextConfig, linear: Linear) => DecoderBlocks;

/** Llama's blocks (Mistral's and Qwen2's too): RMSNorm and the SwiGLU MLP. */
export const llamaBlocks: DecoderBlocksFactory = (context, config, linear) => ({
  norm: (x, prefix, name) => rmsNorm(context, x, prefix, config.hiddenSize, config.rmsNormEps, name),
  mlp: (x, prefix, name) => swiGluMlp(context.g, linear, x, prefix, config.hiddenSize, config.intermediateSize, config.mlpBias, name),
});

export function buildDecoderGraph(config: TextConfig, weights: WeightPool, weightBits: WeightBits = 32, blocks: DecoderBlocksFactory = llamaBlocks): BuiltGraph {
  const { hiddenSize: E, numHeads: H, numKvHeads: Hkv, headDim: D, vocabSize: V, numLayers } = config;
  const g = new GraphBuilder();
  const context = { g, weights };
  const linear = linear2d(context, weightBits);
  const { norm, mlp } = blocks(context, config, linear);

  const rope = rotaryTables(g, 'position_ids', ropeInverseFrequencies(config));
  const inputs: ManifestValue[] = [
    { name: 'inputs_embeds', type: 'float32', dims: ['chunk', E], role: 'embeds' },
    { name: 'position_ids', type: 'int64', dims: ['chunk'], role: 'positions' },
    { name: 'attention_mask', type: 'float32', dims: ['chunk', 'total'], role: 'attentionMask' },
    { name: 'window_rows', type: 'int64', dims: [1], role: 'windowRows' },
  ];
  const outputs: ManifestValue[] = [{ name: 'logits', type: 'float32', dims: ['chunk', V], role: 'logits' }];
  const shape = { numHeads: H, numKvHeads: Hkv, headDim: D };
  const attention = new CachedAttention(g, shape, { embeds: 'inputs_embeds', positionIds: 'position_ids', attentionMask: 'attention_mask', windowRows: 'window_rows' });

  // The present K/V are the graph's first outputs (see DEVICE_OUTPUTS_FIRST).
  const presents: ManifestValue[] = [];
  let hidden = 'inputs_embeds';
  for (let i = 0; i < numLayers; i++) {
    const p = `text.layers.${i}`;
    const n = `/text/layers.${i}`;
    const window = config.layerWindows[i];
    const io = CachedAttention.layerIo(i, shape, window);
    inputs.push(...io.inputs);
    outputs.push(...io.outputs.filter((o) => !isPresent(o)));
    presents.push(...io.outputs.filter(isPresent));
    const x = norm(hidden, `${p}.input_layernorm`, `${n}/input_layernorm`);
    const q = rotateHalf(g, attention.splitHeads(linear(x, `${p}.self_attn.q_proj`, H * D, E, config.qkvBias, `${n}/attn/q_proj`), H, `${n}/attn/q`), rope, D, `${n}/attn/q_rope`);
    const k = rotateHalf(g, attention.splitHeads(linear(x, `${p}.self_attn.k_proj`, Hkv * D, E, config.qkvBias, `${n}/attn/k_proj`), Hkv, `${n}/attn/k`), rope, D, `${n}/attn/k_rope`);
    const v = attention.splitHeads(linear(x, `${p}.self_attn.v_proj`, Hkv * D, E, config.qkvBias, `${n}/attn/v_proj`), Hkv, `${n}/attn/v`);
    const attended = attention.layer(i, q, k, v, window, n);
    const afterAttention = g.op('Add', [hidden, linear(attended.context, `${p}.self_attn.o_proj`, E, H * D, config.outputBias, `${n}/attn/o_proj`)], {}, `${n}/attn/residual`);
    const y = norm(afterAttention, `${p}.post_attention_layernorm`, `${n}/post_attention_layernorm`);
    const residual = g.op('Add', [afterAttention, mlp(y, `${p}.mlp`, `${n}/mlp`)], {}, `${n}/mlp/residual`);
    hidden = orderAfter(g, residual, attended.sums, n);
  }
  const final = norm(hidden, 'text.norm', '/text/norm');
  const head = weights.use(`${config.tieWordEmbeddings ? 'text.embed_tokens' : 'text.lm_head'}.weight`, [V, E]);
  g.nodes.push({ name: '/text/lm_head', op: 'Gemm', inputs: [final, head], outputs: ['logits'], attributes: { transB: 1 } });
  // The last row only: what generation needs, without a [chunk, vocab] product (fetch it instead of `logits`).
  const lastRow = g.op('Slice', [final, g.ints([-1]), g.ints([2 ** 31 - 1]), g.ints([0])], {}, '/text/last_row');
  g.nodes.push({ name: '/text/lm_head_last', op: 'Gemm', inputs: [lastRow, head], outputs: ['last_logits'], attributes: { transB: 1 } });
  outputs.push({ name: 'last_logits', type: 'float32', dims: [1, V], role: 'lastLogits' });
  outputs.unshift(...presents);

  const model = buildModel({ name: 'text_decoder', inputs, outputs, nodes: g.nodes, constants: g.constants, int64Constants: g.int64Constants, external: weights.initializers });
  return { model, manifest: { graph: 'text_decoder', inputs, outputs } };
}

/**
 * Why the present K/V come first among the decoder's outputs: onnxruntime-node 1.30 applies
 * `preferredOutputLocation` by the position of an output in the run's fetch list, not by its name
 * (measured: fetching [last_logits, present_key.0, ...] put the location of the graph's second
 * output on the second fetch). With the device outputs first in the graph and fetched first in the
 * same order, positions and names agree, so the K/V stay on the device and the rest comes back.
 */
function isPresent(value: ManifestValue): boolean {
  return value.role === 'presentKey' || value.role === 'presentValue';
}
