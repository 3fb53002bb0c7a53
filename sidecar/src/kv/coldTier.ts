/**
 * The hot set and the cold tier, one layer at a time: a compression whose evicted slots go to the
 * cold tier instead of nowhere (merged slots stay as the policy made them: only what it evicts
 * goes cold), and the budget of a turn's deferred compression.
 *
 * A turn with the cold tier: recall cold spans into the hot slots (before the prompt's tokens are
 * prefilled, so they attend to them), prefill, decode the answer, then compress to the length the
 * turn would have had without the cold tier: the budget resolved after the prefill, its recent
 * window widened by the answer (`deferredBudget`). The recalled slots compete with the others
 * there; what loses goes back to cold.
 */
import type { SlotBudget } from './budget.js';
import type { ColdLayer } from './cold.js';
import { planCompression, type CompressOptions, type CompressionPlan } from './compress.js';
import { gatherSlots, type KvLayer } from './layout.js';
import { POLICIES, type Policy } from './policies/index.js';
import type { SpanIndex } from './spans.js';

/** The plan's evicted slots of `layer` (before it is compacted) into `cold`, with their spans. */
export function evictToCold(layer: KvLayer, plan: CompressionPlan, cold: ColdLayer, spans: SpanIndex): void {
  if (plan.evictedPerHead === 0) return;
  const rows = gatherSlots(layer, plan.evicted, plan.evictedPerHead);
  cold.add({ ...rows, spans: Int32Array.from(rows.positions, (p) => spans.of(p)) });
}

/**
 * Compresses `layer` under `options` like `compressLayer`, its evicted slots going to `cold`;
 * `onPlan` sees the plan before it is applied. Returns the plan (`null`: nothing was done).
 */
export async function compressToCold(layer: KvLayer, options: CompressOptions, cold: ColdLayer, spans: SpanIndex, onPlan?: (plan: CompressionPlan) => void): Promise<CompressionPlan | null> {
  const plan = await planCompression(layer, options);
  if (plan) {
    onPlan?.(plan);
    evictToCold(layer, plan, cold, spans);
    layer.compact(plan);
  }
  return plan;
}

/**
 * The budget of a compression deferred to the end of a turn: `atPrefill` (what the prompt's
 * compression would have kept), its recent window widened by the `generated` tokens since, so
 * the layer ends the turn as long as it would have without the cold tier and an answer is never cut.
 */
export function deferredBudget(atPrefill: SlotBudget, generated: number): SlotBudget {
  return { heavy: atPrefill.heavy, recent: atPrefill.recent + generated };
}

/**
 * The window scores a deferred compression takes: the prefill's (`[Hq, prefillLength]`, SnapKV's
 * observation), zero for the slots appended since; for a policy that observes but got none, the
 * slots' accumulated attention per query head. `undefined` for policies that observe nothing.
 */
export function deferredWindowScores(layer: KvLayer, options: CompressOptions, prefill: Float32Array | undefined): Float32Array | undefined {
  const policy: Policy = POLICIES[options.policy];
  if (!policy.observes) return undefined;
  const { numHeads: H, length: L } = layer;
  const Hq = options.numQueryHeads ?? H;
  const out = new Float32Array(Hq * L);
  if (prefill) {
    const width = prefill.length / Hq;
    for (let q = 0; q < Hq; q++) out.set(prefill.subarray(q * width, q * width + Math.min(width, L)), q * L);
    return out;
  }
  const group = Hq / H;
  for (let q = 0; q < Hq; q++) for (let j = 0; j < L; j++) out[q * L + j] = layer.scores[Math.floor(q / group) * L + j] / group;
  return out;
}
