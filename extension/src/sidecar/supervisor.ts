/**
 * The supervised sidecar: a `vscode-languageclient` LanguageClient whose server is our sidecar,
 * spawned lazily on first use with a fresh secret, reached over its authenticated WebSocket. The
 * language client brings the lifecycle, cancellation, tracing and a restart policy (it gives up
 * after repeated crashes); start-up failures are shown once with "Open Settings" / "Show Log",
 * never retried in a loop. Conversations survive restarts: the sidecar persists them in the
 * extension's global storage folder and resumes them by re-prefill.
 */
import type { ChildProcess } from 'node:child_process';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import { CloseAction, ErrorAction, LanguageClient, ResponseError, State, type ErrorHandler, type MessageTransports } from 'vscode-languageclient/node';
import { launchSidecar, openSocket } from '../../../sidecar/src/client/launch.js';
import { ErrorCode, Methods, TOKEN_HEADER, type ModelInfo } from '../../../sidecar/src/protocol/index.js';
import { WebSocketMessageReader, WebSocketMessageWriter } from '../../../sidecar/src/transport/wsTransport.js';
import { openSetting, readSettings } from '../config.js';
import { RESTART_KEYS, sidecarArgs, type Settings } from '../settings.js';
import { readableLogLine } from './logLine.js';
import { RestartPolicy } from './restartPolicy.js';

import type { SidecarState } from './state.js';

export type { SidecarState };

const isDown = (state: State) => state === State.Stopped || state === State.StartFailed;

/**
 * Whether a start-up error is the sidecar's answer (one of the protocol's codes: a bad model
 * folder) rather than its death: vscode-jsonrpc rejects the requests pending on a connection that
 * died with ResponseErrors of its own codes, which are crashes to retry.
 */
const OUR_CODES = new Set<number>(Object.values(ErrorCode));
const isRefusal = (error: unknown) => error instanceof ResponseError && OUR_CODES.has(error.code);

export class Sidecar implements vscode.Disposable {
  readonly output = vscode.window.createOutputChannel('LOOK-M', { log: true });
  private readonly stateEmitter = new vscode.EventEmitter<SidecarState>();
  readonly onDidChangeState = this.stateEmitter.event;
  private client: LanguageClient | null = null;
  private starting: Promise<LanguageClient> | null = null;
  private child: ChildProcess | null = null;
  private model: ModelInfo | null = null;
  state: SidecarState = 'stopped';
  /** Backoff of crash restarts; shared by every client this supervisor starts. */
  readonly restarts = new RestartPolicy();
  /** Between a crash and the language client's restart of the sidecar. */
  private restarting = false;

  private readonly configListener: vscode.Disposable;

  constructor(private readonly context: vscode.ExtensionContext) {
    // Settings the sidecar takes on its command line apply after a restart, which is offered
    // (conversations persist and resume); a sidecar that is not running takes them at its next start.
    this.configListener = vscode.workspace.onDidChangeConfiguration((e) => {
      if (!RESTART_KEYS.some((key) => e.affectsConfiguration(key))) return;
      if (this.state === 'failed') this.setState('stopped');
      if (!this.client) return;
      void vscode.window.showInformationMessage('LOOK-M: restart the local model to apply the new setting?', 'Restart Now').then((choice) => (choice ? this.restart() : undefined));
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
    if (client && this.model && !this.restarting && client.state === State.Running) return Promise.resolve(client);
    // A crashed sidecar is being restarted: wait for it rather than start another.
    if (this.restarting) return this.nextReady(60_000);
    this.starting ??= this.start().finally(() => (this.starting = null));
    return this.starting;
  }

  /** Resolves when the sidecar is next ready, rejects if it fails or stops first. */
  private nextReady(ms: number): Promise<LanguageClient> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`the sidecar did not come back within ${ms / 1000} s`)), ms);
      const listener = this.onDidChangeState((state) => {
        if (state === 'ready' && this.client) done(null, this.client);
        if (state === 'failed' || state === 'stopped') done(new Error('the sidecar stopped (it crashed repeatedly; see the LOOK-M log)'));
      });
      const done = (error: Error | null, client?: LanguageClient) => {
        clearTimeout(timer);
        listener.dispose();
        if (client) resolve(client);
        else reject(error ?? new Error('no client'));
      };
    });
  }

  /** Starts a client and loads the model; a sidecar that dies while starting is retried with backoff. */
  private async start(afterCrash = false): Promise<LanguageClient> {
    const settings = readSettings();
    if (!settings.modelPath) {
      this.setState('failed');
      void this.reportFailure('No model is configured and the embedded model is missing from the extension: set "lookm.modelPath" to a Hugging Face LLaVA checkpoint folder, or reinstall the extension.');
      throw new Error('no model configured (lookm.modelPath)');
    }
    let lastError = '';
    for (let retry = afterCrash; ; retry = true) {
      if (retry && !(await this.backOff(lastError))) throw new Error(`the sidecar keeps crashing${lastError ? `: ${lastError}` : ''}`);
      this.setState('starting');
      try {
        const client = await this.startOnce(settings);
        this.restarting = false;
        this.restarts.healthy();
        this.setState('ready');
        return client;
      } catch (error) {
        await this.discardClient();
        // An error answer is the sidecar refusing (bad model folder); anything else is a crash
        // (the process died before or during the handshake or the model load).
        lastError = error instanceof Error ? error.message : String(error);
        if (!isRefusal(error)) continue;
        this.restarting = false;
        this.setState('failed');
        this.output.error(`start-up failed: ${lastError}`);
        void this.reportFailure(`The LOOK-M sidecar could not start: ${lastError}`);
        throw error;
      }
    }
  }

  private async startOnce(settings: Settings): Promise<LanguageClient> {
    const storage = this.context.globalStorageUri.fsPath;
    await vscode.workspace.fs.createDirectory(this.context.globalStorageUri);
    const serverOptions = async (): Promise<MessageTransports> => {
      // --model: a sidecar restarted by the language client after a crash loads the model by itself,
      // and its queued turns wait for it.
      const launched = await launchSidecar(join(this.context.extensionPath, 'dist', 'sidecar.js'), sidecarArgs(settings, join(storage, 'sessions')), {
        // Inside VS Code desktop, process.execPath is Electron: run it as plain Node.
        env: { ELECTRON_RUN_AS_NODE: '1' },
        onLog: (line) => {
          const { level, text } = readableLogLine(line);
          this.output[level](text);
        },
      });
      this.child = launched.process;
      const socket = await openSocket(launched.port, { [TOKEN_HEADER]: launched.token });
      return { reader: new WebSocketMessageReader(socket), writer: new WebSocketMessageWriter(socket) };
    };
    const client: LanguageClient = new LanguageClient('lookm', 'LOOK-M sidecar', serverOptions, {
      documentSelector: [],
      outputChannel: this.output,
      initializationOptions: { kvBudgetBytes: Math.floor(settings.globalBudgetMb * 2 ** 20) },
      errorHandler: this.errorHandler((): LanguageClient => client),
    });
    client.onDidChangeState((e) => {
      if (this.client !== client) return;
      if (e.newState === State.Running && this.restarting) void this.afterRestart(client, settings.modelPath);
      // A restart the language client began could not even start: a fresh client takes over.
      else if (e.newState === State.StartFailed && this.restarting) void this.replaceClient();
      else if (isDown(e.newState) && !this.restarting && this.state === 'ready') this.setState('stopped');
    });
    this.client = client;
    await client.start();
    // The sidecar's own steps (reading weights, building graphs, creating sessions) as progress.
    this.model = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `LOOK-M: loading ${basename(settings.modelPath)}` }, async (progress) => {
      const listener = client.onNotification(Methods.modelProgress, (p) => {
        this.output.info(`model: ${p.step}`);
        progress.report({ message: p.step });
      });
      try {
        return await client.sendRequest(Methods.modelLoad, { path: settings.modelPath });
      } finally {
        listener.dispose();
      }
    });
    return client;
  }

  private async replaceClient(): Promise<void> {
    await this.discardClient();
    this.starting ??= this.start(true).finally(() => (this.starting = null));
    await this.starting.catch(() => undefined);
  }

  /** Stops and forgets the current client and its process, without a state change. */
  private async discardClient(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.model = null;
    if (client?.state === State.Running) await client.stop(2000).catch(() => undefined);
    this.child?.kill('SIGKILL');
    this.child = null;
  }

  /** Crashes are restarted after the policy's delay; a sidecar that keeps crashing is given up. */
  private errorHandler(owner: () => LanguageClient | undefined): ErrorHandler {
    return {
      error: () => ({ action: ErrorAction.Continue, handled: true }),
      closed: async () => {
        // A client that was discarded, or one still loading its first model (start() retries
        // that itself), is not restarted here.
        if (owner() !== this.client || this.model === null) return { action: CloseAction.DoNotRestart, handled: true };
        this.restarting = await this.backOff();
        return { action: this.restarting ? CloseAction.Restart : CloseAction.DoNotRestart, handled: true };
      },
    };
  }

  /** After a crash: waits the policy's delay and says to restart, or gives up and tells the user. */
  private async backOff(lastError = ''): Promise<boolean> {
    const delay = this.restarts.crashed();
    if (delay === null) {
      this.restarting = false;
      this.setState('failed');
      const detail = lastError ? ` (last error: ${lastError})` : '';
      void this.reportFailure(`The LOOK-M sidecar keeps crashing and was not restarted again${detail}. Check the model folder, then run "LOOK-M: Restart Sidecar".`);
      return false;
    }
    this.output.warn(`the sidecar exited unexpectedly (crash ${this.restarts.crashes}); restarting in ${delay} ms`);
    this.restarting = true;
    this.setState('starting');
    await new Promise((r) => setTimeout(r, delay));
    return true;
  }

  /** A restarted sidecar loads the model given on its command line; it is healthy once that is done. */
  private async afterRestart(client: LanguageClient, modelPath: string): Promise<void> {
    try {
      this.model = await client.sendRequest(Methods.modelLoad, { path: modelPath });
      if (this.client !== client) return;
      this.restarting = false;
      this.restarts.healthy();
      this.setState('ready');
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.output.error(`the restarted sidecar could not load its model: ${message}`);
      // A crash during the load is handled by the error handler; a refusal ends the restarts.
      if (this.client === client && client.state === State.Running) {
        this.restarting = false;
        this.setState('failed');
        void this.reportFailure(`The restarted LOOK-M sidecar could not load its model: ${message}`);
      }
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
    this.restarting = false;
    await this.discardClient();
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
