/** Normalisations over the last axis: RMSNorm (Llama's) and LayerNorm, weights under `<prefix>.weight` / `.bias`. */
import type { GraphContext } from './context.js';

/** `x / sqrt(mean(x^2) + eps) * weight`, as transformers' `LlamaRMSNorm` computes it. */
export function rmsNorm({ g, weights }: GraphContext, x: string, prefix: string, size: number, eps: number, name: string): string {
  const squared = g.op('Mul', [x, x], {}, `${name}/square`);
  const mean = g.op('ReduceMean', [squared], { axes: [-1], keepdims: 1 }, `${name}/mean`);
  const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [mean, g.scalar(eps)], {}, `${name}/eps`)], {}, `${name}/sqrt`)], {}, `${name}/inv`);
  return g.op('Mul', [g.op('Mul', [x, inv], {}, `${name}/scaled`), weights.use(`${prefix}.weight`, [size])], {}, name);
}

/** LayerNorm with weight and bias (onnx `LayerNormalization`). */
export function layerNorm({ g, weights }: GraphContext, x: string, prefix: string, size: number, eps: number, name: string): string {
  return g.op('LayerNormalization', [x, weights.use(`${prefix}.weight`, [size]), weights.use(`${prefix}.bias`, [size])], { axis: -1, epsilon: eps }, name);
}
