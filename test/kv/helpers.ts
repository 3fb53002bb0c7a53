/** Seeded random layers for property tests. */
import { createLayer, TEXT, type KvLayer } from '../../sidecar/src/kv/index.js';
import { mulberry32 } from '../../sidecar/src/kv/index.js';

export interface RandomLayerSpec {
  seed: number;
  numHeads?: number;
  numQueryHeads?: number;
  headDim?: number;
  length?: number;
  /** Fraction of slots that belong to images (in 1..4 spans). */
  imageShare?: number;
  firstPosition?: number;
}

export function gaussian(next: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}

/** Modality tags: text with up to four image spans in between. */
export function randomModality(next: () => number, length: number, imageShare: number): Int32Array {
  const modality = new Int32Array(length).fill(TEXT);
  const images = 1 + Math.floor(next() * 4);
  const perImage = Math.floor((length * imageShare) / images);
  const gap = Math.floor((length - perImage * images) / (images + 1));
  for (let i = 0; i < images; i++) {
    const start = gap * (i + 1) + perImage * i;
    modality.fill(i, start, start + perImage);
  }
  return modality;
}

/** A fresh prefill: random keys/values, positions 0..L-1 (or from `firstPosition`), random positive scores. */
export function randomLayer(spec: RandomLayerSpec): { layer: KvLayer; queries: Float32Array; numQueryHeads: number } {
  const next = mulberry32(spec.seed);
  const normal = gaussian(next);
  const H = spec.numHeads ?? 1 + Math.floor(next() * 4);
  const Hq = spec.numQueryHeads ?? H;
  const D = spec.headDim ?? 4 + Math.floor(next() * 12);
  const L = spec.length ?? 8 + Math.floor(next() * 120);
  const modality = randomModality(next, L, spec.imageShare ?? next());
  const layer = createLayer(H, D);
  layer.append({
    keys: Float32Array.from({ length: H * L * D }, normal),
    values: Float32Array.from({ length: H * L * D }, normal),
    positions: Int32Array.from({ length: L }, (_, j) => (spec.firstPosition ?? 0) + j),
    modality,
  });
  layer.accumulate(Float32Array.from({ length: Hq * L }, () => next() * 4), Hq);
  const queries = Float32Array.from({ length: Hq * L * D }, normal);
  return { layer, queries, numQueryHeads: Hq };
}

/** A deep copy, so one input can be compressed two ways. */
export function cloneLayer(layer: KvLayer): KvLayer {
  return layer.clone();
}
