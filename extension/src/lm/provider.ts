/**
 * The local model in VS Code's chat model picker (`vscode.lm.registerLanguageModelChatProvider`),
 * so other chat features and extensions can use it: image input declared (unless the model reads
 * text only), answers streamed,
 * cancellation honoured, tokens counted by the model's own tokenizer. The sidecar starts on the
 * first request, never just to list the model.
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import { Methods } from '../../../sidecar/src/protocol/index.js';
import { isEmbeddedModel, readSettings } from '../config.js';
import { createSession, type SessionTracker } from '../sessions.js';
import { SECTION, SETTINGS } from '../settings.js';
import type { Sidecar } from '../sidecar/supervisor.js';
import { ConversationIndex, type PlainMessage } from './conversations.js';
import { readModelFolder } from './modelFolder.js';

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

export function registerLanguageModelProvider(sidecar: Sidecar, sessions: SessionTracker): vscode.Disposable {
  const changed = new vscode.EventEmitter<void>();
  const conversations = new ConversationIndex();
  const provider: vscode.LanguageModelChatProvider = {
    onDidChangeLanguageModelChatInformation: changed.event,
    provideLanguageModelChatInformation() {
      const settings = readSettings();
      if (!settings.modelPath) return [];
      const model = readModelFolder(settings.modelPath);
      return [
        {
          id: 'lookm-local',
          name: `LOOK-M local (${isEmbeddedModel(settings.modelPath) ? 'embedded tiny VLM' : basename(settings.modelPath)})`,
          family: 'lookm',
          version: '1',
          tooltip: `The local ${model.imageInput ? 'vision-language' : 'text-only'} model in ${settings.modelPath}, with a LOOK-M compressed KV cache (${settings.policy}).`,
          maxInputTokens: model.contextLength || 4096,
          maxOutputTokens: settings.maxNewTokens,
          capabilities: { imageInput: model.imageInput, toolCalling: false },
        },
      ];
    },
    async provideLanguageModelChatResponse(_model, messages, _options, progress, token) {
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
      return tokens + message.images.length * (sidecar.modelInfo?.tokensPerImage ?? 0);
    },
  };
  return vscode.Disposable.from(
    changed,
    vscode.lm.registerLanguageModelChatProvider(VENDOR, provider),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration(`${SECTION}.${SETTINGS.modelPath.key}`)) changed.fire();
    }),
  );
}
