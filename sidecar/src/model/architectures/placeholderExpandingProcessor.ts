/**
 * What the processors that write each image's tokens into the prompt text share (Idefics3,
 * LLaVA-NeXT / OneVision): `LlavaProcessor`'s chat template and tokenizer, opened text-only, and
 * each image placeholder the template wrote (never one inside content) replaced, before
 * tokenizing, by the text its image becomes, which depends on the image's grid.
 */
import { SidecarError } from '../../protocol/errors.js';
import { ErrorCode } from '../../protocol/index.js';
import type { ChatPrompt, Span } from '../chatPrompt.js';
import type { ImageGrid } from '../imageGrid.js';
import type { LlavaProcessor } from '../processor.js';

export abstract class PlaceholderExpandingProcessor {
  protected constructor(
    /** Chat template and tokenizer; opened text-only: the image tokens are expanded here, before it tokenizes. */
    readonly text: LlavaProcessor,
    /** The placeholder the chat template writes once per image (`<image>`). */
    readonly imageToken: string,
  ) {}

  /** The prompt text one image of `grid` becomes in place of its placeholder. */
  protected abstract textForImage(grid: ImageGrid): string;

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

  /**
   * The prompt with each placeholder the template wrote (not one inside content) replaced by its
   * image's text, in order; the content spans moved with the text. `grids` has one entry per
   * such placeholder, or the images and the prompt disagree (`ImageTokenMismatch`).
   */
  expandImages(prompt: ChatPrompt, grids: readonly ImageGrid[]): ChatPrompt {
    const { text, content } = prompt;
    const token = this.imageToken;
    const inContent = (at: number) => content.some(([start, end]) => at < end && at + token.length > start);
    const places: number[] = [];
    for (let at = text.indexOf(token); at >= 0; at = text.indexOf(token, at + token.length)) if (!inContent(at)) places.push(at);
    if (places.length !== grids.length) {
      throw new SidecarError(ErrorCode.ImageTokenMismatch, `the prompt has ${places.length} image placeholders but ${grids.length} images were given`);
    }
    let out = '';
    let from = 0;
    const shifts: [at: number, by: number][] = [];
    places.forEach((at, i) => {
      const expansion = this.textForImage(grids[i]);
      out += text.slice(from, at) + expansion;
      from = at + token.length;
      shifts.push([from, expansion.length - token.length]);
    });
    out += text.slice(from);
    const moved = (offset: number) => offset + shifts.filter(([at]) => at <= offset).reduce((sum, [, by]) => sum + by, 0);
    return { text: out, content: content.map(([start, end]): Span => [moved(start), moved(end)]) };
  }

  /**
   * Token ids of a prompt from `from` on, the images there (`grids`, in order) expanded by
   * `expandImages`; content is text, whatever special strings it holds.
   */
  encode(prompt: string | ChatPrompt, addSpecialTokens = true, from = 0, grids: readonly ImageGrid[] = []): number[] {
    const { text, content } = typeof prompt === 'string' ? { text: prompt, content: [] as Span[] } : prompt;
    const part = { text: text.slice(from), content: content.map(([start, end]): Span => [Math.max(start - from, 0), end - from]).filter(([start, end]) => end > start) };
    return this.text.encode(this.expandImages(part, grids), addSpecialTokens);
  }
}
