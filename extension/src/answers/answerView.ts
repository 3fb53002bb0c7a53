/**
 * One read-only editor for every palette answer (a virtual Markdown document of its own URI
 * scheme), reused across asks: it opens again in the column where it already is, its content is
 * refreshed in batches while an answer streams, and, being provided rather than edited, it is
 * never dirty, so closing it never asks to save.
 */
import * as vscode from 'vscode';
import { AnswerLog, type Answer } from './answerLog.js';
import { Coalescer } from './coalesce.js';

export const ANSWER_SCHEME = 'lookm-answer';

export class AnswerView implements vscode.TextDocumentContentProvider, vscode.Disposable {
  static readonly uri = vscode.Uri.from({ scheme: ANSWER_SCHEME, path: '/LOOK-M Answers.md' });
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly log = new AnswerLog();
  private readonly refresh = new Coalescer(() => this.changed.fire(AnswerView.uri));
  private readonly registration = vscode.workspace.registerTextDocumentContentProvider(ANSWER_SCHEME, this);

  provideTextDocumentContent(): string {
    return this.log.render();
  }

  /** A new answer at the top of the view, which is shown (its content follows through `changed`/`flush`). */
  async begin(title: string, question: string): Promise<Answer> {
    const answer = this.log.begin(title, question);
    this.refresh.flush();
    await this.show();
    return answer;
  }

  /** An answer changed: the view is refreshed within the batching interval. */
  update(): void {
    this.refresh.request();
  }

  /** An answer is complete: the view is refreshed now. */
  flush(): void {
    this.refresh.flush();
  }

  /** Shows the view where it already is (else beside the active editor), at its top, leaving the focus where it was. */
  private async show(): Promise<void> {
    const key = AnswerView.uri.toString();
    const tab = vscode.window.tabGroups.all.flatMap((group) => group.tabs).find((t) => t.input instanceof vscode.TabInputText && t.input.uri.toString() === key);
    const document = await vscode.workspace.openTextDocument(AnswerView.uri);
    const editor = await vscode.window.showTextDocument(document, { viewColumn: tab?.group.viewColumn ?? vscode.ViewColumn.Beside, preview: false, preserveFocus: true });
    editor.revealRange(new vscode.Range(0, 0, 0, 0), vscode.TextEditorRevealType.AtTop);
  }

  dispose(): void {
    this.refresh.dispose();
    this.registration.dispose();
    this.changed.dispose();
  }
}
