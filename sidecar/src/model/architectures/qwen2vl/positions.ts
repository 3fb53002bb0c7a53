/**
 * The Qwen2-VL prompt's image tokens and multimodal rotary positions (M-RoPE).
 *
 * Each image is one `<|image_pad|>` in the rendered prompt; the processor repeats it once per
 * merged patch (t x h x w / merge_size^2). In the text model every token has three position
 * components (temporal, height, width): text tokens have all three equal and consecutive; an
 * image's tokens start where the text before them left off and add their own (t, row, column) in
 * merged patches; the text after an image continues one past the largest component used so far
 * (transformers' `get_rope_index`). Positions therefore depend only on the tokens before, so a
 * conversation can be positioned turn by turn, and a slot keeps its three components whatever
 * happens to the slots around it.
 */
import { SidecarError } from '../../../protocol/errors.js';
import { ErrorCode } from '../../../protocol/index.js';

/**
 * `ids` with the k-th `imageTokenId` repeated `counts[k]` times. Equal to transformers' expansion
 * of the prompt text: the image token is a special added token, so its copies tokenize alone.
 */
export function expandImageTokens(ids: readonly number[], imageTokenId: number, counts: readonly number[]): number[] {
  const found = ids.filter((id) => id === imageTokenId).length;
  if (found !== counts.length) {
    throw new SidecarError(ErrorCode.ImageTokenMismatch, `the prompt has ${found} image placeholder(s) for ${counts.length} image(s)`);
  }
  const out: number[] = [];
  let k = 0;
  for (const id of ids) {
    if (id === imageTokenId) {
      for (let i = 0; i < counts[k]; i++) out.push(id);
      k++;
    } else {
      out.push(id);
    }
  }
  return out;
}

export interface MropePositions {
  /** `[3, L]` row-major: the temporal, height and width components of each token. */
  positions: Int32Array;
  /** The position the next text token takes (one past the largest component so far). */
  next: number;
}

/**
 * M-RoPE positions of `ids` (already expanded), the first text token at `start` (the `next` of
 * the tokens before them; 0 for a conversation's first). `grids[k]` is the k-th image's
 * `image_grid_thw`; each image's tokens must be whole within `ids`.
 */
export function mropePositions(ids: readonly number[], imageTokenId: number, grids: readonly (readonly [number, number, number])[], mergeSize: number, start = 0): MropePositions {
  const L = ids.length;
  const positions = new Int32Array(3 * L);
  let next = start;
  let k = 0;
  for (let i = 0; i < L; ) {
    if (ids[i] !== imageTokenId) {
      positions[i] = positions[L + i] = positions[2 * L + i] = next++;
      i++;
      continue;
    }
    const grid = grids[k];
    if (grid === undefined) throw new SidecarError(ErrorCode.ImageTokenMismatch, `the prompt has more images than the ${grids.length} given`);
    const [t, h, w] = [grid[0], grid[1] / mergeSize, grid[2] / mergeSize];
    const count = t * h * w;
    for (let j = 0; j < count; j++, i++) {
      if (ids[i] !== imageTokenId) throw new SidecarError(ErrorCode.ImageTokenMismatch, `image ${k + 1} has ${j} token(s) in the prompt where its grid needs ${count}`);
      positions[i] = next + Math.floor(j / (h * w));
      positions[L + i] = next + (Math.floor(j / w) % h);
      positions[2 * L + i] = next + (j % w);
    }
    next += Math.max(t, h, w);
    k++;
  }
  if (k !== grids.length) throw new SidecarError(ErrorCode.ImageTokenMismatch, `the prompt has ${k} image(s) for ${grids.length} grid(s)`);
  return { positions, next };
}
