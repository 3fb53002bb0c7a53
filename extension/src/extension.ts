/** Activation: the supervised sidecar, the chat participant, the palette commands, the status bar. */
import * as vscode from 'vscode';
import { registerChatParticipant } from './chat/participant.js';
import { registerCommands } from './commands.js';
import { Sidecar } from './sidecar/supervisor.js';
import { registerStatusBar } from './statusBar.js';

let sidecar: Sidecar | undefined;

export function activate(context: vscode.ExtensionContext): void {
  sidecar = new Sidecar(context);
  context.subscriptions.push(sidecar, registerChatParticipant(sidecar), registerStatusBar(sidecar), ...registerCommands(sidecar));
}

export function deactivate(): Promise<void> | undefined {
  return sidecar?.stop();
}
