/** CLIP's vision tower: patch convolution without bias, a class token first, learned positions, a pre-layernorm. */
import { layerNorm } from '../../graph/layers/norms.js';
import { patchEmbeddings, patchGrid } from '../patches.js';
import type { VisionTower } from './visionTower.js';

export const clip: VisionTower = {
  defaults: { hiddenSize: 768, intermediateSize: 3072, numLayers: 12, numHeads: 12, imageSize: 224, patchSize: 32, layerNormEps: 1e-5, hiddenAct: 'quick_gelu' },
  positions: (v) => patchGrid(v) ** 2 + 1,
  embed(context, v, pixels) {
    const { g, weights } = context;
    const E = v.hiddenSize;
    let x = patchEmbeddings(context, v, pixels, false);
    // CLS token first: expand the class embedding to [images, 1, E].
    const images = g.op('Slice', [g.op('Shape', [pixels], {}, '/vision/embeddings/shape'), g.ints([0]), g.ints([1])], {}, '/vision/embeddings/images');
    const clsShape = g.op('Concat', [images, g.ints([1, E])], { axis: 0 }, '/vision/embeddings/cls_shape');
    const cls = g.op('Expand', [weights.use('vision.embeddings.class_embedding', [E]), clsShape], {}, '/vision/embeddings/cls');
    x = g.op('Concat', [cls, x], { axis: 1 }, '/vision/embeddings/with_cls');
    x = g.op('Add', [x, weights.use('vision.embeddings.position_embedding.weight', [clip.positions(v), E])], {}, '/vision/embeddings');
    return layerNorm(context, x, 'vision.pre_layrnorm', E, v.layerNormEps, '/vision/pre_layrnorm');
  },
};
