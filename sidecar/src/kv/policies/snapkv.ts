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
 */
import { headRows } from '../layout.js';
import { range, topSlots, withRecentWindow, type Selector } from '../select.js';

const POOL_KERNEL = 5;
const DEFAULT_WINDOW = 64;

export const selectSnapKV: Selector = ({ layer, budget, mode, options }) => {
  const { heavy: hh, recent: rc } = budget;
  const { numHeads: H, length: L, headDim: D } = layer;
  if (mode === 'reference' ? L < hh + rc : L <= hh + rc) return null;
  const { queries } = options;
  if (!queries) throw new TypeError('snapkv needs the queries of the newest tokens (options.queries)');
  const Hq = options.numQueryHeads ?? H;
  const rows = queries.length / (Hq * D);
  if (!Number.isInteger(rows) || Hq % H !== 0) throw new RangeError(`queries must be [${Hq}, rows, ${D}] with ${Hq} a multiple of ${H} KV heads`);
  if (mode === 'reference' && rc === 0) throw new RangeError('reference snapkv with recent_size 0 is undefined (its observation window is empty)');
  const window = mode === 'reference' ? rc : Math.min(rc, options.snapkvWindow ?? DEFAULT_WINDOW, rows);
  if (rows < window) throw new RangeError(`snapkv needs the queries of the last ${window} tokens, got ${rows}`);

  const count = L - rc;
  const candidates = range(0, count);
  const group = Hq / H;
  const pooledAll = new Float64Array(H * count);
  const heavy: Int32Array[] = [];
  for (let h = 0; h < H; h++) {
    const keys = headRows(layer, 'keys', h);
    const summed = new Float64Array(count);
    for (let q = h * group; q < (h + 1) * group; q++) {
      const headQueries = queries.subarray((q * rows + rows - window) * D, (q + 1) * rows * D);
      addWindowAttention(headQueries, window, keys, L, D, summed);
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
 * window), column sums added into `out` for the first `out.length` keys.
 */
function addWindowAttention(queries: Float32Array, window: number, keys: Float32Array, L: number, D: number, out: Float64Array): void {
  const scale = 1 / Math.sqrt(D);
  const logits = new Float64Array(L);
  for (let i = 0; i < window; i++) {
    const visible = L - window + i + 1;
    const q = i * D;
    let max = -Infinity;
    for (let j = 0; j < visible; j++) {
      let dot = 0;
      for (let d = 0, k = j * D; d < D; d++) dot += queries[q + d] * keys[k + d];
      logits[j] = dot * scale;
      if (logits[j] > max) max = logits[j];
    }
    let sum = 0;
    for (let j = 0; j < visible; j++) sum += logits[j] = Math.exp(logits[j] - max);
    for (let j = 0; j < out.length; j++) out[j] += logits[j] / sum;
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
