/**
 * A toy architecture, `ToyGeluForCausalLM`, added from this folder alone: a causal LM whose
 * decoder swaps Llama's RMSNorm for LayerNorm (with bias) and its SwiGLU MLP for a two-layer GELU
 * MLP (`fc1`, `fc2`), composed from the runtime's graph pieces, with weights named
 * `transformer.*`. Registered by the test in one line: `registerArchitecture(TOY_NAME, toyGelu)`.
 */
import type { Architecture } from '../../../sidecar/src/model/architectures/architecture.js';
import { decoderSession } from '../../../sidecar/src/model/architectures/decoderSession.js';
import type { DecoderBlocksFactory } from '../../../sidecar/src/model/text/decoderGraph.js';
import { twoLayerMlp } from '../../../sidecar/src/model/graph/layers/mlp.js';
import { layerNorm } from '../../../sidecar/src/model/graph/layers/norms.js';
import { parseToyConfig, type ToyConfig } from './config.js';

export const TOY_NAME = 'ToyGeluForCausalLM';

/** LayerNorm before attention, before the MLP and at the end; a GELU MLP. */
const toyBlocks = (config: ToyConfig): DecoderBlocksFactory => (context, text, linear) => ({
  norm: (x, prefix, name) => layerNorm(context, x, prefix, text.hiddenSize, config.layerNormEps, name),
  mlp: (x, prefix, name) => twoLayerMlp(context.g, linear, x, prefix, text.hiddenSize, text.intermediateSize, config.hiddenAct, name),
});

export const toyGelu: Architecture<ToyConfig> = {
  parseConfig: parseToyConfig,
  weightPrefixes: [
    ['transformer.', 'text.'],
    ['lm_head.', 'text.lm_head.'],
  ],
  minimumParameters: ({ text: t }) => t.vocabSize * t.hiddenSize + t.numLayers * (2 * t.hiddenSize * t.intermediateSize),
  imageInput: () => null,
  sessions: (config, options) => [decoderSession(config.text, options, toyBlocks(config))],
};
