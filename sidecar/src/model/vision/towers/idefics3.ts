/**
 * Idefics3's (SmolVLM's) vision tower: SigLIP's patch convolution with bias and a learned position
 * table, no class token. The position of each patch is transformers' `Idefics3VisionEmbeddings`
 * bucketing (`idefics3PositionIds`), not 0, 1, 2, ...: every frame here has the tower's own size
 * (the processor refuses others).
 */
import { patchEmbeddings, patchGrid } from '../patches.js';
import type { VisionTower } from './visionTower.js';

/**
 * The position-table row of every patch of an `n` x `n` frame, as transformers 4.57 computes it in
 * float32: `bucketize(h / n * (1 - 1e-6), arange(1 / n, 1, 1 / n), right=True)` per row and column.
 * The factor puts each coordinate just under its boundary, so rows and columns 0 and 1 share
 * position 0 and the last table row is never used: [0, 0, 1, ..., n - 2] along each side.
 */
export function idefics3PositionIds(n: number): number[] {
  const step = 1 / n;
  // torch.arange(start, end, step) for float32 on CPU: ceil((end - start) / step) values, start + i * step in double, then float32.
  const count = Math.ceil((1 - step) / step);
  const boundaries = Array.from({ length: count }, (_, i) => Math.fround(step + i * step));
  const shrink = Math.fround(1 - 1e-6);
  const bucket = (k: number) => {
    const x = Math.fround(Math.fround(k / n) * shrink);
    return boundaries.filter((b) => b <= x).length;
  };
  const side = Array.from({ length: n }, (_, k) => bucket(k));
  return side.flatMap((row) => side.map((col) => row * n + col));
}

export const idefics3Vision: VisionTower = {
  // Idefics3VisionConfig() (4.57).
  defaults: { hiddenSize: 1152, intermediateSize: 3072, numLayers: 12, numHeads: 16, imageSize: 224, patchSize: 32, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' },
  positions: (v) => patchGrid(v) ** 2,
  embed(context, v, pixels) {
    const { g, weights } = context;
    const n = patchGrid(v);
    const x = patchEmbeddings(context, v, pixels, true);
    const table = weights.use('vision.embeddings.position_embedding.weight', [n * n, v.hiddenSize]);
    const rows = g.op('Gather', [table, g.ints(idefics3PositionIds(n))], { axis: 0 }, '/vision/embeddings/positions');
    return g.op('Add', [x, rows], {}, '/vision/embeddings');
  },
};
