/**
 * The Qwen2-VL / Qwen2.5-VL vision tower and patch merger as one ONNX graph, for any number of
 * images of any grids (everything grid-dependent comes in from `visionInputs.ts`):
 *
 *   pixel_values [N, 3*T*P*P] -> patch embedding (the Conv3d with stride = kernel, as a MatMul)
 *   -> blocks: x + attn(norm1(x)), x + mlp(norm2(x)); attention with 2-D rotary q/k
 *      (rotary_cos / rotary_sin [N, head_dim]), restricted to the row's image (image_segment)
 *      or, in Qwen2.5-VL's windowed blocks, to its window (window_segment)
 *   -> merger: norm, every merge_size^2 consecutive rows concatenated, Linear -> GELU -> Linear
 *   -> image_features [N / merge_size^2, text hidden]
 *
 * Qwen2-VL: LayerNorm (eps 1e-6), MLP fc1 -> act -> fc2. Qwen2.5-VL: RMSNorm (eps 1e-6),
 * SwiGLU MLP with biases, windowed attention except in `fullatt_block_indexes`. A masked softmax
 * over all rows equals transformers' per-image (per-window) attention: the other rows get
 * probability 0.
 *
 * Canonical weight names: the checkpoint's `visual.*` as `vision.*`.
 */
import type { BuiltGraph, ManifestValue } from '../../graph/manifest.js';
import type { ExternalTensor } from '../../graph/onnxBuilder.js';
import { activation as sharedActivation } from '../../graph/layers/activations.js';
import { layerNorm, rmsNorm } from '../../graph/layers/norms.js';
import { rotateHalf } from '../../graph/layers/rotary.js';
import { buildModel, GraphBuilder } from '../../graph/onnxBuilder.js';
import type { Qwen2VLVisionConfig } from './config.js';

/** What the graph needs of a weight pool (`graph/weightPool.ts`'s `WeightPool`). */
export interface VisionWeights {
  use(canonical: string, shape: number[]): string;
  readonly initializers: ExternalTensor[];
}

const EPS = 1e-6;

/** transformers' activations by name: the shared ones, and SiLU (Qwen2.5-VL's SwiGLU gate). */
function activation(g: GraphBuilder, x: string, kind: string, name: string): string {
  return kind === 'silu' ? g.op('Mul', [x, g.op('Sigmoid', [x], {}, `${name}/sigmoid`)], {}, name) : sharedActivation(g, x, kind, name);
}

export function buildQwen2VLVisionGraph(v: Qwen2VLVisionConfig, weights: VisionWeights): Uint8Array {
  const E = v.hiddenSize;
  const heads = v.numHeads;
  const hd = E / heads;
  const patchLen = 3 * v.temporalPatchSize * v.patchSize * v.patchSize;
  const unit = v.spatialMergeSize * v.spatialMergeSize;
  const g = new GraphBuilder();

  const linear = (x: string, prefix: string, outF: number, inF: number, name: string) =>
    g.op('Gemm', [x, weights.use(`${prefix}.weight`, [outF, inF]), weights.use(`${prefix}.bias`, [outF])], { transB: 1 }, name);
  const norm = (x: string, prefix: string, width: number, name: string) => (v.mlp === 'two-layer' ? layerNorm : rmsNorm)({ g, weights }, x, prefix, width, EPS, name);

  // Conv3d(kernel = stride = (T, P, P), no bias) over one patch is a dot product with the flattened kernel.
  const patchWeight = weights.use('vision.patch_embed.proj.weight', [E, 3, v.temporalPatchSize, v.patchSize, v.patchSize]);
  const flatWeight = g.op('Reshape', [patchWeight, g.ints([E, patchLen])], {}, '/vision/patch_embed/weight');
  let x = g.op('Gemm', ['pixel_values', flatWeight], { transB: 1 }, '/vision/patch_embed');

  // Additive masks [1, N, N]: 0 within the same segment, a large negative elsewhere.
  const mask = (segment: string, name: string) => {
    const same = g.op('Equal', [g.op('Unsqueeze', [segment, g.ints([1])], {}, `${name}/rows`), g.op('Unsqueeze', [segment, g.ints([0])], {}, `${name}/cols`)], {}, `${name}/same`);
    return g.op('Unsqueeze', [g.op('Where', [same, g.scalar(0), g.scalar(-1e30)], {}, `${name}/additive`), g.ints([0])], {}, name);
  };
  const imageMask = mask('image_segment', '/vision/image_mask');
  const windowMask = v.windowSize === null ? imageMask : mask('window_segment', '/vision/window_mask');

  // Rotary: [1, N, hd] broadcast over the heads of [heads, N, hd].
  const cos = g.op('Unsqueeze', ['rotary_cos', g.ints([0])], {}, '/vision/rotary/cos');
  const sin = g.op('Unsqueeze', ['rotary_sin', g.ints([0])], {}, '/vision/rotary/sin');
  const rotate = (t: string, name: string) => rotateHalf(g, t, { cos, sin }, hd, name);
  const scale = g.scalar(1 / Math.sqrt(hd));

  for (let i = 0; i < v.depth; i++) {
    const p = `vision.blocks.${i}`;
    const n = `/vision/blocks.${i}`;
    const h = norm(x, `${p}.norm1`, E, `${n}/norm1`);
    // qkv [N, 3E] -> [N, 3, heads, hd] -> [3, heads, N, hd]
    const qkv = g.op('Transpose', [g.op('Reshape', [linear(h, `${p}.attn.qkv`, 3 * E, E, `${n}/attn/qkv`), g.ints([0, 3, heads, hd])], {}, `${n}/attn/split`)], { perm: [1, 2, 0, 3] }, `${n}/attn/qkv_t`);
    const part = (k: number, name: string) => g.op('Squeeze', [g.op('Slice', [qkv, g.ints([k]), g.ints([k + 1]), g.ints([0])], {}, `${name}/slice`), g.ints([0])], {}, name);
    const q = rotate(part(0, `${n}/attn/q_raw`), `${n}/attn/q`);
    const k = rotate(part(1, `${n}/attn/k_raw`), `${n}/attn/k`);
    const val = part(2, `${n}/attn/v`);
    const windowed = v.windowSize !== null && !v.fullAttentionBlocks.includes(i);
    // Head by head: one head's [N, N] scores live at a time, not every head's (a screenshot is thousands of rows).
    const kT = g.op('Transpose', [k], { perm: [0, 2, 1] }, `${n}/attn/k_t`);
    const perHead = Array.from({ length: heads }, (_, head) => {
      const a = `${n}/attn/head${head}`;
      const pick = (t: string, what: string) => g.op('Gather', [t, g.ints([head])], { axis: 0 }, `${a}/${what}`);
      const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [pick(q, 'q'), pick(kT, 'k_t')], {}, `${a}/qk`), scale], {}, `${a}/scaled`), windowed ? windowMask : imageMask], {}, `${a}/masked`);
      return g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }, `${a}/probs`), pick(val, 'v')], {}, `${a}/context`);
    });
    // [1, N, hd] per head -> [1, N, heads * hd] (heads outer, as transformers' reshape) -> [N, E]
    const context = g.op('Reshape', [g.op('Concat', perHead, { axis: 2 }, `${n}/attn/heads`), g.ints([-1, E])], {}, `${n}/attn/merged`);
    x = g.op('Add', [x, linear(context, `${p}.attn.proj`, E, E, `${n}/attn/proj`)], {}, `${n}/attn/residual`);
    const m = norm(x, `${p}.norm2`, E, `${n}/norm2`);
    let mlp: string;
    if (v.mlp === 'two-layer') {
      mlp = linear(activation(g, linear(m, `${p}.mlp.fc1`, v.intermediateSize, E, `${n}/mlp/fc1`), v.hiddenAct, `${n}/mlp/act`), `${p}.mlp.fc2`, E, v.intermediateSize, `${n}/mlp/fc2`);
    } else {
      const gate = activation(g, linear(m, `${p}.mlp.gate_proj`, v.intermediateSize, E, `${n}/mlp/gate_proj`), v.hiddenAct, `${n}/mlp/act`);
      const up = linear(m, `${p}.mlp.up_proj`, v.intermediateSize, E, `${n}/mlp/up_proj`);
      mlp = linear(g.op('Mul', [gate, up], {}, `${n}/mlp/gated`), `${p}.mlp.down_proj`, E, v.intermediateSize, `${n}/mlp/down_proj`);
    }
    x = g.op('Add', [x, mlp], {}, `${n}/mlp/residual`);
  }

  const merged = g.op('Reshape', [norm(x, 'vision.merger.ln_q', E, '/vision/merger/ln_q'), g.ints([-1, E * unit])], {}, '/vision/merger/group');
  const hidden = activation(g, linear(merged, 'vision.merger.mlp.0', E * unit, E * unit, '/vision/merger/mlp.0'), 'gelu', '/vision/merger/gelu');
  const out = linear(hidden, 'vision.merger.mlp.2', v.outHiddenSize, E * unit, '/vision/merger/mlp.2');
  g.nodes.push({ name: '/vision/output', op: 'Identity', inputs: [out], outputs: ['image_features'] });

  const { inputs, outputs } = qwen2VLVisionIo(v);
  return buildModel({ name: 'qwen2vl_vision', inputs, outputs, nodes: g.nodes, constants: g.constants, int64Constants: g.int64Constants, external: weights.initializers });
}

/** The vision graph's inputs and outputs with the roles the runtime feeds them by. */
export function qwen2VLVisionIo(v: Qwen2VLVisionConfig): { inputs: ManifestValue[]; outputs: ManifestValue[] } {
  const hd = v.hiddenSize / v.numHeads;
  const patchLen = 3 * v.temporalPatchSize * v.patchSize * v.patchSize;
  const inputs: ManifestValue[] = [
    { name: 'pixel_values', type: 'float32', dims: ['rows', patchLen], role: 'pixels' },
    { name: 'rotary_cos', type: 'float32', dims: ['rows', hd], role: 'rotaryCos' },
    { name: 'rotary_sin', type: 'float32', dims: ['rows', hd], role: 'rotarySin' },
    { name: 'image_segment', type: 'int64', dims: ['rows'], role: 'imageSegment' },
    ...(v.windowSize === null ? [] : [{ name: 'window_segment', type: 'int64' as const, dims: ['rows'], role: 'windowSegment' as const }]),
  ];
  const outputs: ManifestValue[] = [{ name: 'image_features', type: 'float32', dims: ['merged_rows', v.outHiddenSize], role: 'imageFeatures' }];
  return { inputs, outputs };
}

/** The image encoder session's graph and manifest (the architecture's `imageEncoder`). */
export function buildQwen2VLImageGraph(v: Qwen2VLVisionConfig, weights: VisionWeights): BuiltGraph {
  const model = buildQwen2VLVisionGraph(v, weights);
  const { inputs, outputs } = qwen2VLVisionIo(v);
  return { model, manifest: { graph: 'qwen2vl_vision', inputs, outputs } };
}
