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

/**
 * A float32 `[out, in]` weight as the second input of a Gemm and the Gemm's `transB`. Laid out for
 * onnxruntime's unpacked one-row kernels (`oneRow`, sessions run without prepacking): a weight at
 * least as wide as it is deep is held transposed, `[in, out]`, whose rows the kernel streams; a
 * narrower one stays `[out, in]`, and the kernel takes dot products along its long rows. Measured
 * on Qwen2-0.5B's `[out, in]` shapes, one row, 2 threads (bench/README.md, "Weights laid out for
 * one row"): `[4864, 896]` 8% and the `[151936, 896]` head 20% faster transposed than prepacked;
 * `[896, 4864]` 5% faster untransposed than prepacked, and 16% slower transposed.
 */
export function gemmWeight(weights: GraphContext['weights'], name: string, [out, inFeatures]: [number, number], oneRow: boolean): { weight: string; transB: 0 | 1 } {
  return oneRow && out >= inFeatures ? { weight: weights.useTransposed(name, [out, inFeatures]), transB: 0 } : { weight: weights.use(name, [out, inFeatures]), transB: 1 };
}

/** Linear layers on 2-D activations at `weightBits`; float32 weights laid out for one-row kernels when `oneRow` (`gemmWeight`). */
export function linear2d({ g, weights }: GraphContext, weightBits: WeightBits, oneRow = false): Linear {
  return (x, prefix, outFeatures, inFeatures, bias, name) => {
    if (weightBits !== 32) {
      const { data, scales } = weights.useQuantized(`${prefix}.weight`, [outFeatures, inFeatures], Q4_BLOCK, weightBits);
      const product = g.op('MatMulNBits', [x, data, scales], { K: inFeatures, N: outFeatures, bits: weightBits, block_size: Q4_BLOCK, ...(ACCURACY_LEVEL[weightBits] ? { accuracy_level: ACCURACY_LEVEL[weightBits] } : {}) }, bias ? `${name}/q${weightBits}` : name, 'com.microsoft');
      return bias ? g.op('Add', [product, weights.use(`${prefix}.bias`, [outFeatures])], {}, name) : product;
    }
    const { weight, transB } = gemmWeight(weights, `${prefix}.weight`, [outFeatures, inFeatures], oneRow);
    const inputs = [x, weight];
    if (bias) inputs.push(weights.use(`${prefix}.bias`, [outFeatures]));
    return g.op('Gemm', inputs, { transB }, name);
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
