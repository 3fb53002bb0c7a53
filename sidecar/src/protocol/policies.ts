/**
 * The KV policies by name: the one list the sidecar's engine, the protocol's session settings and
 * the extension derive from (package.json's `lookm.kv.policy` enum and its descriptions are
 * checked against it by a test, since a manifest cannot import). No imports here, so the pure KV
 * engine can take the names without the protocol's dependencies. Names follow the reference's
 * kv_modes (lookm-spec §1), `text_prior` being its `text_prior_h2o`.
 */
export const POLICY_NAMES = [
  'full',
  'window',
  'random',
  'h2o',
  'snapkv',
  'pivot_merge',
  'avg_merge',
  'weighted_merge',
  'text_prior',
  'text_prior_pivot_merge',
  'text_prior_avg_merge',
  'text_prior_weighted_merge',
] as const;

export type PolicyName = (typeof POLICY_NAMES)[number];

/** LOOK-M's main configuration: text-prior eviction with pivotal merging. */
export const DEFAULT_POLICY: PolicyName = 'text_prior_pivot_merge';

/** One line per policy, as the settings UI shows it (package.json's `enumDescriptions`). */
export const POLICY_DESCRIPTIONS: Record<PolicyName, string> = {
  full: 'Keeps every token: no compression (the accuracy ceiling, the most memory).',
  window: 'Keeps the first tokens (attention sinks) and the most recent ones (StreamingLLM).',
  random: 'Keeps the recent window and random older tokens (a control).',
  h2o: 'Keeps the recent window and the older tokens that received the most attention (H2O).',
  snapkv: 'Keeps the recent window and the older tokens the last tokens attend to most (SnapKV).',
  pivot_merge: 'H2O with attention sinks; each evicted token is merged into its most similar kept token.',
  avg_merge: 'H2O with attention sinks; the evicted tokens most similar to a kept token are averaged into it.',
  weighted_merge: 'H2O with attention sinks; the evicted tokens most similar to a kept token are added to it, weighted by similarity.',
  text_prior: 'LOOK-M eviction: keeps the text and the recent window, fills the rest with the most-attended image tokens.',
  text_prior_pivot_merge: 'LOOK-M, recommended (the default): text-prior eviction, each evicted token merged into its most similar kept token.',
  text_prior_avg_merge: 'LOOK-M with averaged merging: text-prior eviction, the most similar evicted tokens averaged into the kept ones.',
  text_prior_weighted_merge: 'LOOK-M with weighted merging: text-prior eviction, the most similar evicted tokens added by similarity weight.',
};

export function isPolicyName(name: string): name is PolicyName {
  return (POLICY_NAMES as readonly string[]).includes(name);
}
