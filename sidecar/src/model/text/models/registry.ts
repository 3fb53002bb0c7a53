/** The text model types, by `model_type`: one line each (the model's file says what differs). */
import { llama } from './llama.js';
import { mistral } from './mistral.js';
import { qwen2 } from './qwen2.js';
import type { TextModel } from './textModel.js';

export const TEXT_MODELS = {
  llama,
  mistral,
  qwen2,
} as const satisfies Record<string, TextModel>;

export type TextModelType = keyof typeof TEXT_MODELS;
export const TEXT_MODEL_TYPES = Object.keys(TEXT_MODELS) as [TextModelType, ...TextModelType[]];
