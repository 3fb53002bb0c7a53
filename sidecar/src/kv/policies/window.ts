/**
 * `window`: StreamingLLM-style attention sinks plus the most recent slots (Xiao et al., 2023,
 * arXiv 2309.17453). Scores are ignored. The total matches the other policies' budget so that
 * comparisons are at equal memory.
 */
import { fitsBudget, range, sinkCount, type Selector } from '../select.js';

export const DEFAULT_SINKS = 4;

export const selectWindow: Selector = ({ layer, budget, options }) => {
  if (fitsBudget(layer, budget)) return null;
  const total = budget.heavy + budget.recent;
  // Sinks come out of the heavy share, so the recent share (at least the newest slot) stays.
  const sinks = Math.min(sinkCount(options, DEFAULT_SINKS), budget.heavy);
  const keepPerHead = range(0, sinks);
  const tail = range(layer.length - (total - sinks), layer.length);
  const kept = new Int32Array(layer.numHeads * total);
  for (let h = 0; h < layer.numHeads; h++) {
    kept.set(keepPerHead, h * total);
    kept.set(tail, h * total + sinks);
  }
  return { keptPerHead: total, kept };
};
