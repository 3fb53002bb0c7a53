/** Llama (`LlamaConfig`): no sliding window; `attention_bias` on every attention projection, `mlp_bias` on the MLP's. */
import type { TextModel } from './textModel.js';

export const llama: TextModel = {
  defaults: { vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: null, maxPositions: 2048, slidingWindow: null },
  biases: (t) => ({ qkvBias: t.attention_bias === true, outputBias: t.attention_bias === true, mlpBias: t.mlp_bias === true }),
  layerWindows: (_t, numLayers) => new Array<null>(numLayers).fill(null),
};
