/**
 * The engine seen from the server's thread: it starts the worker (`worker.ts`), sends it calls and
 * routes back their results, streamed tokens and progress; it keeps the latest engine figures so
 * `server/stats` answers at once even while the model runs. A call's client cancels through a
 * shared flag the worker reads between prefill chunks and decode steps.
 *
 * If the worker dies (a native crash, out of memory), the calls in flight fail with a message that
 * says so, and the next call starts a fresh worker that resumes every conversation from the state
 * folder and loads the last model again.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.js';
import { SidecarError } from '../protocol/errors.js';
import { ErrorCode, type ErrorCodeValue } from '../protocol/index.js';
import type { EngineOptions, EngineStats } from './engine.js';
import type { CallMessage, EngineMethod, EngineParams, EngineResult, WorkerMessage } from './messages.js';

export interface CallHooks {
  /** Aborted when the call's client cancels it or goes away. */
  signal?: AbortSignal;
  token?(sessionId: string, text: string, tokenId: number): void;
  progress?(step: string): void;
  reading?(sessionId: string, tokensRead: number, tokensTotal: number): void;
}

interface Pending {
  method: EngineMethod;
  resolve(value: never): void;
  reject(error: Error): void;
  hooks: CallHooks;
}

/**
 * The worker's entry: next to this file when running from source (through tsx), `engine.js` next
 * to the bundle (`dist/sidecar.js`, see esbuild.mjs) otherwise.
 */
function workerEntry(): { file: string; execArgv: string[] } {
  const source = join(__dirname, 'worker.ts');
  if (__filename.endsWith('.ts') && existsSync(source)) return { file: source, execArgv: ['--require', 'tsx/cjs'] };
  return { file: join(__dirname, 'engine.js'), execArgv: [] };
}

export class EngineHost {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private lastModelPath: string | null = null;
  private crashes = 0;
  /** What the last worker died of, when it said (an exception at start-up or in a call). */
  private lastFailure: string | null = null;
  /** The engine's latest figures (posted by the worker before and after every call). */
  stats: EngineStats;

  constructor(
    private readonly options: EngineOptions,
    private readonly log: Logger,
  ) {
    this.stats = { sessions: 0, kvBytes: 0, model: { state: 'none', path: null, error: null }, kvBudgetBytes: options.kvBudgetBytes ?? null, evictions: 0, coldBytes: 0 };
    this.start();
  }

  /** Runs `method` in the engine; rejects with a `SidecarError` (InternalError when unclassified). */
  call<M extends EngineMethod>(method: M, params: EngineParams<M>, hooks: CallHooks = {}): Promise<EngineResult<M>> {
    const worker = this.worker ?? this.restart();
    const id = this.nextId++;
    const cancelFlag = hooks.signal ? new SharedArrayBuffer(4) : null;
    if (cancelFlag && hooks.signal) {
      const flag = new Int32Array(cancelFlag);
      const cancel = () => Atomics.store(flag, 0, 1);
      if (hooks.signal.aborted) cancel();
      else hooks.signal.addEventListener('abort', cancel, { once: true });
    }
    const result = new Promise<EngineResult<M>>((resolve, reject) => {
      this.pending.set(id, { method, resolve, reject, hooks });
    });
    if (method === 'loadModel') void result.then(() => (this.lastModelPath = (params as EngineParams<'loadModel'>).path)).catch(() => undefined);
    worker.postMessage({ kind: 'call', id, method, params, cancelFlag } satisfies CallMessage);
    return result;
  }

  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    await this.call('close', undefined).catch(() => undefined);
    this.worker = null;
    await worker.terminate();
  }

  private start(): Worker {
    const { file, execArgv } = workerEntry();
    const worker = new Worker(file, { workerData: this.options, execArgv });
    worker.on('message', (message: WorkerMessage) => this.receive(message));
    worker.on('error', (error) => {
      this.lastFailure = error.message;
      this.log.log('error', 'model worker failed', { error: error.stack ?? String(error) });
    });
    worker.on('exit', (code) => this.exited(worker, code));
    this.worker = worker;
    return worker;
  }

  /** A fresh worker after a crash, loading the model the last one had. */
  private restart(): Worker {
    const worker = this.start();
    this.log.log('warn', 'model worker restarted', { crashes: this.crashes, model: this.lastModelPath });
    if (this.lastModelPath) void this.call('loadModel', { path: this.lastModelPath }).catch(() => undefined);
    return worker;
  }

  private exited(worker: Worker, code: number): void {
    if (this.worker !== worker) return; // closed on purpose
    this.worker = null;
    this.crashes++;
    const cause = this.lastFailure ? `: ${this.lastFailure}` : ` (exit code ${code})`;
    this.lastFailure = null;
    this.log.log('error', 'model worker stopped', { code });
    this.stats = { ...this.stats, kvBytes: 0, model: { state: 'failed', path: this.lastModelPath, error: `the model worker stopped${cause}` } };
    for (const [id, call] of this.pending) {
      this.pending.delete(id);
      call.reject(new SidecarError(ErrorCode.InternalError, `the model stopped while running ${call.method}${cause}; conversations are kept and the model restarts on the next request: ask again`));
    }
  }

  private receive(message: WorkerMessage): void {
    switch (message.kind) {
      case 'stats':
        this.stats = message.stats;
        return;
      case 'log':
        this.log.log(message.level, message.message, message.fields);
        return;
      case 'token':
        this.pending.get(message.id)?.hooks.token?.(message.sessionId, message.text, message.tokenId);
        return;
      case 'reading':
        this.pending.get(message.id)?.hooks.reading?.(message.sessionId, message.tokensRead, message.tokensTotal);
        return;
      case 'progress':
        this.pending.get(message.id)?.hooks.progress?.(message.step);
        return;
      case 'result':
      case 'error': {
        const call = this.pending.get(message.id);
        if (!call) return;
        this.pending.delete(message.id);
        if (message.kind === 'result') return call.resolve(message.value as never);
        if (message.code === null) this.log.log('error', 'engine call failed', { method: call.method, error: message.stack ?? message.message });
        call.reject(new SidecarError((message.code ?? ErrorCode.InternalError) as ErrorCodeValue, message.code === null ? `${call.method} failed: ${message.message}` : message.message));
      }
    }
  }
}
