/** The KV-cache engine: layout, budgets, policies (LOOK-M and baselines) and compression. */
export * from './layout.js';
export * from './budget.js';
export * from './compress.js';
export { KvSettingsError } from './errors.js';
export { POLICIES, POLICY_NAMES, DEFAULT_POLICY, isPolicyName, type Policy, type PolicyName } from './policies/index.js';
export { DEFAULT_SNAPKV_WINDOW, snapkvWindowRows } from './policies/snapkv.js';
export type { PolicyOptions, SelectionTrace } from './select.js';
export { modalityFromPlaceholders } from './modality.js';
export { mulberry32 } from './random.js';
export { similarityFilter, type MergeRule } from './merge.js';
export { matchEvicted, type Matcher, type Matches } from './similarity.js';
export { KvCache, type ExternalRows, type PastView } from './cache.js';
export { SpanIndex } from './spans.js';
export { ColdLayer, ColdStore, concatHeads, type ColdRows } from './cold.js';
export { DEFAULT_QUANT_GROUP, quantFormat, quantizeRows, dequantizeRows, codeBytes, groupsPerRow, type ColdQuantization, type QuantFormat } from './quantize.js';
export { planRecall, rankSpans, type RecallPlan } from './recall.js';
export { compressToCold, deferredBudget, deferredWindowScores, evictToCold } from './coldTier.js';
