/**
 * What the chat and the palette tell a user in words of their own (pure; no VS Code import): that
 * the shipped model is a toy, and why a question too long for the model was refused.
 */
import { ErrorCode } from '../../../sidecar/src/protocol/index.js';

/** Said once, on the first answer of the model shipped with the extension (see sidecar/model/README.md). */
export const TOY_MODEL_NOTICE =
  'This is the tiny demo model shipped with LOOK-M (1.2 M parameters, trained from scratch here). ' +
  'It only knows the shapes of its training data: a coloured shape with a digit or a word in a simple picture, ' +
  'and the value of a setting in a short `name = value` file. Anything else (a real screenshot, code, a long file) ' +
  'gets a confident wrong answer. For real answers, download a LLaVA model with **LOOK-M: Download Model…**, ' +
  'or point the setting `lookm.modelPath` at one.';

/** Whether a failed request is the sidecar's refusal of a prompt longer than the model's context. */
export function isContextTooLong(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && error.code === ErrorCode.ContextTooLong;
}

const withThousands = (text: string) => text.replace(/\d{4,}/g, (n) => Number(n).toLocaleString('en-US'));
const sentence = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

/** The sidecar's refusal (after the method name the client puts in front, e.g. "Session/chat: "): what, why, advice. */
const REFUSAL = /(the message .*?), but (.*?): ([^:]*)$/s;

/**
 * The refusal as Markdown: what happened (the sidecar's "the message has N tokens …, but the
 * model's context is M tokens …") and what to do about it.
 */
export function contextTooLongText(sidecarMessage: string): string {
  const parts = REFUSAL.exec(sidecarMessage);
  const what = parts ? `${sentence(parts[1])}, but ${parts[2]}.` : `${sentence(sidecarMessage)}.`;
  const conversation = parts && /new conversation/.test(parts[3]) ? 'start a new conversation, or ' : '';
  return (
    `**Too long for this model; nothing of this question was read.** ${withThousands(what)}\n\n` +
    `To ask anyway: ${conversation}ask about a shorter file or a selection of it, or use a model with a longer context ` +
    '(**LOOK-M: Select Model…** or **LOOK-M: Download Model…**).'
  );
}

/** The refusal in one line, for a notification. */
export function contextTooLongLine(sidecarMessage: string): string {
  const parts = REFUSAL.exec(sidecarMessage);
  return parts ? `Too long for this model: ${withThousands(`${parts[1]}, but ${parts[2]}`)}. Ask about a shorter file or a selection, or use a model with a longer context.` : `Too long for this model: ${sidecarMessage}`;
}

/** Where the notice remembers that it was shown (VS Code's global state). */
export interface NoticeMemory {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): Thenable<void>;
}

/** The toy-model notice, shown once per installation: on the first answer of the shipped model, in the chat or the palette. */
export class ToyModelNotice {
  static readonly key = 'lookm.toyModelNoticeShown';
  constructor(private readonly memory: NoticeMemory) {}

  /** True the first time an answer comes from the shipped model; false after that, and for any other model. */
  take(fromShippedModel: boolean): boolean {
    if (!fromShippedModel || this.memory.get<boolean>(ToyModelNotice.key)) return false;
    void this.memory.update(ToyModelNotice.key, true);
    return true;
  }
}
