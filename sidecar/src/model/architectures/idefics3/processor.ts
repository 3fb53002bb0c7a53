/**
 * The Idefics3 (SmolVLM) processor: the chat template and tokenizer of `LlavaProcessor` (content
 * stays text, never markup), images resized, split into tiles plus a global image and normalised
 * with `sharp` as preprocessor_config.json says, and each `<image>` of the template expanded into
 * its tiles' `<row_r_col_c>` and image tokens and the global image's (`imagePromptText`).
 *
 * sharp decodes; the resizing is Pillow's own arithmetic (`pilResize`), so the frames are
 * transformers' to the bit. Token ids depend on the sizes alone (`imageLayout`).
 */
import type { Sharp } from 'sharp';
import { SidecarError } from '../../../protocol/errors.js';
import { ErrorCode } from '../../../protocol/index.js';
import type { ChatPrompt, Span } from '../../chatPrompt.js';
import type { ImageGrid, PreprocessedImage } from '../../imageGrid.js';
import type { ArchitectureProcessor } from '../architecture.js';
import { readJsonFile } from '../../jsonFile.js';
import { CheckpointError } from '../../checkpointError.js';
import { pilResize, type PilFilter } from '../../pilResize.js';
import { imageError, LlavaProcessor, MAX_INPUT_PIXELS, openImage } from '../../processor.js';
import { IDEFICS3_TOKENS, imageLayout, imagePromptText, parseIdefics3Preprocessor, RESAMPLE_FILTERS, type Idefics3Preprocessor, type ImageLayout } from './imageLayout.js';

/** One image's frames (`[frames, 3, side, side]`, tiles row by row, then the global image), its grid and sizes. */
export interface Idefics3Image extends PreprocessedImage {
  layout: ImageLayout;
}

/** RGB bytes of one image, `height` rows of `width` pixels. */
interface Rgb {
  data: Uint8Array;
  width: number;
  height: number;
}

export class Idefics3Processor implements ArchitectureProcessor {
  private constructor(
    /** Chat template and tokenizer; opened text-only: the image tokens are expanded here, before it tokenizes. */
    readonly text: LlavaProcessor,
    readonly preprocessor: Idefics3Preprocessor,
    /** Image tokens per frame: `(image_size / patch_size)^2 / scale_factor^2`. */
    readonly imageSeqLen: number,
    readonly imageTokenId: number,
    private readonly maxInputPixels: number,
  ) {}

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

  get eosTokenIds(): number[] {
    return this.text.eosTokenIds;
  }

  get longestTokenChars(): number {
    return this.text.longestTokenChars;
  }

  renderChatTemplate(...args: Parameters<LlavaProcessor['renderChatTemplate']>): ChatPrompt {
    return this.text.renderChatTemplate(...args);
  }

  applyChatTemplate(...args: Parameters<LlavaProcessor['applyChatTemplate']>): string {
    return this.text.applyChatTemplate(...args);
  }

  encodeText(text: string): number[] {
    return this.text.encodeText(text);
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    return this.text.decode(ids, skipSpecialTokens);
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
    const resized = resize(await decode(opened.image, this.maxInputPixels), layout.resized, filter);
    const frames: Rgb[] = [];
    if (layout.rows === 0) {
      frames.push(resize(c.do_image_splitting ? resize(resized, layout.split, filter) : resized, { width: side, height: side }, filter));
    } else {
      const split = resize(resized, layout.split, filter);
      for (let r = 0; r < layout.rows; r++) for (let col = 0; col < layout.cols; col++) frames.push(crop(split, col * side, r * side, side));
      frames.push(resize(split, { width: side, height: side }, filter));
    }
    const plane = side * side;
    const pixels = new Float32Array(frames.length * 3 * plane);
    frames.forEach((frame, f) => {
      for (let i = 0; i < plane; i++) {
        for (let ch = 0; ch < 3; ch++) {
          let x = frame.data[i * 3 + ch];
          if (c.do_rescale) x *= c.rescale_factor;
          if (c.do_normalize) x = (x - c.image_mean[ch]) / c.image_std[ch];
          pixels[(f * 3 + ch) * plane + i] = x;
        }
      }
    });
    return { pixels, layout, grid: layout };
  }

  /**
   * The prompt with each `<image>` the template wrote (not one inside content) replaced by its
   * layout's text, in order; the content spans moved with the text. `layouts` has one entry per
   * such `<image>`, or the images and the prompt disagree (`ImageTokenMismatch`).
   */
  expandImages(prompt: ChatPrompt, layouts: readonly ImageGrid[]): ChatPrompt {
    const { text, content } = prompt;
    const inContent = (at: number) => content.some(([start, end]) => at < end && at + IDEFICS3_TOKENS.image.length > start);
    const places = [...text.matchAll(/<image>/g)].map((m) => m.index).filter((at) => !inContent(at));
    if (places.length !== layouts.length) {
      throw new SidecarError(ErrorCode.ImageTokenMismatch, `the prompt has ${places.length} image placeholders but ${layouts.length} images were given`);
    }
    let out = '';
    let from = 0;
    const shifts: [at: number, by: number][] = [];
    places.forEach((at, i) => {
      const expansion = imagePromptText(layouts[i].rows, layouts[i].cols, this.imageSeqLen);
      out += text.slice(from, at) + expansion;
      from = at + IDEFICS3_TOKENS.image.length;
      shifts.push([from, expansion.length - IDEFICS3_TOKENS.image.length]);
    });
    out += text.slice(from);
    const moved = (offset: number) => offset + shifts.filter(([at]) => at <= offset).reduce((sum, [, by]) => sum + by, 0);
    return { text: out, content: content.map(([start, end]): Span => [moved(start), moved(end)]) };
  }

  /**
   * Token ids of a prompt from `from` on, the images there (`grids`, in order) expanded as
   * `Idefics3Processor` expands them; content is text, whatever special strings it holds.
   */
  encode(prompt: string | ChatPrompt, addSpecialTokens = true, from = 0, layouts: readonly ImageGrid[] = []): number[] {
    const { text, content } = typeof prompt === 'string' ? { text: prompt, content: [] as Span[] } : prompt;
    const part = { text: text.slice(from), content: content.map(([start, end]): Span => [Math.max(start - from, 0), end - from]).filter(([start, end]) => end > start) };
    return this.text.encode(this.expandImages(part, layouts), addSpecialTokens);
  }
}

async function decode(image: Sharp, maxPixels: number): Promise<Rgb> {
  const { data, info } = await image
    .raw()
    .toBuffer({ resolveWithObject: true })
    .catch((error: unknown) => imageError(error, maxPixels));
  if (info.channels !== 3) throw new Error(`decoded ${info.channels} channels, expected 3`);
  return { data, width: info.width, height: info.height };
}

function resize(from: Rgb, size: { width: number; height: number }, filter: PilFilter): Rgb {
  if (from.width === size.width && from.height === size.height) return from; // PIL copies: no resampling
  return { data: pilResize(from.data, from.width, from.height, size.width, size.height, filter), ...size };
}

function crop(from: Rgb, left: number, top: number, side: number): Rgb {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) data.set(from.data.subarray(((top + y) * from.width + left) * 3, ((top + y) * from.width + left + side) * 3), y * side * 3);
  return { data, width: side, height: side };
}
