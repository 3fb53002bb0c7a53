/**
 * The one shared routine that turns per-slot ranks into kept slots, and the shape every
 * selection policy returns.
 */
import type { SlotBudget, Mode } from './budget.js';
import { KvSettingsError } from './errors.js';
import type { KvLayer } from './layout.js';

/** Kept slots per head, in output order (ascending position for every policy but reference SnapKV). */
export interface Selection {
  keptPerHead: number;
  /** `[numHeads, keptPerHead]` slot indices into the layer before compression. */
  kept: Int32Array;
  /** Optional figures the golden runner and the stats compare (e.g. SnapKV's pooled scores). */
  trace?: SelectionTrace;
}

export interface SelectionTrace {
  /** text-prior: non-recent text slots of head 0, and image slots chosen to fill the heavy budget. */
  textNonRecent?: number;
  imagesSelected?: number;
  /** SnapKV: `[numHeads, candidates]` pooled window scores before ranking. */
  snapkvPooledScores?: Float64Array;
}

export interface PolicyOptions {
  /** Seed of the `random` policy. */
  seed?: number;
  /** Attention sinks kept by `window` and, in improved mode, the H2O merge policies (default 4). */
  sinks?: number;
  /** SnapKV: queries of the newest tokens, `[numQueryHeads, rows, headDim]`, post-RoPE. */
  queries?: Float32Array;
  /**
   * SnapKV, instead of `queries`: the attention the observation window's query rows paid to every
   * slot, summed over those rows, `[numQueryHeads, length]` (a prefill graph emits it for free).
   */
  windowScores?: Float32Array;
  numQueryHeads?: number;
  /** SnapKV observation window in improved mode (reference: the recent window). Default 64. */
  snapkvWindow?: number;
}

export interface SelectContext {
  layer: KvLayer;
  budget: SlotBudget;
  mode: Mode;
  options: PolicyOptions;
}

/** A selection policy: kept slots per head, or `null` to leave the cache unchanged. */
export type Selector = (ctx: SelectContext) => Selection | null;

/**
 * Ranks `candidates` by `rank[slot]` descending, ties broken by the lower slot (the reference's
 * torch tie order is unspecified; golden cases are tie-free at every boundary), and returns the
 * first `k` in rank order.
 */
export function topSlots(rank: ArrayLike<number>, candidates: Int32Array, k: number): Int32Array {
  if (k <= 0) return new Int32Array(0);
  const order = candidates.slice().sort((a, b) => rank[b] - rank[a] || a - b);
  return order.subarray(0, k);
}

export function concatSlots(a: Int32Array, b: Int32Array): Int32Array {
  const out = new Int32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** `[from, to)` as slot indices. */
export function range(from: number, to: number): Int32Array {
  const out = new Int32Array(Math.max(0, to - from));
  for (let i = 0; i < out.length; i++) out[i] = from + i;
  return out;
}

/**
 * Builds a selection from per-head heavy slots plus the recent window `[length - recent, length)`.
 * Heavy slots are sorted ascending unless `keepOrder` (reference SnapKV keeps top-k order).
 */
export function withRecentWindow(layer: KvLayer, heavyPerHead: Int32Array[], recent: number, keepOrder = false): Selection {
  const { numHeads: H, length: L } = layer;
  const keptPerHead = heavyPerHead[0].length + recent;
  const kept = new Int32Array(H * keptPerHead);
  for (let h = 0; h < H; h++) {
    const heavy = heavyPerHead[h];
    if (heavy.length + recent !== keptPerHead) throw new Error(`head ${h} keeps ${heavy.length + recent} slots, head 0 keeps ${keptPerHead}`);
    kept.set(keepOrder ? heavy : heavy.slice().sort(), h * keptPerHead);
    for (let i = 0; i < recent; i++) kept[h * keptPerHead + heavy.length + i] = L - recent + i;
  }
  return { keptPerHead, kept };
}

/** Per-head view of the scores of the valid slots. */
export function headScores(layer: KvLayer, head: number): Float64Array {
  return layer.scores.subarray(head * layer.length, (head + 1) * layer.length);
}

/** Per-head view of the modality tags of the valid slots. */
export function headModality(layer: KvLayer, head: number): Int32Array {
  return layer.modality.subarray(head * layer.length, (head + 1) * layer.length);
}

/** The attention sinks asked for in `options.sinks` (checked), or `fallback`. */
export function sinkCount(options: PolicyOptions, fallback: number): number {
  const { sinks = fallback } = options;
  if (!(Number.isInteger(sinks) && sinks >= 0)) throw new KvSettingsError(`sinks must be a non-negative integer, got ${sinks}`);
  return sinks;
}

/** Whether the H2O family leaves the cache as it is (lookm-spec §4: `L <= hh + rc`). */
export function fitsBudget(layer: KvLayer, budget: SlotBudget): boolean {
  return layer.length <= budget.heavy + budget.recent;
}
