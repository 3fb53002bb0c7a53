/**
 * The text decoder session: token embeddings, and one forward pass over a chunk of new tokens on
 * top of a past cache of any length with explicit positions. The graph is the architecture's
 * (`SessionSpec` of role `decoder`); its feeds and fetches are found by role in its manifest.
 */
import * as ort from 'onnxruntime-node';
import { ErrorCode } from '../protocol/index.js';
import { SidecarError } from '../protocol/errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { SessionSpec } from '../model/architectures/architecture.js';
import { architectureFor } from '../model/architectures/registry.js';
import type { TextConfig } from '../model/config.js';
import type { WeightBits } from '../model/graph/layers/linear.js';
import { fixedDim, layerValues, valueOf, type GraphManifest, type IoRole } from '../model/graph/manifest.js';
import { WeightPool } from '../model/graph/weightPool.js';
import { buildLmHeadGraph } from '../model/text/decoderGraph.js';
import type { TensorRows } from '../model/tensorRows.js';
import { graphOptionsFor } from './device.js';
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
  /**
   * Per layer, the chunk's new keys and values `[numKvHeads, S, headDim]`, and column sums
   * `[numKvHeads, past + S]`: the attention each key received from the chunk's rows, summed over
   * the query heads of its KV group.
   */
  keys: Float32Array[];
  values: Float32Array[];
  colsums: Float32Array[];
  /** Per layer, `[numHeads, past + S]` column sums over the chunk's last `windowRows` rows (null when none were asked for). */
  windowColsums: Float32Array[] | null;
}

/** One layer's past as device tensors `[numKvHeads, length, headDim]` (a device-resident cache's rows). */
export interface DevicePastLayer {
  keys: ort.Tensor;
  values: ort.Tensor;
  length: number;
}

/** A run on a device-resident past: the new past stays on the device, only the small outputs come back. */
export interface DeviceDecoderOutput {
  logits: Float32Array;
  /** Per layer, the past followed by the chunk's rows, `[numKvHeads, past + S, headDim]`, where the session left them (the device). */
  presentKeys: ort.Tensor[];
  presentValues: ort.Tensor[];
  colsums: Float32Array[];
  windowColsums: Float32Array[] | null;
}

/** Additive mask: every past slot is visible, the chunk is causal. */
export function chunkMask(chunk: number, past: number): Float32Array {
  const total = past + chunk;
  const mask = new Float32Array(chunk * total);
  for (let r = 0; r < chunk; r++) mask.fill(-Infinity, r * total + past + r + 1, (r + 1) * total);
  return mask;
}

/** The decoder's sizes, as its graph declares them. */
export interface DecoderShape {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
}

/** The graph's value names by role (`pastPosition[i]` undefined: layer i has no sliding window). */
interface DecoderIo {
  embeds: string;
  positions: string;
  attentionMask: string;
  windowRows: string;
  pastKey: string[];
  pastValue: string[];
  pastPosition: (string | undefined)[];
  hidden: string;
  lastLogits: string;
  key: string[];
  value: string[];
  presentKey: string[];
  presentValue: string[];
  columnSums: string[];
  windowColumnSums: string[];
}

function decoderIo({ inputs, outputs }: GraphManifest): { io: DecoderIo; shape: DecoderShape } {
  const numLayers = inputs.filter((v) => v.role === 'pastKey').length;
  const every = (values: typeof inputs, role: IoRole) => Array.from({ length: numLayers }, (_, i) => valueOf(values, role, i).name);
  const present = (values: typeof outputs, role: IoRole) => (values.some((v) => v.role === role) ? every(values, role) : []);
  const pastKey = valueOf(inputs, 'pastKey', 0);
  const io: DecoderIo = {
    embeds: valueOf(inputs, 'embeds').name,
    positions: valueOf(inputs, 'positions').name,
    attentionMask: valueOf(inputs, 'attentionMask').name,
    windowRows: valueOf(inputs, 'windowRows').name,
    pastKey: every(inputs, 'pastKey'),
    pastValue: every(inputs, 'pastValue'),
    pastPosition: layerValues(inputs, 'pastPosition', numLayers).map((v) => v?.name),
    hidden: valueOf(outputs, 'hidden').name,
    lastLogits: valueOf(outputs, 'lastLogits').name,
    key: every(outputs, 'key'),
    value: every(outputs, 'value'),
    // Outputs only of a graph built for a device-resident cache (`presentOutputs`).
    presentKey: present(outputs, 'presentKey'),
    presentValue: present(outputs, 'presentValue'),
    columnSums: every(outputs, 'columnSums'),
    windowColumnSums: every(outputs, 'windowColumnSums'),
  };
  const shape: DecoderShape = {
    hiddenSize: fixedDim(valueOf(inputs, 'embeds'), 1),
    numLayers,
    // Window column sums are [Hkv, group, total]: one row per query head.
    numHeads: fixedDim(valueOf(outputs, 'windowColumnSums', 0), 0) * fixedDim(valueOf(outputs, 'windowColumnSums', 0), 1),
    numKvHeads: fixedDim(pastKey, 0),
    headDim: fixedDim(pastKey, 2),
    vocabSize: fixedDim(valueOf(outputs, 'lastLogits'), 1),
  };
  return { io, shape };
}

export class TextDecoder {
  private readonly io: DecoderIo;
  readonly shape: DecoderShape;
  /** Position components per token the graph reads: 1, or 3 for M-RoPE (`[3, chunk]`). */
  readonly positionRows: number;
  /** The LM head over every row (`allLogits`), created on the first request that wants it. */
  private lmHead: Promise<{ session: ort.InferenceSession; input: string; output: string }> | undefined;

  private constructor(
    readonly config: TextConfig,
    private readonly session: ort.InferenceSession,
    /** The token embedding table, read row by row from the checkpoint's file (no copy held here). */
    private readonly embeddings: TensorRows,
    manifest: GraphManifest,
    private readonly checkpoint: Checkpoint,
    /** `weightBits`: the decoder's, so the every-row LM head computes at the same precision as `last_logits`. */
    private readonly options: SessionOptions & { weightBits?: WeightBits },
    /** The past is fed and the present kept as device tensors (WebGPU): `forwardOnDevice`. */
    readonly onDevice = false,
  ) {
    ({ io: this.io, shape: this.shape } = decoderIo(manifest));
    const dims = valueOf(manifest.inputs, 'positions').dims;
    this.positionRows = dims.length === 2 ? fixedDim(valueOf(manifest.inputs, 'positions'), 0) : 1;
  }

  /** The decoder of the checkpoint's architecture. */
  static async create(checkpoint: Checkpoint, options: SessionOptions & { weightBits?: WeightBits }): Promise<TextDecoder> {
    const sessions = architectureFor(checkpoint.config.architecture).sessions(checkpoint.config, graphOptionsFor(options.provider ?? 'cpu', options.weightBits));
    const spec = sessions.find((s) => s.role === 'decoder');
    if (!spec) throw new Error(`architecture ${checkpoint.config.architecture} lists no decoder session`);
    return TextDecoder.fromSpec(checkpoint, spec, options);
  }

  /** The decoder `spec` builds, its session created with the weights the graph registered. */
  static async fromSpec(checkpoint: Checkpoint, spec: Extract<SessionSpec, { role: 'decoder' }>, options: SessionOptions & { weightBits?: WeightBits }): Promise<TextDecoder> {
    const { text } = checkpoint.config;
    const weights = new WeightPool(checkpoint);
    const graph = spec.build(weights);
    const onDevice = options.provider === 'webgpu';
    // On the device the present K/V stay there (the next run's past); logits and column sums come back.
    const present = onDevice ? decoderIo(graph.manifest) : null;
    if (present && present.io.presentKey.length !== present.shape.numLayers) {
      throw new Error(`the decoder graph of ${checkpoint.config.architecture} was built without its present K/V outputs, which a cache on the device reads (build it with presentOutputs)`);
    }
    const deviceOutputs = present ? [...present.io.presentKey, ...present.io.presentValue] : [];
    const session = await createSession(graph.model, weights, options, deviceOutputs);
    if (present) {
      // onnxruntime-node places outputs by fetch position, not by name: the device outputs must be the graph's first (decoderGraph.ts).
      const first = new Set(session.outputNames.slice(0, deviceOutputs.length));
      if (!deviceOutputs.every((name) => first.has(name))) {
        await session.release();
        throw new Error(`the decoder graph of ${checkpoint.config.architecture} must list its present K/V outputs first to keep them on the device (it lists ${session.outputNames.slice(0, 4).join(', ')}, ...)`);
      }
    }
    const embeddings = checkpoint.rows(spec.embeddingTable, [text.vocabSize, text.hiddenSize]);
    return new TextDecoder(text, session, embeddings, graph.manifest, checkpoint, options, onDevice);
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
    return this.io.pastPosition.some((name) => name !== undefined);
  }

  /**
   * Runs a chunk on top of `past`. Only the last token's logits are computed unless `allLogits`
   * (a prefill chunk would otherwise pay a [chunk, vocab] product it never reads): then the
   * decoder's final hidden states go through a separate LM-head session, created on first use
   * (it holds its own copy of the head's weights: scoring callers only, never generation). `windowRows`:
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
    const { numKvHeads: Hkv, headDim: D, numLayers } = this.shape;
    const io = this.io;
    if (past.length !== numLayers) throw new RangeError(`expected a past for each of ${numLayers} layers, got ${past.length}`);
    const P = past[0].length;
    const feeds = this.chunkFeeds(embeds, positions, P, options);
    past.forEach((layer, i) => {
      if (layer.length !== P || layer.keys.length !== Hkv * P * D || layer.values.length !== Hkv * P * D) {
        throw new RangeError(`past of layer ${i} must be [${Hkv}, ${P}, ${D}] like layer 0`);
      }
      feeds[io.pastKey[i]] = new ort.Tensor('float32', layer.keys, [Hkv, P, D]);
      feeds[io.pastValue[i]] = new ort.Tensor('float32', layer.values, [Hkv, P, D]);
    });
    const windowRows = options.windowRows ?? 0;
    const layers = Array.from({ length: numLayers }, (_, i) => i);
    const logitsName = options.allLogits ? io.hidden : io.lastLogits;
    const fetches = [logitsName, ...layers.flatMap((i) => [io.key[i], io.value[i], io.columnSums[i], ...(windowRows > 0 ? [io.windowColumnSums[i]] : [])])];
    const out = await this.session.run(feeds, fetches);
    const data = (name: string) => out[name].data as Float32Array;
    return {
      logits: options.allLogits ? await this.allLogits(data(io.hidden), embeds.length / this.shape.hiddenSize) : data(logitsName),
      keys: io.key.map(data),
      values: io.value.map(data),
      colsums: io.columnSums.map(data),
      windowColsums: windowRows > 0 ? io.windowColumnSums.map(data) : null,
    };
  }

  /** `[S, vocab]` logits of the decoder's final hidden states `[S, hidden]`. */
  private async allLogits(hidden: Float32Array, S: number): Promise<Float32Array> {
    this.lmHead ??= (async () => {
      const weights = new WeightPool(this.checkpoint);
      const graph = buildLmHeadGraph(this.config, weights, this.options.weightBits ?? 32);
      const session = await createSession(graph.model, weights, this.options);
      return { session, input: valueOf(graph.manifest.inputs, 'hidden').name, output: valueOf(graph.manifest.outputs, 'logits').name };
    })();
    const head = await this.lmHead;
    const out = await head.session.run({ [head.input]: new ort.Tensor('float32', hidden, [S, this.shape.hiddenSize]) }, [head.output]);
    return out[head.output].data as Float32Array;
  }

  /**
   * `forward` on a past held as device tensors: the present K/V (past and chunk) are fetched
   * where the session keeps them (the device, `gpu-buffer`) and become the next run's past; only
   * the last token's logits and the column sums come back to the host. The caller owns the
   * present tensors (dispose them, or the past they replace, when done).
   */
  async forwardOnDevice(
    embeds: Float32Array,
    positions: ArrayLike<number>,
    past: DevicePastLayer[],
    options: { windowRows?: number; pastPositions?: Int32Array[] } = {},
  ): Promise<DeviceDecoderOutput> {
    const { numKvHeads: Hkv, headDim: D, numLayers } = this.shape;
    const io = this.io;
    if (past.length !== numLayers) throw new RangeError(`expected a past for each of ${numLayers} layers, got ${past.length}`);
    const P = past[0].length;
    const feeds = this.chunkFeeds(embeds, positions, P, options);
    past.forEach((layer, i) => {
      const dims = (t: ort.Tensor) => t.dims.join(',');
      if (layer.length !== P || dims(layer.keys) !== `${Hkv},${P},${D}` || dims(layer.values) !== `${Hkv},${P},${D}`) {
        throw new RangeError(`device past of layer ${i} must be [${Hkv}, ${P}, ${D}] like layer 0`);
      }
      feeds[io.pastKey[i]] = layer.keys;
      feeds[io.pastValue[i]] = layer.values;
    });
    const windowRows = options.windowRows ?? 0;
    const layers = Array.from({ length: numLayers }, (_, i) => i);
    // The device outputs first, in the graph's order: onnxruntime-node places outputs by fetch position (see decoderGraph.ts).
    const fetches = [...this.session.outputNames.slice(0, 2 * numLayers), io.lastLogits, ...layers.flatMap((i) => [io.columnSums[i], ...(windowRows > 0 ? [io.windowColumnSums[i]] : [])])];
    const out = await this.session.run(feeds, fetches);
    const data = (name: string) => out[name].data as Float32Array;
    return {
      logits: data(io.lastLogits),
      presentKeys: io.presentKey.map((name) => out[name]),
      presentValues: io.presentValue.map((name) => out[name]),
      colsums: io.columnSums.map(data),
      windowColsums: windowRows > 0 ? io.windowColumnSums.map(data) : null,
    };
  }

  /** A run's feeds other than the past rows: embeddings, positions, mask, window rows, past positions. */
  private chunkFeeds(
    embeds: Float32Array,
    positions: ArrayLike<number>,
    P: number,
    options: { mask?: Float32Array; windowRows?: number; pastPositions?: Int32Array[] },
  ): Record<string, ort.Tensor> {
    const { hiddenSize: E, numKvHeads: Hkv } = this.shape;
    const io = this.io;
    const S = embeds.length / E;
    if (!Number.isInteger(S)) throw new RangeError(`${io.embeds} must be [tokens, ${E}], got ${embeds.length} values`);
    const rows = this.positionRows;
    // A positions input of several rows (M-RoPE's [3, chunk]) takes one position per token as the same in every row: a text token's.
    if (positions.length !== S && positions.length !== rows * S) throw new RangeError(`${io.positions} must give ${S} positions${rows > 1 ? ` or ${rows} x ${S}` : ''}, got ${positions.length}`);
    const positionValues = BigInt64Array.from({ length: rows * S }, (_, j) => BigInt(positions.length === S ? positions[j % S] : positions[j]));
    const windowRows = options.windowRows ?? 0;
    if (!(Number.isInteger(windowRows) && windowRows >= 0 && windowRows <= S)) throw new RangeError(`windowRows must be an integer in 0..${S} (the chunk's rows), got ${windowRows}`);
    const feeds: Record<string, ort.Tensor> = {
      [io.embeds]: new ort.Tensor('float32', embeds, [S, E]),
      [io.positions]: new ort.Tensor('int64', positionValues, rows > 1 ? [rows, S] : [S]),
      [io.attentionMask]: new ort.Tensor('float32', options.mask ?? chunkMask(S, P), [S, P + S]),
      [io.windowRows]: new ort.Tensor('int64', BigInt64Array.of(BigInt(windowRows)), [1]),
    };
    io.pastPosition.forEach((pastPosition, i) => {
      if (pastPosition === undefined) return;
      const slots = P === 0 ? new Int32Array(0) : options.pastPositions?.[i];
      if (slots?.length !== Hkv * P) throw new RangeError(`layer ${i} has a sliding window: pastPositions must give the true position of each of its ${Hkv} x ${P} past slots`);
      feeds[pastPosition] = new ort.Tensor('int64', BigInt64Array.from(slots, BigInt), [Hkv, P]);
    });
    return feeds;
  }

  /** An empty past for every layer. */
  emptyPast(): PastLayer[] {
    return Array.from({ length: this.shape.numLayers }, () => ({ keys: new Float32Array(0), values: new Float32Array(0), length: 0 }));
  }

  async release(): Promise<void> {
    this.embeddings.close();
    await this.session.release();
    if (this.lmHead) await (await this.lmHead).session.release();
  }
}
