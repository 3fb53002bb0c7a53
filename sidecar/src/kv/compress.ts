/**
 * One compression of one layer: resolve the budget, select kept slots per head, match and merge
 * the evicted ones if the policy merges, then compact the layer in place.
 */
import { resolveBudget, type Budget, type Mode, type SlotBudget } from './budget.js';
import { KvSettingsError } from './errors.js';
import type { KvLayer } from './layout.js';
import { mergeEvicted, type MergeOutcome } from './merge.js';
import { POLICIES, isPolicyName, type Policy, type PolicyName } from './policies/index.js';
import type { PolicyOptions, SelectionTrace } from './select.js';
import { matchEvicted, type Matcher, type Matches } from './similarity.js';

export interface CompressOptions extends PolicyOptions {
  policy: PolicyName;
  budget: Budget;
  /** `improved` (default) or `reference` (exact to the official classes, lookm-spec §8). */
  mode?: Mode;
  /**
   * Evicted-to-kept key matching for merging policies in improved mode (default: the exact
   * JavaScript matcher). Reference mode always uses the exact matcher, so its indices stay
   * bit-for-bit with the golden files.
   */
  matcher?: Matcher;
  /**
   * Slots to keep, already resolved, instead of `budget`'s ratios (the cold tier's end-of-turn
   * compression, which keeps the length the turn would have had without a recall).
   */
  slots?: SlotBudget;
  /**
   * The layer's K/V rows live elsewhere (a GPU): match with `matcher` whatever the mode (it reads
   * the rows where they are), and leave the merge to their holder (`merged` is null; the plan's
   * matches say what to merge).
   */
  rowsElsewhere?: boolean;
}

export interface CompressionPlan {
  keptPerHead: number;
  /** `[numHeads, keptPerHead]` slot indices of the layer before compression, in output order. */
  kept: Int32Array;
  evictedPerHead: number;
  /** `[numHeads, evictedPerHead]` slot indices not kept, ascending. */
  evicted: Int32Array;
  /** Present when the policy merges and something was evicted. */
  matches: Matches | null;
  merged: MergeOutcome | null;
  trace: SelectionTrace;
}

/** The evicted complement of each head's kept slots, ascending. */
function complement(length: number, numHeads: number, kept: Int32Array, keptPerHead: number): Int32Array {
  const E = length - keptPerHead;
  const evicted = new Int32Array(numHeads * E);
  const isKept = new Uint8Array(length);
  for (let h = 0; h < numHeads; h++) {
    isKept.fill(0);
    for (let i = 0; i < keptPerHead; i++) isKept[kept[h * keptPerHead + i]] = 1;
    for (let j = 0, e = 0; j < length; j++) if (!isKept[j]) evicted[h * E + e++] = j;
  }
  return evicted;
}

/**
 * How many of the newest tokens' query rows the policy observes when it compresses a layer that
 * will hold `length` slots after `tokensSeen` tokens (0: it observes none). A prefill sums the
 * attention of exactly these rows into the `windowScores` that `planCompression` then takes.
 */
export function observedRows(options: CompressOptions, length: number, tokensSeen: number): number {
  const { policy: name, mode = 'improved' } = options;
  if (!isPolicyName(name)) throw new KvSettingsError(`unknown KV policy "${String(name)}"`);
  const policy: Policy = POLICIES[name];
  if (!policy.observes) return 0;
  return policy.observes(resolveBudget(options.budget, length, tokensSeen, mode), mode, options);
}

/** What `compressLayer` would do, without touching the layer. `null`: the layer stays as it is. */
export async function planCompression(layer: KvLayer, options: CompressOptions): Promise<CompressionPlan | null> {
  const { policy: name, budget: requested, mode = 'improved' } = options;
  if (!isPolicyName(name)) throw new KvSettingsError(`unknown KV policy "${String(name)}"`);
  const policy: Policy = POLICIES[name];
  const budget = options.slots ?? resolveBudget(requested, layer.length, layer.tokensSeen, mode);
  const selection = policy.select({ layer, budget, mode, options });
  if (!selection) return null;
  const { keptPerHead, kept } = selection;
  const evictedPerHead = layer.length - keptPerHead;
  const evicted = complement(layer.length, layer.numHeads, kept, keptPerHead);
  let matches: Matches | null = null;
  let merged: MergeOutcome | null = null;
  if (policy.merge && evictedPerHead > 0) {
    const matcher = options.rowsElsewhere ? options.matcher : mode === 'reference' ? matchEvicted : (options.matcher ?? matchEvicted);
    if (!matcher) throw new KvSettingsError('a layer whose K/V rows live elsewhere needs the matcher that reads them there');
    matches = await matcher(layer, kept, keptPerHead, evicted, evictedPerHead);
    if (!options.rowsElsewhere) merged = mergeEvicted(layer, kept, keptPerHead, evicted, evictedPerHead, matches, policy.merge, mode);
  }
  return { keptPerHead, kept, evictedPerHead, evicted, matches, merged, trace: selection.trace ?? {} };
}

/** Compresses the layer in place under its budget; returns what was done (`null`: nothing). */
export async function compressLayer(layer: KvLayer, options: CompressOptions): Promise<CompressionPlan | null> {
  const plan = await planCompression(layer, options);
  if (plan) layer.compact(plan);
  return plan;
}
