/**
 * Qwen2 (`Qwen2Config`): biases on q/k/v always, never on the output projection. A window only
 * with `use_sliding_window`, then on the layers `layer_types` marks `sliding_attention`, or
 * without layer_types those from `max_window_layers` (default 28) on.
 */
import { CheckpointError } from '../../checkpointError.js';
import { configuredWindow, type TextModel } from './textModel.js';

export const qwen2: TextModel = {
  defaults: { vocabSize: 151936, hiddenSize: 4096, intermediateSize: 22016, numLayers: 32, numHeads: 32, numKvHeads: 32, maxPositions: 32768, slidingWindow: 4096 },
  biases: () => ({ qkvBias: true, outputBias: false, mlpBias: false }),
  layerWindows(t, numLayers, at) {
    const window = t.use_sliding_window === true ? configuredWindow(t, qwen2.defaults) : null;
    const types = t.layer_types ?? Array.from({ length: numLayers }, (_, i) => (window !== null && i >= (t.max_window_layers ?? 28) ? 'sliding_attention' : 'full_attention'));
    if (types.length !== numLayers) throw new CheckpointError(`config.json: ${at}layer_types has ${types.length} entries for ${numLayers} layers`);
    return types.map((type, i) => {
      if (type === 'full_attention') return null;
      if (window === null) throw new CheckpointError(`config.json: ${at}layer_types makes layer ${i} sliding_attention, but no sliding_window applies (use_sliding_window is not true, or sliding_window is null)`);
      return window;
    });
  },
};
