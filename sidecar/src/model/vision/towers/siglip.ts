/** SigLIP's vision tower: patch convolution with bias and learned positions; no class token, no pre-layernorm. */
import { patchEmbeddings, patchGrid } from '../patches.js';
import type { VisionTower } from './visionTower.js';

export const siglip: VisionTower = {
  defaults: { hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, imageSize: 224, patchSize: 16, layerNormEps: 1e-6, hiddenAct: 'gelu_pytorch_tanh' },
  positions: (v) => patchGrid(v) ** 2,
  embed(context, v, pixels) {
    const x = patchEmbeddings(context, v, pixels, true);
    return context.g.op('Add', [x, context.weights.use('vision.embeddings.position_embedding.weight', [siglip.positions(v), v.hiddenSize])], {}, '/vision/embeddings');
  },
};
