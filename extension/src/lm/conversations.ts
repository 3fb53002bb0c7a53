/**
 * Mapping the language-model API's stateless requests (the whole message list every time) onto
 * sidecar sessions, so a conversation that continues one of ours reuses its compressed KV (pure;
 * no VS Code import). A request whose earlier messages are exactly a conversation this provider
 * answered continues that session with the last message; any other history is folded into the
 * first turn of a new session.
 */
import { createHash } from 'node:crypto';

export interface PlainMessage {
  role: 'user' | 'assistant';
  text: string;
  images: Uint8Array[];
}

export interface PlannedTurn {
  /** The session to continue; absent: create one. */
  sessionId?: string;
  text: string;
  images: Uint8Array[];
}

function key(messages: readonly PlainMessage[]): string {
  const hash = createHash('sha256');
  for (const m of messages) {
    hash.update(`${m.role}\u0000${m.text.trim()}\u0000`); // streamed answers may keep a leading space
    for (const image of m.images) hash.update(createHash('sha256').update(image).digest());
    hash.update('\u0001');
  }
  return hash.digest('hex');
}

export class ConversationIndex {
  private readonly sessions = new Map<string, string>();
  constructor(private readonly maxEntries = 200) {}

  /** `fresh`: ignore the sessions known (the one found no longer exists in the sidecar). */
  plan(messages: readonly PlainMessage[], fresh = false): PlannedTurn {
    const last = messages.at(-1);
    if (!last || last.role !== 'user') throw new Error('the last message must be the user\'s');
    const earlier = messages.slice(0, -1);
    const sessionId = earlier.length > 0 && !fresh ? this.sessions.get(key(earlier)) : undefined;
    if (sessionId || earlier.length === 0) return { sessionId, text: last.text, images: last.images };
    const transcript = earlier.map((m) => `${m.role === 'user' ? 'User' : 'Assistant'}: ${m.text}`).join('\n');
    return { text: `Earlier in this conversation:\n${transcript}\n\n${last.text}`, images: messages.flatMap((m) => m.images) };
  }

  /** After an answer: the conversation including it continues `sessionId`. */
  answered(messages: readonly PlainMessage[], answer: string, sessionId: string): void {
    this.sessions.set(key([...messages, { role: 'assistant', text: answer, images: [] }]), sessionId);
    if (this.sessions.size > this.maxEntries) this.sessions.delete(this.sessions.keys().next().value!);
  }
}
