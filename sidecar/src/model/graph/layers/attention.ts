/**
 * Causal self-attention on top of a past cache, with what LOOK-M reads: grouped-query heads over
 * `past_key.i` / `past_value.i` `[Hkv, P, D]` of any length plus the chunk's own keys, the new
 * keys and values as outputs `key.i` / `value.i` (the cache appends them), and the attention each
 * key received, summed over the chunk's query rows and each KV head's query heads (`colsum.i
 * [Hkv, P + S]`), and per query head over the chunk's last `window_rows` rows only
 * (`window_colsum.i [Hkv, group, P + S]`, SnapKV's observation; no columns without a window). A
 * layer with a sliding window also reads `past_position.i [Hkv, P]`, the true position of every
 * past slot (a compressed cache keeps them per head, not contiguous): a query at q sees a key at k
 * only when q - k < window.
 *
 * Plain ONNX ops (and, on the CPU, onnxruntime's FusedMatMul, a MatMul reading its second input
 * transposed): the probabilities must be materialised for the column sums anyway.
 */
import type { GraphBuilder } from '../onnxBuilder.js';
import type { ManifestValue } from '../manifest.js';

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

/** The graph inputs the attention of every layer shares. */
export interface AttentionInputs {
  embeds: string;
  positionIds: string;
  attentionMask: string;
  windowRows: string;
}

/**
 * How a layer's scores `q k^T` are computed. `fused` (the CPU): onnxruntime's FusedMatMul reads the
 * keys transposed and scales the product, so the past is never copied. `plain`: `MatMul` on a
 * transposed copy of the keys and a scaled query, for providers without FusedMatMul: WebGPU has no
 * kernel for it, and onnxruntime ran it on the CPU, copying every layer's keys to the host and its
 * scores back on every run.
 */
export type ScoresProduct = 'fused' | 'plain';

export interface AttendedLayer {
  /** `[S, Hq * D]`: the heads' outputs side by side, before the output projection. */
  context: string;
  /** The layer's column sums, for `orderAfter`. */
  sums: [string, string];
}

export class CachedAttention {
  private readonly windowStart: string;
  private readonly windowEnd: string;
  /** `[Hkv, group, S, -1]`: a layer's scores `[Hkv, group * S, T]` with the chunk's rows apart. */
  private readonly groupedRows: string;
  /** The chunk's positions as queries `[1, S, 1]` and as keys of every KV head `[Hkv, S]`, built once for the first windowed layer. */
  private chunkPositions: { queries: string; keys: string } | undefined;

  constructor(
    private readonly g: GraphBuilder,
    private readonly shape: AttentionShape,
    private readonly io: AttentionInputs,
    private readonly scores: ScoresProduct = 'fused',
  ) {
    // The window's first row in the chunk, S - window_rows (clamped at 0: never a from-the-end index).
    const chunkLength = g.op('Shape', [io.embeds], { start: 0, end: 1 }, '/window/chunk_length');
    const start = g.op('Max', [g.op('Sub', [chunkLength, io.windowRows], {}, '/window/start_raw'), g.ints([0])], {}, '/window/start');
    // Slice starts and ends of [rows, columns]: the window's rows, and every column (2^31 - 1: to
    // the end) when it has rows, none when it has none.
    const anyRows = g.op('Min', [io.windowRows, g.ints([1])], {}, '/window/any_rows');
    this.windowStart = g.op('Concat', [start, g.ints([0])], { axis: 0 }, '/window/starts');
    this.windowEnd = g.op('Concat', [g.ints([2 ** 31 - 1]), g.op('Mul', [anyRows, g.ints([2 ** 31 - 1])], {}, '/window/column_end')], { axis: 0 }, '/window/ends');
    this.groupedRows = g.op('Concat', [g.ints([shape.numKvHeads, shape.numHeads / shape.numKvHeads]), chunkLength, g.ints([-1])], { axis: 0 }, '/attention/grouped_rows');
  }

  /** The manifest entries of layer `i`'s past (inputs) and of what it adds (outputs). */
  static layerIo(i: number, { numHeads: H, numKvHeads: Hkv, headDim: D }: AttentionShape, window: number | null): { inputs: ManifestValue[]; outputs: ManifestValue[] } {
    const inputs: ManifestValue[] = [
      { name: `past_key.${i}`, type: 'float32', dims: [Hkv, 'past', D], role: 'pastKey', layer: i },
      { name: `past_value.${i}`, type: 'float32', dims: [Hkv, 'past', D], role: 'pastValue', layer: i },
    ];
    if (window !== null) inputs.push({ name: `past_position.${i}`, type: 'int64', dims: [Hkv, 'past'], role: 'pastPosition', layer: i });
    const outputs: ManifestValue[] = [
      { name: `key.${i}`, type: 'float32', dims: [Hkv, 'chunk', D], role: 'key', layer: i },
      { name: `value.${i}`, type: 'float32', dims: [Hkv, 'chunk', D], role: 'value', layer: i },
      { name: `present_key.${i}`, type: 'float32', dims: [Hkv, 'total', D], role: 'presentKey', layer: i },
      { name: `present_value.${i}`, type: 'float32', dims: [Hkv, 'total', D], role: 'presentValue', layer: i },
      // Summed over each KV head's query heads (what the cache's scores keep): a step fetches and adds Hkv rows, not Hq.
      { name: `colsum.${i}`, type: 'float32', dims: [Hkv, 'total'], role: 'columnSums', layer: i },
      // Per query head ([Hkv, group, total] is [Hq, total] row for row, never reshaped: a copy): SnapKV pools each head's.
      { name: `window_colsum.${i}`, type: 'float32', dims: [Hkv, H / Hkv, 'window_total'], role: 'windowColumnSums', layer: i },
    ];
    return { inputs, outputs };
  }

  /** `[S, heads * D]` -> `[heads, S, D]`. */
  splitHeads(x: string, count: number, name: string): string {
    const g = this.g;
    return g.op('Transpose', [g.op('Reshape', [x, g.ints([-1, count, this.shape.headDim])], {}, `${name}/split`)], { perm: [1, 0, 2] }, name);
  }

  /** Layer `i`'s attention of `q [Hq, S, D]` over its past and `k`, `v [Hkv, S, D]` (post-RoPE), named under `n`. */
  layer(i: number, q: string, k: string, v: string, window: number | null, n: string): AttendedLayer {
    const g = this.g;
    const { numHeads: H, numKvHeads: Hkv, headDim: D } = this.shape;
    g.nodes.push({ name: `${n}/attn/key_out`, op: 'Identity', inputs: [k], outputs: [`key.${i}`] });
    g.nodes.push({ name: `${n}/attn/value_out`, op: 'Identity', inputs: [v], outputs: [`value.${i}`] });
    // The query heads of one KV group as rows of one matrix, q [Hkv, group * S, D]: each KV head's
    // keys are read once by one product, never broadcast over the group, and read transposed and
    // scaled by the product itself (FusedMatMul transB, alpha), never transposed into a copy.
    // Past and chunk K/V are concatenated: attending them apart and concatenating the scores instead
    // spares a decode step that copy of the past, but costs a prefill chunk two passes over its
    // [Hkv, group * S, T] scores (measured: 0.80x a 512-token chunk at 8K; bench/results/decode-profile.md).
    // The past and the chunk, as attention reads them, are also outputs (no extra node): a cache kept
    // on the device takes them as the next run's past without a copy to the host.
    const keys = `present_key.${i}`;
    const values = `present_value.${i}`;
    g.nodes.push({ name: `${n}/attn/keys`, op: 'Concat', inputs: [`past_key.${i}`, k], outputs: [keys], attributes: { axis: 1 } });
    g.nodes.push({ name: `${n}/attn/values`, op: 'Concat', inputs: [`past_value.${i}`, v], outputs: [values], attributes: { axis: 1 } });
    const qGrouped = g.op('Reshape', [q, g.ints([Hkv, -1, D])], {}, `${n}/attn/q_grouped`);
    const logits = this.scoresOf(qGrouped, keys, n);
    // [Hkv, group, S, T] for the mask (shared by the group) and the per-row window.
    let masked = g.op('Add', [g.op('Reshape', [logits, this.groupedRows], {}, `${n}/attn/qk_rows`), this.io.attentionMask], {}, `${n}/attn/masked`);
    if (window !== null) masked = g.op('Add', [masked, this.slidingMask(i, window, n)], {}, `${n}/attn/windowed`);
    const probs = g.op('Softmax', [masked], { axis: -1 }, `${n}/attn/probs`);
    const colsum = `colsum.${i}`;
    g.nodes.push({ name: `${n}/attn/colsum`, op: 'ReduceSum', inputs: [probs, g.ints([1, 2])], outputs: [colsum], attributes: { keepdims: 0 } });
    // SnapKV's observation: the same sums over the chunk's rows in the window only. No window (a
    // decode step): no columns either, so a step does not write [Hq, total] zeros nobody reads.
    const windowSum = `window_colsum.${i}`;
    const windowRows = g.op('Slice', [probs, this.windowStart, this.windowEnd, g.ints([2, 3])], {}, `${n}/attn/window_rows`);
    g.nodes.push({ name: `${n}/attn/window_colsum`, op: 'ReduceSum', inputs: [windowRows, g.ints([2])], outputs: [windowSum], attributes: { keepdims: 0 } });
    const flat = g.op('Reshape', [probs, g.op('Shape', [logits], {}, `${n}/attn/qk_shape`)], {}, `${n}/attn/probs_rows`);
    const context = g.op('MatMul', [flat, values], {}, `${n}/attn/context`);
    const merged = g.op(
      'Reshape',
      [g.op('Transpose', [g.op('Reshape', [context, g.ints([H, -1, D])], {}, `${n}/attn/context_heads`)], { perm: [1, 0, 2] }, `${n}/attn/context_t`), g.ints([-1, H * D])],
      {},
      `${n}/attn/context_flat`,
    );
    return { context: merged, sums: [colsum, windowSum] };
  }

  /** `q [Hkv, rows, D]` times the transposed `keys [Hkv, T, D]`, scaled by 1 / sqrt(D): `[Hkv, rows, T]`. */
  private scoresOf(q: string, keys: string, n: string): string {
    const g = this.g;
    const alpha = 1 / Math.sqrt(this.shape.headDim);
    if (this.scores === 'fused') return g.op('FusedMatMul', [q, keys], alpha === 1 ? { transB: 1 } : { transB: 1, alpha }, `${n}/attn/qk`, 'com.microsoft');
    const scaled = alpha === 1 ? q : g.op('Mul', [q, g.scalar(alpha)], {}, `${n}/attn/q_scaled`);
    return g.op('MatMul', [scaled, g.op('Transpose', [keys], { perm: [0, 2, 1] }, `${n}/attn/keys_t`)], {}, `${n}/attn/qk`);
  }

  /** `[Hkv, 1, S, T]` additive mask: -inf where the key is `window` or more positions behind the query. */
  private slidingMask(layer: number, window: number, n: string): string {
    const g = this.g;
    const { positionIds } = this.io;
    this.chunkPositions ??= {
      queries: g.op('Unsqueeze', [positionIds, g.ints([0, 2])], {}, '/sliding/query_positions'),
      keys: g.op('Expand', [g.op('Unsqueeze', [positionIds, g.ints([0])], {}, '/sliding/chunk_row'), g.op('Concat', [g.ints([this.shape.numKvHeads]), g.op('Shape', [positionIds], {}, '/sliding/chunk_shape')], { axis: 0 }, '/sliding/chunk_keys_shape')], {}, '/sliding/chunk_keys'),
    };
    const { queries: queryPositions, keys: chunkKeyPositions } = this.chunkPositions;
    const keyPositions = g.op('Concat', [`past_position.${layer}`, chunkKeyPositions], { axis: 1 }, `${n}/sliding/key_positions`);
    const distance = g.op('Sub', [queryPositions, g.op('Unsqueeze', [keyPositions, g.ints([1])], {}, `${n}/sliding/keys_row`)], {}, `${n}/sliding/distance`);
    const visible = g.op('Less', [distance, g.ints([window])], {}, `${n}/sliding/visible`);
    return g.op('Unsqueeze', [g.op('Where', [visible, g.scalar(0), g.scalar(-Infinity)], {}, `${n}/sliding/additive`), g.ints([1])], {}, `${n}/sliding/mask`);
  }
}

/**
 * `residual` made to depend on a layer's column sums. They are leaves of the graph, and
 * onnxruntime's default order runs them after the whole layer stack, keeping every layer's
 * [heads, chunk, total] probabilities alive until then (measured: +1 such block per layer,
 * 3.6 GiB for a 512-token chunk over 8K on a 24-layer model). Adding 0 x their total to the
 * residual stream (exact: the sums are finite) orders them here.
 */
export function orderAfter(g: GraphBuilder, residual: string, [colsum, windowSum]: [string, string], n: string): string {
  // Sums, not maxima: the window sums are empty on a run without a window (a maximum of nothing is not finite).
  const total = g.op('Add', [g.op('ReduceSum', [colsum, g.ints([0, 1])], { keepdims: 0 }, `${n}/order/colsum_total`), g.op('ReduceSum', [windowSum, g.ints([0, 1, 2])], { keepdims: 0 }, `${n}/order/window_total`)], {}, `${n}/order/total`);
  return g.op('Add', [residual, g.op('Mul', [total, g.scalar(0)], {}, `${n}/order/zero`)], {}, `${n}/order/after_sums`);
}
