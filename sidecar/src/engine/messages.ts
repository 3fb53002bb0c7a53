/** The messages between the engine's worker thread and its host on the server's thread. */
import type { Level } from '../log.js';
import type { Engine, EngineStats } from './engine.js';

/** The engine's methods the server may call; each takes one parameter object (and events). */
export type EngineMethod = 'setKvBudget' | 'modelInfo' | 'countTokens' | 'createSession' | 'deleteSession' | 'sessionStats' | 'sessionCache' | 'chat' | 'loadModel' | 'close';
export type EngineParams<M extends EngineMethod> = Parameters<Engine[M]> extends [] ? undefined : Parameters<Engine[M]>[0];
export type EngineResult<M extends EngineMethod> = Awaited<ReturnType<Engine[M]>>;

export interface CallMessage {
  kind: 'call';
  id: number;
  method: EngineMethod;
  params: unknown;
  /** One Int32 the host sets to 1 when the call's client cancels or leaves (read between steps). */
  cancelFlag: SharedArrayBuffer | null;
}

export type WorkerMessage =
  | { kind: 'result'; id: number; value: unknown }
  | { kind: 'error'; id: number; code: number | null; message: string; stack?: string }
  | { kind: 'token'; id: number; sessionId: string; text: string; tokenId: number }
  | { kind: 'progress'; id: number; step: string }
  | { kind: 'reading'; id: number; sessionId: string; tokensRead: number; tokensTotal: number }
  | { kind: 'stats'; stats: EngineStats }
  | { kind: 'log'; level: Level; message: string; fields?: Record<string, unknown> };
