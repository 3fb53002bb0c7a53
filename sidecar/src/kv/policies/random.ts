/**
 * `random`: keeps the recent window plus uniformly random older slots, drawn per head from a
 * seeded generator. A control: any scoring policy should beat it at equal budget.
 */
import { fitsBudget, range, withRecentWindow, type Selector } from '../select.js';

/** mulberry32: a small, fast, well-distributed 32-bit PRNG; enough for a seeded baseline. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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
