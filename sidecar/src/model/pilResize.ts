/**
 * Pillow's `Image.resize` for 8-bit RGB, bit for bit (libImaging/Resample.c): separable
 * convolution, the filter widened by the scale when shrinking, coefficients in 22-bit fixed point,
 * the horizontal pass first, each pass rounded and clipped to 8 bits.
 *
 * Why not sharp: libvips shrinks by the integer part of the factor with a box filter before its
 * kernel and centres samples differently; on SmolVLM's two-stage resize and tiling that moved
 * pixels by about 15 levels of 255 on average (measured on the fixtures), and its cubic kernel by
 * up to 126 levels on the hard edges of the Qwen2-VL fixtures, well past what the parity tests
 * allow. Here the processors' pixels equal transformers' exactly (LANCZOS for Idefics3, BICUBIC
 * for Qwen2-VL).
 */

export type PilFilter = 'lanczos' | 'bicubic';

const PRECISION_BITS = 32 - 8 - 2;
/** Rounding: half of the fixed-point unit, the start of every sum. */
const HALF = 2 ** (PRECISION_BITS - 1);

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const FILTERS: Record<PilFilter, { support: number; at: (x: number) => number }> = {
  lanczos: { support: 3, at: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
  bicubic: {
    support: 2,
    at: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
};

/** Per output sample, the first input sample, how many it reads, and their fixed-point weights (`ksize` apart). */
interface Coefficients {
  ksize: number;
  bounds: Int32Array;
  weights: Int32Array;
}

function coefficients(inSize: number, outSize: number, filter: PilFilter): Coefficients {
  const { support: baseSupport, at } = FILTERS[filter];
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = baseSupport * filterScale;
  const inverseScale = 1 / filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const count = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let sum = 0;
    for (let x = 0; x < count; x++) {
      k[x] = at((x + xmin - center + 0.5) * inverseScale); // times 1/scale, as Pillow (not divided: the last bit differs)
      sum += k[x];
    }
    for (let x = 0; x < count; x++) {
      const w = sum !== 0 ? k[x] / sum : k[x];
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = count;
  }
  return { ksize, bounds, weights };
}

function clip8(value: number): number {
  if (value >= 2 ** (PRECISION_BITS + 8)) return 255;
  if (value <= 0) return 0;
  return (value / 2 ** PRECISION_BITS) | 0; // a positive integer under 2^30: the shift Pillow does
}

/** One horizontal pass: every row of `src` (`width` wide) to `outWidth` samples. */
function horizontal(src: Uint8Array, width: number, height: number, outWidth: number, filter: PilFilter, channels: number): Uint8Array {
  const { ksize, bounds, weights } = coefficients(width, outWidth, filter);
  const out = new Uint8Array(outWidth * height * channels);
  let o = 0;
  for (let y = 0; y < height; y++) {
    const row = y * width * channels;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = bounds[xx * 2];
      const count = bounds[xx * 2 + 1];
      const k0 = xx * ksize;
      if (channels === 3) {
        // RGB, the one the processors use: the three sums in one walk over the taps.
        let r = HALF;
        let gr = HALF;
        let b = HALF;
        for (let x = 0, at = row + xmin * 3; x < count; x++, at += 3) {
          const w = weights[k0 + x];
          r += src[at] * w;
          gr += src[at + 1] * w;
          b += src[at + 2] * w;
        }
        out[o++] = clip8(r);
        out[o++] = clip8(gr);
        out[o++] = clip8(b);
        continue;
      }
      for (let ch = 0; ch < channels; ch++) {
        let sum = HALF;
        let at = row + xmin * channels + ch;
        for (let x = 0; x < count; x++, at += channels) sum += src[at] * weights[k0 + x];
        out[o++] = clip8(sum);
      }
    }
  }
  return out;
}

/** One vertical pass: every column of `src` (`height` tall) to `outHeight` samples, a row of sums at a time. */
function vertical(src: Uint8Array, width: number, height: number, outHeight: number, filter: PilFilter, channels: number): Uint8Array {
  const { ksize, bounds, weights } = coefficients(height, outHeight, filter);
  const stride = width * channels;
  const out = new Uint8Array(stride * outHeight);
  const sums = new Float64Array(stride);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2];
    const count = bounds[yy * 2 + 1];
    sums.fill(HALF);
    for (let y = 0; y < count; y++) {
      const w = weights[yy * ksize + y];
      const base = (ymin + y) * stride;
      for (let i = 0; i < stride; i++) sums[i] += src[base + i] * w;
    }
    const o = yy * stride;
    for (let i = 0; i < stride; i++) out[o + i] = clip8(sums[i]);
  }
  return out;
}

/**
 * `channels`-interleaved 8-bit pixels of `width` x `height` resized to `outWidth` x `outHeight`,
 * as Pillow 13 does: the horizontal pass first unless the height shrinks by more than twice as
 * many pixels as the width (Pillow's pass order since 13.0, python-pillow/Pillow#9549; earlier
 * versions always went horizontal first, which moves a few pixels of such images by 1-4 levels).
 */
export function pilResize(data: Uint8Array, width: number, height: number, outWidth: number, outHeight: number, filter: PilFilter, channels = 3): Uint8Array {
  const needHorizontal = outWidth !== width;
  const needVertical = outHeight !== height;
  if (!needHorizontal && !needVertical) return Uint8Array.from(data);
  const verticalFirst = height - outHeight > 0 && height - outHeight > (width - outWidth) * 2;
  if (verticalFirst) {
    const shorter = vertical(data, width, height, outHeight, filter, channels);
    return needHorizontal ? horizontal(shorter, width, outHeight, outWidth, filter, channels) : shorter;
  }
  const narrower = needHorizontal ? horizontal(data, width, height, outWidth, filter, channels) : data;
  return needVertical ? vertical(narrower, outWidth, height, outHeight, filter, channels) : narrower;
}

/** Pillow's BICUBIC resize of 8-bit RGB (Qwen2-VL's processor). */
export function pilBicubicResize(rgb: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  return pilResize(rgb, width, height, outWidth, outHeight, 'bicubic');
}
