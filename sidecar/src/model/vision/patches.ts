/** The patch embedding every vision tower starts with. */
import type { VisionConfig } from '../config.js';
import type { GraphContext } from '../graph/layers/context.js';

/** Patches per side: the convolution drops a partial last row and column (SigLIP-so400m: 384 / 14 -> 27). */
export function patchGrid(v: Pick<VisionConfig, 'imageSize' | 'patchSize'>): number {
  return Math.floor(v.imageSize / v.patchSize);
}

/** `[images, patches, hidden]`: the patch convolution of `pixels [images, channels, size, size]`, flattened. */
export function patchEmbeddings({ g, weights }: GraphContext, v: VisionConfig, pixels: string, bias: boolean): string {
  const E = v.hiddenSize;
  const N = patchGrid(v) ** 2;
  const convInputs = [pixels, weights.use('vision.embeddings.patch_embedding.weight', [E, v.numChannels, v.patchSize, v.patchSize])];
  if (bias) convInputs.push(weights.use('vision.embeddings.patch_embedding.bias', [E]));
  const conv = g.op('Conv', convInputs, { kernel_shape: [v.patchSize, v.patchSize], strides: [v.patchSize, v.patchSize] }, '/vision/embeddings/patch_embedding');
  return g.op('Transpose', [g.op('Reshape', [conv, g.ints([0, E, N])], {}, '/vision/embeddings/flatten')], { perm: [0, 2, 1] }, '/vision/embeddings/patches');
}
