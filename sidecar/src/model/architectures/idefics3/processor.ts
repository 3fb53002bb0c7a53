/**
 * The Idefics3 (SmolVLM) processor: the chat template and tokenizer of `LlavaProcessor` (content
 * stays text, never markup), images resized, split into tiles plus a global image and normalised
 * with `sharp` as preprocessor_config.json says, and each `<image>` of the template expanded into
 * its tiles' `<row_r_col_c>` and image tokens and the global image's (`imagePromptText`).
 *
 * sharp decodes; the resizing is Pillow's own arithmetic (`pilResize`), so the frames are
 * transformers' to the bit. Token ids depend on the sizes alone (`imageLayout`).
 */
import type { ImageGrid, PreprocessedImage } from '../../imageGrid.js';
import type { ArchitectureProcessor } from '../architecture.js';
import { PlaceholderExpandingProcessor } from '../placeholderExpandingProcessor.js';
import { readJsonFile } from '../../jsonFile.js';
import { CheckpointError } from '../../checkpointError.js';
import { imageError, LlavaProcessor, MAX_INPUT_PIXELS, openImage } from '../../processor.js';
import { cropSquare, decodeRgb, normalizedPlanes, resizeRgb, type Rgb } from '../../rgbFrames.js';
import { IDEFICS3_TOKENS, imageLayout, imagePromptText, parseIdefics3Preprocessor, RESAMPLE_FILTERS, type Idefics3Preprocessor, type ImageLayout } from './imageLayout.js';

/** One image's frames (`[frames, 3, side, side]`, tiles row by row, then the global image), its grid and sizes. */
export interface Idefics3Image extends PreprocessedImage {
  layout: ImageLayout;
}

/** Each `<image>` the template wrote becomes its tiles' `<row_r_col_c>` and image tokens and the global image's. */
export class Idefics3Processor extends PlaceholderExpandingProcessor implements ArchitectureProcessor {
  private constructor(
    text: LlavaProcessor,
    readonly preprocessor: Idefics3Preprocessor,
    /** Image tokens per frame: `(image_size / patch_size)^2 / scale_factor^2`. */
    readonly imageSeqLen: number,
    readonly imageTokenId: number,
    private readonly maxInputPixels: number,
  ) {
    super(text, IDEFICS3_TOKENS.image);
  }

  /**
   * The processor of the checkpoint in `dir`, for a vision tower of `imageSize` / `patchSize` and
   * the connector's `scaleFactor` (config.json's). processor_config.json's `image_seq_len`, when
   * given, must be the number of features the connector makes per frame.
   */
  static open(dir: string, vision: { imageSize: number; patchSize: number; scaleFactor: number; imageTokenId: number }, maxInputPixels = MAX_INPUT_PIXELS): Idefics3Processor {
    const text = LlavaProcessor.open(dir, null, 0, maxInputPixels);
    const preprocessor = parseIdefics3Preprocessor(readJsonFile(dir, 'preprocessor_config.json', true), vision.imageSize);
    const grid = Math.floor(vision.imageSize / vision.patchSize);
    if (grid % vision.scaleFactor !== 0) {
      throw new CheckpointError(`config.json: scale_factor ${vision.scaleFactor} does not divide the vision tower's ${grid} x ${grid} patch grid (image_size / patch_size)`);
    }
    const imageSeqLen = (grid / vision.scaleFactor) ** 2;
    const declared = readJsonFile(dir, 'processor_config.json', false)?.image_seq_len;
    if (declared !== undefined && declared !== imageSeqLen) {
      throw new CheckpointError(`processor_config.json: image_seq_len ${JSON.stringify(declared)} differs from the ${imageSeqLen} features per frame of config.json ((image_size / patch_size)^2 / scale_factor^2)`);
    }
    const imageToken = text.decode([vision.imageTokenId], false);
    if (imageToken !== IDEFICS3_TOKENS.image) {
      throw new CheckpointError(`config.json: image_token_id ${vision.imageTokenId} is ${JSON.stringify(imageToken)} in tokenizer.json, not ${IDEFICS3_TOKENS.image}`);
    }
    return new Idefics3Processor(text, preprocessor, imageSeqLen, vision.imageTokenId, maxInputPixels);
  }

  /** Image tokens (feature rows) per frame. */
  get tokensPerImage(): number {
    return this.imageSeqLen;
  }

  /**
   * The most tokens one image can become: resized to `size.longest_edge`, at most that side's tiles
   * squared plus the global image (unbounded without `do_resize`: then per frame).
   */
  get maxTokensPerImage(): number | undefined {
    const c = this.preprocessor;
    if (!c.do_image_splitting) return this.imageSeqLen;
    if (!c.do_resize) return undefined;
    const tiles = Math.ceil(c.size.longest_edge / c.max_image_size.longest_edge);
    return (tiles > 1 ? tiles * tiles + 1 : 1) * this.imageSeqLen;
  }

  /** An image's tile grid from its declared size (decoding no pixels). */
  async imageGrid(image: () => Uint8Array): Promise<ImageLayout> {
    const c = this.preprocessor;
    const opened = await openImage(image(), this.maxInputPixels, (decoded) => decoded);
    return imageLayout(opened.width, opened.height, c);
  }

  /** An encoded image (PNG, JPEG, WebP, GIF, TIFF) as frames of normalised pixels, with its tile grid. */
  async preprocessImage(bytes: Uint8Array): Promise<Idefics3Image> {
    const c = this.preprocessor;
    const filter = RESAMPLE_FILTERS[c.resample];
    // transformers composites an alpha channel onto white (convert_to_rgb); without it the channel is dropped.
    const opened = await openImage(bytes, this.maxInputPixels, (image) => (c.do_convert_rgb ? image.flatten({ background: '#ffffff' }) : image.removeAlpha()));
    const layout = imageLayout(opened.width, opened.height, c);
    const side = c.max_image_size.longest_edge;
    if (layout.resized.width * layout.resized.height > this.maxInputPixels) {
      imageError(new Error(`preprocessor_config.json resizes it to ${layout.resized.width} x ${layout.resized.height}`), this.maxInputPixels);
    }
    const resized = resizeRgb(await decodeRgb(opened.image, this.maxInputPixels), layout.resized, filter);
    const frames: Rgb[] = [];
    if (layout.rows === 0) {
      frames.push(resizeRgb(c.do_image_splitting ? resizeRgb(resized, layout.split, filter) : resized, { width: side, height: side }, filter));
    } else {
      const split = resizeRgb(resized, layout.split, filter);
      for (let r = 0; r < layout.rows; r++) for (let col = 0; col < layout.cols; col++) frames.push(cropSquare(split, col * side, r * side, side));
      frames.push(resizeRgb(split, { width: side, height: side }, filter));
    }
    return { pixels: normalizedPlanes(frames, c), layout, grid: layout };
  }

  /** An image's `<image>` as its layout's text (`imagePromptText`). */
  protected textForImage(grid: ImageGrid): string {
    return imagePromptText(grid.rows, grid.cols, this.imageSeqLen);
  }
}
