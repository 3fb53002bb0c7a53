/**
 * What a conversation's compressed cache holds, for people to look at (the cache view), summarised
 * here so its size does not grow with the model or the conversation: per layer and KV head, the
 * share of kept positions in each of at most `maxColumns` columns of the conversation, each
 * column's modality, and per image patch the share of (layer, head) pairs that keep it or merged it
 * into a kept slot rather than dropping it. An image read as several frames (SmolVLM's tiles and
 * global image) is drawn frame by frame; a Qwen2-VL image as its grid of merged patches (the height
 * and width components of its tokens' M-RoPE positions); one whose architecture says how to draw
 * its tokens (`ImageGrid.drawing`: LLaVA-NeXT's base image and unpadded tile grid) part by part.
 */
import { similarityFilter, TEXT, type CompressionPlan, type KvLayer, type MergeRule } from '../kv/index.js';
import type { DrawnPart } from '../model/imageGrid.js';
import type { CacheMap } from '../protocol/index.js';

/** Per position: the modality of every token fed, and in how many (layer, head) pairs it was merged. */
export class CacheTally {
  readonly modality: number[] = [];
  readonly merged: number[] = [];
  /** Per image index, its token grid `[rows, cols]` where its positions say (M-RoPE); others are drawn square or in a row. */
  readonly grids = new Map<number, [number, number]>();

  reset(): void {
    this.modality.length = 0;
    this.merged.length = 0;
    this.grids.clear();
  }

  /** An independent copy: a turn works on one and hands it over only when it is recorded. */
  copy(): CacheTally {
    const copy = new CacheTally();
    for (let p = 0; p < this.modality.length; p++) {
      copy.modality.push(this.modality[p]);
      copy.merged.push(this.merged[p]);
    }
    for (const [image, grid] of this.grids) copy.grids.set(image, [grid[0], grid[1]]);
    return copy;
  }

  /** Tokens fed, with their M-RoPE positions (`[3, tokens]`) if the model has them: each image's rows and columns are its height and width spans. */
  fed(modality: ArrayLike<number>, rope?: Int32Array): void {
    const L = modality.length;
    const spans = new Map<number, [number, number, number, number]>();
    for (let i = 0; i < L; i++) {
      this.modality.push(modality[i]);
      this.merged.push(0);
      if (!rope || modality[i] === TEXT) continue;
      const [y, x] = [rope[L + i], rope[2 * L + i]];
      const s = spans.get(modality[i]) ?? spans.set(modality[i], [y, y, x, x]).get(modality[i])!;
      spans.set(modality[i], [Math.min(s[0], y), Math.max(s[1], y), Math.min(s[2], x), Math.max(s[3], x)]);
    }
    for (const [image, [y0, y1, x0, x1]] of spans) this.grids.set(image, [y1 - y0 + 1, x1 - x0 + 1]);
  }

  /**
   * Before the plan is applied: counts the evicted slots whose rows were merged into kept ones.
   * `rowsElsewhere`: the rows are merged where they live (a GPU), so the plan carries no merged
   * rows; `rule` says which evicted slots the merge takes (those that pass the similarity filter,
   * or all of them for pivot).
   */
  compressed(layer: KvLayer, plan: CompressionPlan, rowsElsewhere: { rule: MergeRule | null } | null = null): void {
    const E = plan.evictedPerHead;
    const merging = rowsElsewhere ? Boolean(rowsElsewhere.rule && plan.matches) : plan.merged !== null;
    if (!merging) return;
    const filter = rowsElsewhere ? (rowsElsewhere.rule === 'pivot' ? null : similarityFilter(plan.matches!.maxSim, layer.numHeads, E)) : plan.merged!.filter;
    for (let h = 0; h < layer.numHeads; h++) {
      for (let e = 0; e < E; e++) {
        if (filter && !filter[e]) continue;
        const position = layer.positions[h * layer.length + plan.evicted[h * E + e]];
        if (position < this.merged.length) this.merged[position]++;
      }
    }
  }
}

export const DEFAULT_MAX_COLUMNS = 480;

const round = (x: number) => Math.round(x * 1000) / 1000;

/**
 * `drawings(index)`: how image `index`'s tokens are drawn, if its architecture says (parts of one
 * run of tokens, in order); otherwise each run of its tokens is one frame, square if it can be.
 */
export function cacheMap(
  cache: readonly KvLayer[] | null,
  tally: CacheTally,
  maxColumns = DEFAULT_MAX_COLUMNS,
  drawings: (index: number) => readonly DrawnPart[] | undefined = () => undefined,
): Pick<CacheMap, 'keptPerHead' | 'bucket' | 'columnModality' | 'layers' | 'images'> {
  const seen = tally.modality.length;
  const bucket = Math.max(1, Math.ceil(seen / maxColumns));
  const columns = Math.ceil(seen / bucket);
  const width = (c: number) => Math.min(bucket, seen - c * bucket);

  const columnModality = Array.from({ length: columns }, (_, c) => {
    const counts = new Map<number, number>();
    for (let p = c * bucket; p < c * bucket + width(c); p++) counts.set(tally.modality[p], (counts.get(tally.modality[p]) ?? 0) + 1);
    return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? TEXT;
  });

  // How many (layer, head) pairs keep each position, and each column's kept share per head.
  const keptBy = new Uint32Array(seen);
  const layers = (cache ?? []).map((layer) => {
    const heads: number[][] = [];
    for (let h = 0; h < layer.numHeads; h++) {
      const kept = new Array<number>(columns).fill(0);
      for (const p of layer.positions.subarray(h * layer.length, (h + 1) * layer.length)) {
        if (p >= seen) continue;
        keptBy[p]++;
        kept[Math.floor(p / bucket)]++;
      }
      heads.push(kept.map((n, c) => round(n / width(c))));
    }
    return { heads };
  });
  const pairs = (cache ?? []).reduce((n, layer) => n + layer.numHeads, 0);

  // Each image's frames: runs of consecutive positions (an Idefics3 image's tiles are apart, their markup between them).
  const runs = new Map<number, { firstPosition: number; tokens: number }[]>();
  tally.modality.forEach((m, position) => {
    if (m === TEXT) return;
    const frames = runs.get(m) ?? runs.set(m, []).get(m)!;
    const last = frames.at(-1);
    if (last && last.firstPosition + last.tokens === position) last.tokens++;
    else frames.push({ firstPosition: position, tokens: 1 });
  });
  const share = (firstPosition: number, tokens: number, counts: ArrayLike<number>) => Array.from({ length: tokens }, (_, i) => (pairs > 0 ? round(counts[firstPosition + i] / pairs) : 0));
  const images = [...runs.entries()].flatMap(([index, frames]) => {
    const parts = drawings(index);
    const run = frames[0];
    if (parts && frames.length === 1 && parts.reduce((n, p) => n + p.rows * p.cols, 0) === run.tokens) {
      let firstPosition = run.firstPosition;
      return parts.map(({ name, rows, cols }, frame) => {
        const at = firstPosition;
        firstPosition += rows * cols;
        return { index, firstPosition: at, tokens: rows * cols, grid: [rows, cols], frame, frames: parts.length, part: name, kept: share(at, rows * cols, keptBy), merged: share(at, rows * cols, tally.merged) };
      });
    }
    return frames.map((s, frame) => {
      const side = Math.round(Math.sqrt(s.tokens));
      const known = tally.grids.get(index);
      const tiles = frames.length > 1 ? { frame, frames: frames.length } : {};
      const grid = known && known[0] * known[1] === s.tokens ? known : side * side === s.tokens ? [side, side] : [1, s.tokens];
      return { index, firstPosition: s.firstPosition, tokens: s.tokens, grid, ...tiles, kept: share(s.firstPosition, s.tokens, keptBy), merged: share(s.firstPosition, s.tokens, tally.merged) };
    });
  });

  return { keptPerHead: cache?.[0]?.length ?? 0, bucket, columnModality, layers, images };
}
