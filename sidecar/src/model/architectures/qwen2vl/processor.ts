/**
 * The Qwen2-VL / Qwen2.5-VL processor: the checkpoint's tokenizer and chat template (the shared
 * text processor: content can never become the template's special tokens, `<|image_pad|>`
 * included), each image's `<|image_pad|>` expanded to its merged patch count, the images'
 * patches and grids, and the prompt's M-RoPE positions.
 */
import { readJsonFile } from '../../checkpoint.js';
import { CheckpointError } from '../../checkpointError.js';
import { LlavaProcessor, MAX_INPUT_PIXELS, type ChatMessage, type ChatPrompt } from '../../processor.js';
import type { Qwen2VLConfig } from './config.js';
import { imageTokenCount, parseQwen2VLPreprocessor, Qwen2VLImageProcessor, type ImagePatches } from './imageProcessor.js';
import { expandImageTokens, mropePositions, type MropePositions } from './positions.js';

export class Qwen2VLProcessor {
  private constructor(
    /** Tokenizer and chat template; it has no image token of its own, so it expands nothing. */
    readonly text: LlavaProcessor,
    readonly images: Qwen2VLImageProcessor,
    readonly imageTokenId: number,
  ) {}

  static open(dir: string, config: Qwen2VLConfig, maxInputPixels = MAX_INPUT_PIXELS): Qwen2VLProcessor {
    const text = LlavaProcessor.open(dir, null, 0, maxInputPixels);
    const image = parseQwen2VLPreprocessor(readJsonFile(dir, 'preprocessor_config.json', true));
    const v = config.vision;
    for (const [name, got, want] of [
      ['patch_size', image.patchSize, v.patchSize],
      ['temporal_patch_size', image.temporalPatchSize, v.temporalPatchSize],
      ['merge_size', image.mergeSize, v.spatialMergeSize],
    ] as const) {
      if (got !== want) throw new CheckpointError(`preprocessor_config.json ${name} ${got} differs from the vision tower's (config.json vision_config: ${want})`);
    }
    return new Qwen2VLProcessor(text, new Qwen2VLImageProcessor(image, maxInputPixels), config.imageTokenId);
  }

  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): string {
    return this.text.applyChatTemplate(messages, addGenerationPrompt);
  }

  renderChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): ChatPrompt {
    return this.text.renderChatTemplate(messages, addGenerationPrompt);
  }

  /** Patches and grid of an encoded image. */
  preprocessImage(bytes: Uint8Array): Promise<ImagePatches> {
    return this.images.preprocess(bytes);
  }

  /** Prompt tokens an image of this grid becomes. */
  tokensFor(grid: readonly [number, number, number]): number {
    return imageTokenCount(grid, this.images.config.mergeSize);
  }

  /**
   * Token ids of a prompt (from `from` on), the k-th image placeholder in it expanded for
   * `grids[k]` (the grids of the images in that part, in order), as `Qwen2VLProcessor` does.
   */
  encode(prompt: string | ChatPrompt, grids: readonly (readonly [number, number, number])[], from = 0): number[] {
    return this.expand(this.text.encode(prompt, true, from), grids);
  }

  /** `ids` with the k-th image placeholder expanded for `grids[k]`. */
  expand(ids: readonly number[], grids: readonly (readonly [number, number, number])[]): number[] {
    return expandImageTokens(
      ids,
      this.imageTokenId,
      grids.map((grid) => this.tokensFor(grid)),
    );
  }

  /** M-RoPE positions of expanded ids whose first text token is at `start`. */
  positions(ids: readonly number[], grids: readonly (readonly [number, number, number])[], start = 0): MropePositions {
    return mropePositions(ids, this.imageTokenId, grids, this.images.config.mergeSize, start);
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    return this.text.decode(ids, skipSpecialTokens);
  }
}
