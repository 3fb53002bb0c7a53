/**
 * LLaVA-NeXT's any-resolution layout of one image, pure arithmetic from its size: the pinpoint it
 * is tiled at (`select_best_resolution`), its size after the aspect-keeping resize and where the
 * padding goes (`get_patch_output_size`, `_get_padding_size`), the tile grid, the feature grid left
 * once the padding is cut away again (`unpad_image`), OneVision's downscale of that grid when it is
 * too large (`anyres_max_N`), and so the image's feature rows, hence prompt tokens (the processors'
 * `_get_number_of_features`). In Python's integer and float semantics, as transformers computes it.
 */
import type { ImageGrid } from '../../imageGrid.js';

export interface Size {
  width: number;
  height: number;
}

/** Where an image goes; `rows` x `cols` tiles, then the base image, are its frames (base first, as the encoder reads them). */
export interface AnyresLayout extends ImageGrid {
  /** The image as given. */
  original: Size;
  /** The pinpoint it is tiled at. */
  best: Size;
  /** After the aspect-keeping resize into `best`, before padding. */
  resized: Size;
  /** The padding above and to the left (the rest goes below and to the right). */
  pad: { top: number; left: number };
  /** The tiles' feature grid with the padding's rows or columns cut away: `first*` is the first kept. */
  unpadded: { rows: number; cols: number; firstRow: number; firstCol: number };
  /** The grid the prompt holds (the unpadded one, or OneVision's downscale of it); each row ends with image_newline. */
  kept: { rows: number; cols: number };
  /** Feature rows per tile (the tower's patch grid squared) and the image's feature rows: the base tile's, then kept rows x (cols + 1). */
  tileTokens: number;
  tokens: number;
}

export interface AnyresSettings {
  /** `[height, width]` each, in order: the first best one wins. */
  pinpoints: readonly (readonly [number, number])[];
  /** The tile side (the tower's image size) and its patch grid side. */
  tile: number;
  grid: number;
  /** OneVision's anyres_max_N (null: LLaVA-NeXT, never downscaled). */
  maxTiles: number | null;
}

/** `select_best_resolution`: the most of the image kept, then the least padding. */
export function selectBestResolution(original: Size, pinpoints: AnyresSettings['pinpoints']): Size {
  let best: Size | null = null;
  let maxEffective = 0;
  let minWasted = Infinity;
  for (const [height, width] of pinpoints) {
    const scale = Math.min(width / original.width, height / original.height);
    const effective = Math.min(Math.trunc(original.width * scale) * Math.trunc(original.height * scale), original.width * original.height);
    const wasted = width * height - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = { width, height };
    }
  }
  if (!best) throw new RangeError(`no pinpoint keeps any of a ${original.width} x ${original.height} image`);
  return best;
}

/** `get_patch_output_size`: the size that fits `target` keeping the aspect ratio (rounded up, never past the target). */
export function patchOutputSize(original: Size, target: Size): Size {
  const scaleW = target.width / original.width;
  const scaleH = target.height / original.height;
  if (scaleW < scaleH) return { width: target.width, height: Math.min(Math.ceil(original.height * scaleW), target.height) };
  return { width: Math.min(Math.ceil(original.width * scaleH), target.width), height: target.height };
}

/** Python's `round(x, 7)` then `int()`: the unpadding's guard against 27.9999999. */
function roundedInt(x: number): number {
  return Math.trunc(Number(x.toFixed(7)));
}

/** Python's float `a // b` (fmod-based, as CPython computes it), for positive operands. */
export function pyFloorDiv(a: number, b: number): number {
  const mod = a % b;
  const div = (a - mod) / b;
  let floor = Math.floor(div);
  if (div - floor > 0.5) floor += 1;
  return floor;
}

/** `unpad_image` on a `rows x cols` feature grid of an image of `original` size: the rows or columns the padding became, cut. */
export function unpadGrid(original: Size, rows: number, cols: number): AnyresLayout['unpadded'] {
  if (original.width / original.height > cols / rows) {
    const padding = Math.floor((rows - roundedInt(original.height * (cols / original.width))) / 2);
    return { rows: rows - 2 * padding, cols, firstRow: padding, firstCol: 0 };
  }
  const padding = Math.floor((cols - roundedInt(original.width * (rows / original.height))) / 2);
  return { rows, cols: cols - 2 * padding, firstRow: 0, firstCol: padding };
}

/** OneVision's `anyres_max_N`: the unpadded grid shrunk by sqrt(its area / N tiles) when that is over 1.1. */
export function keptGrid(unpadded: { rows: number; cols: number }, grid: number, maxTiles: number | null): { rows: number; cols: number } {
  if (maxTiles === null) return { rows: unpadded.rows, cols: unpadded.cols };
  const ratio = Math.sqrt((unpadded.rows * unpadded.cols) / (maxTiles * grid * grid));
  if (!(ratio > 1.1)) return { rows: unpadded.rows, cols: unpadded.cols };
  return { rows: pyFloorDiv(unpadded.rows, ratio), cols: pyFloorDiv(unpadded.cols, ratio) };
}

export function anyresLayout(original: Size, settings: AnyresSettings): AnyresLayout {
  const { tile, grid } = settings;
  const best = selectBestResolution(original, settings.pinpoints);
  const resized = patchOutputSize(original, best);
  const pad = { top: Math.floor((best.height - resized.height) / 2), left: Math.floor((best.width - resized.width) / 2) };
  const rows = best.height / tile;
  const cols = best.width / tile;
  const unpadded = unpadGrid(original, rows * grid, cols * grid);
  const kept = keptGrid(unpadded, grid, settings.maxTiles);
  const tileTokens = grid * grid;
  const drawing = [
    { name: 'base image', rows: grid, cols: grid },
    { name: `${rows} x ${cols} tiles, unpadded${kept.rows === unpadded.rows && kept.cols === unpadded.cols ? '' : ' and downscaled'}; last column: row ends`, rows: kept.rows, cols: kept.cols + 1 },
  ];
  return { original, best, resized, pad, rows, cols, frames: rows * cols + 1, unpadded, kept, tileTokens, tokens: tileTokens + kept.rows * (kept.cols + 1), drawing };
}

export function isAnyresLayout(grid: ImageGrid): grid is AnyresLayout {
  return 'kept' in grid && 'tokens' in grid;
}

/**
 * The base image's tokens and the most an image can take under `config` (for the model tables): an
 * image of exactly a pinpoint's size keeps all of that pinpoint's tiles, nothing unpadded.
 */
export function anyresTokenRange(config: { pinpoints: AnyresSettings['pinpoints']; vision: { imageSize: number; patchSize: number }; maxTiles: number | null }): { base: number; max: number } {
  const settings: AnyresSettings = { pinpoints: config.pinpoints, tile: config.vision.imageSize, grid: Math.floor(config.vision.imageSize / config.vision.patchSize), maxTiles: config.maxTiles };
  return { base: settings.grid ** 2, max: maxAnyresTokens(settings) };
}

/** The most tokens one image can become: one of exactly a pinpoint's size keeps all its tiles. */
export function maxAnyresTokens(settings: AnyresSettings): number {
  return Math.max(...settings.pinpoints.map(([height, width]) => anyresLayout({ width, height }, settings).tokens));
}

