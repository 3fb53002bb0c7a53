/** Activation: the supervised sidecar, the chat participant, the palette commands, the status bar. */
import * as vscode from 'vscode';
import { registerChatParticipant } from './chat/participant.js';
import { registerCommands } from './commands.js';
import { Sidecar } from './sidecar/supervisor.js';
import { registerStatusBar } from './statusBar.js';

let sidecar: Sidecar | undefined;

/** What activation returns: the supervised sidecar, for other extensions and the integration tests. */
export interface LookmApi {
  sidecar: Sidecar;
}

export function activate(context: vscode.ExtensionContext): LookmApi {
  sidecar = new Sidecar(context);
  context.subscriptions.push(sidecar, registerChatParticipant(sidecar), registerStatusBar(sidecar), ...registerCommands(sidecar));
  return { sidecar };
}

export function deactivate(): Promise<void> | undefined {
  return sidecar?.stop();
}
