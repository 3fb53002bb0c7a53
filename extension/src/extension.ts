/** Activation: the supervised sidecar, the chat participant, the model provider, the palette commands, the status bar. */
import * as vscode from 'vscode';
import { ToyModelNotice } from './chat/notices.js';
import { registerChatParticipant } from './chat/participant.js';
import { registerCommands } from './commands.js';
import { setEmbeddedModel } from './config.js';
import { registerLanguageModelProvider, type LanguageModelRegistration } from './lm/provider.js';
import { SessionTracker } from './sessions.js';
import { Sidecar } from './sidecar/supervisor.js';
import { registerStatusBar } from './statusBar.js';

let sidecar: Sidecar | undefined;

/** What activation returns: the supervised sidecar and the conversations, for other extensions and the integration tests. */
export interface LookmApi {
  sidecar: Sidecar;
  sessions: SessionTracker;
  models: LanguageModelRegistration;
}

export function activate(context: vscode.ExtensionContext): LookmApi {
  setEmbeddedModel(context.extensionPath);
  sidecar = new Sidecar(context);
  const sessions = new SessionTracker();
  const notice = new ToyModelNotice(context.globalState);
  const models = registerLanguageModelProvider(sidecar, sessions);
  context.subscriptions.push(sidecar, sessions, registerChatParticipant(context.extensionUri, sidecar, sessions, notice), registerStatusBar(sidecar, sessions), models, ...registerCommands(context, sidecar, sessions, notice));
  return { sidecar, sessions, models };
}

export function deactivate(): Promise<void> | undefined {
  return sidecar?.stop();
}
