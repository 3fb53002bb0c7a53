/**
 * Linear projections, PyTorch's `y = x W^T + b` with W stored `[out, in]` under `<prefix>.weight`
 * (and `<prefix>.bias`): on 2-D activations as one Gemm, or as onnxruntime's 4- or 8-bit `MatMulNBits`;
 * on batched 3-D activations (the vision tower) as MatMul with the transposed weight.
 */
import type { GraphContext } from './context.js';

/** Weights of the layers' linear projections: float32 as stored, or 8-/4-bit blocks (MatMulNBits). */
export type WeightBits = 32 | 8 | 4;

/** Inputs sharing one scale in 4- and 8-bit mode (onnxruntime's usual choice). */
export const Q4_BLOCK = 32;

/**
 * MatMulNBits' `accuracy_level` by weight bits. At 8 bits onnxruntime's CPU kernel exists only for
 * int8 compute (4: the activations quantized per block of 32 to int8, absmax / 127, as llama.cpp's
 * Q8_0 does); the float32-compute path (0) dequantizes the whole weight on every call (measured:
 * 100x slower than float32 on a [4864, 896] GEMV). 4-bit keeps float32 activations (exact against
 * the dequantized weights; int8 compute measured about 2x faster on the GEMV, not adopted).
 */
export const ACCURACY_LEVEL = { 4: 0, 8: 4 } as const;

/** A linear layer of one graph: `x [rows, inFeatures]` -> `[rows, outFeatures]`, named `name`. */
export type Linear = (x: string, prefix: string, outFeatures: number, inFeatures: number, bias: boolean, name: string) => string;

/** Linear layers on 2-D activations at `weightBits`. */
export function linear2d({ g, weights }: GraphContext, weightBits: WeightBits): Linear {
  return (x, prefix, outFeatures, inFeatures, bias, name) => {
    if (weightBits !== 32) {
      const { data, scales } = weights.useQuantized(`${prefix}.weight`, [outFeatures, inFeatures], Q4_BLOCK, weightBits);
      const product = g.op('MatMulNBits', [x, data, scales], { K: inFeatures, N: outFeatures, bits: weightBits, block_size: Q4_BLOCK, ...(ACCURACY_LEVEL[weightBits] ? { accuracy_level: ACCURACY_LEVEL[weightBits] } : {}) }, bias ? `${name}/q${weightBits}` : name, 'com.microsoft');
      return bias ? g.op('Add', [product, weights.use(`${prefix}.bias`, [outFeatures])], {}, name) : product;
    }
    const inputs = [x, weights.use(`${prefix}.weight`, [outFeatures, inFeatures])];
    if (bias) inputs.push(weights.use(`${prefix}.bias`, [outFeatures]));
    return g.op('Gemm', inputs, { transB: 1 }, name);
  };
}

/** Linear layers on `[batch, rows, in]` activations (float32 weights). */
export function batchedLinear({ g, weights }: GraphContext): Linear {
  return (x, prefix, outFeatures, inFeatures, bias, name) => {
    const wT = g.op('Transpose', [weights.use(`${prefix}.weight`, [outFeatures, inFeatures])], { perm: [1, 0] }, `${name}/weight_t`);
    const y = g.op('MatMul', [x, wT], {}, `${name}/MatMul`);
    return bias ? g.op('Add', [y, weights.use(`${prefix}.bias`, [outFeatures])], {}, name) : y;
  };
}
