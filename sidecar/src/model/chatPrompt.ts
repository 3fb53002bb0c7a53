/**
 * Where the messages' own text lies in a rendered chat prompt. The template is rendered a second
 * time with an unforgeable marker in place of every non-empty content string (message texts,
 * text parts); the markers cut that rendering into the template's own pieces, and the real
 * rendering is matched against those pieces. A template that trims a message (`content.strip()`,
 * `| trim`) is followed; one that changes content in any other way gives no spans (`null`).
 */
import type { ChatMessage } from './processor.js';

/** `[start, end)` in the rendered prompt. */
export type Span = readonly [start: number, end: number];

/** A rendered prompt and the spans of the messages' content in it, in order, not overlapping. */
export interface ChatPrompt {
  text: string;
  content: readonly Span[];
}

/** Gives up on a pathological template rather than backtracking for long. */
const MAX_STEPS = 100_000;

/** Every content string of the messages, in order. */
export function contentStrings(messages: readonly ChatMessage[]): string[] {
  return messages.flatMap((m) => (typeof m.content === 'string' ? [m.content] : m.content.flatMap((part) => (part.type === 'text' ? [part.text] : []))));
}

/**
 * The content spans of `text` (`render(messages)`), found by rendering `messages` with markers
 * `\uE000{nonce}:{k}\uE001` in place of their contents; `null` when the template's pieces and
 * the contents (as is or trimmed) do not add up to `text`.
 */
export function locateContent(messages: readonly ChatMessage[], text: string, render: (messages: ChatMessage[]) => string, nonce: string): Span[] | null {
  const contents: string[] = [];
  // Empty strings stay empty: a template may test a message for truthiness.
  const mark = (s: string) => (s === '' ? s : `\uE000${nonce}:${contents.push(s) - 1}\uE001`);
  const marked = messages.map((m): ChatMessage => ({
    ...m,
    content: typeof m.content === 'string' ? mark(m.content) : m.content.map((part) => (part.type === 'text' ? { ...part, text: mark(part.text) } : part)),
  }));
  if (contents.length === 0) return [];
  let skeleton: string;
  try {
    skeleton = render(marked);
  } catch {
    return null; // the template looks inside the content
  }
  // With the capture group: template piece, content index, template piece, ..., template piece.
  const parts = skeleton.split(new RegExp(`\uE000${nonce}:(\\d+)\uE001`));
  const pieces = parts.filter((_, i) => i % 2 === 0);
  const occurrences = parts.filter((_, i) => i % 2 === 1).map((k) => contents[Number(k)]);
  return align(text, pieces, occurrences);
}

/** Matches `text` against piece, content, piece, ..., piece (each content as is or trimmed). */
function align(text: string, pieces: string[], occurrences: string[]): Span[] | null {
  const spans: Span[] = [];
  let steps = 0;
  const walk = (i: number, at: number): boolean => {
    if (!text.startsWith(pieces[i], at)) return false;
    const next = at + pieces[i].length;
    if (i === occurrences.length) return next === text.length;
    const c = occurrences[i];
    for (const candidate of new Set([c, c.trim(), c.trimStart(), c.trimEnd()])) {
      if (++steps > MAX_STEPS) return false;
      if (!text.startsWith(candidate, next)) continue;
      if (candidate !== '') spans.push([next, next + candidate.length]);
      if (walk(i + 1, next + candidate.length)) return true;
      if (candidate !== '') spans.pop();
    }
    return false;
  };
  return walk(0, 0) ? spans : null;
}
