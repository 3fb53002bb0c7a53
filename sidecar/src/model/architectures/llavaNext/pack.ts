/**
 * `pack_image_features` of LLaVA-NeXT and OneVision, on the encoder's output for one image
 * (`graph.ts`: every frame's feature rows, then image_newline): the base image's rows, then the
 * tiles' features as one grid (tile rows outer, each tile's patch rows inner), the padding's rows
 * or columns cut away, OneVision's bilinear downscale when the grid is too large, and image_newline
 * after every row of it. The result is `[layout.tokens, hidden]`, the rows that replace the image's
 * tokens.
 */
import type { AnyresLayout } from './anyres.js';

/**
 * `frames`: `[layout.frames, tileTokens + 1, hidden]`, the base image first, then the tiles row
 * by row; the last row of each frame is image_newline.
 */
export function packImageFeatures(frames: Float32Array, layout: AnyresLayout, hidden: number): Float32Array {
  const { tileTokens, kept, unpadded, cols } = layout;
  const grid = Math.round(Math.sqrt(tileTokens));
  const frameRows = tileTokens + 1;
  if (frames.length !== layout.frames * frameRows * hidden) {
    throw new RangeError(`image features: expected ${layout.frames} frames of ${frameRows} rows of ${hidden}, got ${frames.length} values`);
  }
  const out = new Float32Array(layout.tokens * hidden);
  out.set(frames.subarray(0, tileTokens * hidden));
  const newline = frames.subarray(tileTokens * hidden, frameRows * hidden);
  /** The tiles' feature at unpadded row `y`, column `x` (offset into `frames`). */
  const at = (y: number, x: number): number => {
    const [gy, gx] = [y + unpadded.firstRow, x + unpadded.firstCol];
    const tile = 1 + Math.floor(gy / grid) * cols + Math.floor(gx / grid);
    return (tile * frameRows + (gy % grid) * grid + (gx % grid)) * hidden;
  };
  const sample = kept.rows === unpadded.rows && kept.cols === unpadded.cols ? null : bilinear(unpadded.rows, unpadded.cols, kept.rows, kept.cols);
  let row = tileTokens;
  for (let y = 0; y < kept.rows; y++) {
    for (let x = 0; x < kept.cols; x++, row++) {
      const target = out.subarray(row * hidden, (row + 1) * hidden);
      if (!sample) {
        target.set(frames.subarray(at(y, x), at(y, x) + hidden));
        continue;
      }
      const { y0, y1, wy0, wy1 } = sample.rows[y];
      const { y0: x0, y1: x1, wy0: wx0, wy1: wx1 } = sample.cols[x];
      const [a, b, c, d] = [at(y0, x0), at(y0, x1), at(y1, x0), at(y1, x1)];
      for (let k = 0; k < hidden; k++) {
        const top = Math.fround(Math.fround(wx0 * frames[a + k]) + Math.fround(wx1 * frames[b + k]));
        const bottom = Math.fround(Math.fround(wx0 * frames[c + k]) + Math.fround(wx1 * frames[d + k]));
        target[k] = Math.fround(Math.fround(wy0 * top) + Math.fround(wy1 * bottom));
      }
    }
    out.set(newline, row * hidden);
    row++;
  }
  return out;
}

interface Tap {
  y0: number;
  y1: number;
  wy0: number;
  wy1: number;
}

/**
 * torch's `interpolate(mode="bilinear", align_corners=False)` taps per output row and column, in
 * float32 as its CPU kernel computes them: source = scale * (i + 0.5) - 0.5 (at least 0), scale =
 * input / output.
 */
function bilinear(inRows: number, inCols: number, outRows: number, outCols: number): { rows: Tap[]; cols: Tap[] } {
  const taps = (input: number, output: number): Tap[] => {
    const scale = Math.fround(input / output);
    return Array.from({ length: output }, (_, i) => {
      const source = Math.max(Math.fround(Math.fround(scale * Math.fround(i + 0.5)) - 0.5), 0);
      const y0 = Math.trunc(source);
      const y1 = y0 + (y0 < input - 1 ? 1 : 0);
      const wy1 = Math.min(Math.max(Math.fround(source - y0), 0), 1);
      return { y0, y1, wy0: Math.fround(1 - wy1), wy1 };
    });
  };
  return { rows: taps(inRows, outRows), cols: taps(inCols, outCols) };
}
