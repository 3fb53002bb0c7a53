/** Mistral (`MistralConfig`): every layer attends through `sliding_window` (default 4096; null: none). */
import { configuredWindow, type TextModel } from './textModel.js';

export const mistral: TextModel = {
  defaults: { vocabSize: 32000, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32, numKvHeads: 8, maxPositions: 4096 * 32, slidingWindow: 4096 },
  biases: (t) => ({ qkvBias: t.attention_bias === true, outputBias: t.attention_bias === true, mlpBias: false }),
  layerWindows: (t, numLayers) => new Array<number | null>(numLayers).fill(configuredWindow(t, mistral.defaults)),
};
