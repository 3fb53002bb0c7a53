/**
 * The normalised config every part of the runtime reads (never raw Hugging Face field names):
 * the decoder's `TextConfig` every architecture has, a vision tower's `VisionConfig`, and the
 * limits and error wording the config schemas share. Each architecture parses its own
 * config.json (`architectures/<family>/`); `architectures/registry.ts` picks the architecture
 * from `architectures[0]`.
 */
import { z } from 'zod';

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface TextConfig {
  /** The decoder's `model_type` (`text/models/registry.ts`). */
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  vocabSize: number;
  /** The context length: positions 0 .. maxPositionEmbeddings - 1 (prompt and answers together). */
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Bias on the q/k/v projections (Qwen2 always; Llama with `attention_bias`). */
  qkvBias: boolean;
  /** Bias on the output projection (Llama's `attention_bias` covers it too). */
  outputBias: boolean;
  /** Bias on the MLP's gate, up and down projections (Llama's `mlp_bias`). */
  mlpBias: boolean;
  /**
   * Per layer, the sliding attention window (a query at position q sees keys at positions
   * k with q - window < k <= q, as transformers' `sliding_window_overlay`), or null: full attention.
   */
  layerWindows: (number | null)[];
}

export interface VisionConfig {
  /** The tower's `model_type` (`vision/towers/registry.ts`). */
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  hiddenAct: string;
}

/**
 * What every architecture's config has: its name (`architectures[0]`) and its decoder, whose
 * layers are the KV engine's layers. `vision` is the image side's config when the model reads
 * images (its shape is the architecture's), null when it reads text only.
 */
export interface ModelConfig {
  architecture: string;
  text: TextConfig;
  vision: object | null;
}

const positive = z.number().int().positive();

/**
 * Upper bounds on config.json's sizes, each well above any published model's (Llama 3.1 405B:
 * hidden 16384, 126 layers, 128 heads, intermediate 53248; Gemma 3: 262,144-token vocabulary;
 * Llama 4 Scout: 10M positions; SigLIP: 896-pixel images). A value past them is a typo or an
 * attack: graphs and tables are sized from these fields, so they are refused before anything is
 * allocated (a head_dim of 1e9 once took 280 s and 3.6 GB before failing).
 */
export const CONFIG_LIMITS = {
  hiddenSize: 65_536,
  layers: 1024,
  heads: 1024,
  headDim: 1024,
  intermediateSize: 262_144,
  vocabSize: 4_194_304,
  positions: 16_777_216,
  imageSize: 4096,
  patchSize: 1024,
  /** Patches per image, (image_size / patch_size)^2: each becomes a prompt token. */
  patches: 16_384,
} as const;

/** A positive integer at most `max` (one of CONFIG_LIMITS). */
export const size = (max: number) => positive.max(max);

/** A config value for an error message: short names are quoted, anything else only described. */
export function shown(value: unknown): string {
  if (typeof value === 'string') return /^[\w.-]{1,64}$/.test(value) ? JSON.stringify(value) : `a ${value.length}-character string`;
  if (value === undefined || value === null || typeof value === 'number' || typeof value === 'boolean') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}
