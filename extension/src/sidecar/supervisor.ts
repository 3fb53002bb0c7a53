/**
 * The supervised sidecar: a `vscode-languageclient` LanguageClient whose server is our sidecar,
 * spawned lazily on first use with a fresh secret, reached over its authenticated WebSocket. The
 * language client brings the lifecycle, cancellation, tracing and a restart policy (it gives up
 * after repeated crashes); start-up failures are shown once with "Open Settings" / "Show Log",
 * never retried in a loop. Conversations survive restarts: the sidecar persists them in the
 * extension's global storage folder and resumes them by re-prefill.
 */
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import * as vscode from 'vscode';
import { LanguageClient, State, type MessageTransports } from 'vscode-languageclient/node';
import { launchSidecar, openSocket } from '../../../sidecar/src/client/launch.js';
import { Methods, TOKEN_HEADER, type ModelInfo } from '../../../sidecar/src/protocol/index.js';
import { WebSocketMessageReader, WebSocketMessageWriter } from '../../../sidecar/src/server/wsTransport.js';
import { openSetting, readSettings } from '../config.js';

import type { SidecarState } from '../statusText.js';

export type { SidecarState };

function whenRunning(client: LanguageClient, ms: number): Promise<LanguageClient> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`the sidecar did not come back within ${ms / 1000} s`)), ms);
    const listener = client.onDidChangeState((e) => {
      if (e.newState === State.Running) done(null);
      if (e.newState === State.Stopped) done(new Error('the sidecar stopped (it crashed repeatedly; see the LOOK-M log)'));
    });
    const done = (error: Error | null) => {
      clearTimeout(timer);
      listener.dispose();
      if (error) reject(error);
      else resolve(client);
    };
  });
}

export class Sidecar implements vscode.Disposable {
  readonly output = vscode.window.createOutputChannel('LOOK-M', { log: true });
  private readonly stateEmitter = new vscode.EventEmitter<SidecarState>();
  readonly onDidChangeState = this.stateEmitter.event;
  private client: LanguageClient | null = null;
  private starting: Promise<LanguageClient> | null = null;
  private child: ChildProcess | null = null;
  private model: ModelInfo | null = null;
  state: SidecarState = 'stopped';

  private readonly configListener: vscode.Disposable;

  constructor(private readonly context: vscode.ExtensionContext) {
    // New settings apply from the next use: stop now (conversations persist and resume).
    this.configListener = vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('lookm') && this.client) void this.stop();
    });
  }

  get modelInfo(): ModelInfo | null {
    return this.model;
  }

  private setState(state: SidecarState): void {
    this.state = state;
    this.stateEmitter.fire(state);
  }

  /** The running client with the configured model loaded, started on first use. */
  ready(): Promise<LanguageClient> {
    const client = this.client;
    if (client && this.model) {
      if (client.state === State.Running) return Promise.resolve(client);
      // The language client is restarting a crashed sidecar: wait for it rather than start another.
      if (client.state === State.Starting) return whenRunning(client, 60_000);
    }
    this.starting ??= this.start().finally(() => (this.starting = null));
    return this.starting;
  }

  private async start(): Promise<LanguageClient> {
    const settings = readSettings();
    if (!settings.modelPath) {
      this.setState('failed');
      void this.reportFailure('No model is configured: set "lookm.modelPath" to a Hugging Face LLaVA checkpoint folder.');
      throw new Error('no model configured (lookm.modelPath)');
    }
    this.setState('starting');
    const storage = this.context.globalStorageUri.fsPath;
    await vscode.workspace.fs.createDirectory(this.context.globalStorageUri);
    const serverOptions = async (): Promise<MessageTransports> => {
      // --model: a sidecar restarted by the language client after a crash loads the model by itself,
      // and its queued turns wait for it.
      const args = ['--model', settings.modelPath, '--state-dir', join(storage, 'sessions'), '--allow-dir', dirname(settings.modelPath), '--kv-budget-mb', String(settings.globalBudgetMb)];
      if (settings.threads > 0) args.push('--threads', String(settings.threads));
      const launched = await launchSidecar(join(this.context.extensionPath, 'dist', 'sidecar.js'), args, {
        // Inside VS Code desktop, process.execPath is Electron: run it as plain Node.
        env: { ELECTRON_RUN_AS_NODE: '1' },
        onLog: (line) => this.output.appendLine(line),
      });
      this.child = launched.process;
      const socket = await openSocket(launched.port, { [TOKEN_HEADER]: launched.token });
      return { reader: new WebSocketMessageReader(socket), writer: new WebSocketMessageWriter(socket) };
    };
    const client = new LanguageClient('lookm', 'LOOK-M sidecar', serverOptions, {
      documentSelector: [],
      outputChannel: this.output,
      initializationOptions: { kvBudgetBytes: Math.floor(settings.globalBudgetMb * 2 ** 20) },
    });
    client.onDidChangeState((e) => {
      // The language client restarting a crashed sidecar, or giving up on it.
      if (e.newState === State.Starting && this.state === 'ready') this.setState('starting');
      if (e.newState === State.Running && this.state === 'starting' && this.model) this.setState('ready');
      if (e.newState === State.Stopped && this.state !== 'failed' && this.client === client) this.setState('stopped');
    });
    this.client = client;
    try {
      await client.start();
      client.onNotification(Methods.modelProgress, (p) => this.output.info(`model: ${p.step}`));
      this.model = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'LOOK-M: loading model' }, () =>
        client.sendRequest(Methods.modelLoad, { path: settings.modelPath }),
      );
      this.setState('ready');
      return client;
    } catch (error) {
      this.setState('failed');
      const message = error instanceof Error ? error.message : String(error);
      this.output.error(`start-up failed: ${message}`);
      await this.stop();
      void this.reportFailure(`The LOOK-M sidecar could not start: ${message}`);
      throw error;
    }
  }

  private async reportFailure(message: string): Promise<void> {
    const choice = await vscode.window.showErrorMessage(message, 'Open Settings', 'Show Log');
    if (choice === 'Open Settings') await openSetting('modelPath');
    if (choice === 'Show Log') this.output.show();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.ready();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.model = null;
    if (client && client.state !== State.Stopped) await client.stop(2000).catch(() => undefined);
    this.child?.kill();
    this.child = null;
    if (this.state !== 'failed') this.setState('stopped');
  }

  /** The sidecar process (integration tests check that none is left running). */
  get childForTests(): ChildProcess | null {
    return this.child;
  }

  /** Kills the sidecar as a crash would (integration tests of the recovery). */
  killForTests(): void {
    this.child?.kill('SIGKILL');
  }

  dispose(): void {
    this.configListener.dispose();
    void this.stop();
    this.output.dispose();
    this.stateEmitter.dispose();
  }
}
