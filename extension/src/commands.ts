/**
 * Palette actions (category "LOOK-M"): explain an image, ask about the open file or selection,
 * restart the sidecar, show its log. Answers stream into a new Markdown document beside the editor.
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import { Methods } from '../../sidecar/src/protocol/index.js';
import { turnFooter } from './chat/format.js';
import { isImage, readAttachment, type Attachments } from './chat/references.js';
import type { Sidecar } from './sidecar/supervisor.js';

/** Runs one question in a fresh session, streaming the answer into an untitled Markdown document. */
async function answerInDocument(sidecar: Sidecar, title: string, text: string, attachments: Attachments): Promise<void> {
  const document = await vscode.workspace.openTextDocument({ language: 'markdown', content: `# ${title}\n\n> ${text}\n\n` });
  await vscode.window.showTextDocument(document, { viewColumn: vscode.ViewColumn.Beside, preview: false });
  const append = async (chunk: string) => {
    const edit = new vscode.WorkspaceEdit();
    edit.insert(document.uri, document.lineAt(document.lineCount - 1).range.end, chunk);
    await vscode.workspace.applyEdit(edit);
  };
  await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `LOOK-M: ${title}`, cancellable: true }, async (_progress, token) => {
    const client = await sidecar.ready();
    const { sessionId } = await client.sendRequest(Methods.sessionCreate, {});
    let pending = Promise.resolve();
    const listener = client.onNotification(Methods.sessionToken, (t) => {
      if (t.sessionId === sessionId) pending = pending.then(() => append(t.text));
    });
    try {
      const result = await client.sendRequest(Methods.sessionChat, { sessionId, text, ...attachments }, token);
      await pending;
      await append(turnFooter(result));
    } finally {
      listener.dispose();
    }
  });
}

export function registerCommands(sidecar: Sidecar): vscode.Disposable[] {
  return [
    vscode.commands.registerCommand('lookm.explainImage', async (uri?: vscode.Uri) => {
      const active = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
      const fromTab = active instanceof vscode.TabInputCustom || active instanceof vscode.TabInputText ? active.uri : undefined;
      let image = uri ?? (fromTab && isImage(fromTab) ? fromTab : undefined);
      if (!image) {
        const picked = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { Images: ['png', 'jpg', 'jpeg', 'webp', 'gif', 'tif', 'tiff'] }, title: 'Explain Screenshot' });
        image = picked?.[0];
      }
      if (!image) return;
      const attachments: Attachments = { images: [], files: [] };
      await readAttachment(image, attachments);
      await answerInDocument(sidecar, `Explain ${basename(image.path)}`, 'Explain this image.', attachments);
    }),
    vscode.commands.registerCommand('lookm.askAboutFile', async (uri?: vscode.Uri) => {
      const target = uri ?? vscode.window.activeTextEditor?.document.uri;
      if (!target) return void vscode.window.showInformationMessage('Open a file first, or run this on a file in the Explorer.');
      const question = await vscode.window.showInputBox({ title: `Ask about ${basename(target.path)}`, prompt: 'Your question', ignoreFocusOut: true });
      if (!question) return;
      const attachments: Attachments = { images: [], files: [] };
      await readAttachment(target, attachments);
      await answerInDocument(sidecar, basename(target.path), question, attachments);
    }),
    vscode.commands.registerCommand('lookm.askAboutSelection', async () => {
      const editor = vscode.window.activeTextEditor;
      if (!editor || editor.selection.isEmpty) return void vscode.window.showInformationMessage('Select some text first.');
      const question = await vscode.window.showInputBox({ title: 'Ask about the selection', prompt: 'Your question', ignoreFocusOut: true });
      if (!question) return;
      const { start, end } = editor.selection;
      const name = `${vscode.workspace.asRelativePath(editor.document.uri)}:${start.line + 1}-${end.line + 1}`;
      await answerInDocument(sidecar, name, question, { images: [], files: [{ name, text: editor.document.getText(editor.selection) }] });
    }),
    vscode.commands.registerCommand('lookm.restartSidecar', () => sidecar.restart()),
    vscode.commands.registerCommand('lookm.showLog', () => sidecar.output.show()),
  ];
}
