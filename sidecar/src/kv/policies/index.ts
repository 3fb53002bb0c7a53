/**
 * Every policy by name: a selection and an optional merge rule. Names follow the reference's
 * kv_modes (lookm-spec §1), `text_prior` being its `text_prior_h2o`.
 */
import type { MergeRule } from '../merge.js';
import type { Selector } from '../select.js';
import { selectFull } from './full.js';
import { selectH2O, selectH2OWithSinks } from './h2o.js';
import { selectRandom } from './random.js';
import { selectSnapKV } from './snapkv.js';
import { selectTextPrior } from './textPrior.js';
import { selectWindow } from './window.js';

export interface Policy {
  select: Selector;
  merge: MergeRule | null;
}

export const POLICIES = {
  full: { select: selectFull, merge: null },
  window: { select: selectWindow, merge: null },
  random: { select: selectRandom, merge: null },
  h2o: { select: selectH2O, merge: null },
  snapkv: { select: selectSnapKV, merge: null },
  pivot_merge: { select: selectH2OWithSinks, merge: 'pivot' },
  avg_merge: { select: selectH2OWithSinks, merge: 'average' },
  weighted_merge: { select: selectH2OWithSinks, merge: 'weighted' },
  text_prior: { select: selectTextPrior, merge: null },
  text_prior_pivot_merge: { select: selectTextPrior, merge: 'pivot' },
  text_prior_avg_merge: { select: selectTextPrior, merge: 'average' },
  text_prior_weighted_merge: { select: selectTextPrior, merge: 'weighted' },
} as const satisfies Record<string, Policy>;

export type PolicyName = keyof typeof POLICIES;

export const POLICY_NAMES = Object.keys(POLICIES) as PolicyName[];

/** LOOK-M's main configuration: text-prior eviction with pivotal merging. */
export const DEFAULT_POLICY: PolicyName = 'text_prior_pivot_merge';

export function isPolicyName(name: string): name is PolicyName {
  return Object.hasOwn(POLICIES, name);
}
