/**
 * A conversation's cold tier as a turn uses it: where its settings come from, the recall spans
 * of the tokens fed, and the recall itself. Before a prompt's tokens are prefilled, the newest of
 * them (the question) are run once on top of the hot cache and the cold entries, in chunks of
 * cold entries, without keeping anything: the attention each cold entry receives ranks the cold
 * spans, and the best spans, within the recall budget, go back into the hot cache at their true
 * positions, so the prefill that follows attends to them.
 */
import { ColdStore, concatHeads, planRecall, SpanIndex, TEXT, type ColdQuantization, type KvCache, type SlotBudget } from '../kv/index.js';
import { SidecarError } from '../protocol/errors.js';
import { ErrorCode, type SessionSettings } from '../protocol/index.js';
import type { ModelRuntime, TurnProcessor } from '../runtime/modelRuntime.js';

export const DEFAULT_RECALL_SPAN = 16;
export const DEFAULT_RECALL_BUDGET = 0.1;
/** The newest prompt tokens run for the scoring (the question and the template's end, as context). */
export const RECALL_CONTEXT_ROWS = 64;
/**
 * Of those, the last rows whose attention ranks the cold entries: the prompt's last token, which
 * predicts the answer's first. Measured on the embedded model (a 16-line file in turn 1, the
 * lookup in turn 3, LOOK-M text_prior at 10%, 30 files): 29 of 30 right with the last row, 29
 * with two, 7 of 12 with all 64 rows summed.
 */
export const RECALL_QUERY_ROWS = 1;
/** Cold entries per scoring run at least (more when the hot cache is longer: a run never holds more than twice it). */
const MIN_SCORING_CHUNK = 256;

/** The cold tier of a conversation: its entries and the recall spans of every token fed. */
export interface ColdTier {
  store: ColdStore;
  spans: SpanIndex;
}

/** A turn's use of the cold tier. */
export interface ColdWork extends ColdTier {
  /**
   * The prompt's compression, deferred to the end of the turn: per layer the budget it had after
   * the prefill, and the prefill's window scores (SnapKV's observation).
   */
  deferred: { budgets: SlotBudget[]; windowScores: Float32Array[] | null } | null;
  recalled: number;
  recallMs: number;
}

export function coldQuantization(settings: SessionSettings): ColdQuantization | null {
  return settings.coldTier === 'int8' || settings.coldTier === 'int4' ? settings.coldTier : null;
}

/** A new, empty cold tier for the runtime's cache shape, or null when the settings turn it off. */
export function createColdTier(settings: SessionSettings, runtime: ModelRuntime): ColdTier | null {
  const quantization = coldQuantization(settings);
  if (!quantization) return null;
  if (runtime.info.device?.kvOnDevice) {
    // The cold tier stores evicted rows on the host and inserts them back: not yet done for rows on the GPU.
    throw new SidecarError(ErrorCode.InvalidParams, `the cold tier (coldTier "${quantization}") is not available while the KV cache lives on the GPU (--device ${runtime.info.device.provider}); set coldTier "off", or run the sidecar with --device cpu`);
  }
  const { numLayers, numKvHeads, headDim } = runtime.decoderShape;
  return { store: new ColdStore(numLayers, numKvHeads, headDim, quantization), spans: new SpanIndex(settings.recallSpan ?? DEFAULT_RECALL_SPAN) };
}

export function coldWork(tier: ColdTier): ColdWork {
  return { ...tier, deferred: null, recalled: 0, recallMs: 0 };
}

/** Slots per head a turn may recall after `tokensSeen` tokens. */
export function recallSlots(settings: SessionSettings, tokensSeen: number): number {
  const budget = settings.recallBudget ?? DEFAULT_RECALL_BUDGET;
  return budget < 1 ? Math.floor(budget * tokensSeen) : budget;
}

const lineEndCache = new WeakMap<TurnProcessor, Map<number, boolean>>();

/** Per token, whether its text ends a line (a recall span closes after it). */
export function lineEnds(processor: TurnProcessor, ids: readonly number[], modality: ArrayLike<number>): boolean[] {
  let known = lineEndCache.get(processor);
  if (!known) lineEndCache.set(processor, (known = new Map<number, boolean>()));
  return ids.map((id, i) => {
    if (modality[i] !== TEXT) return false;
    let ends = known.get(id);
    if (ends === undefined) known.set(id, (ends = processor.decode([id], false).includes('\n')));
    return ends;
  });
}

/**
 * Per layer, `[numHeads, cold count]`: the attention the last `queryRows` (default `RECALL_QUERY_ROWS`) of the new
 * tokens pay each cold entry (summed over those rows and over the query heads of its KV head),
 * the newest `RECALL_CONTEXT_ROWS` run on top of the hot cache and one chunk of cold entries at a
 * time. Nothing is kept.
 */
export async function scoreColdEntries(runtime: ModelRuntime, cache: KvCache, store: ColdStore, embeds: Float32Array, positions: Int32Array, rope?: Int32Array, queryRows = RECALL_QUERY_ROWS): Promise<Float64Array[]> {
  const { hiddenSize: E, numHeads: Hq, numKvHeads: H, headDim: D } = runtime.decoderShape;
  const L = positions.length;
  const Q = Math.min(RECALL_CONTEXT_ROWS, L);
  const queryEmbeds = embeds.subarray((L - Q) * E);
  // The rows' rotary positions as the decoder reads them: M-RoPE's last Q columns of [3, L], else their positions.
  const queryPositions = rope ? Int32Array.from({ length: 3 * Q }, (_, j) => rope[Math.floor(j / Q) * L + L - Q + (j % Q)]) : positions.subarray(L - Q);
  const C = store.count;
  const hot = cache.length;
  const group = Hq / H;
  const scores = store.layers.map(() => new Float64Array(H * C));
  const chunk = Math.max(MIN_SCORING_CHUNK, hot);
  for (let from = 0; from < C; from += chunk) {
    const to = Math.min(C, from + chunk);
    const n = to - from;
    const past = cache.layers.map((layer, i) => {
      const cold = new Int32Array(H * n);
      for (let h = 0; h < H; h++) cold.set(store.layers[i].positions.subarray(h * C + from, h * C + to), h * n);
      return {
        keys: concatHeads(layer.keys, hot, store.layers[i].rows('keys', from, to), n, H, D),
        values: concatHeads(layer.values, hot, store.layers[i].rows('values', from, to), n, H, D),
        positions: concatHeads(layer.positions, hot, cold, n, H, 1),
        length: hot + n,
      };
    });
    const windowColsums = await runtime.observe(past, queryEmbeds, queryPositions, Math.min(queryRows, Q));
    const width = hot + n + Q;
    windowColsums.forEach((colsum, i) => {
      for (let q = 0; q < Hq; q++) {
        const h = Math.floor(q / group);
        for (let j = 0; j < n; j++) scores[i][h * C + from + j] += colsum[q * width + hot + j];
      }
    });
  }
  return scores;
}

/**
 * Recalls the cold spans the new tokens attend to most into the hot cache, within the settings'
 * recall budget, before those tokens are prefilled. Returns the slots per head recalled.
 */
export async function recallFor(runtime: ModelRuntime, cache: KvCache, cold: ColdWork, settings: SessionSettings, embeds: Float32Array, positions: Int32Array, rope?: Int32Array): Promise<number> {
  const started = performance.now();
  const budget = recallSlots(settings, cache.tokensSeen);
  if (budget === 0 || cold.store.count === 0 || positions.length === 0) return 0;
  const scores = await scoreColdEntries(runtime, cache, cold.store, embeds, positions, rope, settings.recallQueryRows);
  const plan = planRecall(cold.store, scores, budget);
  if (plan.perHead > 0) {
    const rows = cold.store.layers.map((layer, i) => layer.take(plan.indices[i], plan.perHead));
    cache.insert(rows);
    cold.recalled += plan.perHead;
  }
  cold.recallMs += performance.now() - started;
  return plan.perHead;
}
