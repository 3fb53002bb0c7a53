/**
 * H2O heavy-hitter selection (Zhang et al., 2023, arXiv 2306.14048): keep the `heavy` older slots
 * with the most accumulated attention, plus the recent window.
 *
 * - `selectH2O` is `H2OKVCache_LayerWise` (lookm-spec §5.1): no attention sinks.
 * - `selectH2OWithSinks` is the selection of the non-text merge classes (Pivot / AVG / Weighted,
 *   lookm-spec §5.2): slots 0..3 rank first (`+inf`). The reference fails with a shape error when
 *   fewer than 4 candidates exist; improved mode protects `min(4, candidates)` instead.
 *   With `heavy < 4` the reference's choice among the tied sinks is unspecified; we keep the
 *   lowest positions.
 *   Improved mode takes the number of sinks from `options.sinks` (default 4); the reference's is 4.
 */
import { fitsBudget, headScores, range, sinkCount, topSlots, withRecentWindow, type Selector } from '../select.js';
import { KvSettingsError } from '../errors.js';

const SINKS = 4;

export const selectH2O: Selector = ({ layer, budget }) => {
  if (fitsBudget(layer, budget)) return null;
  const candidates = range(0, layer.length - budget.recent);
  const heavy: Int32Array[] = [];
  for (let h = 0; h < layer.numHeads; h++) heavy.push(topSlots(headScores(layer, h), candidates, budget.heavy));
  return withRecentWindow(layer, heavy, budget.recent);
};

export const selectH2OWithSinks: Selector = ({ layer, budget, mode, options }) => {
  const protectedSlots = sinkCount(options, SINKS);
  if (mode === 'reference' && protectedSlots !== SINKS) {
    throw new KvSettingsError(`reference H2O-with-sinks protects ${SINKS} sinks (the official code), got sinks ${protectedSlots}; leave sinks unset or use improved mode`);
  }
  if (fitsBudget(layer, budget)) return null;
  const count = layer.length - budget.recent;
  if (mode === 'reference' && count < SINKS) {
    throw new KvSettingsError(`reference H2O-with-sinks needs at least ${SINKS} slots outside the recent window, got ${count} (the official class fails with a shape error)`);
  }
  const candidates = range(0, count);
  const sinks = Math.min(protectedSlots, count);
  const heavy: Int32Array[] = [];
  for (let h = 0; h < layer.numHeads; h++) {
    const rank = Float64Array.from(headScores(layer, h).subarray(0, count));
    rank.fill(Infinity, 0, sinks);
    heavy.push(topSlots(rank, candidates, budget.heavy));
  }
  return withRecentWindow(layer, heavy, budget.recent);
};
