/**
 * Idefics3 (SmolVLM) image layout: how an image of a given size is resized, split into tiles
 * ("frames") plus a global image, and which text stands for it in the prompt. Pure arithmetic,
 * the rules of transformers' `Idefics3ImageProcessor` (resize to `size.longest_edge`, then up to
 * multiples of `max_image_size.longest_edge`, split) and `Idefics3Processor` (`<row_r_col_c>`,
 * `<global-img>`, `<fake_token_around_image>`), in Python's integer and float semantics.
 */
import { z } from 'zod';
import { CheckpointError } from '../../checkpointError.js';

/** transformers' `MAX_IMAGE_SIZE`: no resized side exceeds it. */
const MAX_SIDE = 4096;
/** PIL resampling filters by number (`resample`), as `pilResize` names them. */
export const RESAMPLE_FILTERS = { 1: 'lanczos', 3: 'bicubic' } as const;

const side = z.number().int().positive().max(MAX_SIDE);

/** preprocessor_config.json of an Idefics3 checkpoint. Unknown fields are ignored; unsupported values refused by name. */
export const idefics3PreprocessorSchema = z
  .object({
    do_convert_rgb: z.boolean().default(true),
    do_resize: z.boolean().default(true),
    size: z.object({ longest_edge: side }).default({ longest_edge: 4 * 364 }),
    resample: z
      .union([z.literal(1), z.literal(3)], { error: 'resample: only 1 (LANCZOS, SmolVLM\'s) and 3 (BICUBIC) are supported' })
      .default(1),
    do_image_splitting: z.boolean().default(true),
    max_image_size: z.object({ longest_edge: side }).default({ longest_edge: 364 }),
    do_rescale: z.boolean().default(true),
    rescale_factor: z.number().positive().default(1 / 255),
    do_normalize: z.boolean().default(true),
    image_mean: z.array(z.number()).length(3).default([0.5, 0.5, 0.5]),
    image_std: z
      .array(z.number().refine((x) => x !== 0, 'image_std: a zero would divide by zero'))
      .length(3)
      .default([0.5, 0.5, 0.5]),
    do_pad: z.boolean().default(true),
  })
  .loose();

export type Idefics3Preprocessor = z.infer<typeof idefics3PreprocessorSchema>;

/** Parses preprocessor_config.json; `imageSize` is the vision tower's side, which every frame must have. */
export function parseIdefics3Preprocessor(raw: unknown, imageSize: number): Idefics3Preprocessor {
  const parsed = idefics3PreprocessorSchema.safeParse(raw);
  if (!parsed.success) throw new CheckpointError(`preprocessor_config.json: ${z.prettifyError(parsed.error)}`);
  const config = parsed.data;
  if (config.max_image_size.longest_edge !== imageSize) {
    // transformers would bucket the position embeddings of a frame of another size; SmolVLM's frames are the tower's size.
    throw new CheckpointError(
      `preprocessor_config.json: max_image_size.longest_edge ${config.max_image_size.longest_edge} differs from vision_config.image_size ${imageSize}: only frames of the vision tower's own size are supported`,
    );
  }
  return config;
}

/** Where an image of `width` x `height` goes: its sizes after each resize, and its tile grid (0 x 0: not split). */
export interface ImageLayout {
  /** After the resize to `size.longest_edge` (the original size when `do_resize` is off). */
  resized: { width: number; height: number };
  /** After the resize to multiples of the tile side (only when splitting; otherwise the frame side). */
  split: { width: number; height: number };
  rows: number;
  cols: number;
  /** Frames the vision tower reads: rows x cols tiles, then the global image (1 when not split). */
  frames: number;
}

/** `_resize_output_size_rescale_to_max_len` then `_resize_output_size_scale_below_upper_bound`. */
function longestEdgeSize(width: number, height: number, maxLen: number): { width: number; height: number } {
  let [w, h] = [width, height];
  const aspect = w / h;
  if (w >= h) {
    w = maxLen;
    h = Math.trunc(w / aspect);
    if (h % 2 !== 0) h += 1;
  } else {
    h = maxLen;
    w = Math.trunc(h * aspect);
    if (w % 2 !== 0) w += 1;
  }
  [w, h] = [Math.max(w, 1), Math.max(h, 1)];
  const bounded = w / h;
  if (w >= h && w > MAX_SIDE) {
    w = MAX_SIDE;
    h = Math.trunc(w / bounded);
  } else if (h > w && h > MAX_SIDE) {
    h = MAX_SIDE;
    w = Math.trunc(h * bounded);
  }
  return { width: Math.max(w, 1), height: Math.max(h, 1) };
}

/** `resize_for_vision_encoder`: both sides up to multiples of `tile`, the longer one first. */
function tileMultipleSize(width: number, height: number, tile: number): { width: number; height: number } {
  const aspect = width / height;
  if (width >= height) {
    const w = Math.ceil(width / tile) * tile;
    return { width: w, height: Math.ceil(Math.trunc(w / aspect) / tile) * tile };
  }
  const h = Math.ceil(height / tile) * tile;
  return { width: Math.ceil(Math.trunc(h * aspect) / tile) * tile, height: h };
}

export function imageLayout(width: number, height: number, config: Idefics3Preprocessor): ImageLayout {
  const tile = config.max_image_size.longest_edge;
  const resized = config.do_resize ? longestEdgeSize(width, height, config.size.longest_edge) : { width, height };
  if (!config.do_image_splitting) return { resized, split: { width: tile, height: tile }, rows: 0, cols: 0, frames: 1 };
  const split = tileMultipleSize(resized.width, resized.height, tile);
  if (split.width <= tile && split.height <= tile) return { resized, split, rows: 0, cols: 0, frames: 1 };
  const rows = Math.ceil(split.height / tile);
  const cols = Math.ceil(split.width / tile);
  return { resized, split, rows, cols, frames: rows * cols + 1 };
}

/** The special strings of the Idefics3 prompt. */
export const IDEFICS3_TOKENS = { image: '<image>', fakeAround: '<fake_token_around_image>', globalImage: '<global-img>' } as const;

/** The prompt text that replaces one `<image>`: each tile's row/column token and image tokens, then the global image's. */
export function imagePromptText(rows: number, cols: number, imageSeqLen: number): string {
  const { image, fakeAround, globalImage } = IDEFICS3_TOKENS;
  const tokens = image.repeat(imageSeqLen);
  const global = `${fakeAround}${globalImage}${tokens}${fakeAround}`;
  if (rows === 0 && cols === 0) return global;
  let text = '';
  for (let r = 1; r <= rows; r++) {
    for (let c = 1; c <= cols; c++) text += `${fakeAround}<row_${r}_col_${c}>${tokens}`;
    text += '\n';
  }
  return `${text}\n${global}`;
}
