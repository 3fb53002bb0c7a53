/**
 * A decoder-only transformer (Llama, Mistral, Qwen2, and any architecture that swaps its norm or
 * MLP) as one ONNX graph for prefill chunks and decode steps alike, composed from the pieces of
 * `graph/layers/`. Batch 1, activations `[S, hidden]`.
 *
 * Inputs: `inputs_embeds [S, hidden]` (image features go straight in), `position_ids [S]` (int64,
 * the true positions: a compressed cache's positions are not 0..n-1; `[3, S]` for M-RoPE, see `DecoderRope`), `attention_mask [S, T]`
 * (additive, T = past + S), `window_rows [1]`, and per layer the past (see `CachedAttention`).
 * Outputs: `last_logits [1, vocab]` (the last row's), `hidden [S, hidden]` (the last norm's
 * output, for `buildLmHeadGraph` when every row's logits are wanted: onnxruntime runs every node
 * of a graph whatever is fetched, so a `[S, vocab]` head here cost every decode step a second
 * full-vocabulary product), per layer the chunk's new keys and values and the attention column
 * sums LOOK-M accumulates.
 * A window longer than a chunk spans several chunks: each emits its share (the rows' attention
 * over the keys that existed then) and the caller adds them up, so no chunk size limits it.
 * Every value is listed with its role in the graph's manifest, which is all the runtime reads.
 */
import type { TextConfig } from '../config.js';
import type { GraphContext } from '../graph/layers/context.js';
import { CachedAttention, orderAfter, type ScoresProduct } from '../graph/layers/attention.js';
import { linear2d, type Linear, type WeightBits } from '../graph/layers/linear.js';
import { swiGluMlp } from '../graph/layers/mlp.js';
import { rmsNorm } from '../graph/layers/norms.js';
import { applyRotary, rotaryAngles, rotaryCaches } from '../graph/layers/rotary.js';
import type { BuiltGraph, ManifestValue } from '../graph/manifest.js';
import { buildModel, GraphBuilder } from '../graph/onnxBuilder.js';
import type { WeightPool } from '../graph/weightPool.js';
import { ropeInverseFrequencies } from './rope.js';

export type { WeightBits } from '../graph/layers/linear.js';

/** A `--weight-bits` value as a WeightBits, or a clear error. */
export function parseWeightBits(value: string | undefined): WeightBits {
  if (value === undefined || value === '32') return 32;
  if (value === '8') return 8;
  if (value === '4') return 4;
  throw new Error(`--weight-bits must be 32, 8 or 4, got ${value}`);
}

/** The blocks an architecture chooses; attention, rotary embeddings and the LM head are shared. */
export interface DecoderBlocks {
  /** The norm before attention, before the MLP and after the last layer; weights under `prefix`. */
  norm: (x: string, prefix: string, name: string) => string;
  /** Layer `prefix`'s feed-forward block (`text.layers.i.mlp`), without the residual. */
  mlp: (x: string, prefix: string, name: string) => string;
}

export type DecoderBlocksFactory = (context: GraphContext, config: TextConfig, linear: Linear) => DecoderBlocks;

/**
 * The positions input and the rotary angles `[chunk, headDim / 2]` made from it. Default: one
 * position per token (`position_ids [chunk]`); multimodal rotary embeddings take several components
 * per token (Qwen2-VL's M-RoPE: `[3, chunk]`) and choose which one each frequency reads.
 */
export interface DecoderRope {
  input: ManifestValue;
  angles(g: GraphBuilder, config: TextConfig): string;
}

/** One position per token, the frequencies of `text/rope.ts`. */
export const standardRope: DecoderRope = {
  input: { name: 'position_ids', type: 'int64', dims: ['chunk'], role: 'positions' },
  angles: (g, config) => rotaryAngles(g, 'position_ids', ropeInverseFrequencies(config)),
};

/** Llama's blocks (Mistral's and Qwen2's too): RMSNorm and the SwiGLU MLP. */
export const llamaBlocks: DecoderBlocksFactory = (context, config, linear) => ({
  norm: (x, prefix, name) => rmsNorm(context, x, prefix, config.hiddenSize, config.rmsNormEps, name),
  mlp: (x, prefix, name) => swiGluMlp(context.g, linear, x, prefix, config.hiddenSize, config.intermediateSize, config.mlpBias, name),
});

/** How a decoder graph is built (an architecture's `BuildOptions`). */
export interface DecoderGraphOptions {
  /** 8 / 4: the decoder's linear layers on 8- / 4-bit block-quantized weights (MatMulNBits). */
  weightBits: WeightBits;
  /**
   * The present K/V (past and chunk, as attention read them) as graph outputs: a cache kept on a
   * device takes them as its next past. Off (default) for a cache on the host, which appends the
   * chunk's own K/V: onnxruntime holds every graph output of a run until the run ends, an
   * intermediate only until its layer has read it (Qwen2-0.5B, 8K past: 200 MB a run).
   */
  presentOutputs?: boolean;
  /** How attention computes its scores (`ScoresProduct`): `plain` for WebGPU. Default `fused`. */
  scores?: ScoresProduct;
}

export function buildDecoderGraph(
  config: TextConfig,
  weights: WeightPool,
  { weightBits, presentOutputs = false, scores = 'fused' }: DecoderGraphOptions = { weightBits: 32 },
  blocks: DecoderBlocksFactory = llamaBlocks,
  positions: DecoderRope = standardRope,
): BuiltGraph {
  const { hiddenSize: E, numHeads: H, numKvHeads: Hkv, headDim: D, vocabSize: V, numLayers } = config;
  const g = new GraphBuilder();
  const context = { g, weights };
  const linear = linear2d(context, weightBits);
  const { norm, mlp } = blocks(context, config, linear);

  const rope = rotaryCaches(g, positions.angles(g, config));
  const inputs: ManifestValue[] = [
    { name: 'inputs_embeds', type: 'float32', dims: ['chunk', E], role: 'embeds' },
    positions.input,
    { name: 'attention_mask', type: 'float32', dims: ['chunk', 'total'], role: 'attentionMask' },
    { name: 'window_rows', type: 'int64', dims: [1], role: 'windowRows' },
  ];
  const outputs: ManifestValue[] = [];
  const shape = { numHeads: H, numKvHeads: Hkv, headDim: D };
  const attention = new CachedAttention(g, shape, { embeds: 'inputs_embeds', positionIds: positions.input.name, attentionMask: 'attention_mask', windowRows: 'window_rows' }, scores);

  // The present K/V, when they are outputs, are the graph's first (see DEVICE_OUTPUTS_FIRST).
  const presents: ManifestValue[] = [];
  let hidden = 'inputs_embeds';
  for (let i = 0; i < numLayers; i++) {
    const p = `text.layers.${i}`;
    const n = `/text/layers.${i}`;
    const window = config.layerWindows[i];
    const io = CachedAttention.layerIo(i, shape, window);
    inputs.push(...io.inputs);
    outputs.push(...io.outputs.filter((o) => !isPresent(o)));
    if (presentOutputs) presents.push(...io.outputs.filter(isPresent));
    const x = norm(hidden, `${p}.input_layernorm`, `${n}/input_layernorm`);
    const q = attention.splitHeads(applyRotary(g, linear(x, `${p}.self_attn.q_proj`, H * D, E, config.qkvBias, `${n}/attn/q_proj`), rope, H, `${n}/attn/q_rope`), H, `${n}/attn/q`);
    const k = attention.splitHeads(applyRotary(g, linear(x, `${p}.self_attn.k_proj`, Hkv * D, E, config.qkvBias, `${n}/attn/k_proj`), rope, Hkv, `${n}/attn/k_rope`), Hkv, `${n}/attn/k`);
    const v = attention.splitHeads(linear(x, `${p}.self_attn.v_proj`, Hkv * D, E, config.qkvBias, `${n}/attn/v_proj`), Hkv, `${n}/attn/v`);
    const attended = attention.layer(i, q, k, v, window, n);
    const afterAttention = g.op('Add', [hidden, linear(attended.context, `${p}.self_attn.o_proj`, E, H * D, config.outputBias, `${n}/attn/o_proj`)], {}, `${n}/attn/residual`);
    const y = norm(afterAttention, `${p}.post_attention_layernorm`, `${n}/post_attention_layernorm`);
    const residual = g.op('Add', [afterAttention, mlp(y, `${p}.mlp`, `${n}/mlp`)], {}, `${n}/mlp/residual`);
    hidden = orderAfter(g, residual, attended.sums, n);
  }
  g.nodes.push({ name: '/text/hidden', op: 'Identity', inputs: [norm(hidden, 'text.norm', '/text/norm')], outputs: ['hidden'] });
  outputs.push({ name: 'hidden', type: 'float32', dims: ['chunk', E], role: 'hidden' });
  // The last row only: what generation needs, without a [chunk, vocab] product.
  const lastRow = g.op('Slice', ['hidden', g.ints([-1]), g.ints([2 ** 31 - 1]), g.ints([0])], {}, '/text/last_row');
  lmHead(context, config, lmHeadBits(weightBits), lastRow, '/text/lm_head_last', 'last_logits');
  outputs.push({ name: 'last_logits', type: 'float32', dims: [1, V], role: 'lastLogits' });
  outputs.unshift(...presents);

  const model = buildModel({ name: 'text_decoder', inputs, outputs, nodes: g.nodes, constants: g.constants, int64Constants: g.int64Constants, external: weights.initializers });
  return { model, manifest: { graph: 'text_decoder', inputs, outputs } };
}

/** The output projection's weight: the embedding table when the model ties them. */
function lmHeadWeight(config: TextConfig): string {
  return `${config.tieWordEmbeddings ? 'text.embed_tokens' : 'text.lm_head'}.weight`;
}

/**
 * The LM head's weight bits at a decoder's `weightBits`: 8-bit weights quantize the head too (as
 * llama.cpp's Q8_0 does: on Qwen2-0.5B the head is a quarter of the weights every decode step
 * reads); 4-bit keeps it float32, as it always did (its results unchanged).
 */
export function lmHeadBits(weightBits: WeightBits): WeightBits {
  return weightBits === 8 ? 8 : 32;
}

/** `hidden [rows, E]` -> logits `[rows, V]` as the value `output` at `bits`, the product named `name`. */
function lmHead({ g, weights }: GraphContext, config: TextConfig, bits: WeightBits, hidden: string, name: string, output: string): void {
  const { vocabSize: V, hiddenSize: E } = config;
  if (bits === 32) {
    g.nodes.push({ name, op: 'Gemm', inputs: [hidden, weights.use(lmHeadWeight(config), [V, E])], outputs: [output], attributes: { transB: 1 } });
    return;
  }
  const logits = linear2d({ g, weights }, bits)(hidden, lmHeadWeight(config).replace(/\.weight$/, ''), V, E, false, name);
  g.nodes.push({ name: `${name}/out`, op: 'Identity', inputs: [logits], outputs: [output] });
}

/**
 * The LM head alone, `hidden [S, hidden]` (the decoder's output of that role) -> `logits [S, vocab]`:
 * every row's logits, for the callers that score whole sequences (parity checks, evaluation). Its
 * own session, created only when such a caller asks, so generation never pays for it.
 */
export function buildLmHeadGraph(config: TextConfig, weights: WeightPool, weightBits: WeightBits = 32): BuiltGraph {
  const { hiddenSize: E, vocabSize: V } = config;
  const inputs: ManifestValue[] = [{ name: 'hidden', type: 'float32', dims: ['chunk', E], role: 'hidden' }];
  const outputs: ManifestValue[] = [{ name: 'logits', type: 'float32', dims: ['chunk', V], role: 'logits' }];
  const g = new GraphBuilder();
  lmHead({ g, weights }, config, lmHeadBits(weightBits), 'hidden', '/text/lm_head', 'logits');
  const model = buildModel({ name: 'lm_head', inputs, outputs, nodes: g.nodes, constants: g.constants, int64Constants: g.int64Constants, external: weights.initializers });
  return { model, manifest: { graph: 'lm_head', inputs, outputs } };
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
