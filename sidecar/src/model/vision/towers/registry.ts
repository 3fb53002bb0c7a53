/** The vision towers, by `model_type`: one line each. */
import { clip } from './clip.js';
import { idefics3Vision } from './idefics3.js';
import { siglip } from './siglip.js';
import type { VisionTower } from './visionTower.js';

export const VISION_TOWERS = {
  clip_vision_model: clip,
  siglip_vision_model: siglip,
  idefics3_vision: idefics3Vision,
} as const satisfies Record<string, VisionTower>;

export type VisionModelType = keyof typeof VISION_TOWERS;
export const VISION_MODEL_TYPES = Object.keys(VISION_TOWERS) as [VisionModelType, ...VisionModelType[]];
