/** Normalisations over the last axis: RMSNorm (Llama's) and LayerNorm, weights under `<prefix>.weight` / `.bias`. */
import type { WeightPool } from '../weightPool.js';
import type { GraphContext } from './context.js';

/** What a norm needs: the builder and a way to name its float32 weights (any pool with `use`). */
type NormContext = Pick<GraphContext, 'g'> & { weights: Pick<WeightPool, 'use'> };

/**
 * `x / sqrt(mean(x^2) + eps) * weight`, as transformers' `LlamaRMSNorm` computes it (float32
 * throughout), as onnxruntime's one `SimplifiedLayerNormalization` kernel instead of seven plain
 * nodes (a decode step runs every node of every layer for one token).
 */
export function rmsNorm({ g, weights }: NormContext, x: string, prefix: string, size: number, eps: number, name: string): string {
  return g.op('SimplifiedLayerNormalization', [x, weights.use(`${prefix}.weight`, [size])], { axis: -1, epsilon: eps }, name);
}

/** LayerNorm with weight and bias (onnx `LayerNormalization`). */
export function layerNorm({ g, weights }: NormContext, x: string, prefix: string, size: number, eps: number, name: string): string {
  return g.op('LayerNormalization', [x, weights.use(`${prefix}.weight`, [size]), weights.use(`${prefix}.bias`, [size])], { axis: -1, epsilon: eps }, name);
}
