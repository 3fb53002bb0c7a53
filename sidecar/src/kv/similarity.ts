/**
 * Matching evicted slots to their most similar kept slot (lookm-spec §5.4): per head, the cosine
 * similarity of KEYS, evicted x kept, and for each evicted slot the first kept slot of maximal
 * similarity. Values follow the key-based target.
 *
 * This is the product of the normalised evicted keys with the normalised kept keys, reduced to a
 * row-wise max/argmax as it is computed: no `E x N` (let alone `L x L`) matrix is ever held; the
 * extra memory is one normalised copy of one head's keys. Four kept rows share each evicted
 * element load, which is the register blocking a batched matrix product does.
 *
 * Zero keys: the reference divides by a zero norm and propagates NaN (spec §5.4). A zero key
 * has no direction, so we give it similarity 0 to everything instead.
 */
import type { KvLayer } from './layout.js';

export interface Matches {
  /** `[numHeads, evictedPerHead]`: index into the head's kept slots (0..keptPerHead-1). */
  target: Int32Array;
  /** `[numHeads, evictedPerHead]`: the maximal cosine similarity. */
  maxSim: Float64Array;
}

/**
 * Finds each evicted slot's most similar kept slot. The default is `matchEvicted` below; the
 * sidecar may plug in a faster one (e.g. an onnxruntime matrix product) for improved mode.
 */
export type Matcher = (layer: KvLayer, kept: Int32Array, keptPerHead: number, evicted: Int32Array, evictedPerHead: number) => Matches | Promise<Matches>;

/**
 * Head `head`'s key rows picked by `slots`, each scaled to unit L2 norm, written to `out` (`[slots, D]`).
 * A zero key stays zero (similarity 0 to everything).
 */
export function normaliseKeys(layer: KvLayer, head: number, slots: Int32Array, out: Float32Array | Float64Array): void {
  const { headDim: D, keys } = layer;
  const base = head * layer.length;
  for (let r = 0; r < slots.length; r++) {
    const src = (base + slots[r]) * D;
    let norm = 0;
    for (let d = 0; d < D; d++) norm += keys[src + d] * keys[src + d];
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let d = 0; d < D; d++) out[r * D + d] = keys[src + d] * inv;
  }
}

export const matchEvicted = (layer: KvLayer, kept: Int32Array, keptPerHead: number, evicted: Int32Array, evictedPerHead: number): Matches => {
  const { numHeads: H, headDim: D } = layer;
  const N = keptPerHead;
  const E = evictedPerHead;
  const target = new Int32Array(H * E);
  const maxSim = new Float64Array(H * E);
  const k = new Float64Array(N * D);
  const e = new Float64Array(E * D);
  for (let h = 0; h < H; h++) {
    normaliseKeys(layer, h, kept.subarray(h * N, (h + 1) * N), k);
    normaliseKeys(layer, h, evicted.subarray(h * E, (h + 1) * E), e);
    for (let i = 0; i < E; i++) {
      const row = i * D;
      let best = -Infinity;
      let arg = 0;
      let n = 0;
      for (; n + 4 <= N; n += 4) {
        const k0 = n * D, k1 = k0 + D, k2 = k1 + D, k3 = k2 + D;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let d = 0; d < D; d++) {
          const x = e[row + d];
          s0 += x * k[k0 + d];
          s1 += x * k[k1 + d];
          s2 += x * k[k2 + d];
          s3 += x * k[k3 + d];
        }
        if (s0 > best) { best = s0; arg = n; }
        if (s1 > best) { best = s1; arg = n + 1; }
        if (s2 > best) { best = s2; arg = n + 2; }
        if (s3 > best) { best = s3; arg = n + 3; }
      }
      for (; n < N; n++) {
        let s = 0;
        for (let d = 0, kn = n * D; d < D; d++) s += e[row + d] * k[kn + d];
        if (s > best) { best = s; arg = n; }
      }
      target[h * E + i] = arg;
      maxSim[h * E + i] = best;
    }
  }
  return { target, maxSim };
};
