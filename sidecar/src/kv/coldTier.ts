/**
 * The hot set and the cold tier, one layer at a time: compression whose evicted slots go to the
 * cold tier, a recall that puts cold spans back among the hot slots, and the compression back to
 * the budget at the end of a turn that recalled (the recalled slots compete again; what loses goes
 * back to cold). Merged slots stay as the policy made them: only what it evicts goes cold.
 *
 * A turn with the cold tier: recall (before the question's tokens are prefilled, so they attend
 * to the recalled slots), prefill, `compressToCold` with the recalled slots held out (the budget
 * applies to the rest, so the answer can read them), decode, `compressBack` to the length the
 * turn would have had without the recall.
 */
import { resolveBudget, type SlotBudget } from './budget.js';
import type { ColdLayer } from './cold.js';
import { planCompression, type CompressOptions, type CompressionPlan } from './compress.js';
import { gatherSlots, type KvLayer, type SlotRows } from './layout.js';
import { POLICIES, type Policy } from './policies/index.js';
import type { SpanIndex } from './spans.js';

/** The plan's evicted slots of `layer` (before it is compacted) into `cold`, with their spans. */
export function evictToCold(layer: KvLayer, plan: CompressionPlan, cold: ColdLayer, spans: SpanIndex): void {
  if (plan.evictedPerHead === 0) return;
  const rows = gatherSlots(layer, plan.evicted, plan.evictedPerHead);
  cold.add({ ...rows, spans: Int32Array.from(rows.positions, (p) => spans.of(p)) });
}

/** Per head, the slots of `layer` whose true positions are in `positions[head]`, as `[numHeads, n]`. */
function slotsAt(layer: KvLayer, positions: readonly Set<number>[]): { slots: Int32Array; perHead: number } {
  const { numHeads: H, length: L } = layer;
  const perHead = positions[0]?.size ?? 0;
  const slots = new Int32Array(H * perHead);
  for (let h = 0; h < H; h++) {
    let k = 0;
    for (let j = 0; j < L; j++) if (positions[h].has(layer.positions[h * L + j])) slots[h * perHead + k++] = j;
    if (k !== perHead) throw new RangeError(`head ${h} holds ${k} of the ${perHead} pinned slots`);
  }
  return { slots, perHead };
}

/** Takes the slots out of the layer (compacting it to the others, in order) and returns them. */
function holdOut(layer: KvLayer, slots: Int32Array, perHead: number): { rows: SlotRows; kept: Int32Array } {
  const { numHeads: H, length: L } = layer;
  const rows = gatherSlots(layer, slots, perHead);
  const keptPerHead = L - perHead;
  const kept = new Int32Array(H * keptPerHead);
  const out = new Uint8Array(L);
  for (let h = 0; h < H; h++) {
    out.fill(0);
    for (let i = 0; i < perHead; i++) out[slots[h * perHead + i]] = 1;
    for (let j = 0, k = 0; j < L; j++) if (!out[j]) kept[h * keptPerHead + k++] = j;
  }
  layer.compact({ keptPerHead, kept, merged: null });
  return { rows, kept };
}

/** `[Hq, L]` window scores cut to the kept columns of each query head's KV head. */
function keepColumns(scores: Float32Array, numQueryHeads: number, kept: Int32Array, numHeads: number, length: number): Float32Array {
  const perHead = kept.length / numHeads;
  const group = numQueryHeads / numHeads;
  const out = new Float32Array(numQueryHeads * perHead);
  for (let q = 0; q < numQueryHeads; q++) {
    const h = Math.floor(q / group);
    for (let i = 0; i < perHead; i++) out[q * perHead + i] = scores[q * length + kept[h * perHead + i]];
  }
  return out;
}

export interface ColdCompression {
  plan: CompressionPlan | null;
  /** The budget the slots other than the pinned ones were compressed to. */
  budget: SlotBudget;
  /** Slots per head after the compression, the pinned ones not counted. */
  keptWithoutPinned: number;
}

/**
 * Compresses `layer` under `options` like `compressLayer`, its evicted slots going to `cold`.
 * `pinned[head]`: true positions held out of this compression and put back after it (a turn's
 * recalled slots); `onPlan` sees the plan before it is applied.
 */
export async function compressToCold(
  layer: KvLayer,
  options: CompressOptions,
  cold: ColdLayer,
  spans: SpanIndex,
  pinned: readonly Set<number>[] | null = null,
  onPlan?: (plan: CompressionPlan) => void,
): Promise<ColdCompression> {
  let held: SlotRows | null = null;
  let windowScores = options.windowScores;
  if (pinned && (pinned[0]?.size ?? 0) > 0) {
    const { slots, perHead } = slotsAt(layer, pinned);
    const length = layer.length;
    const out = holdOut(layer, slots, perHead);
    held = out.rows;
    if (windowScores) windowScores = keepColumns(windowScores, windowScores.length / length, out.kept, layer.numHeads, length);
  }
  const budget = options.slots ?? resolveBudget(options.budget, layer.length, layer.tokensSeen, options.mode ?? 'improved');
  const plan = await planCompression(layer, { ...options, windowScores });
  if (plan) {
    onPlan?.(plan);
    evictToCold(layer, plan, cold, spans);
    layer.compact(plan);
  }
  const keptWithoutPinned = layer.length;
  if (held) layer.insert(held);
  return { plan, budget, keptWithoutPinned };
}

/**
 * The budget of the end-of-turn compression: the length the layer would have had without the
 * recall (`keptWithoutPinned` plus the `generated` tokens since), its recent window widened by
 * the generated tokens (an answer is never cut), so only the recalled slots' room is taken back.
 */
export function budgetBack(compressed: ColdCompression, generated: number): SlotBudget {
  const recent = Math.min(compressed.budget.recent, compressed.keptWithoutPinned);
  return { heavy: compressed.keptWithoutPinned - recent, recent: recent + generated };
}

/**
 * For policies that rank by the newest queries' attention (SnapKV) and have none after a decode:
 * the slots' accumulated attention, per query head, as their window scores.
 */
export function scoresAsWindow(layer: KvLayer, options: CompressOptions): Float32Array | undefined {
  const policy: Policy = POLICIES[options.policy];
  if (!policy.observes) return undefined;
  const { numHeads: H, length: L } = layer;
  const Hq = options.numQueryHeads ?? H;
  const group = Hq / H;
  const out = new Float32Array(Hq * L);
  for (let q = 0; q < Hq; q++) for (let j = 0; j < L; j++) out[q * L + j] = layer.scores[Math.floor(q / group) * L + j] / group;
  return out;
}
