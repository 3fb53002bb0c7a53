/**
 * Image spans as the reference derives them (lookm-spec §1.2): from the positions of the image
 * placeholders in the un-expanded token ids, each image covering `tokensPerImage` slots
 * (576 hard-coded upstream). Kept to check inputs against the reference's rule; the cache
 * itself always takes modality from the real token layout.
 */
import { TEXT } from './layout.js';

export function modalityFromPlaceholders(placeholders: readonly number[], tokensPerImage: number, length: number): Int32Array {
  const modality = new Int32Array(length).fill(TEXT);
  placeholders.forEach((p, i) => {
    const start = p + (tokensPerImage - 1) * i;
    modality.fill(i, Math.min(start, length), Math.min(start + tokensPerImage, length));
  });
  return modality;
}
