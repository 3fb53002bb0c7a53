/**
 * The local model in VS Code's chat model picker (`vscode.lm.registerLanguageModelChatProvider`),
 * so other chat features and extensions can use it: image input declared (unless the model reads
 * text only), answers streamed,
 * cancellation honoured, tokens counted by the model's own tokenizer. The sidecar starts on the
 * first request, never just to list the model.
 */
import * as vscode from 'vscode';
import { Methods } from '../../../sidecar/src/protocol/index.js';
import { isEmbeddedModel, readSettings } from '../config.js';
import { createSession, type SessionTracker } from '../sessions.js';
import { SECTION, SETTINGS } from '../settings.js';
import type { Sidecar } from '../sidecar/supervisor.js';
import { ConversationIndex, type PlainMessage } from './conversations.js';
import { localModelInformation } from './modelInformation.js';
import { readModelFolder } from './modelFolder.js';
import { imageTokenEstimate } from './tokenEstimate.js';

export const VENDOR = 'lookm';

/** An image part of a message (LanguageModelDataPart, not in the stable typings of VS Code 1.104). */
function imageBytes(part: unknown): Uint8Array | null {
  if (part && typeof part === 'object' && 'mimeType' in part && 'data' in part && typeof part.mimeType === 'string' && part.mimeType.startsWith('image/') && part.data instanceof Uint8Array) return part.data;
  return null;
}

function plain(message: vscode.LanguageModelChatRequestMessage): PlainMessage {
  const text = message.content.flatMap((part) => (part instanceof vscode.LanguageModelTextPart ? [part.value] : [])).join('');
  const images = message.content.flatMap((part) => imageBytes(part) ?? []);
  return { role: message.role === vscode.LanguageModelChatMessageRole.Assistant ? 'assistant' : 'user', text, images };
}

/** The registered provider; the integration tests can take the model out of the list, as a profile where it is missing. */
export interface LanguageModelRegistration extends vscode.Disposable {
  setListedForTests(listed: boolean): void;
}

export function registerLanguageModelProvider(sidecar: Sidecar, sessions: SessionTracker): LanguageModelRegistration {
  const changed = new vscode.EventEmitter<void>();
  let listed = true;
  const conversations = new ConversationIndex();
  const provider: vscode.LanguageModelChatProvider = {
    onDidChangeLanguageModelChatInformation: changed.event,
    provideLanguageModelChatInformation() {
      if (!listed) return [];
      // Listed even without a usable model folder: a request then fails with our clear message
      // (from the sidecar's start) instead of VS Code's "Language model unavailable".
      const settings = readSettings();
      const source = { modelPath: settings.modelPath, embedded: isEmbeddedModel(settings.modelPath), policy: settings.policy, maxNewTokens: settings.maxNewTokens };
      return [localModelInformation(source, readModelFolder(settings.modelPath))];
    },
    async provideLanguageModelChatResponse(_model, messages, options, progress, token) {
      // Tool calling is declared only so that the agent-mode picker lists the model (modelInformation.ts).
      if (options.toolMode === vscode.LanguageModelChatToolMode.Required && options.tools?.length) {
        throw new Error('The local LOOK-M model cannot call tools; ask it without requiring a tool (for example @lookm in the chat).');
      }
      const plainMessages = messages.map(plain);
      const client = await sidecar.ready();
      let turn = conversations.plan(plainMessages);
      // A session cleared since (Clear Conversation Cache, a wiped state folder): fold the history instead.
      if (turn.sessionId && !(await client.sendRequest(Methods.sessionStats, { sessionId: turn.sessionId }).then(() => true, () => false))) turn = conversations.plan(plainMessages, true);
      const sessionId = turn.sessionId ?? (await createSession(sidecar));
      const listener = client.onNotification(Methods.sessionToken, (t) => {
        if (t.sessionId === sessionId) progress.report(new vscode.LanguageModelTextPart(t.text));
      });
      try {
        const images = turn.images.map((bytes, i) => ({ data: Buffer.from(bytes).toString('base64'), name: `image ${i + 1}` }));
        const result = await sessions.turn(sessionId, () => client.sendRequest(Methods.sessionChat, { sessionId, text: turn.text, images }, token));
        conversations.answered(plainMessages, result.text, sessionId);
      } finally {
        listener.dispose();
      }
    },
    async provideTokenCount(_model, text) {
      const client = await sidecar.ready();
      const message = typeof text === 'string' ? { text, images: [] } : plain(text);
      const { tokens } = await client.sendRequest(Methods.modelCountTokens, { text: message.text });
      return tokens + imageTokenEstimate(sidecar.modelInfo, message.images.length);
    },
  };
  const registration = vscode.lm.registerLanguageModelChatProvider(VENDOR, provider);
  // The workbench asks a provider for its models at registration only when the user once changed
  // the picker's choice for it (a clean profile never did); a change event makes it ask now, so
  // the chat's picker lists our model (and selects it when it is the only one) before the first question.
  const announce = setTimeout(() => changed.fire(), 0);
  const disposable = vscode.Disposable.from(
    changed,
    registration,
    { dispose: () => clearTimeout(announce) },
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration(`${SECTION}.${SETTINGS.modelPath.key}`)) changed.fire();
    }),
  );
  return {
    dispose() {
      disposable.dispose();
    },
    setListedForTests(value: boolean) {
      listed = value;
      changed.fire();
    },
  };
}
