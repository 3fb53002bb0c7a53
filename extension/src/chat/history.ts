/**
 * Which sidecar session a chat continues (pure; no VS Code import): the one named in the metadata
 * of the latest answer of ours in the chat history. A `/clear` answer names none, so the next
 * question starts a new session.
 */
export const PARTICIPANT_ID = 'lookm.chat';

export interface LookmMetadata {
  sessionId?: string;
}

/** The parts of a chat history turn this needs (request turns have no `result`). */
export interface HistoryTurn {
  participant: string;
  result?: { metadata?: { [key: string]: unknown } };
}

export function previousSession(history: readonly HistoryTurn[]): string | undefined {
  for (let i = history.length - 1; i >= 0; i--) {
    const turn = history[i];
    if (turn.participant === PARTICIPANT_ID && turn.result) return (turn.result.metadata as LookmMetadata | undefined)?.sessionId;
  }
  return undefined;
}
