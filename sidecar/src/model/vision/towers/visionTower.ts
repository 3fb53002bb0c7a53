/**
 * A vision tower type (`model_type` of a vision_config: CLIP's, SigLIP's): transformers' defaults
 * for the fields a config.json leaves out, and its embeddings (the part where towers differ; the
 * encoder layers are shared, see `visionGraph.ts`). The table of them is `registry.ts`.
 */
import type { VisionConfig } from '../../config.js';
import type { GraphContext } from '../../graph/layers/context.js';

export interface VisionTowerDefaults {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  imageSize: number;
  patchSize: number;
  layerNormEps: number;
  hiddenAct: string;
}

export interface VisionTower {
  /** transformers' `<Tower>VisionConfig()` defaults (4.57). */
  defaults: VisionTowerDefaults;
  /** Positions of the tower's hidden states per image: its patches and any class token. */
  positions(v: VisionConfig): number;
  /** `[images, positions, hidden]`: the embeddings of `pixels` (hidden state 0). */
  embed(context: GraphContext, v: VisionConfig, pixels: string): string;
}
