/**
 * How an image enters the prompt, when that depends on the image (Idefics3 splits it into tiles;
 * Qwen2-VL reads it at its own resolution): its tile grid and the frames the image encoder reads
 * for it. A LLaVA image is one frame, never split (`SINGLE_FRAME`), whatever its size.
 */
export interface ImageGrid {
  /** Tile rows and columns; 0 x 0: not split. Qwen2-VL: the image's merged patches, one token each. */
  rows: number;
  cols: number;
  /** Frames the image encoder reads: rows x cols tiles and a global image, or 1. */
  frames: number;
  /** Qwen2-VL's `image_grid_thw`: patches along time, height and width (absent for the others). */
  patches?: readonly [number, number, number];
  /**
   * How the cache view draws the image's tokens (one run of them), in order, when neither one square
   * per frame nor one row fits: LLaVA-NeXT's base image, then its unpadded tile grid with a row end
   * after every row.
   */
  drawing?: readonly DrawnPart[];
}

/** A part of an image's tokens drawn as a `rows` x `cols` grid (`rows * cols` tokens), named for the view. */
export interface DrawnPart {
  name: string;
  rows: number;
  cols: number;
}

export const SINGLE_FRAME: ImageGrid = Object.freeze({ rows: 0, cols: 0, frames: 1 });

/** One image's pixel values for the encoder, `[frames, channels, size, size]`. */
export interface PreprocessedImage {
  pixels: Float32Array;
  grid: ImageGrid;
}
