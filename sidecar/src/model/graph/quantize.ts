/**
 * 4-bit block quantization of a linear layer's weight for onnxruntime's `MatMulNBits`
 * (com.microsoft): for each output row, blocks of `blockSize` input weights share one float32
 * scale; values are stored as unsigned 4-bit codes around the op's default zero point 8, two per
 * byte, low nibble first. Symmetric (absmax / 7), so no zero-point tensor is needed.
 */
export const ZERO_POINT = 8;

export interface Quantized {
  /** `[N, blocks, blockSize / 2]` packed codes. */
  data: Uint8Array;
  /** `[N * blocks]`. */
  scales: Float32Array;
  blocks: number;
}

/** `weight` is `[N, K]` row-major (a PyTorch Linear's `[out, in]`); K is zero-padded to whole blocks. */
export function quantize4(weight: Float32Array, N: number, K: number, blockSize = 32): Quantized {
  if (blockSize % 2 !== 0 || blockSize < 16) throw new RangeError(`block size must be an even number >= 16, got ${blockSize}`);
  const blocks = Math.ceil(K / blockSize);
  const half = blockSize / 2;
  const data = new Uint8Array(N * blocks * half);
  const scales = new Float32Array(N * blocks);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const start = n * K + b * blockSize;
      const end = n * K + Math.min(K, (b + 1) * blockSize);
      let absmax = 0;
      for (let i = start; i < end; i++) absmax = Math.max(absmax, Math.abs(weight[i]));
      const scale = absmax / 7;
      scales[n * blocks + b] = scale;
      const out = (n * blocks + b) * half;
      for (let j = 0; j < blockSize; j++) {
        const i = start + j;
        const code = i < end && scale > 0 ? Math.min(15, Math.max(0, Math.round(weight[i] / scale) + ZERO_POINT)) : ZERO_POINT;
        data[out + (j >> 1)] |= j % 2 === 0 ? code : code << 4;
      }
    }
  }
  return { data, scales, blocks };
}

/** The float32 `[N, K]` weight the codes stand for (tests, error measurement). */
export function dequantize4(q: Quantized, N: number, K: number, blockSize = 32): Float32Array {
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / blockSize);
      const j = k % blockSize;
      const byte = q.data[(n * q.blocks + b) * (blockSize / 2) + (j >> 1)];
      const code = j % 2 === 0 ? byte & 0x0f : byte >> 4;
      out[n * K + k] = (code - ZERO_POINT) * q.scales[n * q.blocks + b];
    }
  }
  return out;
}
