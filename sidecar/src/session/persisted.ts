/**
 * The schema of a persisted conversation (`sessions/<id>.json`): a state file is checked against
 * it before it becomes a conversation, so a damaged or foreign file is refused with what is wrong
 * instead of failing later, in the middle of a turn, with a misleading error.
 */
import { z } from 'zod';
import { SessionId, SessionSettings, type TurnStats } from '../protocol/index.js';
import type { PersistedConversation } from './conversation.js';

export const IMAGE_HASH_PATTERN = /^[0-9a-f]{64}$/;
export const ImageHash = z.string().regex(IMAGE_HASH_PATTERN, 'an image hash is 64 lowercase hex digits (SHA-256)');

const count = z.number().int().nonnegative();
const milliseconds = z.number().nonnegative();

const TurnStatsSchema = z.object({
  newTokens: count,
  generatedTokens: count,
  tokensSeen: count,
  keptSlots: z.array(count),
  kvBytes: count,
  fullKvBytes: count,
  timeToFirstTokenMs: milliseconds,
  prefillMs: milliseconds,
  compressMs: milliseconds,
  decodeMs: milliseconds,
  imagesEncoded: count,
  imagesReused: count,
  rebuilt: z.boolean(),
  coldBytes: count.optional(),
  recalledSlots: count.optional(),
  recallMs: milliseconds.optional(),
}) satisfies z.ZodType<TurnStats>;

const ContentPart = z.discriminatedUnion('type', [z.object({ type: z.literal('text'), text: z.string() }), z.object({ type: z.literal('image') })]);

const ChatMessage = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.union([z.string(), z.array(ContentPart)]) });

/** Token ids, checked in one pass (a transcript holds thousands; a schema per element costs 10x). */
const TokenIds = z.custom<number[]>((value) => Array.isArray(value) && value.every((id) => Number.isInteger(id) && (id as number) >= 0), 'token ids must be non-negative integers');

const Segment = z.object({ ids: TokenIds, imageHashes: z.array(ImageHash) });

export const PersistedConversationSchema = z.object({
  version: z.literal(1),
  id: SessionId,
  settings: SessionSettings,
  messages: z.array(ChatMessage),
  segments: z.array(Segment),
  fedText: z.string(),
  imageCount: count,
  turns: z.array(TurnStatsSchema),
}) satisfies z.ZodType<PersistedConversation>;

/** The conversation in `text` (the content of `<expectedId>.json`); throws what is wrong with it. */
export function parsePersisted(text: string, expectedId: string): PersistedConversation {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON (truncated or damaged): ${error instanceof Error ? error.message : String(error)}`);
  }
  const parsed = PersistedConversationSchema.safeParse(json);
  if (!parsed.success) throw new Error(`not a version-1 conversation: ${z.prettifyError(parsed.error)}`);
  if (parsed.data.id !== expectedId) throw new Error(`it holds conversation ${parsed.data.id}, not ${expectedId} as its name says`);
  return parsed.data;
}

/** The distinct images a conversation shows, in order. */
export function imagesOf(data: PersistedConversation): string[] {
  return [...new Set(data.segments.flatMap((segment) => segment.imageHashes))];
}
