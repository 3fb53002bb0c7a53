/**
 * The cache view's data, computed from a `session/cache` answer (pure; no VS Code import): the
 * figures at the top, a strip per layer and head of which positions survived (bucketed to a
 * drawable number of columns), and per image a heat-map over its patches of how often each was
 * kept or merged. The webview only draws what this returns.
 */
import type { CacheMap } from '../../../sidecar/src/protocol/index.js';
import { kib } from '../chat/format.js';

/** The most columns a layer strip has; longer conversations are bucketed. */
export const MAX_COLUMNS = 480;

export interface CacheViewModel {
  title: string;
  figures: { label: string; value: string }[];
  /** Modality of each column (-1 text, k image k): the most frequent in its bucket. */
  columnModality: number[];
  /** Positions per column. */
  bucket: number;
  /** Per layer, per KV head: the share of each column's positions that is kept (0..1). */
  layers: { heads: number[][] }[];
  /** Per image: per patch, the share of (layer, head) pairs that keep it, and that merged it. */
  images: { label: string; rows: number; cols: number; kept: number[]; merged: number[] }[];
  turns: { turn: number; newTokens: number; tokensSeen: number; kept: string; firstTokenMs: number; prefillMs: number; compressMs: number; decodeMs: number; images: string }[];
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(0)}%` : '–';
}

export function cacheViewModel(map: CacheMap): CacheViewModel {
  const seen = map.tokensSeen;
  const bucket = Math.max(1, Math.ceil(seen / MAX_COLUMNS));
  const columns = Math.ceil(seen / bucket);

  const columnModality = Array.from({ length: columns }, (_, c) => {
    const counts = new Map<number, number>();
    for (let p = c * bucket; p < Math.min(seen, (c + 1) * bucket); p++) counts.set(map.modality[p], (counts.get(map.modality[p]) ?? 0) + 1);
    return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? -1;
  });

  // How many (layer, head) pairs keep each position, and each column's kept share per head.
  const keptBy = new Array<number>(seen).fill(0);
  const layers = map.layers.map((layer) => ({
    heads: layer.heads.map((positions) => {
      const kept = new Array<number>(columns).fill(0);
      for (const p of positions) {
        keptBy[p]++;
        kept[Math.floor(p / bucket)]++;
      }
      return kept.map((n, c) => n / Math.min(bucket, seen - c * bucket));
    }),
  }));
  const pairs = map.layers.reduce((n, layer) => n + layer.heads.length, 0);

  const images = map.images.map((image) => {
    const span = (counts: number[]) => counts.slice(image.firstPosition, image.firstPosition + image.tokens).map((n) => (pairs > 0 ? n / pairs : 0));
    return { label: `Image ${image.index + 1} (${image.tokens} tokens)`, rows: image.grid[0], cols: image.grid[1], kept: span(keptBy), merged: span(map.merged) };
  });

  const keptSlots = map.layers[0]?.heads[0]?.length ?? 0;
  const imageTokens = map.images.reduce((n, image) => n + image.tokens, 0);
  const keptImageShare = pairs > 0 && imageTokens > 0 ? map.images.reduce((n, image) => n + keptBy.slice(image.firstPosition, image.firstPosition + image.tokens).reduce((a, b) => a + b, 0), 0) / (pairs * imageTokens) : 0;
  const figures = [
    { label: 'Tokens seen / kept per head', value: `${seen} / ${keptSlots} (${percent(keptSlots, seen)})` },
    { label: 'KV bytes kept / full', value: `${kib(map.kvBytes)} / ${kib(map.fullKvBytes)} (${percent(map.kvBytes, map.fullKvBytes)})` },
    { label: 'Sidecar KV budget', value: map.kvBudgetBytes === null ? 'none' : `${kib(map.kvBudgetBytes)} (this conversation: ${percent(map.kvBytes, map.kvBudgetBytes)})` },
    { label: 'Image tokens kept', value: imageTokens > 0 ? `${(100 * keptImageShare).toFixed(0)}% of ${imageTokens}` : 'no images' },
    { label: 'Layers × KV heads', value: `${map.layers.length} × ${map.layers[0]?.heads.length ?? 0}` },
  ];
  if (!map.cached) figures.push({ label: 'Cache', value: 'evicted to the transcript; rebuilt on the next turn' });

  const turns = map.turns.map((t, i) => ({
    turn: i + 1,
    newTokens: t.newTokens,
    tokensSeen: t.tokensSeen,
    kept: `${kib(t.kvBytes)} / ${kib(t.fullKvBytes)}`,
    firstTokenMs: Math.round(t.timeToFirstTokenMs),
    prefillMs: Math.round(t.prefillMs),
    compressMs: Math.round(t.compressMs),
    decodeMs: Math.round(t.decodeMs),
    images: `${t.imagesEncoded} / ${t.imagesReused}`,
  }));

  return {
    title: `Conversation ${map.sessionId.slice(0, 8)} · ${map.settings.policy} (${map.settings.mode})`,
    figures,
    columnModality,
    bucket,
    layers,
    images,
    turns,
  };
}
