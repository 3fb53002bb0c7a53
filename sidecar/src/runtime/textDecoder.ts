/**
 * The text decoder session: token embeddings, and one forward pass over a chunk of new tokens on
 * top of a past cache of any length with explicit positions.
 */
import * as ort from 'onnxruntime-node';
import { ErrorCode } from '../protocol/index.js';
import { SidecarError } from '../protocol/errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { TextConfig } from '../model/config.js';
import { buildDecoderGraph, type WeightBits } from '../model/text/decoderGraph.js';
import { WeightPool } from '../model/graph/weightPool.js';
import type { TensorRows } from '../model/tensorRows.js';
import { createSession, type SessionOptions } from './weights.js';

export interface PastLayer {
  /** `[numKvHeads, length, headDim]`, post-RoPE. */
  keys: Float32Array;
  values: Float32Array;
  length: number;
}

export interface DecoderOutput {
  /** `[S, vocab]`, or `[1, vocab]` for the last token only unless `allLogits` was asked for. */
  logits: Float32Array;
  /** Per layer, the chunk's new keys and values `[numKvHeads, S, headDim]` and column sums `[numHeads, past + S]`. */
  keys: Float32Array[];
  values: Float32Array[];
  colsums: Float32Array[];
  /** Per layer, `[numHeads, past + S]` column sums over the chunk's last `windowRows` rows (null when none were asked for). */
  windowColsums: Float32Array[] | null;
}

/** Additive mask: every past slot is visible, the chunk is causal. */
export function chunkMask(chunk: number, past: number): Float32Array {
  const total = past + chunk;
  const mask = new Float32Array(chunk * total);
  for (let r = 0; r < chunk; r++) mask.fill(-Infinity, r * total + past + r + 1, (r + 1) * total);
  return mask;
}

export class TextDecoder {
  private constructor(
    readonly config: TextConfig,
    private readonly session: ort.InferenceSession,
    /** The token embedding table, read row by row from the checkpoint's file (no copy held here). */
    private readonly embeddings: TensorRows,
  ) {}

  static async create(checkpoint: Checkpoint, options: SessionOptions & { weightBits?: WeightBits }): Promise<TextDecoder> {
    const { text } = checkpoint.config;
    const weights = new WeightPool(checkpoint);
    const graph = buildDecoderGraph(text, weights, options.weightBits);
    const session = await createSession(graph.model, weights, options);
    const embeddings = checkpoint.rows('text.embed_tokens.weight', [text.vocabSize, text.hiddenSize]);
    return new TextDecoder(text, session, embeddings);
  }

  /** `[ids.length, hidden]` embeddings of token ids. */
  embed(ids: ArrayLike<number>): Float32Array {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(Number.isInteger(id) && id >= 0 && id < this.config.vocabSize)) throw new SidecarError(ErrorCode.TokenOutOfRange, `token id ${id} is outside the model's vocabulary (0..${this.config.vocabSize - 1}): the conversation does not belong to this model or its saved state is corrupt; clear the conversation`);
    }
    return this.embeddings.read(ids);
  }

  /** Whether `forward` needs the past slots' true positions (some layer has a sliding window). */
  get needsPastPositions(): boolean {
    return this.config.layerWindows.some((window) => window !== null);
  }

  /**
   * Runs a chunk on top of `past`. Only the last token's logits are computed unless `allLogits`
   * (a prefill chunk would otherwise pay a [chunk, vocab] product it never reads). `windowRows`:
   * how many of the chunk's last query rows SnapKV observes (their column sums come back).
   * `pastPositions`: per layer `[Hkv, P]`, the true position of every past slot; needed when a
   * layer has a sliding window and the past is not empty (see `needsPastPositions`).
   */
  async forward(
    embeds: Float32Array,
    positions: ArrayLike<number>,
    past: PastLayer[],
    options: { mask?: Float32Array; allLogits?: boolean; windowRows?: number; pastPositions?: Int32Array[] } = {},
  ): Promise<DecoderOutput> {
    const { hiddenSize: E, numKvHeads: Hkv, headDim: D, numLayers } = this.config;
    const S = positions.length;
    if (embeds.length !== S * E) throw new RangeError(`inputs_embeds must be [${S}, ${E}], got ${embeds.length} values`);
    if (past.length !== numLayers) throw new RangeError(`expected a past for each of ${numLayers} layers, got ${past.length}`);
    const P = past[0].length;
    const windowRows = options.windowRows ?? 0;
    if (!(Number.isInteger(windowRows) && windowRows >= 0 && windowRows <= S)) throw new RangeError(`windowRows must be an integer in 0..${S} (the chunk's rows), got ${windowRows}`);
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [S, E]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(Array.from(positions, BigInt)), [S]),
      attention_mask: new ort.Tensor('float32', options.mask ?? chunkMask(S, P), [S, P + S]),
      window_rows: new ort.Tensor('int64', BigInt64Array.of(BigInt(windowRows)), [1]),
    };
    past.forEach((layer, i) => {
      if (layer.length !== P || layer.keys.length !== Hkv * P * D || layer.values.length !== Hkv * P * D) {
        throw new RangeError(`past of layer ${i} must be [${Hkv}, ${P}, ${D}] like layer 0`);
      }
      feeds[`past_key.${i}`] = new ort.Tensor('float32', layer.keys, [Hkv, P, D]);
      feeds[`past_value.${i}`] = new ort.Tensor('float32', layer.values, [Hkv, P, D]);
      if (this.config.layerWindows[i] === null) return;
      const slots = P === 0 ? new Int32Array(0) : options.pastPositions?.[i];
      if (slots?.length !== Hkv * P) throw new RangeError(`layer ${i} has a sliding window: pastPositions must give the true position of each of its ${Hkv} x ${P} past slots`);
      feeds[`past_position.${i}`] = new ort.Tensor('int64', BigInt64Array.from(slots, BigInt), [Hkv, P]);
    });
    const layers = Array.from({ length: numLayers }, (_, i) => i);
    const logitsName = options.allLogits ? 'logits' : 'last_logits';
    const fetches = [logitsName, ...layers.flatMap((i) => [`key.${i}`, `value.${i}`, `colsum.${i}`, ...(windowRows > 0 ? [`window_colsum.${i}`] : [])])];
    const out = await this.session.run(feeds, fetches);
    return {
      logits: out[logitsName].data as Float32Array,
      keys: layers.map((i) => out[`key.${i}`].data as Float32Array),
      values: layers.map((i) => out[`value.${i}`].data as Float32Array),
      colsums: layers.map((i) => out[`colsum.${i}`].data as Float32Array),
      windowColsums: windowRows > 0 ? layers.map((i) => out[`window_colsum.${i}`].data as Float32Array) : null,
    };
  }

  /** An empty past for every layer. */
  emptyPast(): PastLayer[] {
    return Array.from({ length: this.config.numLayers }, () => ({ keys: new Float32Array(0), values: new Float32Array(0), length: 0 }));
  }

  async release(): Promise<void> {
    this.embeddings.close();
    await this.session.release();
  }
}
