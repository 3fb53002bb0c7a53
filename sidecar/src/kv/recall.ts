/**
 * Which cold spans a turn recalls: spans ranked per layer by the attention the new tokens pay
 * their entries (heads averaged), taken whole, best first, within a budget of slots per head.
 *
 * Every head of every layer must recall as many slots (the hot cache keeps one length per layer,
 * and the decoder one past length for all layers), while a span holds a different number of
 * entries in each head (each head evicted its own slots). So each (layer, head) fills the same
 * cap `n` first-fit down its layer's ranking, with whole spans only; `n` starts at the budget and
 * drops to the smallest fill until every (layer, head) fills it exactly (0 always does).
 */
import type { ColdStore, ColdLayer } from './cold.js';

export interface RecallPlan {
  /** Slots every head of every layer recalls. */
  perHead: number;
  /** Per layer, `[numHeads, perHead]` cold entry indices, best span first. */
  indices: Int32Array[];
  /** Per layer, the spans recalled (in any head), best first. */
  spans: number[][];
}

/** The layer's span ids ranked by the mean over heads of the summed scores of their entries (ties: the older span first). */
export function rankSpans(layer: ColdLayer, entryScores: ArrayLike<number>): number[] {
  const { numHeads: H, count: C } = layer;
  if (entryScores.length !== H * C) throw new RangeError(`entry scores must be [${H}, ${C}], got ${entryScores.length}`);
  const total = new Map<number, number>();
  for (let i = 0; i < H * C; i++) {
    const span = layer.spans[i];
    total.set(span, (total.get(span) ?? 0) + entryScores[i] / H);
  }
  return [...total.keys()].sort((a, b) => total.get(b)! - total.get(a)! || a - b);
}

/** Per head: span id -> the head's entry indices in it. */
function entriesBySpan(layer: ColdLayer): Map<number, number[]>[] {
  const { numHeads: H, count: C } = layer;
  return Array.from({ length: H }, (_, h) => {
    const bySpan = new Map<number, number[]>();
    for (let j = 0; j < C; j++) {
      const span = layer.spans[h * C + j];
      const list = bySpan.get(span);
      if (list) list.push(j);
      else bySpan.set(span, [j]);
    }
    return bySpan;
  });
}

/** Whole spans down `ranking`, first fit, within `cap` entries. */
function firstFit(ranking: number[], bySpan: Map<number, number[]>, cap: number): { taken: number[]; spans: number[] } {
  const taken: number[] = [];
  const spans: number[] = [];
  for (const span of ranking) {
    const entries = bySpan.get(span);
    if (!entries || taken.length + entries.length > cap) continue;
    taken.push(...entries);
    spans.push(span);
    if (taken.length === cap) break;
  }
  return { taken, spans };
}

/**
 * The recall of up to `budget` slots per head from every layer of `store`, scored by
 * `entryScores[layer]` (`[numHeads, count]`: the attention each cold entry received).
 */
export function planRecall(store: ColdStore, entryScores: ArrayLike<number>[], budget: number): RecallPlan {
  if (!(Number.isInteger(budget) && budget >= 0)) throw new RangeError(`recall budget must be a non-negative integer (slots per head), got ${budget}`);
  const layers = store.layers;
  if (entryScores.length !== layers.length) throw new RangeError(`entry scores for ${entryScores.length} layers, the store has ${layers.length}`);
  const rankings = layers.map((layer, i) => rankSpans(layer, entryScores[i]));
  const bySpan = layers.map(entriesBySpan);
  let cap = Math.min(budget, store.count);
  for (;;) {
    const fills = layers.map((layer, l) => Array.from({ length: layer.numHeads }, (_, h) => firstFit(rankings[l], bySpan[l][h], cap)));
    const fewest = Math.min(...fills.flat().map((f) => f.taken.length));
    if (fewest === cap) {
      return {
        perHead: cap,
        indices: fills.map((heads) => Int32Array.from(heads.flatMap((f) => f.taken))),
        spans: fills.map((heads, l) => rankings[l].filter((span) => heads.some((f) => f.spans.includes(span)))),
      };
    }
    cap = fewest;
  }
}
