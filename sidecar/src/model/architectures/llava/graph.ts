/**
 * LLaVA's image encoder as one ONNX graph: the vision tower, then
 * `LlavaForConditionalGeneration.get_image_features`: the hidden states `vision_feature_layer`
 * names, each without its first position under the `default` strategy (whatever the tower: SigLIP
 * loses a patch, as in transformers), concatenated along the features when there are several;
 * then the projector `linear_1 -> act -> linear_2`. Only the layers up to the deepest selected
 * one are built. `pixel_values [images, channels, size, size]` -> `image_features [images,
 * tokens, text_hidden]`, the features that replace the image tokens in the prompt.
 */
import { activation } from '../../graph/layers/activations.js';
import { batchedLinear } from '../../graph/layers/linear.js';
import type { BuiltGraph, ManifestValue } from '../../graph/manifest.js';
import { buildModel, GraphBuilder } from '../../graph/onnxBuilder.js';
import type { WeightPool } from '../../graph/weightPool.js';
import { towerPositions, visionTowerStates } from '../../vision/visionGraph.js';
import type { GraphContext } from '../../graph/layers/context.js';
import { selectedLayerCount, type LlavaImageSide } from './config.js';

/** Feature rows per image: `default` drops the first position of every tower (transformers' `[:, 1:]`). */
export function tokensPerImage(config: LlavaImageSide): number {
  return towerPositions(config.vision) - (config.selectStrategy === 'default' ? 1 : 0);
}

export function buildLlavaImageGraph(config: LlavaImageSide, weights: WeightPool): BuiltGraph {
  const v = config.vision;
  const g = new GraphBuilder();
  const out = llavaProjectedFeatures({ g, weights }, config, 'pixel_values');
  g.nodes.push({ name: '/projector/output', op: 'Identity', inputs: [out], outputs: ['image_features'] });

  const T = config.text.hiddenSize;
  const inputs: ManifestValue[] = [{ name: 'pixel_values', type: 'float32', dims: ['images', v.numChannels, v.imageSize, v.imageSize], role: 'pixels' }];
  const outputs: ManifestValue[] = [{ name: 'image_features', type: 'float32', dims: ['images', tokensPerImage(config), T], role: 'imageFeatures' }];
  const model = buildModel({ name: 'vision', inputs, outputs, nodes: g.nodes, constants: g.constants, int64Constants: g.int64Constants, external: weights.initializers });
  return { model, manifest: { graph: 'vision', inputs, outputs } };
}

/** The tower's selected hidden states of `pixels [images, channels, size, size]`, projected: `[images, tokensPerImage, text hidden]`. */
export function llavaProjectedFeatures(context: GraphContext, config: LlavaImageSide, pixels: string): string {
  const v = config.vision;
  const { g } = context;
  const linear = batchedLinear(context);
  const positions = towerPositions(v);
  const states = visionTowerStates(context, v, pixels, selectedLayerCount(v.numLayers, config.visionFeatureLayers));
  const selected = config.visionFeatureLayers.map((layer, k) => {
    const state = states[layer < 0 ? v.numLayers + 1 + layer : layer];
    return config.selectStrategy === 'default' ? g.op('Slice', [state, g.ints([1]), g.ints([positions]), g.ints([1])], {}, `/vision/select.${k}`) : state;
  });
  const features = selected.length === 1 ? selected[0] : g.op('Concat', selected, { axis: -1 }, '/vision/concat_layers');

  const T = config.text.hiddenSize;
  const bias = config.projectorBias;
  const projected = linear(features, 'projector.linear_1', T, v.hiddenSize * selected.length, bias, '/projector/linear_1');
  const act = activation(g, projected, config.projectorAct, '/projector/act');
  return linear(act, 'projector.linear_2', T, T, bias, '/projector/linear_2');
}
