/** Synthetic but realistically shaped layers for the KV benchmark (no model needed). */
import { KvLayer, TEXT } from '../sidecar/src/kv/index.js';

/** LLaVA-1.5-like prompt layout: a system prompt, images of 576 tokens with short captions between, a final question. */
export function llavaModality(length: number, tokensPerImage = 576): Int32Array {
  const modality = new Int32Array(length).fill(TEXT);
  const system = 35;
  const between = 24;
  const question = 64;
  let at = system;
  for (let image = 0; at + tokensPerImage + question <= length; image++) {
    modality.fill(image, at, at + tokensPerImage);
    at += tokensPerImage + between;
  }
  return modality;
}

/** xorshift32 fill in place: fast enough for gigabyte layers, values in [-1, 1). */
export function fillUniform(array: Float32Array | Float64Array, seed: number, scale = 1, offset = 0): void {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < array.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    array[i] = offset + scale * ((x >>> 0) / 2147483648 - 1);
  }
}

export interface LayerShape {
  heads: number;
  queryHeads: number;
  headDim: number;
  length: number;
}

/** One prefilled layer: keys/values filled in place (no temporaries), accumulated scores, modality. */
export function syntheticLayer(shape: LayerShape, seed = 1): KvLayer {
  const { heads: H, queryHeads: Hq, headDim: D, length: L } = shape;
  // Fill a blank layer's buffers directly instead of appending a gigabyte-sized chunk.
  const layer = KvLayer.blank(H, D, L);
  fillUniform(layer.keys, seed);
  fillUniform(layer.values, seed + 1);
  const modality = llavaModality(L);
  for (let h = 0; h < H; h++) layer.modality.set(modality, h * L);
  const colsum = new Float32Array(Hq * L);
  fillUniform(colsum, seed + 2, 0.5, 0.5);
  layer.accumulate(colsum, Hq);
  return layer;
}
