/**
 * What a built graph reads and writes, by role: the runtime finds its feeds and fetches here
 * (`past_key.3` is "the past keys of layer 3"), so it never spells a graph's names itself and
 * never needs the builder (onnxruntime-genai's IO manifest, in miniature).
 */
import type { ValueSpec } from './onnxBuilder.js';

export type IoRole =
  /** Decoder inputs: the chunk's embeddings, true positions, additive causal mask, SnapKV's observed rows. */
  | 'embeds'
  | 'positions'
  | 'attentionMask'
  | 'windowRows'
  /** Per layer: the past keys / values `[Hkv, P, D]`, and the past slots' true positions (sliding-window layers only). */
  | 'pastKey'
  | 'pastValue'
  | 'pastPosition'
  /** Decoder outputs: the last row's logits, the final norm's output (the LM-head graph's input, whose output is every row's logits), per layer the new keys / values and the attention column sums. */
  | 'lastLogits'
  | 'hidden'
  | 'logits'
  | 'key'
  | 'value'
  /** Per layer, the past followed by the chunk's keys / values `[Hkv, past + chunk, D]` (the next run's past). */
  | 'presentKey'
  | 'presentValue'
  | 'columnSums'
  | 'windowColumnSums'
  /** Image encoder: pixel values in, features (one row per image token) out. */
  | 'pixels'
  | 'imageFeatures'
  /** Qwen2-VL's image encoder, per patch row: its 2-D rotary cos / sin, its image, its attention window. */
  | 'rotaryCos'
  | 'rotarySin'
  | 'imageSegment'
  | 'windowSegment';

export interface ManifestValue extends ValueSpec {
  role: IoRole;
  /** The decoder layer a per-layer value belongs to. */
  layer?: number;
}

export interface GraphManifest {
  graph: string;
  inputs: ManifestValue[];
  outputs: ManifestValue[];
}

/** A serialised ONNX model and its manifest. */
export interface BuiltGraph {
  model: Uint8Array;
  manifest: GraphManifest;
}

/** The one value of `role` (of `layer`) among `values`, or an error naming what the graph lacks. */
export function valueOf(values: readonly ManifestValue[], role: IoRole, layer?: number): ManifestValue {
  const found = values.find((v) => v.role === role && v.layer === layer);
  if (!found) throw new RangeError(`the graph has no ${role}${layer === undefined ? '' : ` of layer ${layer}`} value`);
  return found;
}

/** Per layer, the value of `role` (undefined for a layer without one), `layers` long. */
export function layerValues(values: readonly ManifestValue[], role: IoRole, layers: number): (ManifestValue | undefined)[] {
  return Array.from({ length: layers }, (_, i) => values.find((v) => v.role === role && v.layer === i));
}

/** A numeric dimension of a value (a size the graph fixes), or an error. */
export function fixedDim(value: ManifestValue, axis: number): number {
  const dim = value.dims[axis];
  if (typeof dim !== 'number') throw new RangeError(`${value.name} has a symbolic dimension ${String(dim)} at axis ${axis}`);
  return dim;
}
