/** One status bar item: the sidecar's state, KV memory allocated / budget, a spinner while a turn runs. */
import * as vscode from 'vscode';
import { Methods } from '../../sidecar/src/protocol/index.js';
import type { SessionTracker } from './sessions.js';
import type { Sidecar } from './sidecar/supervisor.js';
import { modelLabel, statusText, type StatusFigures } from './statusText.js';

export function registerStatusBar(sidecar: Sidecar, sessions: SessionTracker): vscode.Disposable {
  const item = vscode.window.createStatusBarItem('lookm.status', vscode.StatusBarAlignment.Right, 100);
  item.name = 'LOOK-M';
  item.command = 'lookm.showCache';
  const figures: StatusFigures = { busy: false, kvBytes: null, kvBudgetBytes: null };
  const update = () => Object.assign(item, statusText(sidecar.state, sidecar.modelInfo ? modelLabel(sidecar.modelInfo) : null, figures));
  const refreshFigures = async () => {
    figures.busy = sessions.running > 0;
    if (!figures.busy && sidecar.state === 'ready') {
      const stats = await (await sidecar.ready()).sendRequest(Methods.serverStats).catch(() => null);
      if (stats) Object.assign(figures, { kvBytes: stats.kvBytes, kvBudgetBytes: stats.kvBudgetBytes });
    }
    update();
  };
  update();
  item.show();
  return vscode.Disposable.from(item, sidecar.onDidChangeState(update), sessions.onDidChange(() => void refreshFigures()));
}
