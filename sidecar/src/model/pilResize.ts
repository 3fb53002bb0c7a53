/**
 * Pillow's bicubic resize of an 8-bit RGB image (`Image.resize(size, BICUBIC)` with no reducing
 * gap, as transformers' image processors call it), reproduced to the bit: separable, the
 * horizontal pass first into an 8-bit image, then the vertical; a = -0.5 cubic whose support
 * widens with the downscale factor (antialiasing); weights normalised per output pixel and
 * rounded to 22-bit fixed point; each pass rounds and clips to 0-255 (Pillow's libImaging/Resample.c).
 *
 * sharp's cubic kernel differs from it by up to 126 levels (of 255) on the hard edges of the
 * Qwen2-VL fixture images; this port gives transformers' pixels exactly (0 difference on all of
 * them, up- and downscaled).
 */

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);
const SUPPORT = 2;

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coefficients {
  /** Per output pixel: first input index and number of taps. */
  bounds: Int32Array;
  /** Per output pixel, `ksize` fixed-point weights. */
  weights: Int32Array;
  ksize: number;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for a full-image box. */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = bicubic((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * ONE : 0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, weights, ksize };
}

function clip8(v: number): number {
  if (v >= ONE * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / ONE);
}

/**
 * `rgb` (height x width x 3, 0-255) resized to `outWidth` x `outHeight` exactly as Pillow's
 * BICUBIC resize does. An image asked for its own size is returned as a copy, as Pillow does.
 */
export function pilBicubicResize(rgb: Uint8Array, width: number, height: number, outWidth: number, outHeight: number): Uint8Array {
  if (rgb.length !== width * height * 3) throw new RangeError(`pilBicubicResize: ${rgb.length} bytes for a ${width} x ${height} RGB image`);
  if (outWidth === width && outHeight === height) return rgb.slice();
  const horizontal = coefficients(width, outWidth);
  const vertical = coefficients(height, outHeight);
  let src = rgb;
  let srcWidth = width;
  let rowOffset = 0;
  let rows = height;
  if (outWidth !== width) {
    // Only the rows the vertical pass reads are resampled horizontally (the values are the same either way).
    const first = vertical.bounds[0];
    const last = vertical.bounds[(outHeight - 1) * 2] + vertical.bounds[(outHeight - 1) * 2 + 1];
    rows = outHeight !== height ? last - first : height;
    rowOffset = outHeight !== height ? first : 0;
    const tmp = new Uint8Array(rows * outWidth * 3);
    const { bounds, weights, ksize } = horizontal;
    for (let y = 0; y < rows; y++) {
      const inRow = (y + rowOffset) * width * 3;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = bounds[xx * 2];
        const xmax = bounds[xx * 2 + 1];
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        for (let x = 0; x < xmax; x++) {
          const w = weights[xx * ksize + x];
          const at = inRow + (x + xmin) * 3;
          s0 += rgb[at] * w;
          s1 += rgb[at + 1] * w;
          s2 += rgb[at + 2] * w;
        }
        const out = (y * outWidth + xx) * 3;
        tmp[out] = clip8(s0);
        tmp[out + 1] = clip8(s1);
        tmp[out + 2] = clip8(s2);
      }
    }
    src = tmp;
    srcWidth = outWidth;
  }
  if (outHeight === height) return src;
  const out = new Uint8Array(outHeight * outWidth * 3);
  const { bounds, weights, ksize } = vertical;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2] - rowOffset;
    const ymax = bounds[yy * 2 + 1];
    for (let xx = 0; xx < srcWidth; xx++) {
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let y = 0; y < ymax; y++) {
        const w = weights[yy * ksize + y];
        const at = ((y + ymin) * srcWidth + xx) * 3;
        s0 += src[at] * w;
        s1 += src[at + 1] * w;
        s2 += src[at + 2] * w;
      }
      const o = (yy * outWidth + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}
