/**
 * What a checkpoint costs in memory, from its parsed config alone: its parameters (split the way
 * `lookm.weightBits` 4 treats them), the bytes its weights take once loaded, and the bytes its
 * KV cache takes per token. "Download Model…" (client/hub/catalog.ts) and docs/models.md
 * (tools/model/hubTable.ts) show these figures; test/runtime/hubConfigs.test.ts checks the
 * parameter counts against transformers' own models built from the same config.json files.
 */
import { architectureFor } from './architectures/registry.js';
import { bytesPerParameter } from './graph/quantize.js';
import { lmHeadBits } from './text/decoderGraph.js';
import type { ModelConfig, TextConfig } from './config.js';

export interface ParameterCounts {
  /** The decoder layers' linear projections (q, k, v, o, gate, up, down) without biases: what 4-bit weights store as blocks. */
  layerProjections: number;
  /** Every other parameter the checkpoint holds: embeddings, LM head, norms, biases, the vision tower, the projector. */
  other: number;
  /** Of `other`, what the runtime never reads: vision layers past the deepest selected hidden state and the tower's post-layernorm. */
  unread: number;
  /** Of `other`, the LM head's matrix (the embedding table when tied): what 8-bit weights quantize besides the projections. */
  lmHead: number;
}

/** The checkpoint's parameters: `layerProjections + other` is the count transformers reports for the same config. */
export function countParameters(config: ModelConfig): ParameterCounts {
  const t = config.text;
  const layerProjections = t.numLayers * textLayerProjections(t);
  const image = architectureFor(config.architecture).imageSideParameters?.(config) ?? { read: 0, unread: 0 };
  const other = textOther(t) + image.read + image.unread;
  const unread = image.unread;
  return { layerProjections, other, unread, lmHead: t.vocabSize * t.hiddenSize };
}

function textLayerProjections(t: TextConfig): number {
  const attention = t.hiddenSize * t.headDim * 2 * (t.numHeads + t.numKvHeads);
  return attention + 3 * t.hiddenSize * t.intermediateSize;
}

/** Embeddings, LM head (unless tied), norms and biases of the text model. */
function textOther(t: TextConfig): number {
  const qkvBias = t.qkvBias ? t.headDim * (t.numHeads + 2 * t.numKvHeads) : 0;
  const outputBias = t.outputBias ? t.hiddenSize : 0;
  const mlpBias = t.mlpBias ? 2 * t.intermediateSize + t.hiddenSize : 0;
  const perLayer = 2 * t.hiddenSize + qkvBias + outputBias + mlpBias;
  const embeddings = t.vocabSize * t.hiddenSize * (t.tieWordEmbeddings ? 1 : 2);
  return embeddings + t.numLayers * perLayer + t.hiddenSize;
}

/**
 * Bytes the weights take once loaded at `weightBits` (32: float32 throughout; 8: the layer
 * projections and the LM head in 8-bit blocks; 4: the layer projections in 4-bit blocks;
 * everything else float32). Token embeddings are read from the
 * checkpoint's file row by row (no second copy beside the graph's LM head); vision layers it never
 * reads are not loaded.
 */
export function weightBytes(config: ModelConfig, weightBits: 32 | 8 | 4): number {
  const counts = countParameters(config);
  const head = lmHeadBits(weightBits) === 32 ? 0 : counts.lmHead;
  const float32 = counts.other - counts.unread - head;
  const projections = (counts.layerProjections + head) * bytesPerParameter(weightBits);
  return float32 * 4 + projections;
}

/** Bytes of float32 KV cache per token: keys and values of every layer's key/value heads. */
export function kvBytesPerToken(config: ModelConfig): number {
  const t = config.text;
  return t.numLayers * t.numKvHeads * t.headDim * 2 * 4;
}
