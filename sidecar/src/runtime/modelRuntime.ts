/**
 * What a turn needs of a loaded model, whatever its architecture: the session, the engine and the
 * CLIs depend on this interface, never on the class that implements it (`OnnxModelRuntime`).
 * Every architecture reports, per prompt token, its modality (text or image k) and its position,
 * and every prefill adds the attention column sums to the KV cache's scores: what the LOOK-M
 * engine (`kv/`) reads, unchanged for every architecture.
 */
import type { KvCache, Matcher } from '../kv/index.js';
import type { ArchitectureProcessor } from '../model/architectures/architecture.js';
import type { ImageGrid } from '../model/imageGrid.js';
import type { ModelInfo } from '../protocol/index.js';
import type { DecoderShape } from './textDecoder.js';

/**
 * Prefill chunk length (a setting): the most tokens per decoder run. Measured on a Qwen2-0.5B-shaped
 * model over an 8K prompt on 2 cores: 512 -> 239 tokens/s, 256 -> 225 tokens/s.
 */
export const DEFAULT_PREFILL_CHUNK = 512;

/**
 * The most bytes one layer's attention scores of a prefill run may take (`[heads, rows, past + rows]`
 * float32; onnxruntime holds a few such tensors per run and keeps its arena at their peak). A run
 * reads fewer rows as the context grows so a long prompt's memory stays near a short one's.
 * Measured on the 8-layer Qwen2-0.5B-shaped bench model (14 heads), 100 / 4K / 8K-token turns in
 * one process, 2 cores: 512 rows throughout peaked at 1,168 / 1,696 / 2,274 MiB; a budget of 32 MiB
 * at 1,158 / 1,382 / 1,623 MiB, 420 prefill tokens/s at 8K; 8 MiB at 1,158 / 1,289 / 1,441 MiB,
 * 310 tokens/s (llama.cpp on the same weights: 1,339 MiB, 200 tokens/s; bench/results/decode-profile.md).
 */
export const PREFILL_SCORES_BUDGET_BYTES = 8 * 1024 * 1024;

/** The floor of a run on a very long past: every run reads all the weights once, so a run of a few rows would be mostly weight reads. */
export const MIN_PREFILL_ROWS = 16;

/**
 * Rows of the next prefill run on a past of `pastLength` slots: at most `chunk`, fewer when their
 * scores (`heads` query heads over the past and the run) would pass `budgetBytes`, never under
 * MIN_PREFILL_ROWS (nor `chunk`, if that is smaller).
 */
export function prefillRows(chunk: number, pastLength: number, heads: number, budgetBytes = PREFILL_SCORES_BUDGET_BYTES): number {
  const fitting = Math.floor(budgetBytes / (4 * heads * (pastLength + chunk)));
  return Math.min(chunk, Math.max(MIN_PREFILL_ROWS, fitting));
}

export interface PrefillOptions {
  /** The most tokens per decoder run (default DEFAULT_PREFILL_CHUNK; fewer on a long past: `prefillRows`). */
  chunk?: number;
  /** How many of the newest tokens' query rows SnapKV observes (default 0: no window scores). */
  windowRows?: number;
  /** Asked before every chunk; true stops the prefill with a RequestCancelled `SidecarError`. */
  isCancelled?: () => boolean;
  /** Told after every chunk how many of this prefill's tokens have been run. */
  onChunk?: (tokensDone: number) => void;
  /** M-RoPE: the rotary positions the decoder reads (`PromptEmbedding.rope`); the cache keeps `next` as its next position. */
  rope?: RopePositions;
}

/** Multimodal rotary positions (Qwen2-VL's M-RoPE) of a prompt. */
export interface RopePositions {
  /** `[3, tokens]`: each token's temporal, height and width positions. */
  positions: Int32Array;
  /** The position the next token takes: one past the largest component so far. */
  next: number;
}

export interface Prefilled {
  /** Logits of the last token (empty when there were no tokens). */
  logits: Float32Array;
  /** Per layer, `[numHeads, cache length]`: the observation window's attention per slot (null: no window). */
  windowScores: Float32Array[] | null;
  /** Query rows the window holds: the rows asked for, at most the tokens prefilled. */
  windowRows: number;
}

/** A prompt's input to the decoder, and what the KV cache records per token. */
export interface PromptEmbedding {
  /** `[tokens, hidden]`. */
  embeds: Float32Array;
  /** Per token, TEXT or the index of the image it belongs to (counted within this prompt). */
  modality: Int32Array;
  /** Per token, its position (its index in the conversation; the KV engine keeps it with the slot). */
  positions: Int32Array;
  /** M-RoPE models: the rotary positions the decoder reads instead (absent: `positions`). */
  rope?: RopePositions;
}

/** What `embedPrompt` needs to position images under M-RoPE. */
export interface EmbedOptions {
  /** The prompt's images' grids (`imageGrids`), in order. */
  grids?: readonly ImageGrid[];
  /** The cache's `ropeDelta`: the first token's rotary position is `firstPosition + ropeDelta`. */
  ropeDelta?: number;
}

/**
 * What a turn (and token counting) asks of the processor: the chat template, tokens in and out
 * (a prompt's images expanded by their grids), the image token.
 */
export type TurnProcessor = Pick<ArchitectureProcessor, 'renderChatTemplate' | 'applyChatTemplate' | 'encode' | 'encodeText' | 'decode' | 'eosTokenIds' | 'imageTokenId' | 'longestTokenChars'>;

/** A past given row by row instead of a cache (`[kv heads, length, head dim]`, positions `[kv heads, length]`). */
export interface PastRows {
  keys: Float32Array;
  values: Float32Array;
  positions: Int32Array;
  length: number;
}

/** The model as the engine reports it (its path aside). */
export type RuntimeInfo = Omit<ModelInfo, 'path'>;

export interface ModelRuntime {
  readonly info: RuntimeInfo;
  /**
   * Which model made a token id (tokenizer, chat template, config; `model/fingerprint.ts`): a
   * conversation saved under another fingerprint is rebuilt from its transcript's text.
   */
  readonly fingerprint: string;
  /** Positions the model holds, prompt and answers together. */
  readonly contextLength: number;
  /** Chat template and tokenizer (the checkpoint's own). */
  readonly processor: TurnProcessor;
  /** Tokens per prefill run unless a call says otherwise. */
  readonly prefillChunk: number;
  /** Evicted-to-kept key matching for merging policies in improved mode. */
  readonly matcher: Matcher;
  /** Refuses images for a model that reads text only, before any work is done for the turn. */
  refuseImages(images: number): void;
  /**
   * Features of encoded images (PNG, JPEG...), image after image: each image's frames
   * (`imageGrids`) x tokensPerImage rows of `hidden`, or the rows its processor arranges them into
   * (`arrangeFeatures`: LLaVA-NeXT's unpadded grid with row ends), the rows that replace its image tokens.
   */
  encodeImages(images: Uint8Array[]): Promise<Float32Array>;
  /**
   * How each image enters the prompt (its tiles), for `processor.encode`: read from the images'
   * sizes; an image is asked for only when its grid depends on it (not for LLaVA).
   */
  imageGrids(images: readonly (() => Uint8Array)[]): Promise<ImageGrid[]>;
  /** An empty KV cache, one layer per decoder layer. */
  createCache(): KvCache;
  /**
   * Embeddings of `ids`, the image tokens replaced in order by the rows of `features`; with each
   * token's modality (image k for all the rows of image k, `imageRows[k]` of them; by default
   * tokensPerImage each) and position, the first at `firstPosition`; under M-RoPE also the
   * rotary positions (`rope`), from the images' `grids` (`options`).
   */
  embedPrompt(ids: number[], features: Float32Array, firstPosition?: number, imageRows?: readonly number[], options?: EmbedOptions): PromptEmbedding;
  /** Runs new tokens through the decoder on top of `cache`, appending their K/V and column sums; see `OnnxModelRuntime.prefill`. */
  prefill(cache: KvCache, embeds: Float32Array, positions: Int32Array, modality: Int32Array, options?: PrefillOptions): Promise<Prefilled>;
  /** The decoder's sizes (query heads `numHeads`, KV heads `numKvHeads`), for code that shapes a past of its own. */
  readonly decoderShape: DecoderShape;
  /**
   * Runs `embeds` on top of `past` without keeping anything (no cache is touched) and returns, per
   * layer, the attention column sums of the last `windowRows` query rows: `[numHeads, past + tokens]`.
   */
  observe(past: PastRows[], embeds: Float32Array, positions: Int32Array, windowRows: number): Promise<Float32Array[]>;
  /** One generated token at `position` on top of `cache`; returns its logits. */
  decodeStep(cache: KvCache, token: number, position: number): Promise<Float32Array>;
  release(): Promise<void>;
}
