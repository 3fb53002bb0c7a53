/**
 * LOOK-M's merge step (arXiv 2406.18139 §3.3; lookm-spec §5.5-5.8): every kept slot becomes the
 * mean of itself and the evicted slots matched to it (`scatter_reduce(mean, include_self)`),
 * with three rules for what each matched slot contributes.
 *
 * - `pivot`: every evicted slot contributes `(evicted + kept) / 2` (§5.5).
 * - `average`: only filtered slots (§5.6) contribute their row (§5.7). The reference pairs the
 *   k-th filtered TARGET with the k-th evicted SOURCE row, not the k-th filtered one; reference
 *   mode keeps that bug, improved mode adds the intended row (the filtered slot itself).
 * - `weighted`: only filtered slots contribute, scaled by their similarity (§5.8). The weights
 *   are not normalised (the denominator counts slots), as in the reference.
 */
import type { Mode } from './budget.js';
import type { KvLayer } from './layout.js';
import type { Matches } from './similarity.js';

export type MergeRule = 'pivot' | 'average' | 'weighted';

export interface MergeOutcome {
  /** `[numHeads, keptPerHead, headDim]`: the kept slots' new rows. */
  keys: Float32Array;
  values: Float32Array;
  /** `[evictedPerHead]` 0/1 (average and weighted only). */
  filter: Uint8Array | null;
  /** average only: for the k-th filtered entry, the evicted slot whose row was added. */
  sourceSlot: Int32Array | null;
}

/**
 * The similarity filter (§5.6): evicted slot e passes when its max similarity averaged over the
 * heads reaches the mean over all heads and slots. One decision per slot INDEX, shared by all
 * heads, although the e-th evicted slot is a different token in each head (kept as in the
 * reference: it is the published rule).
 */
export function similarityFilter(maxSim: Float64Array, numHeads: number, evictedPerHead: number): Uint8Array {
  const E = evictedPerHead;
  let total = 0;
  for (let i = 0; i < maxSim.length; i++) total += maxSim[i];
  const threshold = total / maxSim.length;
  const filter = new Uint8Array(E);
  for (let e = 0; e < E; e++) {
    let sum = 0;
    for (let h = 0; h < numHeads; h++) sum += maxSim[h * E + e];
    filter[e] = sum / numHeads >= threshold ? 1 : 0;
  }
  return filter;
}

export function mergeEvicted(
  layer: KvLayer,
  kept: Int32Array,
  keptPerHead: number,
  evicted: Int32Array,
  evictedPerHead: number,
  matches: Matches,
  rule: MergeRule,
  mode: Mode,
): MergeOutcome {
  const { numHeads: H, headDim: D, length: L } = layer;
  const N = keptPerHead;
  const E = evictedPerHead;
  const filter = rule === 'pivot' ? null : similarityFilter(matches.maxSim, H, E);
  const filtered = filter ? Int32Array.from(filter.keys()).filter((e) => filter[e] === 1) : null;
  // The reference's misaligned source: the k-th filtered target takes evicted row k (§5.7).
  const sourceSlot = rule === 'average' && filtered ? (mode === 'reference' ? Int32Array.from(filtered.keys()) : filtered) : null;

  // Contributing evicted entries (each merges into its own target) and the row each one adds.
  const entries = filtered ?? Int32Array.from({ length: E }, (_, e) => e);
  const sources = sourceSlot ?? entries;

  const out = { keys: new Float32Array(H * N * D), values: new Float32Array(H * N * D) };
  const { target, maxSim } = matches;
  const sum = new Float64Array(N * D);
  const count = new Float64Array(N);
  for (const which of ['keys', 'values'] as const) {
    const data = layer[which];
    const dest = out[which];
    for (let h = 0; h < H; h++) {
      const keptBase = h * N;
      const evictedBase = h * E;
      const rowOf = (slot: number) => (h * L + slot) * D;
      for (let n = 0; n < N; n++) {
        sum.set(data.subarray(rowOf(kept[keptBase + n]), rowOf(kept[keptBase + n]) + D), n * D);
        count[n] = 1;
      }
      for (let k = 0; k < entries.length; k++) {
        const e = entries[k];
        const n = target[evictedBase + e];
        const acc = n * D;
        const src = rowOf(evicted[evictedBase + sources[k]]);
        // pivot: half of the evicted row (its other half, the pivot's, is added once per slot
        // below); average: the row; weighted: the row scaled by its similarity.
        const weight = rule === 'pivot' ? 0.5 : rule === 'weighted' ? maxSim[evictedBase + e] : 1;
        for (let d = 0; d < D; d++) sum[acc + d] += weight * data[src + d];
        count[n] += 1;
      }
      for (let n = 0; n < N; n++) {
        // Pivotal merge: (Kk + sum_e (Ke + Kk) / 2) / (1 + c) = ((1 + c/2) Kk + sum_e Ke / 2) / (1 + c).
        const selfWeight = rule === 'pivot' ? (count[n] - 1) / 2 : 0;
        const pivot = rowOf(kept[keptBase + n]);
        const inv = 1 / count[n];
        for (let d = 0; d < D; d++) dest[(keptBase + n) * D + d] = (sum[n * D + d] + selfWeight * data[pivot + d]) * inv;
      }
    }
  }
  return { ...out, filter, sourceSlot };
}
