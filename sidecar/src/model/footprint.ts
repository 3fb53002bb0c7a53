/**
 * What a checkpoint costs in memory, from its parsed config alone: its parameters (split the way
 * `lookm.weightBits` 4 treats them), the bytes its weights take once loaded, and the bytes its
 * KV cache takes per token. "Download Model…" (client/hub/catalog.ts) and docs/models.md
 * (tools/model/hubTable.ts) show these figures; test/runtime/hubConfigs.test.ts checks the
 * parameter counts against transformers' own models built from the same config.json files.
 */
import { isLlavaConfig, selectedLayerCount, type ModelConfig, type TextConfig, type VisionConfig } from './config.js';

export interface ParameterCounts {
  /** The decoder layers' linear projections (q, k, v, o, gate, up, down) without biases: what 4-bit weights store as blocks. */
  layerProjections: number;
  /** Every other parameter the checkpoint holds: embeddings, LM head, norms, biases, the vision tower, the projector. */
  other: number;
  /** Of `other`, what the runtime never reads: vision layers past the deepest selected hidden state and the tower's post-layernorm. */
  unread: number;
}

/** The checkpoint's parameters: `layerProjections + other` is the count transformers reports for the same config. */
export function countParameters(config: ModelConfig): ParameterCounts {
  const t = config.text;
  const layerProjections = t.numLayers * textLayerProjections(t);
  let other = textOther(t);
  let unread = 0;
  if (isLlavaConfig(config)) {
    const v = config.vision;
    const layer = visionLayer(v);
    const unreadLayers = v.numLayers - selectedLayerCount(v.numLayers, config.visionFeatureLayers);
    other += visionEmbeddings(v) + v.numLayers * layer + 2 * v.hiddenSize;
    unread = unreadLayers * layer + 2 * v.hiddenSize;
    const features = v.hiddenSize * config.visionFeatureLayers.length;
    const bias = config.projectorBias ? 1 : 0;
    other += (features + bias) * t.hiddenSize + (t.hiddenSize + bias) * t.hiddenSize;
  }
  return { layerProjections, other, unread };
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

/** One encoder layer of a CLIP or SigLIP tower: attention and MLP with biases, two layer norms. */
function visionLayer(v: VisionConfig): number {
  const h = v.hiddenSize;
  return 4 * (h * h + h) + 2 * h * v.intermediateSize + v.intermediateSize + h + 4 * h;
}

/**
 * The patch embedding and position table (CLIP: no conv bias, a class embedding and a
 * pre-layernorm). SigLIP's pooling head is not counted: the LLaVA checkpoints set vision_use_head false.
 */
function visionEmbeddings(v: VisionConfig): number {
  const h = v.hiddenSize;
  const grid = Math.floor(v.imageSize / v.patchSize) ** 2;
  const conv = v.numChannels * v.patchSize ** 2 * h;
  if (v.modelType === 'clip_vision_model') return conv + h + (grid + 1) * h + 2 * h;
  return conv + h + grid * h;
}

/** Bytes per parameter of a 4-bit projection: 4 bits plus a float32 scale per block of 32 (MatMulNBits, no zero points). */
export const Q4_BYTES_PER_PARAMETER = 0.5 + 4 / 32;

/**
 * Bytes the weights take once loaded at `weightBits` (32: float32 throughout; 4: the layer
 * projections in 4-bit blocks, everything else float32). The runtime keeps the token embedding
 * table in float32 for lookups beside the graph's LM head, so a tied checkpoint holds that table
 * twice; vision layers it never reads are not loaded.
 */
export function weightBytes(config: ModelConfig, weightBits: 32 | 4): number {
  const counts = countParameters(config);
  const t = config.text;
  const lookupTable = t.tieWordEmbeddings ? t.vocabSize * t.hiddenSize : 0;
  const float32 = counts.other - counts.unread + lookupTable;
  const projections = counts.layerProjections * (weightBits === 4 ? Q4_BYTES_PER_PARAMETER : 4);
  return float32 * 4 + projections;
}

/** Bytes of float32 KV cache per token: keys and values of every layer's key/value heads. */
export function kvBytesPerToken(config: ModelConfig): number {
  const t = config.text;
  return t.numLayers * t.numKvHeads * t.headDim * 2 * 4;
}
