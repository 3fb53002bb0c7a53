/**
 * The KV cache view: a webview panel (strict CSP, nonce'd script from media/) showing the last
 * conversation's cache. It refreshes after every turn and on request.
 */
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import { Methods } from '../../../sidecar/src/protocol/index.js';
import type { SessionTracker } from '../sessions.js';
import type { Sidecar } from '../sidecar/supervisor.js';
import { cacheViewModel } from './viewModel.js';

export class CacheViewPanel implements vscode.Disposable {
  private static current: CacheViewPanel | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  static show(extensionUri: vscode.Uri, sidecar: Sidecar, sessions: SessionTracker): CacheViewPanel {
    if (CacheViewPanel.current) {
      CacheViewPanel.current.panel.reveal(vscode.ViewColumn.Beside);
      void CacheViewPanel.current.refresh();
      return CacheViewPanel.current;
    }
    const media = vscode.Uri.joinPath(extensionUri, 'media');
    const panel = vscode.window.createWebviewPanel('lookm.cacheView', 'LOOK-M KV Cache', vscode.ViewColumn.Beside, { enableScripts: true, localResourceRoots: [media] });
    CacheViewPanel.current = new CacheViewPanel(panel, media, sidecar, sessions);
    return CacheViewPanel.current;
  }

  private constructor(
    readonly panel: vscode.WebviewPanel,
    media: vscode.Uri,
    private readonly sidecar: Sidecar,
    private readonly sessions: SessionTracker,
  ) {
    panel.iconPath = vscode.Uri.joinPath(media, 'icon.svg');
    panel.webview.html = html(panel.webview, media);
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((message: { type?: string }) => {
        if (message.type === 'ready' || message.type === 'refresh') void this.refresh();
      }),
      sessions.onDidChange(() => {
        if (sessions.running === 0) void this.refresh();
      }),
    );
  }

  /** Fetches the last conversation's cache and posts it to the webview (never starts the sidecar). */
  async refresh(): Promise<void> {
    const sessionId = this.sessions.lastSessionId;
    if (!sessionId || this.sidecar.state !== 'ready') {
      await this.panel.webview.postMessage({ type: 'empty', text: 'No conversation yet: ask @lookm in the chat or run a LOOK-M command, and its cache appears here after each answer.' });
      return;
    }
    try {
      const client = await this.sidecar.ready();
      const map = await client.sendRequest(Methods.sessionCache, { sessionId });
      await this.panel.webview.postMessage({ type: 'model', model: cacheViewModel(map) });
    } catch (error) {
      await this.panel.webview.postMessage({ type: 'empty', text: `The cache could not be read: ${error instanceof Error ? error.message : String(error)}` });
    }
  }

  dispose(): void {
    CacheViewPanel.current = undefined;
    this.panel.dispose();
    for (const d of this.disposables.splice(0)) d.dispose();
  }
}

function html(webview: vscode.Webview, media: vscode.Uri): string {
  const nonce = randomBytes(16).toString('base64');
  const script = webview.asWebviewUri(vscode.Uri.joinPath(media, 'cacheView.js'));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(media, 'cacheView.css'));
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${webview.cspSource}; img-src ${webview.cspSource}; script-src 'nonce-${nonce}';">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${style.toString()}">
<title>LOOK-M KV Cache</title>
</head>
<body>
<div id="root"><p class="empty">Loading…</p></div>
<script nonce="${nonce}" src="${script.toString()}"></script>
</body>
</html>`;
}
