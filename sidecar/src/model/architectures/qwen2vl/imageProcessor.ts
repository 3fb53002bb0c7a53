/**
 * Qwen2-VL's image preprocessing (`Qwen2VLImageProcessor`, which Qwen2.5-VL uses too): dynamic
 * resolution (`smart_resize` between min_pixels and max_pixels, both sides multiples of
 * patch_size x merge_size), rescale and normalise, then the image cut into flattened patches in
 * the order the vision tower reads them.
 *
 * sharp decodes; the resize is Pillow's bicubic reproduced bit for bit (`pilResize.ts`), so the
 * pixel values equal transformers' (slow, Pillow-based processor, which the Hub checkpoints name)
 * to float32 rounding for the same decoded image.
 */
import { z } from 'zod';
import { CheckpointError } from '../../checkpointError.js';
import { shown } from '../../config.js';
import { pilBicubicResize } from '../../pilResize.js';
import { ImageError, MAX_INPUT_PIXELS, openImage } from '../../processor.js';
import { OPENAI_CLIP_MEAN, OPENAI_CLIP_STD } from '../../rgbFrames.js';

/** Pillow's BICUBIC, the only resampling filter implemented. */
const PIL_BICUBIC = 3;


const positiveInt = z.number().int().positive();
const channelStats = z.union([z.number(), z.array(z.number()).length(3)]);

/** preprocessor_config.json with `Qwen2VLImageProcessor.__init__`'s defaults (transformers 4.57). */
const preprocessorSchema = z
  .object({
    do_resize: z.boolean().default(true),
    // transformers refuses a `size` without both keys, and then ignores its values: min_pixels
    // and max_pixels (or their defaults) are what resizes.
    size: z
      .record(z.string(), z.unknown())
      .refine((v) => 'shortest_edge' in v && 'longest_edge' in v, { message: 'size must contain shortest_edge and longest_edge (as transformers requires)' })
      .optional(),
    min_pixels: positiveInt.max(2 ** 31).default(56 * 56),
    max_pixels: positiveInt.max(2 ** 31).default(28 * 28 * 1280),
    resample: z.literal(PIL_BICUBIC, { error: (i) => `resample ${shown(i.input)} is not supported (3: bicubic only)` }).default(PIL_BICUBIC),
    do_rescale: z.boolean().default(true),
    rescale_factor: z.number().positive().default(1 / 255),
    do_normalize: z.boolean().default(true),
    image_mean: channelStats.default(OPENAI_CLIP_MEAN),
    image_std: channelStats.default(OPENAI_CLIP_STD),
    do_convert_rgb: z.literal(true, { error: (i) => `do_convert_rgb ${shown(i.input)} is not supported (images are always decoded to RGB)` }).default(true),
    patch_size: positiveInt.max(1024).default(14),
    temporal_patch_size: positiveInt.max(16).default(2),
    merge_size: positiveInt.max(16).default(2),
  })
  .loose();

export interface Qwen2VLImageConfig {
  doResize: boolean;
  minPixels: number;
  maxPixels: number;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  mean: [number, number, number];
  std: [number, number, number];
  patchSize: number;
  temporalPatchSize: number;
  mergeSize: number;
}

const perChannel = (v: number | number[]): [number, number, number] => (typeof v === 'number' ? [v, v, v] : [v[0], v[1], v[2]]);

export function parseQwen2VLPreprocessor(raw: unknown): Qwen2VLImageConfig {
  const parsed = preprocessorSchema.safeParse(raw);
  if (!parsed.success) throw new CheckpointError(`preprocessor_config.json: ${z.prettifyError(parsed.error)}`);
  const c = parsed.data;
  if (c.min_pixels > c.max_pixels) throw new CheckpointError(`preprocessor_config.json: min_pixels ${c.min_pixels} is above max_pixels ${c.max_pixels}`);
  const std = perChannel(c.image_std);
  if (c.do_normalize && std.some((s) => s === 0)) throw new CheckpointError('preprocessor_config.json: image_std has a zero');
  return {
    doResize: c.do_resize,
    minPixels: c.min_pixels,
    maxPixels: c.max_pixels,
    doRescale: c.do_rescale,
    rescaleFactor: c.rescale_factor,
    doNormalize: c.do_normalize,
    mean: perChannel(c.image_mean),
    std,
    patchSize: c.patch_size,
    temporalPatchSize: c.temporal_patch_size,
    mergeSize: c.merge_size,
  };
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * transformers' `smart_resize`: the nearest size with both sides multiples of `factor` and
 * min_pixels <= height x width <= max_pixels, keeping the aspect ratio as well as it can.
 */
export function smartResize(height: number, width: number, factor: number, minPixels: number, maxPixels: number): { height: number; width: number } {
  if (Math.max(height, width) / Math.min(height, width) > 200) {
    throw new ImageError(`the image cannot be used: its aspect ratio ${(Math.max(height, width) / Math.min(height, width)).toFixed(1)} is above 200 (${width} x ${height}); crop it first`);
  }
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}

/** An image as the vision tower takes it. */
export interface ImagePatches {
  /** `[t * h * w, 3 * temporal_patch_size * patch_size^2]`, row-major. */
  pixels: Float32Array;
  /** `image_grid_thw`: patches along time (1 for an image), height and width. */
  grid: [number, number, number];
}

/** The number of prompt tokens an image of this grid becomes (one per merge_size x merge_size patches). */
export function imageTokenCount(grid: readonly [number, number, number], mergeSize: number): number {
  return (grid[0] * grid[1] * grid[2]) / (mergeSize * mergeSize);
}

/**
 * Rescaled, normalised and flattened patches of an RGB image already at its final size
 * (`rgb`: height x width x 3, values 0-255), in transformers' order: merge groups in raster order,
 * the merge_size x merge_size patches of each in raster order; within a patch, channel, time
 * (the single frame repeated temporal_patch_size times), row, column. Arithmetic in float32 as
 * numpy does it (the rescale in float64, then float32).
 */
export function patchesFromRgb(rgb: ArrayLike<number>, height: number, width: number, c: Qwen2VLImageConfig): ImagePatches {
  const P = c.patchSize;
  const m = c.mergeSize;
  const T = c.temporalPatchSize;
  if (height % (P * m) !== 0 || width % (P * m) !== 0) {
    throw new ImageError(`the image cannot be used: ${width} x ${height} is not a multiple of patch_size x merge_size = ${P * m} (this checkpoint does not resize images)`);
  }
  const f = Math.fround;
  const mean = c.mean.map(f);
  const std = c.std.map(f);
  const value = (ch: number, y: number, x: number): number => {
    let v = rgb[(y * width + x) * 3 + ch];
    if (c.doRescale) v = f(v * c.rescaleFactor);
    if (c.doNormalize) v = f(f(v - mean[ch]) / std[ch]);
    return v;
  };
  const gh = height / P;
  const gw = width / P;
  const patchLen = 3 * T * P * P;
  const pixels = new Float32Array(gh * gw * patchLen);
  let row = 0;
  for (let bh = 0; bh < gh / m; bh++) {
    for (let bw = 0; bw < gw / m; bw++) {
      for (let mh = 0; mh < m; mh++) {
        for (let mw = 0; mw < m; mw++) {
          const y0 = (bh * m + mh) * P;
          const x0 = (bw * m + mw) * P;
          let at = row * patchLen;
          for (let ch = 0; ch < 3; ch++) {
            for (let t = 0; t < T; t++) {
              for (let py = 0; py < P; py++) {
                for (let px = 0; px < P; px++) pixels[at++] = value(ch, y0 + py, x0 + px);
              }
            }
          }
          row++;
        }
      }
    }
  }
  return { pixels, grid: [1, gh, gw] };
}

export class Qwen2VLImageProcessor {
  constructor(
    readonly config: Qwen2VLImageConfig,
    private readonly maxInputPixels = MAX_INPUT_PIXELS,
  ) {}

  /** The size an image of `height` x `width` is resized to (unchanged when do_resize is false). */
  resizedSize(height: number, width: number): { height: number; width: number } {
    const c = this.config;
    return c.doResize ? smartResize(height, width, c.patchSize * c.mergeSize, c.minPixels, c.maxPixels) : { height, width };
  }

  /** An encoded image (PNG, JPEG, WebP, GIF, TIFF) as patches and its grid. */
  async preprocess(bytes: Uint8Array): Promise<ImagePatches> {
    const opened = await openImage(bytes, this.maxInputPixels);
    const { height, width } = this.resizedSize(opened.height, opened.width);
    if (height * width > this.maxInputPixels) throw new ImageError(`the image cannot be used: preprocessor_config.json resizes it to ${width} x ${height}, above the ${this.maxInputPixels / 1e6}-megapixel limit`);
    const { data, info } = await opened.image
      .raw()
      .toBuffer({ resolveWithObject: true })
      .catch((error: unknown) => {
        throw new ImageError(`the image cannot be used: ${error instanceof Error ? error.message : String(error)}`);
      });
    if (info.channels !== 3) throw new ImageError(`the image cannot be used: it decodes to ${info.channels} channels, not RGB`);
    const rgb = new Uint8Array(data.buffer, data.byteOffset, data.length);
    return patchesFromRgb(pilBicubicResize(rgb, info.width, info.height, width, height), height, width, this.config);
  }
}
