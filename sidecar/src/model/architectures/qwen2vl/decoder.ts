/**
 * The Qwen2-VL / Qwen2.5-VL language model: Qwen2's decoder (RMSNorm, SwiGLU, q/k/v biases, GQA)
 * with multimodal rotary embeddings. `position_ids [3, chunk]` gives each token's temporal, height
 * and width position (`positions.ts`); each rotary frequency reads one of them: the first
 * mrope_section[0] frequencies the temporal one, the next mrope_section[1] the height, the rest
 * the width (transformers' `apply_multimodal_rotary_pos_emb`, the same split on both halves).
 * Keys leave the graph rotated, so a cached slot needs no position to be attended again.
 */
import type { TextConfig } from '../../config.js';
import type { GraphBuilder } from '../../graph/onnxBuilder.js';
import { buildDecoderGraph, llamaBlocks, type DecoderRope } from '../../text/decoderGraph.js';
import { ropeInverseFrequencies } from '../../text/rope.js';
import type { BuildOptions, SessionSpec } from '../architecture.js';
import type { Qwen2VLTextConfig } from './config.js';

/** The shared decoder's config for the Qwen2-VL text model. */
export function decoderTextConfig(t: Qwen2VLTextConfig): TextConfig {
  return {
    modelType: 'qwen2',
    hiddenSize: t.hiddenSize,
    numLayers: t.numLayers,
    numHeads: t.numHeads,
    numKvHeads: t.numKvHeads,
    headDim: t.headDim,
    intermediateSize: t.intermediateSize,
    rmsNormEps: t.rmsNormEps,
    ropeTheta: t.ropeTheta,
    ropeScaling: null,
    vocabSize: t.vocabSize,
    maxPositionEmbeddings: t.maxPositionEmbeddings,
    tieWordEmbeddings: t.tieWordEmbeddings,
    qkvBias: true,
    outputBias: false,
    mlpBias: false,
    layerWindows: Array<null>(t.numLayers).fill(null),
  };
}

/** M-RoPE: `position_ids [3, chunk]`, frequency f reading the component its section names. */
export function mrope(section: readonly [number, number, number]): DecoderRope {
  return {
    input: { name: 'position_ids', type: 'int64', dims: [3, 'chunk'], role: 'positions' },
    angles(g: GraphBuilder, config: TextConfig): string {
      const half = config.headDim / 2;
      const component = Array.from({ length: half }, (_, f) => (f < section[0] ? 0 : f < section[0] + section[1] ? 1 : 2));
      const positions = g.op('Transpose', [g.op('Cast', ['position_ids'], { to: 1 }, '/rope/positions')], { perm: [1, 0] }, '/rope/per_token');
      const chosen = g.op('Gather', [positions, g.ints(component)], { axis: 1 }, '/rope/sections');
      return g.op('Mul', [chosen, g.vector('rope_inv_freq', ropeInverseFrequencies(config))], {}, '/rope/angles');
    },
  };
}

export function qwen2VLDecoderSession(t: Qwen2VLTextConfig, options: BuildOptions): Extract<SessionSpec, { role: 'decoder' }> {
  const text = decoderTextConfig(t);
  return { role: 'decoder', embeddingTable: 'text.embed_tokens.weight', build: (weights) => buildDecoderGraph(text, weights, options, llamaBlocks, mrope(t.mropeSection)) };
}
