/**
 * The cache view's data from a `session/cache` answer (pure; no VS Code import): the figures at
 * the top, the layer strips and image heat-maps as the sidecar summarised them, the per-turn
 * timings. The webview only draws what this returns.
 */
import type { CacheMap } from '../../../sidecar/src/protocol/index.js';
import { keptOfFull, kib, percent } from '../chat/format.js';

export interface CacheViewModel {
  title: string;
  figures: { label: string; value: string }[];
  columnModality: number[];
  bucket: number;
  layers: CacheMap['layers'];
  images: { label: string; rows: number; cols: number; kept: number[]; merged: number[] }[];
  turns: { turn: number; newTokens: number; tokensSeen: number; kept: string; firstTokenMs: number; prefillMs: number; compressMs: number; decodeMs: number; images: string }[];
}

/** '0.4 KiB / 2.0 KiB (20%)', kept against full; a turn saved without its kept bytes shows '– / 2.0 KiB'. */
function kvKeptOfFull(figures: { keptKvBytes?: number; fullKvBytes: number; kvBytes: number }): string {
  if (keptOfFull(figures) === null) return `– / ${kib(figures.fullKvBytes)}`;
  const kept = figures.keptKvBytes ?? 0;
  return `${kib(kept)} / ${kib(figures.fullKvBytes)} (${percent(kept, figures.fullKvBytes)})`;
}

export function cacheViewModel(map: CacheMap): CacheViewModel {
  const imageTokens = map.images.reduce((n, image) => n + image.tokens, 0);
  const keptImageShare = imageTokens > 0 ? map.images.reduce((n, image) => n + image.kept.reduce((a, b) => a + b, 0), 0) / imageTokens : 0;
  const figures = [
    { label: 'Tokens seen / kept per head', value: `${map.tokensSeen} / ${map.keptPerHead} (${percent(map.keptPerHead, map.tokensSeen)})` },
    // Kept against full compares slots with slots (the latest turn's); allocated memory is its own figure.
    { label: 'KV bytes kept / full', value: kvKeptOfFull(map) },
    { label: 'KV memory allocated', value: map.cached ? `${kib(map.kvBytes)} (kept slots and room to grow)` : 'none (evicted)' },
    { label: 'Sidecar KV budget', value: map.kvBudgetBytes === null ? 'none' : `${kib(map.kvBudgetBytes)} (this conversation: ${percent(map.kvBytes, map.kvBudgetBytes)})` },
    { label: 'Image tokens kept', value: imageTokens > 0 ? `${(100 * keptImageShare).toFixed(0)}% of ${imageTokens}` : 'no images' },
    { label: 'Layers × KV heads', value: `${map.layers.length} × ${map.layers[0]?.heads.length ?? 0}` },
  ];
  if (!map.cached) figures.push({ label: 'Cache', value: 'evicted to the transcript; rebuilt on the next turn' });

  return {
    title: `Conversation ${map.sessionId.slice(0, 8)} · ${map.settings.policy} (${map.settings.mode})`,
    figures,
    columnModality: map.columnModality,
    bucket: map.bucket,
    layers: map.layers,
    images: map.images.map((image) => ({ label: `Image ${image.index + 1}${frameLabel(image)} (${image.tokens} tokens)`, rows: image.grid[0], cols: image.grid[1], kept: image.kept, merged: image.merged })),
    turns: map.turns.map((t, i) => ({
      turn: i + 1,
      newTokens: t.newTokens,
      tokensSeen: t.tokensSeen,
      kept: kvKeptOfFull(t),
      firstTokenMs: Math.round(t.timeToFirstTokenMs),
      prefillMs: Math.round(t.prefillMs),
      compressMs: Math.round(t.compressMs),
      decodeMs: Math.round(t.decodeMs),
      images: `${t.imagesEncoded} / ${t.imagesReused}`,
    })),
  };
}

/** Which frame of a tiled image: the part its architecture names (LLaVA-NeXT), or (SmolVLM) a tile, counted row by row, or the global image after them. */
function frameLabel(image: CacheMap['images'][number]): string {
  if (image.part !== undefined) return `, ${image.part}`;
  if (image.frames === undefined || image.frame === undefined) return '';
  return image.frame === image.frames - 1 ? ', global image' : `, tile ${image.frame + 1} of ${image.frames - 1}`;
}
