/**
 * Everything about the Qwen2-VL vision tower that depends on the images' grids, computed on the
 * host so the graph stays shape-agnostic: the order the patch rows are fed in (Qwen2.5-VL groups
 * each attention window's merged patches together: `get_window_index`), the 2-D rotary cos/sin of
 * every row (its patch row and column, `rot_pos_emb`), which image and which window each row
 * belongs to (attention stays within an image, or within a window in windowed blocks), and how
 * the merged output rows go back to the images' raster order.
 */
import type { PreprocessedImage } from '../../imageGrid.js';
import type { ImageEncoderFeeds } from '../architecture.js';
import type { Qwen2VLVisionConfig } from './config.js';

export type Grid = readonly [number, number, number];

export interface VisionInputs {
  /** Patch rows of all images, in the order fed (`[N, 3 * T * P * P]`). */
  pixels: Float32Array;
  /** `[N, head_dim]` each. */
  cos: Float32Array;
  sin: Float32Array;
  /** Per fed row: its image (full-attention blocks) and its window (windowed blocks; the image again for Qwen2-VL). */
  imageSegment: BigInt64Array;
  windowSegment: BigInt64Array;
  /** Fed merged row j is the images' merged row `mergedOrder[j]` (raster order within each image, images in turn). */
  mergedOrder: Int32Array;
  rows: number;
}

/** Pixel-patch row and column of each row of an image's patches (merge groups, then patches, in raster order). */
function patchCoordinates(h: number, w: number, m: number): { row: Int32Array; col: Int32Array } {
  const n = h * w;
  const row = new Int32Array(n);
  const col = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    const unit = Math.floor(r / (m * m));
    const within = r % (m * m);
    row[r] = Math.floor(unit / (w / m)) * m + Math.floor(within / m);
    col[r] = (unit % (w / m)) * m + (within % m);
  }
  return { row, col };
}

/**
 * Qwen2.5-VL's window order of one image's merged patches: windows of `size` x `size` merged
 * patches in raster order (the last row and column of windows may be partial), patches in raster
 * order within each. Returns the order and each entry's window number.
 */
function windowOrder(h: number, w: number, size: number): { order: number[]; window: number[] } {
  const order: number[] = [];
  const window: number[] = [];
  const across = Math.ceil(w / size);
  for (let wy = 0; wy < Math.ceil(h / size); wy++) {
    for (let wx = 0; wx < across; wx++) {
      for (let y = wy * size; y < Math.min((wy + 1) * size, h); y++) {
        for (let x = wx * size; x < Math.min((wx + 1) * size, w); x++) {
          order.push(y * w + x);
          window.push(wy * across + wx);
        }
      }
    }
  }
  return { order, window };
}

/** The vision tower's inputs for images whose patches (`pixels[k]`, from the processor) have grids `grids[k]`. */
export function visionInputs(config: Qwen2VLVisionConfig, pixels: readonly Float32Array[], grids: readonly Grid[]): VisionInputs {
  const m = config.spatialMergeSize;
  const unit = m * m;
  const hd = config.hiddenSize / config.numHeads;
  const patchLen = 3 * config.temporalPatchSize * config.patchSize * config.patchSize;
  const rows = grids.reduce((sum, [t, h, w]) => sum + t * h * w, 0);
  const out: VisionInputs = {
    pixels: new Float32Array(rows * patchLen),
    cos: new Float32Array(rows * hd),
    sin: new Float32Array(rows * hd),
    imageSegment: new BigInt64Array(rows),
    windowSegment: new BigInt64Array(rows),
    mergedOrder: new Int32Array(rows / unit),
    rows,
  };
  // VisionRotaryEmbedding(head_dim / 2): head_dim / 4 frequencies, for the row and then the column.
  const quarter = hd / 4;
  const invFreq = Float32Array.from({ length: quarter }, (_, i) => 1 / 10000 ** ((2 * i) / (hd / 2)));
  const windowUnits = config.windowSize === null ? 0 : config.windowSize / config.patchSize / m;
  let fedRow = 0;
  let mergedBase = 0;
  let windowBase = 0;
  let frameSegment = 0;
  grids.forEach(([t, h, w], image) => {
    if (pixels[image].length !== t * h * w * patchLen) throw new RangeError(`image ${image + 1}: ${pixels[image].length} pixel values for a ${t} x ${h} x ${w} grid of ${patchLen}-value patches`);
    const { row, col } = patchCoordinates(h, w, m);
    const unitsPerFrame = (h / m) * (w / m);
    for (let frame = 0; frame < t; frame++) {
      const { order, window } = windowUnits > 0 ? windowOrder(h / m, w / m, windowUnits) : { order: [...Array(unitsPerFrame).keys()], window: Array<number>(unitsPerFrame).fill(0) };
      order.forEach((u, j) => {
        out.mergedOrder[(fedRow / unit) | 0] = mergedBase + frame * unitsPerFrame + u;
        for (let k = 0; k < unit; k++) {
          const src = frame * h * w + u * unit + k;
          out.pixels.set(pixels[image].subarray(src * patchLen, (src + 1) * patchLen), fedRow * patchLen);
          const r = src % (h * w);
          for (let f = 0; f < quarter; f++) {
            const a = row[r] * invFreq[f];
            const b = col[r] * invFreq[f];
            // emb = cat(freqs, freqs) with freqs = [row angles, column angles]
            for (const half of [0, hd / 2]) {
              out.cos[fedRow * hd + half + f] = Math.cos(Math.fround(a));
              out.sin[fedRow * hd + half + f] = Math.sin(Math.fround(a));
              out.cos[fedRow * hd + half + quarter + f] = Math.cos(Math.fround(b));
              out.sin[fedRow * hd + half + quarter + f] = Math.sin(Math.fround(b));
            }
          }
          // transformers attends within each frame (cu_seqlens counts h * w rows per frame).
          out.imageSegment[fedRow] = BigInt(frameSegment);
          out.windowSegment[fedRow] = BigInt(windowBase + window[j]);
          fedRow++;
        }
      });
      windowBase += windowUnits > 0 ? Math.max(...window) + 1 : 1;
      frameSegment++;
    }
    mergedBase += t * unitsPerFrame;
  });
  return out;
}

/** The tower's merged output rows (in fed order) back in the images' order. */
export function unpermuteMerged(features: Float32Array, mergedOrder: Int32Array, width: number): Float32Array {
  const out = new Float32Array(features.length);
  mergedOrder.forEach((target, j) => out.set(features.subarray(j * width, (j + 1) * width), target * width));
  return out;
}

/**
 * One image-encoder run over preprocessed images (each with its `patches` grid): the patch rows in
 * the order the tower reads them, the per-row inputs by manifest role, and the merged output rows
 * put back in the images' raster order.
 */
export function imageEncoderFeeds(config: Qwen2VLVisionConfig, images: readonly PreprocessedImage[]): ImageEncoderFeeds {
  const grids = images.map((image, k) => {
    if (!image.grid.patches) throw new RangeError(`image ${k + 1} has no patch grid (not preprocessed by the Qwen2-VL processor)`);
    return image.grid.patches;
  });
  const inputs = visionInputs(config, images.map((image) => image.pixels), grids);
  const { rows } = inputs;
  const hd = config.hiddenSize / config.numHeads;
  return {
    pixels: { data: inputs.pixels, dims: [rows, rows === 0 ? 0 : inputs.pixels.length / rows] },
    inputs: {
      rotaryCos: { data: inputs.cos, dims: [rows, hd] },
      rotarySin: { data: inputs.sin, dims: [rows, hd] },
      imageSegment: { data: inputs.imageSegment, dims: [rows] },
      ...(config.windowSize === null ? {} : { windowSegment: { data: inputs.windowSegment, dims: [rows] } }),
    },
    features: (output) => unpermuteMerged(output, inputs.mergedOrder, config.outHiddenSize),
  };
}
