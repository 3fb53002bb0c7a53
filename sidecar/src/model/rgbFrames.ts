/**
 * The pixel steps the image processors share: an image decoded to RGB bytes, resized with Pillow's
 * arithmetic (`pilResize`) and cut into square tiles (Idefics3, LLaVA-NeXT), and the frames
 * rescaled and normalised into the planes the image encoder reads (LLaVA's too).
 */
import type { Sharp } from 'sharp';
import { pilResize, type PilFilter } from './pilResize.js';
import { imageError } from './imageError.js';

/** transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD: the default normalisation of the CLIP-family image processors. */
export const OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/** RGB bytes of one image, `height` rows of `width` pixels. */
export interface Rgb {
  data: Uint8Array;
  width: number;
  height: number;
}

/** preprocessor_config.json's rescale and normalisation, as transformers' image processors name them. */
export interface PixelNormalization {
  do_rescale: boolean;
  rescale_factor: number;
  do_normalize: boolean;
  image_mean: readonly number[];
  image_std: readonly number[];
}

/** The opened image's RGB bytes; a decoding failure is the user's `ImageError`. */
export async function decodeRgb(image: Sharp, maxPixels: number): Promise<Rgb> {
  const { data, info } = await image
    .raw()
    .toBuffer({ resolveWithObject: true })
    .catch((error: unknown) => imageError(error, maxPixels));
  if (info.channels !== 3) throw new Error(`decoded ${info.channels} channels, expected 3`);
  return { data, width: info.width, height: info.height };
}

export function resizeRgb(from: Rgb, size: { width: number; height: number }, filter: PilFilter): Rgb {
  if (from.width === size.width && from.height === size.height) return from; // PIL copies: no resampling
  return { data: pilResize(from.data, from.width, from.height, size.width, size.height, filter), ...size };
}

/** The `side` x `side` square of `from` whose top-left corner is at (`left`, `top`). */
export function cropSquare(from: Rgb, left: number, top: number, side: number): Rgb {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) data.set(from.data.subarray(((top + y) * from.width + left) * 3, ((top + y) * from.width + left + side) * 3), y * side * 3);
  return { data, width: side, height: side };
}

/** Frames of one size as `[frames, 3, height, width]` pixel values, rescaled and normalised as `c` says. */
export function normalizedPlanes(frames: readonly Rgb[], c: PixelNormalization): Float32Array {
  const { width, height } = frames[0];
  if (frames.some((f) => f.width !== width || f.height !== height)) throw new RangeError('frames of different sizes cannot be stacked');
  const plane = width * height;
  const pixels = new Float32Array(frames.length * 3 * plane);
  frames.forEach((frame, f) => {
    for (let i = 0; i < plane; i++) {
      for (let ch = 0; ch < 3; ch++) {
        let x = frame.data[i * 3 + ch];
        if (c.do_rescale) x *= c.rescale_factor;
        if (c.do_normalize) x = (x - c.image_mean[ch]) / c.image_std[ch];
        pixels[(f * 3 + ch) * plane + i] = x;
      }
    }
  });
  return pixels;
}
