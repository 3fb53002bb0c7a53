/** One status bar item, a pure function of the sidecar's state. */
import * as vscode from 'vscode';
import type { Sidecar } from './sidecar/supervisor.js';
import { statusText } from './statusText.js';

export function registerStatusBar(sidecar: Sidecar): vscode.Disposable {
  const item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  item.command = 'lookm.showLog';
  const update = () => Object.assign(item, statusText(sidecar.state, sidecar.modelInfo ? `${sidecar.modelInfo.textModel}, ${sidecar.modelInfo.path}` : null));
  update();
  item.show();
  const listener = sidecar.onDidChangeState(update);
  return vscode.Disposable.from(item, listener);
}
