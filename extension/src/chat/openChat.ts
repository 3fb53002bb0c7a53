/**
 * LOOK-M: Open Chat: the chat view with `@lookm ` typed and the local model selected, so a user
 * without any other language model (no Copilot sign-in) can ask at once. Also what a chat request
 * that failed before `@lookm` could run (VS Code found no model to run it with) offers.
 */
import * as vscode from 'vscode';
import { VENDOR } from '../lm/provider.js';
import { MODEL_ID } from '../lm/modelInformation.js';

export const OPEN_CHAT_COMMAND = 'lookm.openChat';
/** The participant's name as typed in the chat (package.json `chatParticipants[0].name`). */
export const PARTICIPANT_NAME = 'lookm';

export async function openChat(): Promise<void> {
  try {
    // A partial query is put in the input, not sent; the model selector resolves our provider's model first.
    await vscode.commands.executeCommand('workbench.action.chat.open', { query: `@${PARTICIPANT_NAME} `, isPartialQuery: true, modelSelector: { vendor: VENDOR, id: MODEL_ID } });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    void vscode.window.showErrorMessage(`LOOK-M: the chat could not be opened with the local model (${reason}). The chat view needs VS Code 1.104 or later with its AI features enabled (the setting chat.disableAIFeatures off).`);
  }
}

/** A chat request to `@lookm` failed before it ran (no language model for it): says so, offering Open Chat. */
export function offerOpenChat(reason: string): void {
  const message = `LOOK-M could not answer: ${reason}. @${PARTICIPANT_NAME} runs only with a language model selected in the chat; Open Chat selects the local LOOK-M model.`;
  void vscode.window.showErrorMessage(message, 'Open Chat').then((choice) => (choice ? openChat() : undefined));
}
