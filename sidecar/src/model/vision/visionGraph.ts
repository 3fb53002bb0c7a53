/**
 * A vision tower (CLIP, SigLIP, any tower of `towers/registry.ts`) as graph pieces: its
 * embeddings (the tower's own), then pre-norm encoder layers shared by all, following
 * transformers' `CLIPVisionTransformer` / `SiglipVisionTransformer`. Post-layernorm is not applied:
 * the architectures that use a tower read its hidden states (LLaVA: `architectures/llava/graph.ts`).
 */
import type { VisionConfig } from '../config.js';
import type { GraphContext } from '../graph/layers/context.js';
import { batchedLinear } from '../graph/layers/linear.js';
import { twoLayerMlp } from '../graph/layers/mlp.js';
import { layerNorm } from '../graph/layers/norms.js';
import { VISION_TOWERS } from './towers/registry.js';

/** Positions of the tower's hidden states per image (CLIP: its patches and the class token). */
export function towerPositions(v: VisionConfig): number {
  return VISION_TOWERS[v.modelType as keyof typeof VISION_TOWERS].positions(v);
}

/**
 * The hidden states `[images, positions, hidden]` of `pixels`: `states[0]` the embeddings,
 * `states[i + 1]` the output of layer i, for the first `layers` layers.
 */
export function visionTowerStates(context: GraphContext, v: VisionConfig, pixels: string, layers: number): string[] {
  const { g } = context;
  const E = v.hiddenSize;
  const heads = v.numHeads;
  const hd = E / heads;
  const linear = batchedLinear(context);
  let x = VISION_TOWERS[v.modelType as keyof typeof VISION_TOWERS].embed(context, v, pixels);
  const scale = g.scalar(1 / Math.sqrt(hd));
  const splitHeads = (t: string, name: string) =>
    g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, heads, hd])], {}, `${name}/split`)], { perm: [0, 2, 1, 3] }, name);
  const states = [x];
  for (let i = 0; i < layers; i++) {
    const p = `vision.encoder.layers.${i}`;
    const n = `/vision/encoder/layers.${i}`;
    const h = layerNorm(context, x, `${p}.layer_norm1`, E, v.layerNormEps, `${n}/layer_norm1`);
    const q = splitHeads(linear(h, `${p}.self_attn.q_proj`, E, E, true, `${n}/attn/q_proj`), `${n}/attn/q`);
    const k = splitHeads(linear(h, `${p}.self_attn.k_proj`, E, E, true, `${n}/attn/k_proj`), `${n}/attn/k`);
    const val = splitHeads(linear(h, `${p}.self_attn.v_proj`, E, E, true, `${n}/attn/v_proj`), `${n}/attn/v`);
    const kT = g.op('Transpose', [k], { perm: [0, 1, 3, 2] }, `${n}/attn/k_t`);
    const probs = g.op('Softmax', [g.op('Mul', [g.op('MatMul', [q, kT], {}, `${n}/attn/qk`), scale], {}, `${n}/attn/scaled`)], { axis: -1 }, `${n}/attn/probs`);
    const attended = g.op('Transpose', [g.op('MatMul', [probs, val], {}, `${n}/attn/context`)], { perm: [0, 2, 1, 3] }, `${n}/attn/context_t`);
    const merged = g.op('Reshape', [attended, g.ints([0, 0, E])], {}, `${n}/attn/merged`);
    x = g.op('Add', [x, linear(merged, `${p}.self_attn.out_proj`, E, E, true, `${n}/attn/out_proj`)], {}, `${n}/attn/residual`);
    const m = layerNorm(context, x, `${p}.layer_norm2`, E, v.layerNormEps, `${n}/layer_norm2`);
    x = g.op('Add', [x, twoLayerMlp(g, linear, m, `${p}.mlp`, E, v.intermediateSize, v.hiddenAct, `${n}/mlp`)], {}, `${n}/mlp/residual`);
    states.push(x);
  }
  return states;
}
