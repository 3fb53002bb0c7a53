/**
 * The vision tower (CLIP or SigLIP) and the LLaVA projector as one ONNX graph:
 * `pixel_values [images, channels, size, size]` -> `image_features [images, tokens, text_hidden]`,
 * the features that replace the image tokens in the prompt.
 *
 * Follows transformers' `CLIPVisionTransformer` / `SiglipVisionTransformer` and
 * `LlavaForConditionalGeneration.get_image_features`: patch convolution, CLS token (CLIP only),
 * learned position embeddings, CLIP's pre-layernorm, pre-norm encoder layers; the features are
 * the hidden states `vision_feature_layer` names (post-layernorm is not applied), each without
 * its first position under the `default` strategy (whatever the tower: SigLIP loses a patch, as in
 * transformers), concatenated along the features when there are several; then
 * `linear_1 -> act -> linear_2`. Only the layers up to the deepest selected one are built.
 */
import { selectedLayerCount, type LlavaConfig } from '../config.js';
import { buildModel, GraphBuilder, type ValueSpec } from '../graph/onnxBuilder.js';
import type { WeightPool } from '../graph/weightPool.js';

export interface VisionGraph {
  model: Uint8Array;
  tokensPerImage: number;
}

/** Positions of the tower's hidden states: the patches (floored grid), and CLIP's CLS token first. */
function towerPositions(config: LlavaConfig): number {
  // The patch convolution drops a partial last row and column (SigLIP-so400m: 384 / 14 -> 27).
  const patches = Math.floor(config.vision.imageSize / config.vision.patchSize) ** 2;
  return config.vision.modelType === 'clip_vision_model' ? patches + 1 : patches;
}

/** Feature rows per image: `default` drops the first position of every tower (transformers' `[:, 1:]`). */
export function tokensPerImage(config: LlavaConfig): number {
  return towerPositions(config) - (config.selectStrategy === 'default' ? 1 : 0);
}

function activation(g: GraphBuilder, x: string, kind: string, name: string): string {
  switch (kind) {
    case 'quick_gelu':
      return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.scalar(1.702)], {}, `${name}/scaled`)], {}, `${name}/sigmoid`)], {}, name);
    case 'gelu': {
      const erf = g.op('Erf', [g.op('Mul', [x, g.scalar(Math.SQRT1_2)], {}, `${name}/scaled`)], {}, `${name}/erf`);
      return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)], {}, `${name}/half`), g.op('Add', [erf, g.scalar(1)], {}, `${name}/one_plus`)], {}, name);
    }
    case 'gelu_pytorch_tanh':
    case 'gelu_new': {
      const cube = g.op('Mul', [g.op('Mul', [x, x], {}, `${name}/sq`), x], {}, `${name}/cube`);
      const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, g.scalar(0.044715)], {}, `${name}/c`)], {}, `${name}/sum`), g.scalar(Math.sqrt(2 / Math.PI))], {}, `${name}/inner`);
      const tanh = g.op('Tanh', [inner], {}, `${name}/tanh`);
      return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)], {}, `${name}/half`), g.op('Add', [tanh, g.scalar(1)], {}, `${name}/one_plus`)], {}, name);
    }
    default:
      throw new RangeError(`activation ${JSON.stringify(kind)} is not supported (quick_gelu, gelu, gelu_pytorch_tanh)`);
  }
}

export function buildVisionGraph(config: LlavaConfig, weights: WeightPool): VisionGraph {
  const v = config.vision;
  const E = v.hiddenSize;
  const heads = v.numHeads;
  const hd = E / heads;
  const patchesPerSide = Math.floor(v.imageSize / v.patchSize);
  const N = patchesPerSide * patchesPerSide;
  const isClip = v.modelType === 'clip_vision_model';
  const g = new GraphBuilder();

  const linear = (x: string, prefix: string, outF: number, inF: number, name: string, bias = true) => {
    // x is [images, tokens, in]: MatMul with the transposed weight, then the bias.
    const wT = g.op('Transpose', [weights.use(`${prefix}.weight`, [outF, inF])], { perm: [1, 0] }, `${name}/weight_t`);
    const y = g.op('MatMul', [x, wT], {}, `${name}/MatMul`);
    return bias ? g.op('Add', [y, weights.use(`${prefix}.bias`, [outF])], {}, name) : y;
  };
  const layerNorm = (x: string, prefix: string, name: string) =>
    g.op('LayerNormalization', [x, weights.use(`${prefix}.weight`, [E]), weights.use(`${prefix}.bias`, [E])], { axis: -1, epsilon: v.layerNormEps }, name);

  // Patches: [images, E, side, side] -> [images, N, E].
  const convInputs = ['pixel_values', weights.use('vision.embeddings.patch_embedding.weight', [E, v.numChannels, v.patchSize, v.patchSize])];
  if (!isClip) convInputs.push(weights.use('vision.embeddings.patch_embedding.bias', [E]));
  const conv = g.op('Conv', convInputs, { kernel_shape: [v.patchSize, v.patchSize], strides: [v.patchSize, v.patchSize] }, '/vision/embeddings/patch_embedding');
  let x = g.op('Transpose', [g.op('Reshape', [conv, g.ints([0, E, N])], {}, '/vision/embeddings/flatten')], { perm: [0, 2, 1] }, '/vision/embeddings/patches');
  const positions = towerPositions(config);
  if (isClip) {
    // CLS token first: expand the class embedding to [images, 1, E].
    const images = g.op('Slice', [g.op('Shape', ['pixel_values'], {}, '/vision/embeddings/shape'), g.ints([0]), g.ints([1])], {}, '/vision/embeddings/images');
    const clsShape = g.op('Concat', [images, g.ints([1, E])], { axis: 0 }, '/vision/embeddings/cls_shape');
    const cls = g.op('Expand', [weights.use('vision.embeddings.class_embedding', [E]), clsShape], {}, '/vision/embeddings/cls');
    x = g.op('Concat', [cls, x], { axis: 1 }, '/vision/embeddings/with_cls');
  }
  x = g.op('Add', [x, weights.use('vision.embeddings.position_embedding.weight', [positions, E])], {}, '/vision/embeddings');
  if (isClip) x = layerNorm(x, 'vision.pre_layrnorm', '/vision/pre_layrnorm');

  const scale = g.scalar(1 / Math.sqrt(hd));
  const splitHeads = (t: string, name: string) =>
    g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, heads, hd])], {}, `${name}/split`)], { perm: [0, 2, 1, 3] }, name);
  // hidden_states[0] is the embeddings, hidden_states[i + 1] the output of layer i.
  const states = [x];
  for (let i = 0; i < selectedLayerCount(v.numLayers, config.visionFeatureLayers); i++) {
    const p = `vision.encoder.layers.${i}`;
    const n = `/vision/encoder/layers.${i}`;
    const h = layerNorm(x, `${p}.layer_norm1`, `${n}/layer_norm1`);
    const q = splitHeads(linear(h, `${p}.self_attn.q_proj`, E, E, `${n}/attn/q_proj`), `${n}/attn/q`);
    const k = splitHeads(linear(h, `${p}.self_attn.k_proj`, E, E, `${n}/attn/k_proj`), `${n}/attn/k`);
    const val = splitHeads(linear(h, `${p}.self_attn.v_proj`, E, E, `${n}/attn/v_proj`), `${n}/attn/v`);
    const kT = g.op('Transpose', [k], { perm: [0, 1, 3, 2] }, `${n}/attn/k_t`);
    const probs = g.op('Softmax', [g.op('Mul', [g.op('MatMul', [q, kT], {}, `${n}/attn/qk`), scale], {}, `${n}/attn/scaled`)], { axis: -1 }, `${n}/attn/probs`);
    const context = g.op('Transpose', [g.op('MatMul', [probs, val], {}, `${n}/attn/context`)], { perm: [0, 2, 1, 3] }, `${n}/attn/context_t`);
    const merged = g.op('Reshape', [context, g.ints([0, 0, E])], {}, `${n}/attn/merged`);
    x = g.op('Add', [x, linear(merged, `${p}.self_attn.out_proj`, E, E, `${n}/attn/out_proj`)], {}, `${n}/attn/residual`);
    const m = layerNorm(x, `${p}.layer_norm2`, `${n}/layer_norm2`);
    const up = activation(g, linear(m, `${p}.mlp.fc1`, v.intermediateSize, E, `${n}/mlp/fc1`), v.hiddenAct, `${n}/mlp/act`);
    x = g.op('Add', [x, linear(up, `${p}.mlp.fc2`, E, v.intermediateSize, `${n}/mlp/fc2`)], {}, `${n}/mlp/residual`);
    states.push(x);
  }
  const selected = config.visionFeatureLayers.map((layer, k) => {
    const state = states[layer < 0 ? v.numLayers + 1 + layer : layer];
    return config.selectStrategy === 'default' ? g.op('Slice', [state, g.ints([1]), g.ints([positions]), g.ints([1])], {}, `/vision/select.${k}`) : state;
  });
  const features = selected.length === 1 ? selected[0] : g.op('Concat', selected, { axis: -1 }, '/vision/concat_layers');

  const T = config.text.hiddenSize;
  const bias = config.projectorBias;
  const projected = linear(features, 'projector.linear_1', T, E * selected.length, '/projector/linear_1', bias);
  const act = activation(g, projected, config.projectorAct, '/projector/act');
  const out = linear(act, 'projector.linear_2', T, T, '/projector/linear_2', bias);
  g.nodes.push({ name: '/projector/output', op: 'Identity', inputs: [out], outputs: ['image_features'] });

  const tokens = tokensPerImage(config);
  const inputs: ValueSpec[] = [{ name: 'pixel_values', type: 'float32', dims: ['images', v.numChannels, v.imageSize, v.imageSize] }];
  const outputs: ValueSpec[] = [{ name: 'image_features', type: 'float32', dims: ['images', tokens, T] }];
  const model = buildModel({ name: 'vision', inputs, outputs, nodes: g.nodes, constants: g.constants, int64Constants: g.int64Constants, external: weights.initializers });
  return { model, tokensPerImage: tokens };
}
