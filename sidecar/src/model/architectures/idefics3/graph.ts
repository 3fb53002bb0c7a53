/**
 * Idefics3's image encoder as one ONNX graph (`Idefics3Model.get_image_features` for frames of the
 * tower's own size): the vision tower, its post-layernorm, then the connector: the pixel shuffle
 * (`pixelShuffle`) and a projection without bias. `pixel_values [frames, channels, size, size]`
 * -> `image_features [frames, tokensPerFrame, text_hidden]`.
 */
import type { GraphBuilder } from '../../graph/onnxBuilder.js';
import { batchedLinear } from '../../graph/layers/linear.js';
import { layerNorm } from '../../graph/layers/norms.js';
import type { BuiltGraph, ManifestValue } from '../../graph/manifest.js';
import { buildModel, GraphBuilder as Builder } from '../../graph/onnxBuilder.js';
import type { WeightPool } from '../../graph/weightPool.js';
import { patchGrid } from '../../vision/patches.js';
import { visionTowerStates } from '../../vision/visionGraph.js';
import { tokensPerFrame, type Idefics3Config } from './config.js';

/**
 * transformers' `Idefics3Connector.pixel_shuffle` on `x [frames, grid * grid, hidden]`: every
 * `scale x scale` block of patches becomes one row `[frames, (grid / scale)^2, hidden * scale^2]`,
 * the block's rows outer, its columns inner, the hidden features innermost.
 */
export function pixelShuffle(g: GraphBuilder, x: string, grid: number, hidden: number, scale: number, name: string): string {
  const blocks = grid / scale;
  // [frames, blockRow, rowInBlock, blockCol, colInBlock, hidden] -> [frames, blockRow, blockCol, rowInBlock, colInBlock, hidden]
  const split = g.op('Reshape', [x, g.ints([0, blocks, scale, blocks, scale, hidden])], {}, `${name}/split`);
  const moved = g.op('Transpose', [split], { perm: [0, 1, 3, 2, 4, 5] }, `${name}/transpose`);
  return g.op('Reshape', [moved, g.ints([0, blocks * blocks, hidden * scale * scale])], {}, name);
}

export function buildIdefics3ImageGraph(config: Idefics3Config, weights: WeightPool): BuiltGraph {
  const v = config.vision;
  const g = new Builder();
  const context = { g, weights };
  const states = visionTowerStates(context, v, 'pixel_values', v.numLayers);
  const last = layerNorm(context, states[v.numLayers], 'vision.post_layernorm', v.hiddenSize, v.layerNormEps, '/vision/post_layernorm');
  const s = config.scaleFactor;
  const shuffled = pixelShuffle(g, last, patchGrid(v), v.hiddenSize, s, '/connector/pixel_shuffle');
  const T = config.text.hiddenSize;
  const out = batchedLinear(context)(shuffled, 'projector.proj', T, v.hiddenSize * s * s, false, '/connector/modality_projection');
  g.nodes.push({ name: '/connector/output', op: 'Identity', inputs: [out], outputs: ['image_features'] });

  const inputs: ManifestValue[] = [{ name: 'pixel_values', type: 'float32', dims: ['images', v.numChannels, v.imageSize, v.imageSize], role: 'pixels' }];
  const outputs: ManifestValue[] = [{ name: 'image_features', type: 'float32', dims: ['images', tokensPerFrame(config), T], role: 'imageFeatures' }];
  const model = buildModel({ name: 'vision', inputs, outputs, nodes: g.nodes, constants: g.constants, int64Constants: g.int64Constants, external: weights.initializers });
  return { model, manifest: { graph: 'vision', inputs, outputs } };
}
