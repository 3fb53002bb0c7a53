/**
 * `@lookm` in the chat panel. Answers stream; cancelling stops reading or decoding; attached images, files
 * and selections are sent; follow-ups in the same chat reuse the sidecar session (and its
 * compressed KV), found again through the metadata of the previous answer. Slash commands:
 * `/explain` (an image or screenshot), `/file` (a whole file), `/clear` (drop this conversation's
 * cache), `/stats` (the session's KV figures). While the model reads, the progress line counts
 * tokens read; Stop works then too. Each answer ends with a footer of KV kept vs full and time to
 * first token. The first answer of the shipped toy model says what it is; a question longer than
 * the model's context is refused in plain words; a request VS Code failed before it reached us
 * (no language model to run it with) is answered with a notification offering Open Chat.
 */
import * as vscode from 'vscode';
import { Methods, type SessionStats } from '../../../sidecar/src/protocol/index.js';
import { isEmbeddedModel, readSettings } from '../config.js';
import { createSession, type SessionTracker } from '../sessions.js';
import type { Sidecar } from '../sidecar/supervisor.js';
import { PARTICIPANT_ID, previousSession, type HistoryTurn, type LookmMetadata } from './history.js';
import { contextTooLongText, isContextTooLong, TOY_MODEL_NOTICE, type ToyModelNotice } from './notices.js';
import { offerOpenChat } from './openChat.js';
import { collectAttachments } from './references.js';
import { readingProgress, statsSummary, STOPPED_WHILE_READING, turnFooter } from './format.js';

export function registerChatParticipant(extensionUri: vscode.Uri, sidecar: Sidecar, sessions: SessionTracker, notice: ToyModelNotice): vscode.Disposable {
  const answer: vscode.ChatRequestHandler = async (request, context, stream, token) => {
    stream.progress('Starting the local model…');
    const client = await sidecar.ready();
    let sessionId = previousSession(context.history.map((turn): HistoryTurn => (turn instanceof vscode.ChatResponseTurn ? turn : { participant: turn.participant })));

    if (request.command === 'clear') {
      if (sessionId) {
        await client.sendRequest(Methods.sessionDelete, { sessionId });
        sessions.forget(sessionId);
      }
      stream.markdown('This conversation\'s cache is cleared; the next question starts a new one.');
      return { metadata: {} satisfies LookmMetadata };
    }
    if (sessionId) {
      // A session the sidecar no longer knows (its state folder was cleared) starts over.
      const known = await client.sendRequest(Methods.sessionStats, { sessionId }).then(
        (stats: SessionStats) => stats,
        () => null,
      );
      if (!known) sessionId = undefined;
    }
    sessionId ??= await createSession(sidecar);
    if (request.command === 'stats') {
      stream.markdown(statsSummary(await client.sendRequest(Methods.sessionStats, { sessionId })));
      return { metadata: { sessionId } satisfies LookmMetadata };
    }

    // What VS Code attached, at debug level: attachments arrive in shapes that differ between versions.
    sidecar.output.debug(`chat references: ${JSON.stringify(request.references.map((r) => ({ id: r.id, value: r.value instanceof vscode.Uri ? r.value.toString() : typeof r.value === 'object' && r.value ? Object.keys(r.value) : typeof r.value })))}`);
    const attachments = await collectAttachments(request.references);
    if (request.command === 'explain' && attachments.images.length === 0) {
      stream.markdown('Attach an image or screenshot (drag it into the chat or use **#file**) and ask again, or run **LOOK-M: Explain Screenshot…**.');
      return { metadata: { sessionId } satisfies LookmMetadata };
    }
    const text = request.prompt || (request.command === 'explain' ? 'Explain this image.' : request.command === 'file' ? 'Explain this file.' : '');
    if (notice.take(isEmbeddedModel(readSettings().modelPath))) {
      // Before the answer: a user reads this first, and a toy answer follows.
      stream.markdown(`> ${TOY_MODEL_NOTICE}\n\n`);
      stream.button({ command: 'lookm.downloadModel', title: 'Download Model…' });
    }
    stream.progress('Reading…');
    let answering = false;
    const listeners = [
      client.onNotification(Methods.sessionProgress, (p) => {
        if (p.sessionId === sessionId && !answering) stream.progress(readingProgress(p.tokensRead, p.tokensTotal));
      }),
      client.onNotification(Methods.sessionToken, (t) => {
        if (t.sessionId !== sessionId) return;
        answering = true;
        stream.markdown(t.text);
      }),
    ];
    try {
      const id = sessionId;
      const result = await sessions.turn(id, () => client.sendRequest(Methods.sessionChat, { sessionId: id, text, images: attachments.images, files: attachments.files }, token));
      stream.markdown(turnFooter(result));
      stream.button({ command: 'lookm.showCache', title: 'Show KV Cache' });
    } catch (error) {
      if (isContextTooLong(error) && error instanceof Error) {
        // Refused before reading: what happened and what to do, not an error trace.
        stream.markdown(contextTooLongText(error.message));
        stream.button({ command: 'lookm.selectModel', title: 'Select Model…' });
        stream.button({ command: 'lookm.downloadModel', title: 'Download Model…' });
        return { metadata: { sessionId } satisfies LookmMetadata };
      }
      // Stop pressed: the chat marks the answer stopped; it is not an error.
      if (!token.isCancellationRequested) throw error;
      if (!answering) stream.markdown(`*${STOPPED_WHILE_READING}*`);
    } finally {
      for (const listener of listeners) listener.dispose();
    }
    return { metadata: { sessionId } satisfies LookmMetadata };
  };
  const handler: vscode.ChatRequestHandler = async (request, context, stream, token) => {
    try {
      return await answer(request, context, stream, token);
    } catch (error) {
      // Returned rather than thrown so that the result keeps its metadata: the follow-up provider
      // tells our failures from the requests VS Code failed before they reached us.
      return { errorDetails: { message: error instanceof Error ? error.message : String(error) }, metadata: {} satisfies LookmMetadata };
    }
  };
  const participant = vscode.chat.createChatParticipant(PARTICIPANT_ID, handler);
  participant.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'icon.svg');
  // VS Code asks for follow-ups after every request to @lookm, also one it failed before running the
  // handler ("Language model unavailable": no model selected and no Copilot default), whose result
  // has an error and none of the metadata every result of ours carries. That is where the failure can be answered.
  participant.followupProvider = {
    provideFollowups(result) {
      if (result.errorDetails && !result.metadata) offerOpenChat(result.errorDetails.message);
      return [];
    },
  };
  return participant;
}
