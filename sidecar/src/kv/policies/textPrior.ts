/**
 * LOOK-M's text-prior eviction (Wan et al., 2024, arXiv 2406.18139, §3.2; lookm-spec §5.3):
 * keep the recent window and the text, fill the rest of the heavy budget with the image slots
 * that received the most attention, evict the other image slots.
 *
 * Reference mode reproduces `TextH2OKVCache_LayerWise` exactly:
 * - every non-recent text slot is kept, even when they alone exceed `heavy` (spec §8.6: the
 *   budget is soft);
 * - images are ranked by `S - 65516` computed in float32 (the golden files' dtype, spec §7), so
 *   scores closer than float32's resolution near 65516 (~0.004) tie, broken by lower position;
 * - `recent = 0` fails like the official code (`topk` on an empty slice) unless `heavy = 0`,
 *   in which case the `[-0:]` slice zeroes every penalty and everything is kept.
 *
 * Improved mode (the product default):
 * - a hard budget: text ranks above images, but when non-recent text alone exceeds `heavy` the
 *   lowest-scored text goes too, so no head ever keeps more than `heavy + recent` (fixes §8.6);
 * - images are ranked by their raw score, never through a quantising penalty (fixes §8.7);
 * - image slots come from each slot's modality tag, whatever the number of images and tokens per
 *   image (fixes the fixed 576-token spans of §1.2).
 */
import { TEXT } from '../layout.js';
import { KvSettingsError } from '../errors.js';
import { concatSlots, fitsBudget, headModality, headScores, range, topSlots, withRecentWindow, type Selector } from '../select.js';

const IMAGE_PENALTY = Math.fround(-65516);

export const selectTextPrior: Selector = ({ layer, budget, mode }) => {
  if (fitsBudget(layer, budget)) return null;
  const { heavy: hh, recent: rc } = budget;
  if (mode === 'reference' && rc === 0) {
    if (hh > 0) throw new KvSettingsError('reference text-prior fails with recent_size 0 (topk on an empty slice); use a larger recentRatio or improved mode');
    return null;
  }
  const count = layer.length - rc;
  const candidates = range(0, count);
  const heavy: Int32Array[] = [];
  let textNonRecent = 0;
  for (let h = 0; h < layer.numHeads; h++) {
    const score = headScores(layer, h);
    const modality = headModality(layer, h);
    const texts = candidates.filter((j) => modality[j] === TEXT);
    const images = candidates.filter((j) => modality[j] !== TEXT);
    if (h === 0) textNonRecent = texts.length;
    if (mode === 'improved') {
      const keptText = topSlots(score, texts, hh);
      heavy.push(concatSlots(keptText, topSlots(score, images, hh - keptText.length)));
    } else if (texts.length >= hh) {
      // keep = (P >= 0) keeps every non-recent text slot, whatever topk chose among them.
      heavy.push(texts);
    } else {
      const penalised = new Float64Array(count);
      for (const j of images) penalised[j] = Math.fround(score[j] + IMAGE_PENALTY);
      heavy.push(concatSlots(texts, topSlots(penalised, images, hh - texts.length)));
    }
  }
  const selection = withRecentWindow(layer, heavy, rc);
  selection.trace = { textNonRecent, imagesSelected: Math.max(0, hh - textNonRecent) };
  return selection;
};
