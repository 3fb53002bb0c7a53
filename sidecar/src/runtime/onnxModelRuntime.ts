/**
 * A loaded checkpoint on onnxruntime: its architecture (`model/architectures/registry.ts`) says
 * which sessions to create (an image encoder for a LLaVA model, none for a text-only causal LM,
 * whose every token is text; a decoder always) and builds their graphs; this class only creates
 * the sessions and runs a turn's steps (encode images, build the prompt's embeddings, prefill in
 * chunks on top of a KV cache, decode). The KV cache is the engine's `KvCache` (a `KvLayer` per
 * decoder layer), so a caller can compress it between steps with any policy; the decoder reads
 * its layers as the past in place.
 */
import { cpus } from 'node:os';
import { headroomSlots, KvCache, TEXT, type Matcher } from '../kv/index.js';
import type { Architecture, ArchitectureProcessor } from '../model/architectures/architecture.js';
import type { ImageGrid } from '../model/imageGrid.js';
import { architectureFor } from '../model/architectures/registry.js';
import { Checkpoint } from '../model/checkpoint.js';
import type { ModelConfig } from '../model/config.js';
import { modelFingerprint } from '../model/fingerprint.js';
import { ErrorCode } from '../protocol/index.js';
import { SidecarError } from '../protocol/errors.js';
import { LlavaProcessor } from '../model/processor.js';
import type { WeightBits } from '../model/graph/layers/linear.js';
import { DEFAULT_PREFILL_CHUNK, prefillRows, type EmbedOptions, type ModelRuntime, type PastRows, type PrefillOptions, type Prefilled, type PromptEmbedding, type RuntimeInfo } from './modelRuntime.js';
import { TextDecoder, type DecoderShape } from './textDecoder.js';
import { createOrtMatcher } from './ortMatcher.js';
import { VisionEncoder } from './visionEncoder.js';
import { graphOptionsFor, type ResolvedDevice } from './device.js';
import type { PackedWeightsCache } from './packedWeights.js';
import { DeviceKvGraphs } from './deviceKv.js';
import { DeviceRows } from './deviceRows.js';

export { DEFAULT_PREFILL_CHUNK, type PrefillOptions, type Prefilled } from './modelRuntime.js';

export interface LoadOptions {
  /** onnxruntime intra-op threads; default: the cores available. */
  threads?: number;
  onProgress?: (step: string) => void;
  /** Largest image accepted, in declared pixels (checked before decoding). */
  maxImagePixels?: number;
  /** Tokens per prefill run (default DEFAULT_PREFILL_CHUNK): smaller reports reading progress and honours a stop more often. */
  prefillChunk?: number;
  /** 4: the decoder's linear layers run on 4-bit block-quantized weights (MatMulNBits). */
  weightBits?: WeightBits;
  /** Where every session runs (`resolveDevice`'s choice); default the CPU. Under WebGPU the KV caches stay on the device. */
  device?: ResolvedDevice;
  /** false: hand onnxruntime the weights in a buffer even where it could read them from the files (`SessionOptions.weightsFromFiles`; default true). */
  weightsFromFiles?: boolean;
  /** Prepacked weights kept between loads (CPU, float32 weights read from the files); unset: packed at every load. */
  packedWeights?: PackedWeightsCache;
}

const CPU_DEVICE: ResolvedDevice = { requested: 'cpu', provider: 'cpu', adapter: 'CPU', reason: 'default' };

export class OnnxModelRuntime implements ModelRuntime {
  readonly info: RuntimeInfo;

  private constructor(
    readonly checkpoint: Checkpoint,
    readonly architecture: Architecture,
    readonly processor: ArchitectureProcessor,
    /** null: a text-only model; a turn with images is refused (`refuseImages`). */
    readonly vision: VisionEncoder | null,
    readonly decoder: TextDecoder,
    /** Evicted-to-kept key matching for merging policies in improved mode, on onnxruntime. */
    readonly matcher: Matcher & { release(): Promise<void> },
    /** Tokens per prefill run unless a call says otherwise. */
    readonly prefillChunk = DEFAULT_PREFILL_CHUNK,
    readonly device: ResolvedDevice = CPU_DEVICE,
    /** The KV graphs that grow and compact caches on the device (null: caches live on the host). */
    readonly kvGraphs: DeviceKvGraphs | null = null,
    /** Of the tokenizer, template and config (`modelFingerprint`): which model saved token ids belong to. */
    readonly fingerprint = modelFingerprint(checkpoint.dir),
  ) {
    const { config } = checkpoint;
    const image = architecture.imageInput(config);
    // The decoder's sizes as its graph declares them (the same the KV cache is made with).
    const shape = decoder.shape;
    this.info = {
      architecture: config.architecture,
      textModel: config.text.modelType,
      imageInput: image !== null,
      visionModel: image?.visionModel ?? null,
      layers: shape.numLayers,
      heads: shape.numHeads,
      kvHeads: shape.numKvHeads,
      headDim: shape.headDim,
      hiddenSize: shape.hiddenSize,
      vocabSize: shape.vocabSize,
      imageSize: image?.imageSize ?? null,
      tokensPerImage: image?.tokensPerImage ?? 0,
      ...(processor.maxTokensPerImage === undefined ? {} : { maxTokensPerImage: processor.maxTokensPerImage }),
      device: { provider: device.provider, adapter: device.adapter, reason: device.reason, kvOnDevice: kvGraphs !== null },
    };
  }

  static async load(dir: string, options: LoadOptions = {}): Promise<OnnxModelRuntime> {
    const progress = options.onProgress ?? (() => undefined);
    const threads = options.threads ?? Math.max(1, cpus().length);
    const { prefillChunk = DEFAULT_PREFILL_CHUNK, device = CPU_DEVICE } = options;
    // The checkpoint is read as it is: onnxruntime may read its float32 weights from the files itself.
    const sessionOptions = { threads, provider: device.provider, weightsFromFiles: options.weightsFromFiles ?? true, packedWeights: options.packedWeights };
    if (!(Number.isInteger(prefillChunk) && prefillChunk >= 1)) throw new RangeError(`prefill chunk must be a positive integer, got ${prefillChunk}`);
    progress('reading config and weights index');
    const checkpoint = Checkpoint.open(dir);
    const { config } = checkpoint;
    const architecture = architectureFor(config.architecture);
    const image = architecture.imageInput(config);
    const processor = architecture.openProcessor?.(dir, config, options.maxImagePixels) ?? LlavaProcessor.open(dir, image?.imageTokenIndex ?? null, image?.tokensPerImage ?? 0, options.maxImagePixels);
    let vision: VisionEncoder | null = null;
    let decoder: TextDecoder | null = null;
    // Under WebGPU the graphs keep the cache on the device and use only ops it has kernels for (graphOptionsFor).
    for (const spec of architecture.sessions(config, graphOptionsFor(device.provider, options.weightBits))) {
      if (spec.role === 'imageEncoder') {
        progress('building vision graph and session');
        vision = await VisionEncoder.create(checkpoint, spec, sessionOptions);
      } else {
        progress('building decoder graph and session');
        decoder = await TextDecoder.fromSpec(checkpoint, spec, { ...sessionOptions, weightBits: options.weightBits ?? 32 });
      }
    }
    if (!decoder) throw new Error(`architecture ${config.architecture} lists no decoder session`);
    if ((vision === null) !== (image === null)) throw new Error(`architecture ${config.architecture}: an image encoder session must come with image input, and only then`);
    const matcher = await createOrtMatcher({ threads });
    // The decoder keeps its present K/V on the device: the caches' rows live there, grown and compacted by the KV graphs.
    let kvGraphs: DeviceKvGraphs | null = null;
    if (decoder.onDevice) {
      progress('building KV graphs on the device');
      kvGraphs = await DeviceKvGraphs.create({ numHeads: decoder.shape.numKvHeads, headDim: decoder.shape.headDim }, { provider: device.provider, threads });
    }
    progress('ready');
    return new OnnxModelRuntime(checkpoint, architecture, processor, vision, decoder, matcher, prefillChunk, device, kvGraphs);
  }

  get config(): ModelConfig {
    return this.checkpoint.config;
  }

  /** Whether the model reads images (false: a text-only causal LM). */
  get imageInput(): boolean {
    return this.vision !== null;
  }

  get contextLength(): number {
    return this.config.text.maxPositionEmbeddings;
  }

  /** Refuses images for a text-only model, before any work is done for the turn. */
  refuseImages(images: number): void {
    if (images > 0 && !this.vision) {
      throw new SidecarError(
        ErrorCode.InvalidParams,
        `this model reads text only; the message has ${images} image${images === 1 ? '' : 's'}: send it without images, or load a LLaVA model (${this.info.architecture} has no vision tower)`,
      );
    }
  }

  /** An empty KV cache, one layer per decoder layer. */
  createCache(): KvCache {
    const { numLayers, numKvHeads, headDim } = this.decoder.shape;
    return new KvCache(numLayers, numKvHeads, headDim, this.kvGraphs ? new DeviceRows(this.kvGraphs, numLayers) : null);
  }

  async encodeImages(images: Uint8Array[]): Promise<Float32Array> {
    const vision = this.vision;
    if (!vision) throw new Error('image features asked of a text-only model (refuseImages lets no image through)');
    const processed = await Promise.all(images.map((bytes) => this.processor.preprocessImage(bytes)));
    if (vision.readsOwnSizes) return vision.encodePreprocessed(processed);
    const pixels = concatenated(processed.map((p) => p.pixels));
    const { imageSize: S, channels: C, tokensPerImage, featureSize } = vision;
    const features = await vision.encode(pixels, pixels.length / (C * S * S));
    const arrange = this.processor.arrangeFeatures?.bind(this.processor);
    if (!arrange) return features;
    // Each image's frames' rows, arranged as its architecture places them in the prompt.
    let at = 0;
    return concatenated(processed.map(({ grid }) => arrange(features.subarray(at, (at += grid.frames * tokensPerImage * featureSize)), grid, featureSize)));
  }

  imageGrids(images: readonly (() => Uint8Array)[]): Promise<ImageGrid[]> {
    return Promise.all(images.map((image) => this.processor.imageGrid(image)));
  }

  /** Pixel values `[frames, 3, size, size]` of encoded images, each image's frames in turn (one per image but for tiles). */
  async pixelValues(images: Uint8Array[]): Promise<Float32Array> {
    const processed = await Promise.all(images.map((bytes) => this.processor.preprocessImage(bytes)));
    return concatenated(processed.map((p) => p.pixels));
  }

  /**
   * Embeddings of `ids`, the image tokens replaced in order by the rows of `features` (image
   * after image: `imageRows[k]` rows for image k, by default tokensPerImage each); also the
   * modality of every token (TEXT or the index of its image: every tile of an image is that
   * image's) and its position: consecutive from `firstPosition` (every architecture here counts
   * positions so); under M-RoPE (a processor with `ropePositions`) also the rotary positions the
   * decoder reads, from the images' grids, the first text token's at `firstPosition + ropeDelta`.
   */
  embedPrompt(ids: number[], features: Float32Array, firstPosition = 0, imageRows?: readonly number[], options: EmbedOptions = {}): PromptEmbedding {
    const E = this.decoder.shape.hiddenSize;
    const T = this.processor.tokensPerImage;
    const imageId = this.processor.imageTokenId;
    const imageTokens = imageId === null ? 0 : ids.filter((id) => id === imageId).length;
    if (imageTokens * E !== features.length) {
      throw new SidecarError(ErrorCode.ImageTokenMismatch, `the prompt has ${imageTokens} image tokens but ${features.length / E} image feature rows were given (${T} per image frame)`);
    }
    if (imageRows && imageRows.reduce((a, b) => a + b, 0) !== imageTokens) {
      throw new SidecarError(ErrorCode.ImageTokenMismatch, `the prompt has ${imageTokens} image tokens but its images have ${imageRows.join(' + ')} feature rows`);
    }
    // The image each feature row belongs to.
    const imageOfRow = imageRows ? Int32Array.from(imageRows.flatMap((rows, k) => new Array<number>(rows).fill(k))) : null;
    const embeds = this.decoder.embed(ids.map((id) => (id === imageId ? 0 : id)));
    const modality = new Int32Array(ids.length).fill(TEXT);
    let row = 0;
    ids.forEach((id, i) => {
      if (id !== imageId) return;
      embeds.set(features.subarray(row * E, (row + 1) * E), i * E);
      modality[i] = imageOfRow ? imageOfRow[row] : Math.floor(row / T);
      row++;
    });
    const positions = Int32Array.from(ids, (_, i) => firstPosition + i);
    if (!this.processor.ropePositions) return { embeds, modality, positions };
    const { grids = [], ropeDelta = 0 } = options;
    return { embeds, modality, positions, rope: this.processor.ropePositions(ids, grids, firstPosition + ropeDelta) };
  }

  /**
   * Runs new tokens through the decoder on top of `cache` in chunks of `chunk`, appending their
   * K/V and adding every chunk's attention column sums to the slots' scores. Returns the logits
   * of the last token (empty when there are no tokens) and, when `windowRows` > 0, per layer the
   * attention the last `windowRows` new tokens paid to every slot (`[numHeads, cache length]`,
   * SnapKV's observation), summed over those rows whichever chunks they fell in: a row of an
   * earlier chunk adds its attention over the slots that existed then (later ones are causally
   * masked). The window cannot reach back past this prefill (older queries are gone), so it holds
   * at most the new tokens: `windowRows` in the result says how many it did hold.
   * `options.isCancelled` is asked before every chunk: a cancelled prefill throws a RequestCancelled
   * `SidecarError`, leaving the chunks already run in the cache (the caller undoes or drops them);
   * `options.onChunk` is told after every chunk how far it got (reading progress).
   */
  async prefill(
    cache: KvCache,
    embeds: Float32Array,
    positions: Int32Array,
    modality: Int32Array,
    options: PrefillOptions = {},
  ): Promise<Prefilled> {
    const { chunk = this.prefillChunk, windowRows: requested = 0, isCancelled = () => false, onChunk, rope } = options;
    if (!(Number.isInteger(chunk) && chunk >= 1)) throw new RangeError(`prefill chunk must be a positive integer, got ${chunk}`);
    if (!(Number.isInteger(requested) && requested >= 0)) throw new RangeError(`windowRows must be a non-negative integer, got ${requested}`);
    // The column sums come summed over each KV head's query heads (the graph's), the window sums per query head.
    const { hiddenSize: E, numHeads, numKvHeads } = this.decoder.shape;
    const N = positions.length;
    if (rope && rope.positions.length !== 3 * N) throw new RangeError(`rope positions must be [3, ${N}], got ${rope.positions.length} values`);
    const windowRows = Math.min(requested, N);
    const total = cache.length + N;
    const windowScores = windowRows > 0 ? cache.layers.map(() => new Float32Array(numHeads * total)) : null;
    // One allocation for the whole prompt and the answer's first tokens, rather than a growth per
    // chunk or at the first decode step: each would copy the cache, holding it twice until collected.
    cache.reserve(N + headroomSlots(cache.length + N));
    let logits: Float32Array = new Float32Array(0);
    for (let start = 0, end = 0; start < N; start = end) {
      if (isCancelled()) throw new SidecarError(ErrorCode.RequestCancelled, `cancelled during the prefill, after ${start} of ${N} tokens`);
      end = Math.min(N, start + prefillRows(chunk, cache.length, numHeads));
      const rows = Math.max(0, end - Math.max(start, N - windowRows));
      // The decoder reads the rotary positions (M-RoPE's [3, chunk]); the cache keeps each token's index.
      const fed = rope ? Int32Array.from({ length: 3 * (end - start) }, (_, j) => rope.positions[Math.floor(j / (end - start)) * N + start + (j % (end - start))]) : positions.subarray(start, end);
      const out = await this.run(cache, embeds.subarray(start * E, end * E), fed, rows);
      cache.append(out, positions.slice(start, end), modality.slice(start, end), numKvHeads);
      if (windowScores && out.windowColsums) windowScores.forEach((scores, i) => addColumns(scores, total, out.windowColsums![i], cache.length, numHeads));
      logits = out.logits;
      onChunk?.(end);
    }
    if (rope) cache.ropeDelta = rope.next - cache.tokensSeen;
    return { logits, windowScores, windowRows };
  }

  /**
   * One decode step: the token at its true position (the prompt length plus the tokens generated
   * so far, whatever the cache kept) on top of `cache`, its K/V appended and its attention added
   * to the scores (as in H2O, so the next turn's compression sees it). Returns its logits.
   */
  async decodeStep(cache: KvCache, token: number, position: number): Promise<Float32Array> {
    const positions = Int32Array.of(position);
    // Its rotary position: one past the largest so far (M-RoPE; the token index otherwise).
    const out = await this.run(cache, this.decoder.embed([token]), cache.ropeDelta === 0 ? positions : Int32Array.of(position + cache.ropeDelta), 0);
    cache.append(out, positions, Int32Array.of(TEXT), this.decoder.shape.numKvHeads);
    return out.logits;
  }

  /**
   * One decoder run on top of `cache`: with host rows, the past is read in place and the chunk's
   * rows come back to be appended; with device rows, the past is fed as device tensors and the
   * present (past and chunk) replaces them on the device: only logits and column sums come back,
   * and the rows to append are none (the layers record the chunk's positions, modality, scores).
   */
  private async run(
    cache: KvCache,
    embeds: Float32Array,
    positions: Int32Array,
    windowRows: number,
  ): Promise<{ logits: Float32Array; keys: Float32Array[]; values: Float32Array[]; colsums: Float32Array[]; windowColsums: Float32Array[] | null; applyExternal?: () => void }> {
    const pastPositions = this.pastPositions(cache);
    const rows = cache.external;
    if (!(rows instanceof DeviceRows)) return this.decoder.forward(embeds, positions, cache.past(), { windowRows, pastPositions });
    const out = await this.decoder.forwardOnDevice(embeds, positions, await rows.past(), { windowRows, pastPositions });
    const length = cache.length + positions.length;
    // The present replaces the rows inside the append, so the cache's growth (the global budget's trigger) includes the device's.
    return { logits: out.logits, keys: [], values: [], colsums: out.colsums, windowColsums: out.windowColsums, applyExternal: () => rows.replace(out.presentKeys, out.presentValues, length) };
  }

  get decoderShape(): DecoderShape {
    return this.decoder.shape;
  }

  async observe(past: PastRows[], embeds: Float32Array, positions: Int32Array, windowRows: number): Promise<Float32Array[]> {
    const pastPositions = this.decoder.needsPastPositions ? past.map((layer) => layer.positions) : undefined;
    const out = await this.decoder.forward(embeds, positions, past, { pastPositions, windowRows });
    return out.windowColsums ?? [];
  }

  /** Per layer, the true position of every kept slot (`[heads, length]`, the cache's own views), when a layer has a sliding window. */
  private pastPositions(cache: KvCache): Int32Array[] | undefined {
    return this.decoder.needsPastPositions ? cache.layers.map((layer) => layer.positions) : undefined;
  }

  async release(): Promise<void> {
    await Promise.all([this.vision?.release(), this.decoder.release(), this.matcher.release(), this.kvGraphs?.release()]);
  }
}

/** Adds `[heads, width]` column sums into the first `width` columns of `[heads, total]` sums. */
function addColumns(into: Float32Array, total: number, sums: Float32Array, width: number, heads: number): void {
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < width; j++) into[h * total + j] += sums[h * width + j];
  }
}

function concatenated(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}
