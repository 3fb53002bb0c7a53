/**
 * Palette actions (category "LOOK-M"): open the chat with @lookm, explain an image (a file, the
 * open one, the clipboard's), ask about the open file or selection, show or clear the cache, pick the model, restart the
 * sidecar, show its log. Answers stream into one read-only answer view, reused across asks.
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import { Methods } from '../../sidecar/src/protocol/index.js';
import { CacheViewPanel } from './cacheView/panel.js';
import { AnswerView } from './answers/answerView.js';
import { readingProgress, STOPPED_WHILE_READING, turnFooter } from './chat/format.js';
import { contextTooLongLine, contextTooLongText, isContextTooLong, TOY_MODEL_NOTICE, type ToyModelNotice } from './chat/notices.js';
import { OPEN_CHAT_COMMAND, openChat } from './chat/openChat.js';
import { isImage, readAttachment, type Attachments } from './chat/references.js';
import { isEmbeddedModel, readSettings } from './config.js';
import { readClipboardImage } from './clipboard/readImage.js';
import { downloadModelCommand } from './download/downloadModel.js';
import { findCachedModels } from '../../sidecar/src/client/hub/cached.js';
import { hubCacheDir } from '../../sidecar/src/client/hub/settings.js';
import { createSession, type SessionTracker } from './sessions.js';
import { SECTION, SETTINGS } from './settings.js';
import type { Sidecar } from './sidecar/supervisor.js';

/**
 * Runs one question in a fresh session, its answer streaming into the answer view; the reading
 * progress shows there and in a notification whose Cancel stops the question, at any point.
 */
async function answerInView(sidecar: Sidecar, sessions: SessionTracker, answers: AnswerView, notice: ToyModelNotice, title: string, text: string, attachments: Attachments): Promise<void> {
  const answer = await answers.begin(title, text);
  if (notice.take(isEmbeddedModel(readSettings().modelPath))) {
    // Once, above the first answer of the shipped toy model (the chat says it instead if asked first).
    answer.text = `**About this model:** ${TOY_MODEL_NOTICE}\n\n`;
    answers.update();
    void vscode.window.showInformationMessage('LOOK-M: this answer comes from the tiny demo model shipped with the extension, which only knows its training shapes.', 'Download Model…').then((choice) => (choice ? vscode.commands.executeCommand('lookm.downloadModel') : undefined));
  }
  await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `LOOK-M: ${title}`, cancellable: true }, async (progress, token) => {
    const sessionId = await createSession(sidecar);
    const client = await sidecar.ready();
    let answering = false;
    const listeners = [
      client.onNotification(Methods.sessionProgress, (p) => {
        if (p.sessionId !== sessionId || answering) return;
        answer.status = readingProgress(p.tokensRead, p.tokensTotal);
        progress.report({ message: answer.status });
        answers.update();
      }),
      client.onNotification(Methods.sessionToken, (t) => {
        if (t.sessionId !== sessionId) return;
        if (!answering) {
          answering = true;
          answer.status = '';
          progress.report({ message: 'Answering…' });
        }
        answer.text += t.text;
        answers.update();
      }),
    ];
    try {
      const result = await sessions.turn(sessionId, () => client.sendRequest(Methods.sessionChat, { sessionId, text, ...attachments }, token));
      answer.text += turnFooter(result);
    } catch (error) {
      if (token.isCancellationRequested) {
        // The user stopped it: said in the view, not reported as a failure.
        if (!answering) answer.text += STOPPED_WHILE_READING;
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      if (isContextTooLong(error)) {
        // Refused before reading: what happened and what to do.
        answer.text += `\n\n${contextTooLongText(message)}\n`;
        const choices = { 'Select Model…': 'lookm.selectModel', 'Download Model…': 'lookm.downloadModel' } as const;
        void vscode.window.showErrorMessage(`LOOK-M: ${contextTooLongLine(message)}`, ...Object.keys(choices)).then((choice) => (choice ? vscode.commands.executeCommand(choices[choice as keyof typeof choices]) : undefined));
        return;
      }
      // A bad image, a crash mid-answer: said in the view and in a notification, not as a
      // generic "command failed".
      answer.text += `\n\n**The answer failed:** ${message}\n`;
      void vscode.window.showErrorMessage(`LOOK-M: ${message}`, 'Show Log').then((choice) => choice && sidecar.output.show());
    } finally {
      answer.status = '';
      for (const listener of listeners) listener.dispose();
      answers.flush();
    }
  });
}

export function registerCommands(context: vscode.ExtensionContext, sidecar: Sidecar, sessions: SessionTracker, notice: ToyModelNotice): vscode.Disposable[] {
  const answers = new AnswerView();
  const answer = (title: string, text: string, attachments: Attachments) => answerInView(sidecar, sessions, answers, notice, title, text, attachments);
  return [
    answers,
    vscode.commands.registerCommand(OPEN_CHAT_COMMAND, openChat),
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
      await answer(`Explain ${basename(image.path)}`, 'Explain this image.', attachments);
    }),
    vscode.commands.registerCommand('lookm.askAboutFile', async (uri?: vscode.Uri) => {
      const target = uri ?? vscode.window.activeTextEditor?.document.uri;
      if (!target) return void vscode.window.showInformationMessage('Open a file first, or run this on a file in the Explorer.');
      const question = await vscode.window.showInputBox({ title: `Ask about ${basename(target.path)}`, prompt: 'Your question', ignoreFocusOut: true });
      if (!question) return;
      const attachments: Attachments = { images: [], files: [] };
      await readAttachment(target, attachments);
      await answer(basename(target.path), question, attachments);
    }),
    vscode.commands.registerCommand('lookm.askAboutSelection', async () => {
      const editor = vscode.window.activeTextEditor;
      if (!editor || editor.selection.isEmpty) return void vscode.window.showInformationMessage('Select some text first.');
      const question = await vscode.window.showInputBox({ title: 'Ask about the selection', prompt: 'Your question', ignoreFocusOut: true });
      if (!question) return;
      const { start, end } = editor.selection;
      const name = `${vscode.workspace.asRelativePath(editor.document.uri)}:${start.line + 1}-${end.line + 1}`;
      await answer(name, question, { images: [], files: [{ name, text: editor.document.getText(editor.selection) }] });
    }),
    vscode.commands.registerCommand('lookm.explainClipboardImage', async () => {
      const bytes = await readClipboardImage();
      if (!bytes) {
        return void vscode.window.showInformationMessage('No image in the clipboard, or this platform does not let extensions read it (Linux needs wl-paste or xclip). Paste the image into the chat instead, or save it and run "LOOK-M: Explain Screenshot…".');
      }
      await answer('Explain the clipboard image', 'Explain this image.', { images: [{ data: Buffer.from(bytes).toString('base64'), name: 'clipboard' }], files: [] });
    }),
    vscode.commands.registerCommand('lookm.showCache', () => void CacheViewPanel.show(context.extensionUri, sidecar, sessions)),
    vscode.commands.registerCommand('lookm.clearCache', async () => {
      const sessionId = sessions.lastSessionId;
      if (!sessionId || sidecar.state !== 'ready') return void vscode.window.showInformationMessage('There is no conversation to clear.');
      await (await sidecar.ready()).sendRequest(Methods.sessionDelete, { sessionId });
      sessions.forget(sessionId);
      void vscode.window.showInformationMessage('The conversation\'s cache and transcript are cleared; the next question starts a new one.');
    }),
    vscode.commands.registerCommand('lookm.selectModel', async () => {
      // Checkpoints already in the Hugging Face cache (from Download Model… or Python) come first.
      const cached = await findCachedModels(hubCacheDir());
      if (cached.length) {
        const items = [
          ...cached.map((m) => ({ label: m.repo, description: m.commit.slice(0, 8), detail: m.path, path: m.path })),
          { label: 'Browse for a folder…', path: undefined },
          { label: 'Download Model…', path: 'download' },
        ];
        const choice = await vscode.window.showQuickPick(items, { title: 'Select Model', placeHolder: 'Models in the Hugging Face cache' });
        if (!choice) return;
        if (choice.path === 'download') return vscode.commands.executeCommand('lookm.downloadModel');
        if (choice.path) return void (await vscode.workspace.getConfiguration(SECTION).update(SETTINGS.modelPath.key, choice.path, vscode.ConfigurationTarget.Global));
      }
      const picked = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: false, title: 'Select a LLaVA model folder (config.json, *.safetensors, tokenizer.json)', openLabel: 'Use This Model' });
      const folder = picked?.[0];
      if (!folder) return;
      const hasConfig = await vscode.workspace.fs.stat(vscode.Uri.joinPath(folder, 'config.json')).then(
        () => true,
        () => false,
      );
      if (!hasConfig) return void vscode.window.showErrorMessage(`${folder.fsPath} has no config.json: pick the folder of a Hugging Face LLaVA checkpoint.`);
      await vscode.workspace.getConfiguration(SECTION).update(SETTINGS.modelPath.key, folder.fsPath, vscode.ConfigurationTarget.Global);
    }),
    vscode.commands.registerCommand('lookm.downloadModel', () => downloadModelCommand(sidecar)),
    vscode.commands.registerCommand('lookm.restartSidecar', () => sidecar.restart()),
    vscode.commands.registerCommand('lookm.showLog', () => sidecar.output.show()),
  ];
}
