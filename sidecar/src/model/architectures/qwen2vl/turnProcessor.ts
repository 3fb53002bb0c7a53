/**
 * The Qwen2-VL processor as the runtime and the session take it (`ArchitectureProcessor`): an
 * image's grid is its merged patches (from its size alone), `encode` expands each
 * `<|image_pad|>` by its image's grid, `preprocessImage` gives the image's patches, and
 * `ropePositions` the prompt's M-RoPE positions.
 */
import type { ImageGrid, PreprocessedImage } from '../../imageGrid.js';
import { openImage, type ChatMessage, type ChatPrompt } from '../../processor.js';
import type { ArchitectureProcessor } from '../architecture.js';
import type { Grid } from './visionInputs.js';
import type { Qwen2VLProcessor } from './processor.js';

/** A preprocessed image: its patches `[t * h * w, 3 * T * P * P]` and its grid. */
export interface Qwen2VLImage extends PreprocessedImage {
  grid: ImageGrid & { patches: Grid };
}

export class Qwen2VLTurnProcessor implements ArchitectureProcessor {
  constructor(
    readonly qwen: Qwen2VLProcessor,
    private readonly maxInputPixels: number,
  ) {}

  get imageTokenId(): number {
    return this.qwen.imageTokenId;
  }

  /** Not fixed: an image becomes as many tokens as its merged patches (`imageGrid`); 0 here. */
  readonly tokensPerImage = 0;

  /** One token per merged patch of at most max_pixels (or, unresized, the sidecar's pixel limit). */
  get maxTokensPerImage(): number {
    const c = this.qwen.images.config;
    const pixels = c.doResize ? Math.min(c.maxPixels, this.maxInputPixels) : this.maxInputPixels;
    return Math.floor(pixels / (c.patchSize * c.mergeSize) ** 2);
  }

  get eosTokenIds(): number[] {
    return this.qwen.text.eosTokenIds;
  }

  get longestTokenChars(): number {
    return this.qwen.text.longestTokenChars;
  }

  renderChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): ChatPrompt {
    return this.qwen.renderChatTemplate(messages, addGenerationPrompt);
  }

  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): string {
    return this.qwen.applyChatTemplate(messages, addGenerationPrompt);
  }

  encodeText(text: string): number[] {
    return this.qwen.text.encodeText(text);
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    return this.qwen.decode(ids, skipSpecialTokens);
  }

  encode(prompt: string | ChatPrompt, addSpecialTokens = true, from = 0, grids: readonly ImageGrid[] = []): number[] {
    return this.qwen.expand(this.qwen.text.encode(prompt, addSpecialTokens, from), grids.map(patchesOf));
  }

  /** The grid `smart_resize` gives an image of this size (its header read, no pixels decoded). */
  async imageGrid(image: () => Uint8Array): Promise<ImageGrid> {
    const { width, height } = await openImage(image(), this.maxInputPixels);
    const resized = this.qwen.images.resizedSize(height, width);
    const P = this.qwen.images.config.patchSize;
    return gridOf([1, resized.height / P, resized.width / P], this.qwen.images.config.mergeSize);
  }

  async preprocessImage(bytes: Uint8Array): Promise<Qwen2VLImage> {
    const { pixels, grid } = await this.qwen.preprocessImage(bytes);
    return { pixels, grid: gridOf(grid, this.qwen.images.config.mergeSize) };
  }

  ropePositions(ids: readonly number[], grids: readonly ImageGrid[], start: number): { positions: Int32Array; next: number } {
    return this.qwen.positions(ids, grids.map(patchesOf), start);
  }
}

function gridOf(patches: Grid, mergeSize: number): ImageGrid & { patches: Grid } {
  return { rows: patches[1] / mergeSize, cols: patches[2] / mergeSize, frames: 1, patches };
}

function patchesOf(grid: ImageGrid): Grid {
  if (!grid.patches) throw new RangeError('a Qwen2-VL prompt needs each image\'s patch grid (imageGrid\'s), got a grid without one');
  return grid.patches;
}
