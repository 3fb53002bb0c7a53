/**
 * The LLaVA processor: chat template (`@huggingface/jinja`), tokenizer
 * (`@huggingface/tokenizers`), the image token expanded to the real number of image features,
 * and images decoded and normalised with `sharp` as `preprocessor_config.json` says.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import sharp from 'sharp';
import { z } from 'zod';
import { readJsonFile } from './checkpoint.js';
import { CheckpointError } from './safetensors.js';

export type ContentPart = { type: 'text'; text: string } | { type: 'image' };
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
}

/** Pixels beyond this are refused before decoding (decompression bombs). */
/** Default limit on an image's declared pixels, checked before decoding (decompression bombs). */
export const MAX_INPUT_PIXELS = 40_000_000;

const sizeSchema = z.union([z.object({ shortest_edge: z.number().int().positive() }), z.object({ height: z.number().int().positive(), width: z.number().int().positive() })]);

const preprocessorSchema = z
  .object({
    do_resize: z.boolean().default(true),
    size: sizeSchema,
    do_center_crop: z.boolean().default(false),
    crop_size: z.object({ height: z.number().int().positive(), width: z.number().int().positive() }).optional(),
    do_rescale: z.boolean().default(true),
    rescale_factor: z.number().default(1 / 255),
    do_normalize: z.boolean().default(true),
    image_mean: z.array(z.number()).length(3),
    image_std: z.array(z.number()).length(3),
  })
  .loose();

type PreprocessorConfig = z.infer<typeof preprocessorSchema>;

/** An image that cannot be decoded or is too large: the user's input, not a fault of ours. */
export class ImageError extends RangeError {
  override name = 'ImageError';
}

function imageError(error: unknown, maxPixels: number): never {
  throw new ImageError(`the image cannot be used (PNG, JPEG, WebP, GIF or TIFF up to ${maxPixels / 1e6} megapixels): ${error instanceof Error ? error.message : String(error)}`);
}

function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && 'content' in value) return String(value.content);
  return undefined;
}

export class LlavaProcessor {
  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly template: Template,
    private readonly specialTokens: Record<string, string | undefined>,
    private readonly image: PreprocessorConfig,
    readonly imageToken: string,
    readonly imageTokenId: number,
    readonly tokensPerImage: number,
    readonly eosTokenIds: number[],
    private readonly maxInputPixels: number,
  ) {}

  static open(dir: string, imageTokenIndex: number, tokensPerImage: number, maxInputPixels = MAX_INPUT_PIXELS): LlavaProcessor {
    const tokenizerJson = readJsonFile(dir, 'tokenizer.json', true);
    const tokenizerConfig = readJsonFile(dir, 'tokenizer_config.json', true);
    const chatTemplate = readJsonFile(dir, 'chat_template.json', false)?.chat_template ?? tokenizerConfig.chat_template;
    if (typeof chatTemplate !== 'string') throw new CheckpointError(`no chat template in ${dir} (tokenizer_config.json "chat_template" or chat_template.json)`);
    const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
    const imageToken = tokenizer.id_to_token(imageTokenIndex);
    if (imageToken === undefined) throw new CheckpointError(`tokenizer.json has no token with the image token id ${imageTokenIndex}`);
    const parsed = preprocessorSchema.safeParse(readJsonFile(dir, 'preprocessor_config.json', true));
    if (!parsed.success) throw new CheckpointError(`preprocessor_config.json: ${z.prettifyError(parsed.error)}`);
    const generation = readJsonFile(dir, 'generation_config.json', false);
    const eos = generation?.eos_token_id ?? tokenizer.token_to_id(tokenText(tokenizerConfig.eos_token) ?? '');
    const eosTokenIds = (Array.isArray(eos) ? eos : eos === undefined ? [] : [eos]).map(Number);
    const specialTokens = {
      bos_token: tokenText(tokenizerConfig.bos_token),
      eos_token: tokenText(tokenizerConfig.eos_token),
      pad_token: tokenText(tokenizerConfig.pad_token),
      unk_token: tokenText(tokenizerConfig.unk_token),
    };
    return new LlavaProcessor(tokenizer, new Template(chatTemplate), specialTokens, parsed.data, imageToken, imageTokenIndex, tokensPerImage, eosTokenIds, maxInputPixels);
  }

  /** The prompt text for a conversation, as `apply_chat_template` renders it. */
  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): string {
    return this.template.render({ messages, add_generation_prompt: addGenerationPrompt, ...this.specialTokens });
  }

  /** Token ids of a prompt, each image token expanded to `tokensPerImage` of them (as `LlavaProcessor` does). */
  encode(prompt: string, addSpecialTokens = true): number[] {
    const expanded = prompt.split(this.imageToken).join(this.imageToken.repeat(this.tokensPerImage));
    return this.tokenizer.encode(expanded, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * The longest spelling of a vocabulary entry, in UTF-16 units: no token stands for more text
   * than that (byte-level vocabularies spell each byte as one character, SentencePiece spells each
   * character), so a text of n characters has at least n / this many tokens. Computed once.
   */
  get longestTokenChars(): number {
    if (this.longestToken === undefined) {
      let longest = 1;
      for (const spelling of this.tokenizer.get_vocab(true).keys()) longest = Math.max(longest, spelling.length);
      this.longestToken = longest;
    }
    return this.longestToken;
  }
  private longestToken: number | undefined;

  decode(ids: number[], skipSpecialTokens = true): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }

  /** `[3, height, width]` pixel values of an encoded image (PNG, JPEG, WebP, ...). */
  async preprocessImage(bytes: Uint8Array): Promise<{ pixels: Float32Array; height: number; width: number }> {
    const c = this.image;
    let image = sharp(bytes, { limitInputPixels: this.maxInputPixels, failOn: 'error' }).removeAlpha().toColourspace('srgb');
    let { width = 0, height = 0 } = await image.metadata().catch((error: unknown) => imageError(error, this.maxInputPixels));
    if (c.do_resize) {
      if ('shortest_edge' in c.size) {
        // transformers' get_resize_output_image_size(default_to_square=False): the short side becomes
        // shortest_edge, the long side int(shortest_edge * long / short).
        const short = Math.min(width, height);
        const long = Math.max(width, height);
        const newLong = Math.floor((c.size.shortest_edge * long) / short);
        [width, height] = width <= height ? [c.size.shortest_edge, newLong] : [newLong, c.size.shortest_edge];
      } else {
        [width, height] = [c.size.width, c.size.height];
      }
      image = image.resize(width, height, { fit: 'fill', kernel: 'cubic' });
    }
    if (c.do_center_crop && c.crop_size) {
      const { height: ch, width: cw } = c.crop_size;
      const top = Math.floor((height - ch) / 2);
      const left = Math.floor((width - cw) / 2);
      image = image.extract({ left, top, width: cw, height: ch }); // after resize: post-resize extraction
      [width, height] = [cw, ch];
    }
    const { data, info } = await image
      .raw()
      .toBuffer({ resolveWithObject: true })
      .catch((error: unknown) => imageError(error, this.maxInputPixels));
    const pixels = new Float32Array(3 * info.height * info.width);
    const plane = info.height * info.width;
    for (let i = 0; i < plane; i++) {
      for (let ch = 0; ch < 3; ch++) {
        let x = data[i * info.channels + ch];
        if (c.do_rescale) x *= c.rescale_factor;
        if (c.do_normalize) x = (x - c.image_mean[ch]) / c.image_std[ch];
        pixels[ch * plane + i] = x;
      }
    }
    return { pixels, height: info.height, width: info.width };
  }
}
