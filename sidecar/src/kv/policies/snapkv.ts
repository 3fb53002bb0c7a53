/**
 * SnapKV (Li et al., 2024, arXiv 2404.14469), as LOOK-M's baseline `PoolingKVCache_LayerWise`
 * runs it (lookm-spec §6.8): the queries of an observation window at the end of the prompt
 * attend to the older slots; each slot's summed attention is smoothed by a zero-padded
 * average pool of width 5; the top `heavy` older slots and the recent window are kept.
 * Modality and the accumulated scores are ignored, and no sink is protected.
 *
 * Reference mode: the window is the whole recent window, the cache is left alone only when
 * `L < heavy + recent` (at equality it still runs and permutes the prefix), and kept slots come
 * out in top-k order (descending pooled score), then the window.
 * Improved mode: the window is at most `snapkvWindow` (64) query rows (SnapKV's own setting; the
 * reference's 10% of L costs O(L²) per layer), query heads of one KV group add their pooled
 * scores (GQA), and kept slots come out in position order like every other policy.
 *
 * The window's attention is computed here from `options.queries`, or taken as given from
 * `options.windowScores` (its column sums, which a prefill graph can emit alongside LOOK-M's):
 * those must be summed over `snapkvWindowRows` query rows, the window this policy observes.
 */
import type { Mode, SlotBudget } from '../budget.js';
import { headRows } from '../layout.js';
import { KvSettingsError } from '../errors.js';
import { range, topSlots, withRecentWindow, type Selector } from '../select.js';

const POOL_KERNEL = 5;
/** SnapKV's own observation window (improved mode). */
export const DEFAULT_SNAPKV_WINDOW = 64;

/**
 * The query rows SnapKV observes under a budget: the recent window in reference mode (the official
 * code), at most `snapkvWindow` of its rows in improved mode. A prefill that emits window scores
 * sums the attention of exactly this many newest tokens.
 */
export function snapkvWindowRows(budget: SlotBudget, mode: Mode, snapkvWindow = DEFAULT_SNAPKV_WINDOW): number {
  if (!(Number.isInteger(snapkvWindow) && snapkvWindow >= 1)) throw new KvSettingsError(`snapkvWindow must be a positive integer, got ${snapkvWindow}`);
  return mode === 'reference' ? budget.recent : Math.min(budget.recent, snapkvWindow);
}

export const selectSnapKV: Selector = ({ layer, budget, mode, options }) => {
  const { heavy: hh, recent: rc } = budget;
  const { numHeads: H, length: L, headDim: D } = layer;
  if (mode === 'reference' ? L < hh + rc : L <= hh + rc) return null;
  const { queries, windowScores } = options;
  const Hq = options.numQueryHeads ?? H;
  if (Hq % H !== 0) throw new RangeError(`${Hq} query heads cannot be grouped onto ${H} KV heads`);
  if (mode === 'reference' && rc === 0) throw new KvSettingsError('reference snapkv with recent_size 0 is undefined (its observation window is empty)');
  if (windowScores && windowScores.length !== Hq * L) throw new RangeError(`windowScores must be [${Hq}, ${L}], got ${windowScores.length} values`);
  if (!windowScores && !queries) throw new TypeError('snapkv needs the queries of the newest tokens (options.queries) or their attention (options.windowScores)');
  const rows = queries ? queries.length / (Hq * D) : 0;
  if (!windowScores && !Number.isInteger(rows)) throw new RangeError(`queries must be [${Hq}, rows, ${D}]`);
  const window = Math.min(snapkvWindowRows(budget, mode, options.snapkvWindow), windowScores || mode === 'reference' ? Infinity : rows);
  if (!windowScores && rows < window) throw new RangeError(`snapkv needs the queries of the last ${window} tokens, got ${rows}`);

  const count = L - rc;
  const candidates = range(0, count);
  const group = Hq / H;
  const pooledAll = new Float64Array(H * count);
  const heavy: Int32Array[] = [];
  for (let h = 0; h < H; h++) {
    const summed = new Float64Array(count);
    const keys = windowScores ? null : headRows(layer, 'keys', h);
    for (let q = h * group; q < (h + 1) * group; q++) {
      if (windowScores) {
        for (let j = 0; j < count; j++) summed[j] += windowScores[q * L + j];
      } else {
        const headQueries = queries!.subarray((q * rows + rows - window) * D, (q + 1) * rows * D);
        addWindowAttention(headQueries, window, keys!, L, D, summed);
      }
    }
    const pooled = pooledAll.subarray(h * count, (h + 1) * count);
    averagePool(summed, pooled);
    heavy.push(topSlots(pooled, candidates, hh));
  }
  const selection = withRecentWindow(layer, heavy, rc, mode === 'reference');
  selection.trace = { snapkvPooledScores: pooledAll };
  return selection;
};

/**
 * Softmax attention of the `window` newest tokens' queries over every key (causal inside the
 * window), column sums added into `out` for the first `out.length` keys. Logits are computed key
 * by key for four query rows at a time, so each key row is read once per four rows.
 */
function addWindowAttention(queries: Float32Array, window: number, keys: Float32Array, L: number, D: number, out: Float64Array): void {
  const scale = 1 / Math.sqrt(D);
  const q = Float64Array.from(queries);
  const logits = new Float64Array(window * L);
  for (let i0 = 0; i0 < window; i0 += 4) {
    const rows = Math.min(4, window - i0);
    const q0 = i0 * D, q1 = q0 + D, q2 = q1 + D, q3 = q2 + D;
    for (let j = 0; j < L; j++) {
      const k = j * D;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      if (rows === 4) {
        for (let d = 0; d < D; d++) {
          const x = keys[k + d];
          s0 += q[q0 + d] * x;
          s1 += q[q1 + d] * x;
          s2 += q[q2 + d] * x;
          s3 += q[q3 + d] * x;
        }
      } else {
        for (let d = 0; d < D; d++) {
          const x = keys[k + d];
          s0 += q[q0 + d] * x;
          if (rows > 1) s1 += q[q1 + d] * x;
          if (rows > 2) s2 += q[q2 + d] * x;
        }
      }
      logits[i0 * L + j] = s0 * scale;
      if (rows > 1) logits[(i0 + 1) * L + j] = s1 * scale;
      if (rows > 2) logits[(i0 + 2) * L + j] = s2 * scale;
      if (rows > 3) logits[(i0 + 3) * L + j] = s3 * scale;
    }
  }
  for (let i = 0; i < window; i++) {
    const row = logits.subarray(i * L, i * L + L - window + i + 1); // causal: keys up to the row's own token
    let max = -Infinity;
    for (const x of row) if (x > max) max = x;
    let sum = 0;
    for (let j = 0; j < row.length; j++) sum += row[j] = Math.exp(row[j] - max);
    for (let j = 0; j < out.length; j++) out[j] += row[j] / sum;
  }
}

/** `avg_pool1d(kernel=5, stride=1, padding=2)` with zero padding counted (torch's default). */
function averagePool(input: Float64Array, out: Float64Array): void {
  const half = POOL_KERNEL >> 1;
  for (let j = 0; j < input.length; j++) {
    let sum = 0;
    for (let k = Math.max(0, j - half); k <= Math.min(input.length - 1, j + half); k++) sum += input[k];
    out[j] = sum / POOL_KERNEL;
  }
}
