/**
 * Block quantization of a linear layer's weight for onnxruntime's `MatMulNBits` (com.microsoft),
 * at 4 or 8 bits: for each output row, blocks of `blockSize` input weights share one float32
 * scale; values are stored as unsigned codes around the op's default zero point (2^(bits-1): 8 for
 * 4 bits, 128 for 8 bits); 4-bit codes two per byte, low nibble first, 8-bit codes one per byte.
 * Symmetric (absmax / (zero point - 1)), so no zero-point tensor is needed.
 */
export type QuantizedBits = 4 | 8;

/** The 4-bit zero point (MatMulNBits' default for bits = 4). */
export const ZERO_POINT = 8;

/** MatMulNBits' default zero point at `bits`: the middle code. */
export function zeroPoint(bits: QuantizedBits): number {
  return 1 << (bits - 1);
}

/** Bytes of one block of `blockSize` codes at `bits`. */
export function blockBytes(bits: QuantizedBits, blockSize: number): number {
  return (blockSize * bits) / 8;
}

/**
 * Bytes per parameter of a weight at `weightBits`: 4- or 8-bit codes plus a float32 scale per
 * block of `blockSize` (MatMulNBits), or float32's 4. What memory estimates count.
 */
export function bytesPerParameter(weightBits: number, blockSize = 32): number {
  return weightBits === 4 || weightBits === 8 ? (blockBytes(weightBits, blockSize) + 4) / blockSize : 4;
}

export interface Quantized {
  /** `[N, blocks, blockBytes]` packed codes. */
  data: Uint8Array;
  /** `[N * blocks]`. */
  scales: Float32Array;
  blocks: number;
}

/** `weight` is `[N, K]` row-major (a PyTorch Linear's `[out, in]`); K is zero-padded to whole blocks. */
export function quantizeBlocks(weight: Float32Array, N: number, K: number, bits: QuantizedBits, blockSize = 32): Quantized {
  if (bits !== 4 && bits !== 8) throw new RangeError(`MatMulNBits weights are 4 or 8 bits here, got ${String(bits)}`);
  if (blockSize % 2 !== 0 || blockSize < 16) throw new RangeError(`block size must be an even number >= 16, got ${blockSize}`);
  const blocks = Math.ceil(K / blockSize);
  const bytes = blockBytes(bits, blockSize);
  const zero = zeroPoint(bits);
  const maxCode = 2 * zero - 1;
  const data = new Uint8Array(N * blocks * bytes);
  const scales = new Float32Array(N * blocks);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const start = n * K + b * blockSize;
      const end = n * K + Math.min(K, (b + 1) * blockSize);
      let absmax = 0;
      for (let i = start; i < end; i++) absmax = Math.max(absmax, Math.abs(weight[i]));
      const scale = absmax / (zero - 1);
      scales[n * blocks + b] = scale;
      const out = (n * blocks + b) * bytes;
      for (let j = 0; j < blockSize; j++) {
        const i = start + j;
        const code = i < end && scale > 0 ? Math.min(maxCode, Math.max(0, Math.round(weight[i] / scale) + zero)) : zero;
        if (bits === 8) data[out + j] = code;
        else data[out + (j >> 1)] |= j % 2 === 0 ? code : code << 4;
      }
    }
  }
  return { data, scales, blocks };
}

/** The float32 `[N, K]` weight the codes stand for (tests, error measurement). */
export function dequantizeBlocks(q: Quantized, N: number, K: number, bits: QuantizedBits, blockSize = 32): Float32Array {
  const out = new Float32Array(N * K);
  const bytes = blockBytes(bits, blockSize);
  const zero = zeroPoint(bits);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / blockSize);
      const j = k % blockSize;
      const at = (n * q.blocks + b) * bytes;
      const code = bits === 8 ? q.data[at + j] : j % 2 === 0 ? q.data[at + (j >> 1)] & 0x0f : q.data[at + (j >> 1)] >> 4;
      out[n * K + k] = (code - zero) * q.scales[n * q.blocks + b];
    }
  }
  return out;
}

/** 4-bit `quantizeBlocks`. */
export function quantize4(weight: Float32Array, N: number, K: number, blockSize = 32): Quantized {
  return quantizeBlocks(weight, N, K, 4, blockSize);
}

/** 4-bit `dequantizeBlocks`. */
export function dequantize4(q: Quantized, N: number, K: number, blockSize = 32): Float32Array {
  return dequantizeBlocks(q, N, K, 4, blockSize);
}
