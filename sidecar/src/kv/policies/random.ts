/**
 * `random`: keeps the recent window plus uniformly random older slots, drawn per head from a
 * seeded generator. A control: any scoring policy should beat it at equal budget.
 */
import { mulberry32 } from '../random.js';
import { fitsBudget, range, withRecentWindow, type Selector } from '../select.js';

export const selectRandom: Selector = ({ layer, budget, options }) => {
  if (fitsBudget(layer, budget)) return null;
  const next = mulberry32(options.seed ?? 0);
  const candidates = layer.length - budget.recent;
  const heavy: Int32Array[] = [];
  for (let h = 0; h < layer.numHeads; h++) {
    // Partial Fisher-Yates: the first `budget.heavy` entries become a uniform sample.
    const pool = range(0, candidates);
    for (let i = 0; i < budget.heavy; i++) {
      const j = i + Math.floor(next() * (candidates - i));
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    heavy.push(pool.subarray(0, budget.heavy));
  }
  return withRecentWindow(layer, heavy, budget.recent);
};
