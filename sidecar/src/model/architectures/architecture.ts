/**
 * What an architecture (a checkpoint's `architectures[0]`) provides to be loaded: its config
 * schema and normaliser, its weight names, the ONNX graphs it runs (each built with a manifest of
 * its inputs and outputs, which is all the runtime reads), and what its processor needs to know
 * about images. Entries are listed in `registry.ts`; "Adding an architecture" in ARCHITECTURE.md
 * walks through writing one.
 */
import type { ModelConfig } from '../config.js';
import type { DecoderGraphOptions } from '../text/decoderGraph.js';
import type { BuiltGraph, IoRole } from '../graph/manifest.js';
import type { WeightPool } from '../graph/weightPool.js';
import type { ImageGrid, PreprocessedImage } from '../imageGrid.js';
import type { ChatPrompt, LlavaProcessor } from '../processor.js';

/** What every session's graph is built with (so far only the decoder's read anything). */
export type BuildOptions = DecoderGraphOptions;

/** One image-encoder run's feeds: the pixels, the other inputs by manifest role, and how its output rows come back in the images' order. */
export interface ImageEncoderFeeds {
  /** `[rows, values per row]` pixel values of every image in the order the graph reads them. */
  pixels: { data: Float32Array; dims: number[] };
  inputs: Partial<Record<IoRole, { data: Float32Array | BigInt64Array; dims: number[] }>>;
  /** The output rows (`[rows, text hidden]`) as the images' feature rows, image after image. */
  features(output: Float32Array): Float32Array;
}

/** One onnxruntime session the model needs: what it is for and how its graph is built. */
export type SessionSpec =
  /**
   * Pixel values in, one feature row per image token out (`pixels` -> `imageFeatures`). With
   * `feeds`, the images are read at their own sizes (Qwen2-VL): the encoder feeds what `feeds`
   * makes of the preprocessed images instead of `[frames, channels, size, size]` pixels.
   */
  | { role: 'imageEncoder'; build(weights: WeightPool): BuiltGraph; feeds?(images: readonly PreprocessedImage[]): ImageEncoderFeeds }
  /** The decoder over a past cache; its prompt embeddings are rows of `embeddingTable` (a canonical tensor name). */
  | { role: 'decoder'; embeddingTable: string; build(weights: WeightPool): BuiltGraph };

/** How the model reads images: what the processor expands each image into, and what the model info shows. */
export interface ImageInput {
  /** The image token's id in the vocabulary (the chat template writes it once per image). */
  imageTokenIndex: number;
  /** Feature rows, hence prompt tokens, per image. */
  tokensPerImage: number;
  /** The image side the encoder reads. */
  imageSize: number;
  /** The vision tower's `model_type`, for the model info. */
  visionModel: string;
}

/**
 * A processor an architecture brings when LLaVA's does not fit (Idefics3: tiles, so the prompt
 * depends on each image's grid): the chat template and tokenizer as `LlavaProcessor` has them,
 * the prompt encoded with the grids of its images, and images preprocessed into frames.
 */
export interface ArchitectureProcessor extends Pick<LlavaProcessor, 'renderChatTemplate' | 'applyChatTemplate' | 'encodeText' | 'decode' | 'eosTokenIds' | 'longestTokenChars'> {
  readonly imageTokenId: number | null;
  /** Image tokens (feature rows) per frame. */
  readonly tokensPerImage: number;
  /** Where an image's tokens depend on its size: the most one image can become (the model info's `maxTokensPerImage`). */
  readonly maxTokensPerImage?: number;
  /** Token ids from `from` on, each image the template wrote there expanded by its grid (`grids`, in order). */
  encode(prompt: string | ChatPrompt, addSpecialTokens?: boolean, from?: number, grids?: readonly ImageGrid[]): number[];
  /** An image's grid, from its size alone (no pixels decoded); `image` is asked only if the grid depends on it. */
  imageGrid(image: () => Uint8Array): Promise<ImageGrid>;
  preprocessImage(bytes: Uint8Array): Promise<PreprocessedImage>;
  /**
   * Multimodal rotary positions (Qwen2-VL's M-RoPE) of expanded ids whose first text token is at
   * `start`, images of `grids`: `[3, ids]` and the position the next text token takes. Absent:
   * one position per token, consecutive.
   */
  ropePositions?(ids: readonly number[], grids: readonly ImageGrid[], start: number): { positions: Int32Array; next: number };
  /**
   * One image's feature rows from the encoder's rows for its frames (`grid` from `preprocessImage`),
   * when they are not those rows as they are (LLaVA-NeXT cuts the padding and adds row ends). Absent: as they are.
   */
  arrangeFeatures?(frames: Float32Array, grid: ImageGrid, hidden: number): Float32Array;
}

export interface Architecture<C extends ModelConfig = ModelConfig> {
  /**
   * Validates and normalises config.json (`raw`, whose `architectures[0]` is `name`); every
   * unsupported value is refused by name with a `CheckpointError`.
   */
  parseConfig(raw: unknown, name: string): C;
  /**
   * Checkpoint tensor-name prefixes and the canonical prefixes they become (`text.`, `vision.`,
   * `projector.`, what the graphs use), tried in order: the first match renames a tensor.
   */
  readonly weightPrefixes: readonly (readonly [from: string, to: string])[];
  /** A lower bound on the parameters the checkpoint holds, checked against the weight files before anything is read. */
  minimumParameters(config: C): number;
  /**
   * The image side's parameters (tower, projector) as the checkpoint holds them: those the runtime
   * reads and those it never loads (for the memory figures of `model/footprint.ts`). Absent: none.
   */
  imageSideParameters?(config: C): { read: number; unread: number };
  /** How images enter the prompt, or null: the model reads text only (images are refused). */
  imageInput(config: C): ImageInput | null;
  /** Its own processor (absent: `LlavaProcessor` with `imageInput`'s token and count). */
  openProcessor?(dir: string, config: C, maxInputPixels?: number): ArchitectureProcessor;
  /** The sessions to create, in order (an image encoder, if any, then the decoder). */
  sessions(config: C, options: BuildOptions): SessionSpec[];
}
