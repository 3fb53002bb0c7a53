/**
 * A text model type (`model_type` of a decoder: llama, mistral, qwen2): transformers' defaults for
 * the fields a config.json leaves out, which projections carry biases, each layer's attention
 * window, and the decoder's blocks. The LLaVA and causal-LM architectures compose these; the
 * table of them is `registry.ts`.
 */
import type { DecoderBlocksFactory } from '../decoderGraph.js';
import type { RawText } from '../textConfig.js';

export interface TextModelDefaults {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** null: as many as attention heads. */
  numKvHeads: number | null;
  maxPositions: number;
  /** The window `sliding_window` defaults to (whether it applies is the model type's rule). */
  slidingWindow: number | null;
}

export interface TextModel {
  /** transformers' `<Type>Config()` defaults (4.57). */
  defaults: TextModelDefaults;
  biases(t: RawText): { qkvBias: boolean; outputBias: boolean; mlpBias: boolean };
  /** Per layer, the sliding window or null (`at`: where the fields sit in config.json, for errors). */
  layerWindows(t: RawText, numLayers: number, at: string): (number | null)[];
  /** The decoder's norm and MLP (default: Llama's RMSNorm and SwiGLU). */
  blocks?: DecoderBlocksFactory;
}

/** `sliding_window` as config.json gives it (null: none), else the model type's default. */
export function configuredWindow(t: RawText, defaults: TextModelDefaults): number | null {
  return t.sliding_window === undefined ? defaults.slidingWindow : t.sliding_window;
}
