/**
 * The LLaVA processor: chat template (`@huggingface/jinja`), tokenizer
 * (`@huggingface/tokenizers`), the image token expanded to the real number of image features,
 * and images decoded and normalised with `sharp` as `preprocessor_config.json` says.
 *
 * Content (what the user typed, file texts, answers) is text, never markup: see `encode`.
 */
import { randomInt } from 'node:crypto';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import sharp, { type Sharp } from 'sharp';
import { z } from 'zod';
import { SidecarError } from '../protocol/errors.js';
import { ErrorCode } from '../protocol/index.js';
import { contentStrings, locateContent, type ChatPrompt, type Span } from './chatPrompt.js';
import { readJsonFile } from './jsonFile.js';
import { CONFIG_LIMITS } from './config.js';
import { ImageError, imageError } from './imageError.js';
import { SINGLE_FRAME, type ImageGrid } from './imageGrid.js';
import { decodeRgb, normalizedPlanes } from './rgbFrames.js';
import { CheckpointError } from './safetensors.js';

export type { ChatPrompt, Span } from './chatPrompt.js';

export type ContentPart = { type: 'text'; text: string } | { type: 'image' };
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ContentPart[];
}

/**
 * How a chat template takes a message's content: a list of typed parts (the processor's chat
 * format, which every llava-hf template expects: `selectattr('type', ...)`,
 * `message['content'][0]['text']`) or a plain string (text-only templates).
 */
type ContentShape = 'parts' | 'string';
interface MessageShapes {
  user: ContentShape;
  assistant: ContentShape;
}

/** Tried in this order: the processor format first, then assistants as strings, then all strings. */
const SHAPE_CANDIDATES: MessageShapes[] = [
  { user: 'parts', assistant: 'parts' },
  { user: 'parts', assistant: 'string' },
  { user: 'string', assistant: 'string' },
];

function inShape(message: ChatMessage, shape: ContentShape): ChatMessage {
  const { content } = message;
  if (shape === 'parts') return typeof content === 'string' ? { ...message, content: [{ type: 'text', text: content }] } : message;
  if (typeof content === 'string' || content.some((part) => part.type !== 'text')) return message; // images need parts: left to the template
  return { ...message, content: content.map((part) => (part.type === 'text' ? part.text : '')).join('') };
}

/**
 * The content shapes `template` takes, probed on a user-assistant-user conversation: the first
 * candidate whose rendering shows every text as text (not inside a part's JSON), else the first
 * that renders at all (a template may rewrite text), else the processor format. A template that throws on, or skips, a shape is not
 * given it. System messages take the user's shape.
 */
function templateShapes(template: Template, context: Record<string, unknown>): MessageShapes {
  const texts = ['lookm-probe-user', 'lookm-probe-answer', 'lookm-probe-next'];
  const roles = ['user', 'assistant', 'user'] as const;
  const rendered = SHAPE_CANDIDATES.map((shapes) => {
    const messages = roles.map((role, i) => inShape({ role, content: [{ type: 'text', text: texts[i] }] }, shapes[role]));
    try {
      return template.render({ ...context, messages, add_generation_prompt: true });
    } catch {
      return null; // not the shape this template takes
    }
  });
  // A part list concatenated to a string renders as its JSON (`{"type": "text", "text": "..."}`):
  // that shows the text too, but as data, not as the message.
  const showsAsText = (text: string, t: string) => text.includes(t) && !new RegExp(`["']text["']\\s*:\\s*["']${t}`).test(text);
  const showsAll = rendered.findIndex((text) => text !== null && texts.every((t) => showsAsText(text, t)));
  const renders = rendered.findIndex((text) => text !== null);
  return SHAPE_CANDIDATES[showsAll >= 0 ? showsAll : Math.max(renders, 0)];
}

/** Pixels beyond this are refused before decoding (decompression bombs). */
/** Default limit on an image's declared pixels, checked before decoding (decompression bombs). */
export const MAX_INPUT_PIXELS = 40_000_000;

/** Sides of the resized and cropped image: the vision tower's input, bounded as config.json's image_size is. */
const side = z.number().int().positive().max(CONFIG_LIMITS.imageSize);
const sizeSchema = z.union([z.object({ shortest_edge: side }), z.object({ height: side, width: side })]);

const preprocessorSchema = z
  .object({
    do_resize: z.boolean().default(true),
    size: sizeSchema,
    do_center_crop: z.boolean().default(false),
    crop_size: z.object({ height: side, width: side }).optional(),
    do_rescale: z.boolean().default(true),
    rescale_factor: z.number().default(1 / 255),
    do_normalize: z.boolean().default(true),
    image_mean: z.array(z.number()).length(3),
    image_std: z.array(z.number()).length(3),
  })
  .loose();

type PreprocessorConfig = z.infer<typeof preprocessorSchema>;

export { ImageError, imageError } from './imageError.js';

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

/** The same tokenizer with the guarded tokens renamed to markers: their text then splits as ordinary text. */
interface MarkedTokenizer {
  tokenizer: Tokenizer;
  /** Guarded token text -> its marker. */
  markers: Map<string, string>;
  /** Marker -> token id. */
  ids: Map<string, number>;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The documented formats, as sharp's `metadata().format` names them. */
type ImageFormat = 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff';

/** The first bytes of an image as latin1 text, for signature checks (a view, not a copy). */
function head(bytes: Uint8Array, length: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1', 0, length);
}

/**
 * The documented format `bytes` claim by their signature, or null. Checked before sharp sees the
 * bytes: libvips parses a whole SVG (and PDF, HEIF, ...) even to read its size (a 20 MB SVG took
 * 5.7 s), and an SVG may reference local files.
 */
function signatureFormat(bytes: Uint8Array): ImageFormat | null {
  const h = head(bytes, 12);
  if (h.startsWith('\x89PNG\r\n\x1a\n')) return 'png';
  if (h.startsWith('\xff\xd8\xff')) return 'jpeg';
  if (h.startsWith('RIFF') && h.slice(8, 12) === 'WEBP') return 'webp';
  if (h.startsWith('GIF87a') || h.startsWith('GIF89a')) return 'gif';
  if (['II*\0', 'MM\0*', 'II+\0', 'MM\0+'].some((s) => h.startsWith(s))) return 'tiff'; // classic and BigTIFF
  return null;
}

/**
 * More TIFF pages than this are refused: only the first is used, but libvips walks every page on
 * each open (170,000 one-pixel pages in a 19 MB file took 6.6 s to preprocess).
 */
export const MAX_TIFF_PAGES = 1000;

/** Whether a TIFF's chain of page directories is longer than `max` (walked, not decoded). */
function tiffHasMorePages(bytes: Uint8Array, max: number): boolean {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const le = view[0] === 0x49;
  const big = (le ? view.readUInt16LE(2) : view.readUInt16BE(2)) === 43;
  const u16 = (at: number) => (le ? view.readUInt16LE(at) : view.readUInt16BE(at));
  const offset = (at: number) => (big ? Number(le ? view.readBigUInt64LE(at) : view.readBigUInt64BE(at)) : le ? view.readUInt32LE(at) : view.readUInt32BE(at));
  const [entrySize, countSize, offsetSize] = big ? [20, 8, 8] : [12, 2, 4];
  let at = offset(big ? 8 : 4);
  for (let pages = 0; at !== 0; pages++) {
    if (pages === max) return true;
    if (at + countSize > view.length) return false; // a broken chain: libvips says what is wrong
    const entries = big ? offset(at) : u16(at);
    const next = at + countSize + entries * entrySize;
    if (next + offsetSize > view.length) return false;
    at = offset(next);
  }
  return false;
}

/** A name for a refused format, when it is a common one, for the error text. */
function refusedFormat(bytes: Uint8Array): string {
  const h = head(bytes, 512);
  if (/^(\xef\xbb\xbf)?\s*</.test(h)) return /<svg[\s>]|<!DOCTYPE\s+svg/i.test(h) ? 'SVG' : 'XML or HTML';
  if (h.startsWith('%PDF')) return 'PDF';
  if (h.slice(4, 8) === 'ftyp') return 'HEIF/AVIF';
  if (h.startsWith('BM')) return 'BMP';
  return 'not a recognised image';
}

/**
 * An encoded image (PNG, JPEG, WebP, GIF or TIFF, first frame) opened with sharp after the checks
 * every processor needs: the signature (before sharp parses anything), a TIFF's page count, the
 * declared pixels against `maxInputPixels`. `alpha` says what becomes of an alpha channel (by
 * default dropped; Idefics3 flattens it onto white); the result is sRGB. Anything else is an `ImageError`.
 */
export async function openImage(bytes: Uint8Array, maxInputPixels: number, alpha: (image: Sharp) => Sharp = (image) => image.removeAlpha()): Promise<{ image: Sharp; width: number; height: number }> {
  const format = signatureFormat(bytes);
  if (!format) throw new ImageError(`the image cannot be used: only PNG, JPEG, WebP, GIF and TIFF are accepted (this is ${refusedFormat(bytes)})`);
  if (format === 'tiff' && bytes.length >= 16 && tiffHasMorePages(bytes, MAX_TIFF_PAGES)) {
    throw new ImageError(`the image cannot be used: a TIFF of more than ${MAX_TIFF_PAGES} pages (only the first would be used; send that page alone)`);
  }
  // pages: 1 (sharp's default, made explicit): a GIF's or TIFF's first frame only, its declared
  // size the one limitInputPixels checks.
  const image = alpha(sharp(bytes, { limitInputPixels: maxInputPixels, failOn: 'error', pages: 1 })).toColourspace('srgb');
  const metadata = await image.metadata().catch((error: unknown) => imageError(error, maxInputPixels));
  if (metadata.format !== format) throw new ImageError(`the image cannot be used: it starts like ${format.toUpperCase()} but decodes as ${metadata.format}`);
  const { width, height } = metadata;
  if (width * height > maxInputPixels) imageError(new Error(`${width} x ${height} exceeds the pixel limit`), maxInputPixels);
  return { image, width, height };
}

function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && 'content' in value) return String(value.content);
  return undefined;
}

export class LlavaProcessor {
  /** Digits no content can guess: markers made with them cannot be forged by a message. */
  private readonly nonce = `${randomInt(2 ** 47)}${randomInt(2 ** 47)}`;
  /** Tokens only the template may write (special added tokens and the image token), by text. */
  private readonly guarded: Set<string>;
  /** Every added token, longest first: leftmost-longest like the tokenizer's own split. */
  private readonly addedTokens: RegExp | null;
  private marked: MarkedTokenizer | undefined;
  /** The content shape the chat template takes, per role (probed once). */
  private readonly shapes: MessageShapes;

  private constructor(
    private readonly tokenizerJson: Record<string, unknown>,
    private readonly tokenizerConfig: Record<string, unknown>,
    private readonly tokenizer: Tokenizer,
    private readonly template: Template,
    private readonly specialTokens: Record<string, string | undefined>,
    /** null: a text-only model (no image preprocessing, no image token, 0 tokens per image). */
    private readonly image: PreprocessorConfig | null,
    readonly imageToken: string | null,
    readonly imageTokenId: number | null,
    readonly tokensPerImage: number,
    readonly eosTokenIds: number[],
    private readonly maxInputPixels: number,
  ) {
    const added = (tokenizerJson.added_tokens as AddedTokenJson[] | undefined) ?? [];
    const imageTokens = imageToken === null ? [] : [imageToken];
    this.guarded = new Set([...added.filter((t) => t.special).map((t) => t.content), ...imageTokens]);
    const all = [...new Set([...added.map((t) => t.content), ...imageTokens])].filter((t) => t !== '').sort((a, b) => b.length - a.length);
    this.addedTokens = all.length > 0 ? new RegExp(all.map(escapeRegExp).join('|'), 'g') : null;
    this.shapes = templateShapes(template, specialTokens);
  }

  /**
   * The processor of the checkpoint in `dir`. `imageTokenIndex` null: a text-only model, which
   * needs no preprocessor_config.json and has no image token (`tokensPerImage` is then 0).
   */
  static open(dir: string, imageTokenIndex: number | null, tokensPerImage: number, maxInputPixels = MAX_INPUT_PIXELS): LlavaProcessor {
    const tokenizerJson = readJsonFile(dir, 'tokenizer.json', true);
    const tokenizerConfig = readJsonFile(dir, 'tokenizer_config.json', true);
    const chatTemplate = readJsonFile(dir, 'chat_template.json', false)?.chat_template ?? tokenizerConfig.chat_template;
    if (typeof chatTemplate !== 'string') throw new CheckpointError(`no chat template in ${dir} (tokenizer_config.json "chat_template" or chat_template.json)`);
    const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
    let image: { token: string; preprocessor: PreprocessorConfig } | null = null;
    if (imageTokenIndex !== null) {
      const token = tokenizer.id_to_token(imageTokenIndex);
      if (token === undefined) throw new CheckpointError(`tokenizer.json has no token with the image token id ${imageTokenIndex}`);
      const parsed = preprocessorSchema.safeParse(readJsonFile(dir, 'preprocessor_config.json', true));
      if (!parsed.success) throw new CheckpointError(`preprocessor_config.json: ${z.prettifyError(parsed.error)}`);
      image = { token, preprocessor: parsed.data };
    }
    const generation = readJsonFile(dir, 'generation_config.json', false);
    const eos = generation?.eos_token_id ?? tokenizer.token_to_id(tokenText(tokenizerConfig.eos_token) ?? '');
    const eosTokenIds = (Array.isArray(eos) ? eos : eos === undefined ? [] : [eos]).map(Number);
    const specialTokens = {
      bos_token: tokenText(tokenizerConfig.bos_token),
      eos_token: tokenText(tokenizerConfig.eos_token),
      pad_token: tokenText(tokenizerConfig.pad_token),
      unk_token: tokenText(tokenizerConfig.unk_token),
    };
    return new LlavaProcessor(
      tokenizerJson,
      tokenizerConfig,
      tokenizer,
      new Template(chatTemplate),
      specialTokens,
      image?.preprocessor ?? null,
      image?.token ?? null,
      image ? imageTokenIndex : null,
      image ? tokensPerImage : 0,
      eosTokenIds,
      maxInputPixels,
    );
  }

  /**
   * The prompt text for a conversation, as `apply_chat_template` renders it. Messages may come
   * with string or typed-part content (a transcript saved before answers were stored as parts has
   * strings): each is rendered in the shape the template takes.
   */
  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): string {
    const shaped = messages.map((m) => inShape(m, m.role === 'assistant' ? this.shapes.assistant : this.shapes.user));
    return this.template.render({ messages: shaped, add_generation_prompt: addGenerationPrompt, ...this.specialTokens });
  }

  /**
   * The prompt for a conversation and where the messages' content lies in it, for `encode`.
   * Refuses (before anything changes) only content with special tokens under a template that
   * rewrites content beyond trimming, where the content cannot be told from the template's markup.
   */
  renderChatTemplate(messages: ChatMessage[], addGenerationPrompt = true): ChatPrompt {
    const text = this.applyChatTemplate(messages, addGenerationPrompt);
    const content = locateContent(messages, text, (marked) => this.applyChatTemplate(marked, addGenerationPrompt), this.nonce);
    if (content) return { text, content };
    const special = contentStrings(messages)
      .flatMap((c) => this.markup(c))
      .find(([, token]) => this.guarded.has(token));
    if (special) {
      throw new SidecarError(
        ErrorCode.InvalidParams,
        `the message or an attached file contains ${JSON.stringify(special[1])}, a special token of this model, and the model's chat template changes message text in a way that keeps it from being sent as plain text: remove it and send again`,
      );
    }
    return { text, content: [] };
  }

  /**
   * Token ids of a prompt (from `from` on), each image token expanded to `tokensPerImage` of them
   * (as `LlavaProcessor` does). A string is all markup: its special tokens are tokens.
   *
   * Content never yields a special token or the image token: whatever special strings it has are
   * tokenized as ordinary text (transformers' `split_special_tokens=True`, for that span), so a file
   * that mentions `<image>` or `<|im_start|>` is just text and cannot add images or turns. Only the
   * template's own markup stays special. Where the added tokens split the text decides how each
   * piece is normalised and pre-tokenized (Metaspace's first piece, lstrip/rstrip, a normaliser's
   * prefix), so content is not encoded apart: the template's tokens are renamed to unforgeable
   * markers in a second tokenizer and the prompt is encoded whole, split where the template's
   * tokens are and nowhere else. When no content holds a special string the prompt is encoded
   * exactly as before (whole, every added token matched): same ids as transformers.
   */
  encode(prompt: string | ChatPrompt, addSpecialTokens = true, from = 0): number[] {
    const { text, content } = typeof prompt === 'string' ? { text: prompt, content: [] } : prompt;
    const part = text.slice(from);
    const spans = content.map(([start, end]): Span => [Math.max(start - from, 0), end - from]).filter(([start, end]) => end > start);
    const inContent = (at: number, token: string) => spans.some(([start, end]) => at < end && at + token.length > start);
    if (!this.markup(part).some(([at, token]) => this.guarded.has(token) && inContent(at, token))) {
      const expanded = this.imageToken === null ? part : part.split(this.imageToken).join(this.imageToken.repeat(this.tokensPerImage));
      return this.tokenizer.encode(expanded, { add_special_tokens: addSpecialTokens }).ids;
    }
    if (part.includes(`\uE002${this.nonce}`)) throw new SidecarError(ErrorCode.InvalidParams, 'the message contains a reserved marker of the sidecar: remove it and send again');
    const marked = (this.marked ??= this.markedTokenizer());
    // The template's guarded tokens become markers; content is copied as it is.
    const markTemplate = (s: string) => (this.addedTokens ? s.replace(this.addedTokens, (token) => (marked.markers.get(token) ?? token).repeat(token === this.imageToken ? this.tokensPerImage : 1)) : s);
    let input = '';
    let at = 0;
    for (const [start, end] of spans) {
      input += markTemplate(part.slice(at, start)) + part.slice(start, end);
      at = end;
    }
    input += markTemplate(part.slice(at));
    const { tokens, ids } = marked.tokenizer.encode(input, { add_special_tokens: addSpecialTokens });
    // Markers are the renamed tokens; anything else (the post-processor's BOS too) has its own id.
    return tokens.map((token, i) => marked.ids.get(token) ?? this.tokenizer.token_to_id(token) ?? ids[i]);
  }

  /** Token ids of a piece of content alone (no BOS): its special strings are text too. */
  encodeText(text: string): number[] {
    return this.encode({ text, content: [[0, text.length]] }, false);
  }

  /** Where the added tokens are in `text`, as `[offset, token]`. */
  private markup(text: string): [number, string][] {
    return this.addedTokens ? [...text.matchAll(this.addedTokens)].map((m) => [m.index, m[0]]) : [];
  }

  private markedTokenizer(): MarkedTokenizer {
    const markers = new Map<string, string>();
    const ids = new Map<string, number>();
    const added = ((this.tokenizerJson.added_tokens as AddedTokenJson[] | undefined) ?? []).map((token) => {
      if (!this.guarded.has(token.content)) return token;
      const marker = `\uE002${this.nonce}:${token.id}\uE003`;
      markers.set(token.content, marker);
      ids.set(marker, token.id);
      return { ...token, content: marker };
    });
    return { tokenizer: new Tokenizer({ ...this.tokenizerJson, added_tokens: added }, this.tokenizerConfig), markers, ids };
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
  async preprocessImage(bytes: Uint8Array): Promise<{ pixels: Float32Array; height: number; width: number; grid: ImageGrid }> {
    const c = this.image;
    if (c === null) throw new ImageError('this model reads text only: it has no image preprocessing (no preprocessor_config.json)');
    let { image, width, height } = await openImage(bytes, this.maxInputPixels);
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
    // A long thin image resized by its shortest edge, with no crop after, could come out far larger than it went in.
    if (width * height > this.maxInputPixels) imageError(new Error(`preprocessor_config.json resizes it to ${width} x ${height}`), this.maxInputPixels);
    const rgb = await decodeRgb(image, this.maxInputPixels);
    return { pixels: normalizedPlanes([rgb], c), height: rgb.height, width: rgb.width, grid: SINGLE_FRAME };
  }

  /** A LLaVA image is one frame whatever its size: its prompt does not depend on it (never read). */
  imageGrid(): Promise<ImageGrid> {
    return Promise.resolve(SINGLE_FRAME);
  }
}
