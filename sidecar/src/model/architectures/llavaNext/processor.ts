/**
 * The LLaVA-NeXT / OneVision processor: the chat template and tokenizer of `LlavaProcessor`
 * (content stays text, never markup); each image tiled at its best pinpoint (`anyres.ts`: resized
 * keeping its aspect ratio, padded with black, cut into tiles of the tower's size) after its base
 * image (the whole image resized to one tile), as `LlavaNextImageProcessor` /
 * `LlavaOnevisionImageProcessor` make them; each `<image>` the template wrote expanded into the
 * image's feature rows (`_get_number_of_features`). sharp decodes; Pillow's resampling is
 * `pilResize`, so the frames are transformers' to the bit.
 */
import { z } from 'zod';
import { CheckpointError } from '../../checkpointError.js';
import type { ImageGrid, PreprocessedImage } from '../../imageGrid.js';
import { readJsonFile } from '../../jsonFile.js';
import { cropSquare, decodeRgb, normalizedPlanes, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, resizeRgb, type Rgb } from '../../rgbFrames.js';
import { patchGrid } from '../../vision/patches.js';
import { imageError, LlavaProcessor, MAX_INPUT_PIXELS, openImage } from '../../processor.js';
import type { ArchitectureProcessor } from '../architecture.js';
import { PlaceholderExpandingProcessor } from '../placeholderExpandingProcessor.js';
import { anyresLayout, isAnyresLayout, maxAnyresTokens, type AnyresLayout, type AnyresSettings, type Size } from './anyres.js';
import { LLAVA_ONEVISION, type LlavaNextConfig } from './config.js';
import { packImageFeatures } from './pack.js';

/** PIL filters by number that `pilResize` ports. */
const RESAMPLE = { 1: 'lanczos', 3: 'bicubic' } as const;

const side = z.number().int().positive();
const sizeSchema = z.union([z.object({ shortest_edge: side }), z.object({ height: side, width: side })], {
  error: (i) => `size ${JSON.stringify(i.input)} is not supported ({"shortest_edge": n} or {"height": h, "width": w})`,
});

/** preprocessor_config.json of either image processor; unknown fields ignored, unsupported values refused by name. */
const preprocessorSchema = z
  .object({
    do_convert_rgb: z.boolean().default(true),
    size: sizeSchema.optional(),
    crop_size: z.object({ height: side, width: side }).optional(),
    resample: z.union([z.literal(1), z.literal(3)], { error: 'resample: only 3 (BICUBIC, the llava-hf checkpoints\') and 1 (LANCZOS) are supported' }).default(3),
    image_grid_pinpoints: z.array(z.tuple([side, side])).optional(),
    do_rescale: z.boolean().default(true),
    rescale_factor: z.number().positive().default(1 / 255),
    do_normalize: z.boolean().default(true),
    image_mean: z.array(z.number()).length(3).default(OPENAI_CLIP_MEAN),
    image_std: z
      .array(z.number().refine((x) => x !== 0, 'image_std: a zero would divide by zero'))
      .length(3)
      .default(OPENAI_CLIP_STD),
  })
  .loose();

type Preprocessor = z.infer<typeof preprocessorSchema>;

/**
 * The settings the layout reads, from config.json and preprocessor_config.json, refusing what
 * transformers would tile differently: tiles and base image not of the tower's size, pinpoints
 * that differ between the two files, processor_config.json counts that disagree with the tower.
 */
function readSettings(dir: string, config: LlavaNextConfig): { pre: Preprocessor; settings: AnyresSettings } {
  const parsed = preprocessorSchema.safeParse(readJsonFile(dir, 'preprocessor_config.json', true));
  if (!parsed.success) throw new CheckpointError(`preprocessor_config.json: ${z.prettifyError(parsed.error)}`);
  const pre = parsed.data;
  const tile = config.vision.imageSize;
  const onevision = config.architecture === LLAVA_ONEVISION;
  const size = pre.size ?? (onevision ? { height: 384, width: 384 } : { shortest_edge: 224 });
  const sides: [string, number][] = 'shortest_edge' in size ? [['size.shortest_edge', size.shortest_edge]] : [['size.height', size.height], ['size.width', size.width]];
  if (!onevision) {
    const crop = pre.crop_size ?? { height: 224, width: 224 };
    sides.push(['crop_size.height', crop.height], ['crop_size.width', crop.width]);
  }
  const off = sides.find(([, value]) => value !== tile);
  if (off) throw new CheckpointError(`preprocessor_config.json: ${off[0]} ${off[1]} differs from vision_config.image_size ${tile}: only tiles and base images of the vision tower's own size are supported`);
  if (pre.image_grid_pinpoints && JSON.stringify(pre.image_grid_pinpoints) !== JSON.stringify(config.pinpoints)) {
    throw new CheckpointError('preprocessor_config.json: image_grid_pinpoints differ from config.json\'s: the image would be tiled at one resolution and read at another');
  }
  const grid = patchGrid(config.vision);
  const declared = readJsonFile(dir, 'processor_config.json', false) ?? {};
  // The processors count a tile's tokens with the position `default` drops (CLIP's class token) and subtract it again.
  const dropped = config.selectStrategy === 'default' ? 1 : 0;
  const checks: [string, unknown, unknown][] = onevision
    ? [['num_image_tokens', declared.num_image_tokens, grid * grid + dropped], ['vision_aspect_ratio', declared.vision_aspect_ratio, `anyres_max_${config.maxTiles}`]]
    : [['num_additional_image_tokens', declared.num_additional_image_tokens, dropped]];
  // LlavaNextProcessor's patch grid is the tile side floored by its own patch_size.
  if (!onevision && typeof declared.patch_size === 'number' && Math.floor(tile / declared.patch_size) !== grid) checks.push(['patch_size', declared.patch_size, config.vision.patchSize]);
  checks.push(['vision_feature_select_strategy', declared.vision_feature_select_strategy, config.selectStrategy]);
  for (const [key, value, expected] of checks) {
    if (value !== undefined && value !== null && value !== expected) {
      throw new CheckpointError(`processor_config.json: ${key} ${JSON.stringify(value)} differs from config.json's model (${JSON.stringify(expected)}): the prompt would hold another number of image tokens than the model makes`);
    }
  }
  return { pre, settings: { pinpoints: config.pinpoints, tile, grid, maxTiles: config.maxTiles } };
}

/** Each `<image>` the template wrote is repeated as many times as its image has feature rows. */
export class LlavaNextProcessor extends PlaceholderExpandingProcessor implements ArchitectureProcessor {
  private constructor(
    text: LlavaProcessor,
    readonly preprocessor: Preprocessor,
    readonly settings: AnyresSettings,
    readonly imageTokenId: number,
    /** The image token's text (`<image>`). */
    imageToken: string,
    private readonly maxInputPixels: number,
  ) {
    super(text, imageToken);
  }

  static open(dir: string, config: LlavaNextConfig, maxInputPixels = MAX_INPUT_PIXELS): LlavaNextProcessor {
    const text = LlavaProcessor.open(dir, null, 0, maxInputPixels);
    const { pre, settings } = readSettings(dir, config);
    const imageToken = text.decode([config.imageTokenIndex], false);
    if (imageToken === '') {
      throw new CheckpointError(`config.json: image_token_index ${config.imageTokenIndex} is not a token of tokenizer.json (it decodes to nothing)`);
    }
    return new LlavaNextProcessor(text, pre, settings, config.imageTokenIndex, imageToken, maxInputPixels);
  }

  /** Feature rows per frame (tile or base image); an image's count is its layout's `tokens`. */
  get tokensPerImage(): number {
    return this.settings.grid ** 2;
  }

  /** The most one image can become (the chat's token count takes images at this). */
  get maxTokensPerImage(): number {
    return maxAnyresTokens(this.settings);
  }

  layout(size: Size): AnyresLayout {
    return anyresLayout(size, this.settings);
  }

  /** An image's layout from its declared size (decoding no pixels). */
  async imageGrid(image: () => Uint8Array): Promise<AnyresLayout> {
    const opened = await openImage(image(), this.maxInputPixels, (decoded) => decoded);
    return this.layout(opened);
  }

  /** An encoded image (PNG, JPEG, WebP, GIF, TIFF) as frames of normalised pixels (base image, then the tiles row by row), with its layout. */
  async preprocessImage(bytes: Uint8Array): Promise<PreprocessedImage & { grid: AnyresLayout }> {
    const c = this.preprocessor;
    const filter = RESAMPLE[c.resample];
    // transformers composites an alpha channel onto white (convert_to_rgb); without it the channel is dropped.
    const opened = await openImage(bytes, this.maxInputPixels, (image) => (c.do_convert_rgb ? image.flatten({ background: '#ffffff' }) : image.removeAlpha()));
    const layout = this.layout(opened);
    if (layout.resized.width * layout.resized.height > this.maxInputPixels) {
      imageError(new Error(`its pinpoint resizes it to ${layout.resized.width} x ${layout.resized.height}`), this.maxInputPixels);
    }
    const image = await decodeRgb(opened.image, this.maxInputPixels);
    const tile = this.settings.tile;
    const frames: Rgb[] = [resizeRgb(image, { width: tile, height: tile }, filter)];
    const padded = padInto(resizeRgb(image, layout.resized, filter), layout.best, layout.pad);
    for (let r = 0; r < layout.rows; r++) for (let col = 0; col < layout.cols; col++) frames.push(cropSquare(padded, col * tile, r * tile, tile));
    return { pixels: normalizedPlanes(frames, c), grid: layout };
  }

  /** One image's packed feature rows (`[grid.tokens, hidden]`) from the encoder's rows for its frames. */
  arrangeFeatures(frames: Float32Array, grid: ImageGrid, hidden: number): Float32Array {
    if (!isAnyresLayout(grid)) throw new Error('a LLaVA-NeXT image was preprocessed without its layout');
    return packImageFeatures(frames, grid, hidden);
  }

  /** An image's `<image>` repeated once per feature row of its layout. */
  protected textForImage(grid: ImageGrid): string {
    if (!isAnyresLayout(grid)) throw new Error('a LLaVA-NeXT image grid without its layout');
    return this.imageToken.repeat(grid.tokens);
  }
}

/** `from` on a black canvas of `size`, its top-left corner at `pad` (transformers pads with zeros). */
function padInto(from: Rgb, size: Size, pad: { top: number; left: number }): Rgb {
  const data = new Uint8Array(size.width * size.height * 3);
  for (let y = 0; y < from.height; y++) data.set(from.data.subarray(y * from.width * 3, (y + 1) * from.width * 3), ((pad.top + y) * size.width + pad.left) * 3);
  return { data, ...size };
}
