/**
 * LLaVA-NeXT's (and OneVision's) image encoder as one ONNX graph: LLaVA's tower, feature
 * selection and projector (`llava/graph.ts`) read per frame (each tile and the base image), then
 * `image_newline` as one more row of every frame, so the packing (`pack.ts`), which depends on
 * the image's size, needs nothing but this output. `pixel_values [frames, channels, size, size]`
 * -> `image_features [frames, tokens per tile + 1, text_hidden]`.
 */
import type { BuiltGraph, ManifestValue } from '../../graph/manifest.js';
import { buildModel, GraphBuilder } from '../../graph/onnxBuilder.js';
import type { WeightPool } from '../../graph/weightPool.js';
import { llavaProjectedFeatures, tokensPerImage } from '../llava/graph.js';
import type { LlavaNextConfig } from './config.js';

/** The canonical name of the newline embedding (`model.image_newline` in the checkpoint). */
export const NEWLINE_WEIGHT = 'projector.image_newline';

export function buildLlavaNextImageGraph(config: LlavaNextConfig, weights: WeightPool): BuiltGraph {
  const v = config.vision;
  const T = config.text.hiddenSize;
  const g = new GraphBuilder();
  const features = llavaProjectedFeatures({ g, weights }, config, 'pixel_values');
  // image_newline [T] -> [frames, 1, T], after each frame's rows.
  const frames = g.op('Slice', [g.op('Shape', [features], {}, '/newline/shape'), g.ints([0]), g.ints([1]), g.ints([0])], {}, '/newline/frames');
  const shape = g.op('Concat', [frames, g.ints([1, T])], { axis: 0 }, '/newline/target');
  const newline = g.op('Expand', [g.op('Reshape', [weights.use(NEWLINE_WEIGHT, [T]), g.ints([1, 1, T])], {}, '/newline/row'), shape], {}, '/newline/expand');
  g.nodes.push({ name: '/newline/output', op: 'Concat', inputs: [features, newline], outputs: ['image_features'], attributes: { axis: 1 } });

  const inputs: ManifestValue[] = [{ name: 'pixel_values', type: 'float32', dims: ['images', v.numChannels, v.imageSize, v.imageSize], role: 'pixels' }];
  const outputs: ManifestValue[] = [{ name: 'image_features', type: 'float32', dims: ['images', tokensPerImage(config) + 1, T], role: 'imageFeatures' }];
  const model = buildModel({ name: 'vision', inputs, outputs, nodes: g.nodes, constants: g.constants, int64Constants: g.int64Constants, external: weights.initializers });
  return { model, manifest: { graph: 'vision', inputs, outputs } };
}
