/**
 * Which conversation was used last and whether a turn is running: the cache view shows the last
 * one, "Clear Conversation Cache" clears it, the status bar spins while a turn runs.
 */
import * as vscode from 'vscode';
import { Methods, type SessionCreateParams } from '../../sidecar/src/protocol/index.js';
import { readSettings } from './config.js';
import { sessionSettings } from './settings.js';
import type { Sidecar } from './sidecar/supervisor.js';

export class SessionTracker implements vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<void>();
  /** Fires when a turn starts or ends. */
  readonly onDidChange = this.emitter.event;
  lastSessionId: string | undefined;
  running = 0;
  turnsCompleted = 0;

  /** Runs one turn of `sessionId`, marking it as the last conversation used. */
  async turn<T>(sessionId: string, work: () => Promise<T>): Promise<T> {
    this.lastSessionId = sessionId;
    this.running++;
    this.emitter.fire();
    try {
      const result = await work();
      this.turnsCompleted++;
      return result;
    } finally {
      this.running--;
      this.emitter.fire();
    }
  }

  forget(sessionId: string): void {
    if (this.lastSessionId === sessionId) this.lastSessionId = undefined;
    this.emitter.fire();
  }

  dispose(): void {
    this.emitter.dispose();
  }
}

/** A new conversation with the configured policy and budget. */
export async function createSession(sidecar: Sidecar): Promise<string> {
  const client = await sidecar.ready();
  const settings = sessionSettings(readSettings()) as SessionCreateParams['settings'];
  return (await client.sendRequest(Methods.sessionCreate, { settings })).sessionId;
}
