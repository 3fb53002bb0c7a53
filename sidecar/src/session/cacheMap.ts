/**
 * What a conversation's compressed cache holds, for people to look at (the cache view): which
 * token positions survive in each layer and head, what each position is (text, image k), and how
 * often an evicted position was merged into a kept one rather than dropped.
 */
import { TEXT, type CompressionPlan, type KvLayer } from '../kv/index.js';
import type { CacheMap } from '../protocol/index.js';

/** Per position: the modality of every token fed, and in how many (layer, head) pairs it was merged. */
export class CacheTally {
  readonly modality: number[] = [];
  readonly merged: number[] = [];

  reset(): void {
    this.modality.length = 0;
    this.merged.length = 0;
  }

  fed(modality: ArrayLike<number>): void {
    for (let i = 0; i < modality.length; i++) {
      this.modality.push(modality[i]);
      this.merged.push(0);
    }
  }

  /** Before the plan is applied: counts the evicted slots whose rows were merged into kept ones. */
  compressed(layer: KvLayer, plan: CompressionPlan): void {
    if (!plan.merged) return;
    const E = plan.evictedPerHead;
    for (let h = 0; h < layer.numHeads; h++) {
      for (let e = 0; e < E; e++) {
        if (plan.merged.filter && !plan.merged.filter[e]) continue;
        const position = layer.positions[h * layer.capacity + plan.evicted[h * E + e]];
        if (position < this.merged.length) this.merged[position]++;
      }
    }
  }
}

/** The images among the positions: where each starts and how many tokens it has. */
function imageSpans(modality: readonly number[]): CacheMap['images'] {
  const spans = new Map<number, { index: number; firstPosition: number; tokens: number }>();
  modality.forEach((m, position) => {
    if (m === TEXT) return;
    const span = spans.get(m);
    if (span) span.tokens++;
    else spans.set(m, { index: m, firstPosition: position, tokens: 1 });
  });
  return [...spans.values()].map((s) => {
    const side = Math.round(Math.sqrt(s.tokens));
    return { ...s, grid: side * side === s.tokens ? [side, side] : [1, s.tokens] };
  });
}

export function cacheMap(cache: KvLayer[] | null, tally: CacheTally): Pick<CacheMap, 'layers' | 'modality' | 'merged' | 'images'> {
  const layers = (cache ?? []).map((layer) => {
    const heads: number[][] = [];
    for (let h = 0; h < layer.numHeads; h++) {
      heads.push(Array.from(layer.positions.subarray(h * layer.capacity, h * layer.capacity + layer.length)).sort((a, b) => a - b));
    }
    return { heads };
  });
  return { layers, modality: [...tally.modality], merged: [...tally.merged], images: imageSpans(tally.modality) };
}
