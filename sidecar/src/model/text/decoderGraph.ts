/**
 * The text decoder (Llama, Mistral, Qwen2) as one ONNX graph for prefill chunks and decode steps
 * alike. Batch 1, activations `[S, hidden]`.
 *
 * Inputs: `inputs_embeds [S, hidden]` (image features go straight in), `position_ids [S]` (int64,
 * the true positions: a compressed cache's positions are not 0..n-1), `attention_mask [S, T]`
 * (additive, T = past + S), and per layer `past_key.i` / `past_value.i` `[Hkv, P, D]` of any
 * length P, post-RoPE. A layer with a sliding window (Mistral, Qwen2's upper layers) also takes
 * `past_position.i [Hkv, P]` (int64): the true position of every past slot, which a compressed
 * cache keeps per head and which need not be contiguous. The window is applied on true positions,
 * as transformers applies it on an uncompressed cache: a query at q sees a key at k only when
 * q - k < window (the causal part stays in `attention_mask`).
 * Outputs: `logits [S, vocab]` (or only `last_logits [1, vocab]` when that is what is fetched), per layer the chunk's new `key.i` / `value.i` `[Hkv, S, D]`
 * (post-RoPE; the cache appends them) and `colsum.i [Hq, T]`: the attention each key received
 * from the chunk's query rows, per query head, which LOOK-M accumulates, and `window_colsum.i`, the
 * same over the chunk's last `window_rows` rows only. A window longer than a chunk spans several
 * chunks: each emits its share (the rows' attention over the keys that existed then) and the
 * caller adds them up, so no chunk size limits the window.
 *
 * Plain ONNX ops throughout (opset 17): attention probabilities must be materialised for the
 * column sums anyway, so the fused attention ops would not save the `[S, T]` block.
 */
import type { TextConfig } from '../config.js';
import { buildModel, GraphBuilder, type ValueSpec } from '../graph/onnxBuilder.js';
import type { WeightPool } from '../graph/weightPool.js';
import { ropeInverseFrequencies } from './rope.js';

export interface DecoderGraph {
  model: Uint8Array;
  inputs: ValueSpec[];
  outputs: ValueSpec[];
}

/** Weights of the layers' linear projections: float32 as stored, or 4-bit blocks (MatMulNBits). */
export type WeightBits = 32 | 4;

/** A `--weight-bits` value as a WeightBits, or a clear error. */
export function parseWeightBits(value: string | undefined): WeightBits {
  if (value === undefined || value === '32') return 32;
  if (value === '4') return 4;
  throw new Error(`--weight-bits must be 32 or 4, got ${value}`);
}

/** Inputs sharing one scale in 4-bit mode (onnxruntime's usual choice). */
const Q4_BLOCK = 32;

export function buildDecoderGraph(config: TextConfig, weights: WeightPool, weightBits: WeightBits = 32): DecoderGraph {
  const { hiddenSize: E, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: I, vocabSize: V, numLayers } = config;
  const group = H / Hkv;
  const g = new GraphBuilder();

  const rmsNorm = (x: string, weight: string, name: string) => {
    const squared = g.op('Mul', [x, x], {}, `${name}/square`);
    const mean = g.op('ReduceMean', [squared], { axes: [-1], keepdims: 1 }, `${name}/mean`);
    const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [mean, g.scalar(config.rmsNormEps)], {}, `${name}/eps`)], {}, `${name}/sqrt`)], {}, `${name}/inv`);
    return g.op('Mul', [g.op('Mul', [x, inv], {}, `${name}/scaled`), weights.use(weight, [E])], {}, name);
  };
  const linear = (x: string, prefix: string, outFeatures: number, inFeatures: number, bias: boolean, name: string) => {
    if (weightBits === 4) {
      const { data, scales } = weights.useQuantized(`${prefix}.weight`, [outFeatures, inFeatures], Q4_BLOCK);
      const product = g.op('MatMulNBits', [x, data, scales], { K: inFeatures, N: outFeatures, bits: 4, block_size: Q4_BLOCK }, bias ? `${name}/q4` : name, 'com.microsoft');
      return bias ? g.op('Add', [product, weights.use(`${prefix}.bias`, [outFeatures])], {}, name) : product;
    }
    const inputs = [x, weights.use(`${prefix}.weight`, [outFeatures, inFeatures])];
    if (bias) inputs.push(weights.use(`${prefix}.bias`, [outFeatures]));
    return g.op('Gemm', inputs, { transB: 1 }, name);
  };

  // Rotary tables from the explicit positions: [1, S, D] cos and sin.
  const positions = g.op('Cast', ['position_ids'], { to: 1 }, '/rope/positions');
  const freqs = g.op('Mul', [g.op('Unsqueeze', [positions, g.ints([1])], {}, '/rope/column'), g.vector('rope_inv_freq', ropeInverseFrequencies(config))], {}, '/rope/freqs');
  const angles = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }, '/rope/angles_half'), g.ints([0])], {}, '/rope/angles');
  const cos = g.op('Cos', [angles], {}, '/rope/cos');
  const sin = g.op('Sin', [angles], {}, '/rope/sin');
  const rotate = (x: string, name: string) => {
    const first = g.op('Slice', [x, g.ints([0]), g.ints([D / 2]), g.ints([2])], {}, `${name}/x1`);
    const second = g.op('Slice', [x, g.ints([D / 2]), g.ints([D]), g.ints([2])], {}, `${name}/x2`);
    const rotated = g.op('Concat', [g.op('Neg', [second], {}, `${name}/neg`), first], { axis: 2 }, `${name}/rotate_half`);
    return g.op('Add', [g.op('Mul', [x, cos], {}, `${name}/cos`), g.op('Mul', [rotated, sin], {}, `${name}/sin`)], {}, name);
  };
  const heads = (x: string, count: number, name: string) =>
    g.op('Transpose', [g.op('Reshape', [x, g.ints([-1, count, D])], {}, `${name}/split`)], { perm: [1, 0, 2] }, name);

  const inputs: ValueSpec[] = [
    { name: 'inputs_embeds', type: 'float32', dims: ['chunk', E] },
    { name: 'position_ids', type: 'int64', dims: ['chunk'] },
    { name: 'attention_mask', type: 'float32', dims: ['chunk', 'total'] },
    { name: 'window_rows', type: 'int64', dims: [1] },
  ];
  const outputs: ValueSpec[] = [{ name: 'logits', type: 'float32', dims: ['chunk', V] }];
  const scale = g.scalar(1 / Math.sqrt(D));
  // The window's first row in the chunk, S - window_rows (clamped at 0: never a from-the-end index).
  const chunkLength = g.op('Shape', ['inputs_embeds'], { start: 0, end: 1 }, '/window/chunk_length');
  const windowStart = g.op('Max', [g.op('Sub', [chunkLength, 'window_rows'], {}, '/window/start_raw'), g.ints([0])], {}, '/window/start');
  // The chunk's positions as queries [1, S, 1] and as keys of every KV head [Hkv, S], built once
  // for the first layer with a sliding window.
  let chunkPositions: { queries: string; keys: string } | undefined;
  /** `[Hkv, 1, S, T]` additive mask: -inf where the key is `window` or more positions behind the query. */
  const slidingMask = (layer: number, window: number, n: string) => {
    chunkPositions ??= {
      queries: g.op('Unsqueeze', ['position_ids', g.ints([0, 2])], {}, '/sliding/query_positions'),
      keys: g.op('Expand', [g.op('Unsqueeze', ['position_ids', g.ints([0])], {}, '/sliding/chunk_row'), g.op('Concat', [g.ints([Hkv]), g.op('Shape', ['position_ids'], {}, '/sliding/chunk_shape')], { axis: 0 }, '/sliding/chunk_keys_shape')], {}, '/sliding/chunk_keys'),
    };
    const { queries: queryPositions, keys: chunkKeyPositions } = chunkPositions;
    const keyPositions = g.op('Concat', [`past_position.${layer}`, chunkKeyPositions], { axis: 1 }, `${n}/sliding/key_positions`);
    const distance = g.op('Sub', [queryPositions, g.op('Unsqueeze', [keyPositions, g.ints([1])], {}, `${n}/sliding/keys_row`)], {}, `${n}/sliding/distance`);
    const visible = g.op('Less', [distance, g.ints([window])], {}, `${n}/sliding/visible`);
    return g.op('Unsqueeze', [g.op('Where', [visible, g.scalar(0), g.scalar(-Infinity)], {}, `${n}/sliding/additive`), g.ints([1])], {}, `${n}/sliding/mask`);
  };

  let hidden = 'inputs_embeds';
  for (let i = 0; i < numLayers; i++) {
    const p = `text.layers.${i}`;
    const n = `/text/layers.${i}`;
    inputs.push({ name: `past_key.${i}`, type: 'float32', dims: [Hkv, 'past', D] }, { name: `past_value.${i}`, type: 'float32', dims: [Hkv, 'past', D] });
    const window = config.layerWindows[i];
    if (window !== null) inputs.push({ name: `past_position.${i}`, type: 'int64', dims: [Hkv, 'past'] });
    outputs.push(
      { name: `key.${i}`, type: 'float32', dims: [Hkv, 'chunk', D] },
      { name: `value.${i}`, type: 'float32', dims: [Hkv, 'chunk', D] },
      { name: `colsum.${i}`, type: 'float32', dims: [H, 'total'] },
      { name: `window_colsum.${i}`, type: 'float32', dims: [H, 'total'] },
    );
    const x = rmsNorm(hidden, `${p}.input_layernorm.weight`, `${n}/input_layernorm`);
    const q = rotate(heads(linear(x, `${p}.self_attn.q_proj`, H * D, E, config.qkvBias, `${n}/attn/q_proj`), H, `${n}/attn/q`), `${n}/attn/q_rope`);
    const k = rotate(heads(linear(x, `${p}.self_attn.k_proj`, Hkv * D, E, config.qkvBias, `${n}/attn/k_proj`), Hkv, `${n}/attn/k`), `${n}/attn/k_rope`);
    const v = heads(linear(x, `${p}.self_attn.v_proj`, Hkv * D, E, config.qkvBias, `${n}/attn/v_proj`), Hkv, `${n}/attn/v`);
    g.nodes.push({ name: `${n}/attn/key_out`, op: 'Identity', inputs: [k], outputs: [`key.${i}`] });
    g.nodes.push({ name: `${n}/attn/value_out`, op: 'Identity', inputs: [v], outputs: [`value.${i}`] });
    const keys = g.op('Concat', [`past_key.${i}`, k], { axis: 1 }, `${n}/attn/keys`);
    const values = g.op('Concat', [`past_value.${i}`, v], { axis: 1 }, `${n}/attn/values`);
    // Query heads of one KV group attend together: q [Hkv, group, S, D] x keys [Hkv, 1, D, T].
    const qGrouped = g.op('Reshape', [q, g.ints([Hkv, group, -1, D])], {}, `${n}/attn/q_grouped`);
    const keysT = g.op('Unsqueeze', [g.op('Transpose', [keys], { perm: [0, 2, 1] }, `${n}/attn/keys_t`), g.ints([1])], {}, `${n}/attn/keys_t4`);
    const logits = g.op('Mul', [g.op('MatMul', [qGrouped, keysT], {}, `${n}/attn/qk`), scale], {}, `${n}/attn/scaled`);
    let masked = g.op('Add', [logits, 'attention_mask'], {}, `${n}/attn/masked`);
    if (window !== null) masked = g.op('Add', [masked, slidingMask(i, window, n)], {}, `${n}/attn/windowed`);
    const probs = g.op('Softmax', [masked], { axis: -1 }, `${n}/attn/probs`);
    const colsum = g.op('ReduceSum', [probs, g.ints([2])], { keepdims: 0 }, `${n}/attn/colsum_grouped`);
    g.nodes.push({ name: `${n}/attn/colsum`, op: 'Reshape', inputs: [colsum, g.ints([H, -1])], outputs: [`colsum.${i}`] });
    // SnapKV's observation: the same sums over the chunk's rows in the window only (none: zeros).
    const windowRows = g.op('Slice', [probs, windowStart, g.ints([2 ** 31 - 1]), g.ints([2])], {}, `${n}/attn/window_rows`);
    const windowSum = g.op('ReduceSum', [windowRows, g.ints([2])], { keepdims: 0 }, `${n}/attn/window_colsum_grouped`);
    g.nodes.push({ name: `${n}/attn/window_colsum`, op: 'Reshape', inputs: [windowSum, g.ints([H, -1])], outputs: [`window_colsum.${i}`] });
    const context = g.op('MatMul', [probs, g.op('Unsqueeze', [values, g.ints([1])], {}, `${n}/attn/values4`)], {}, `${n}/attn/context`);
    const merged = g.op(
      'Reshape',
      [g.op('Transpose', [g.op('Reshape', [context, g.ints([H, -1, D])], {}, `${n}/attn/context_heads`)], { perm: [1, 0, 2] }, `${n}/attn/context_t`), g.ints([-1, H * D])],
      {},
      `${n}/attn/context_flat`,
    );
    const attended = g.op('Add', [hidden, linear(merged, `${p}.self_attn.o_proj`, E, H * D, config.outputBias, `${n}/attn/o_proj`)], {}, `${n}/attn/residual`);
    const y = rmsNorm(attended, `${p}.post_attention_layernorm.weight`, `${n}/post_attention_layernorm`);
    const gate = linear(y, `${p}.mlp.gate_proj`, I, E, config.mlpBias, `${n}/mlp/gate_proj`);
    const up = linear(y, `${p}.mlp.up_proj`, I, E, config.mlpBias, `${n}/mlp/up_proj`);
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate], {}, `${n}/mlp/sigmoid`)], {}, `${n}/mlp/silu`), up], {}, `${n}/mlp/act`);
    const residual = g.op('Add', [attended, linear(act, `${p}.mlp.down_proj`, E, I, config.mlpBias, `${n}/mlp/down_proj`)], {}, `${n}/mlp/residual`);
    // The column sums are leaves of the graph, and onnxruntime's default order runs them after the
    // whole layer stack, keeping every layer's [heads, chunk, total] probabilities alive until then
    // (measured: +1 such block per layer, 3.6 GiB for a 512-token chunk over 8K on a 24-layer model).
    // Adding 0 x their max to the residual stream (exact: the sums are finite) orders them here.
    const sumsMax = g.op('Add', [g.op('ReduceMax', [colsum], { keepdims: 0 }, `${n}/order/colsum_max`), g.op('ReduceMax', [windowSum], { keepdims: 0 }, `${n}/order/window_max`)], {}, `${n}/order/max`);
    hidden = g.op('Add', [residual, g.op('Mul', [sumsMax, g.scalar(0)], {}, `${n}/order/zero`)], {}, `${n}/order/after_sums`);
  }
  const final = rmsNorm(hidden, 'text.norm.weight', '/text/norm');
  const head = weights.use(`${config.tieWordEmbeddings ? 'text.embed_tokens' : 'text.lm_head'}.weight`, [V, E]);
  g.nodes.push({ name: '/text/lm_head', op: 'Gemm', inputs: [final, head], outputs: ['logits'], attributes: { transB: 1 } });
  // The last row only: what generation needs, without a [chunk, vocab] product (fetch it instead of `logits`).
  const lastRow = g.op('Slice', [final, g.ints([-1]), g.ints([2 ** 31 - 1]), g.ints([0])], {}, '/text/last_row');
  g.nodes.push({ name: '/text/lm_head_last', op: 'Gemm', inputs: [lastRow, head], outputs: ['last_logits'], attributes: { transB: 1 } });
  outputs.push({ name: 'last_logits', type: 'float32', dims: [1, V] });

  const model = buildModel({
    name: 'text_decoder',
    inputs,
    outputs,
    nodes: g.nodes,
    constants: g.constants,
    int64Constants: g.int64Constants,
    external: weights.initializers,
  });
  return { model, inputs, outputs };
}
