/**
 * Every policy by name: a selection, an optional merge rule and, for a policy that observes the
 * newest queries' attention, how many query rows it observes. The names are the protocol's
 * (`POLICY_NAMES`, the one list); this table must cover exactly those.
 */
import type { Mode, SlotBudget } from '../budget.js';
import type { MergeRule } from '../merge.js';
import type { PolicyOptions, Selector } from '../select.js';
import { DEFAULT_POLICY, isPolicyName, POLICY_NAMES, type PolicyName } from '../../protocol/policies.js';
import { selectFull } from './full.js';
import { selectH2O, selectH2OWithSinks } from './h2o.js';
import { selectRandom } from './random.js';
import { selectSnapKV, snapkvWindowRows } from './snapkv.js';
import { selectTextPrior } from './textPrior.js';
import { selectWindow } from './window.js';

export interface Policy {
  select: Selector;
  merge: MergeRule | null;
  /** Query rows (the newest tokens') whose attention `select` takes as `options.windowScores`. */
  observes?: (budget: SlotBudget, mode: Mode, options: PolicyOptions) => number;
}

export const POLICIES = {
  full: { select: selectFull, merge: null },
  window: { select: selectWindow, merge: null },
  random: { select: selectRandom, merge: null },
  h2o: { select: selectH2O, merge: null },
  snapkv: { select: selectSnapKV, merge: null, observes: (budget, mode, options) => snapkvWindowRows(budget, mode, options.snapkvWindow) },
  pivot_merge: { select: selectH2OWithSinks, merge: 'pivot' },
  avg_merge: { select: selectH2OWithSinks, merge: 'average' },
  weighted_merge: { select: selectH2OWithSinks, merge: 'weighted' },
  text_prior: { select: selectTextPrior, merge: null },
  text_prior_pivot_merge: { select: selectTextPrior, merge: 'pivot' },
  text_prior_avg_merge: { select: selectTextPrior, merge: 'average' },
  text_prior_weighted_merge: { select: selectTextPrior, merge: 'weighted' },
} as const satisfies Record<PolicyName, Policy>;

export { DEFAULT_POLICY, isPolicyName, POLICY_NAMES, type PolicyName };
