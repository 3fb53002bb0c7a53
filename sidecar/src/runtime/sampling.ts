/** Next-token choice: greedy, or seeded temperature / top-k / top-p sampling. */
import { mulberry32 } from '../kv/index.js';

export interface SamplingOptions {
  /** 0 (default) is greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** A sampler over one row of logits; deterministic for a given seed. */
export function createSampler(options: SamplingOptions = {}): (logits: ArrayLike<number>) => number {
  const { temperature = 0, topK = 0, topP = 1, seed = 0 } = options;
  if (temperature < 0 || !(topP > 0 && topP <= 1) || topK < 0) throw new RangeError('temperature >= 0, 0 < topP <= 1 and topK >= 0 are required');
  if (temperature === 0) return argmax;
  const random = mulberry32(seed);
  return (logits) => {
    let order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => logits[b] - logits[a]);
    if (topK > 0) order = order.slice(0, topK);
    const max = logits[order[0]];
    const weights = order.map((i) => Math.exp((logits[i] - max) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    // Nucleus: the smallest prefix whose probability reaches topP.
    let kept = order.length;
    for (let i = 0, mass = 0; i < order.length; i++) {
      mass += weights[i] / total;
      if (mass >= topP) {
        kept = i + 1;
        break;
      }
    }
    const keptTotal = weights.slice(0, kept).reduce((a, b) => a + b, 0);
    let r = random() * keptTotal;
    for (let i = 0; i < kept; i++) if ((r -= weights[i]) <= 0) return order[i];
    return order[kept - 1];
  };
}
