/**
 * The engine's worker thread: builds the `Engine` from `workerData` and runs the calls its host
 * posts, one message per call; tokens, progress, logs and fresh stats are posted back as they
 * happen. Errors travel as code and message (a `SidecarError`'s code, or null when unknown).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Logger } from '../log.js';
import { Engine, type CallEvents, type EngineOptions } from './engine.js';
import { classifyError } from './errors.js';
import type { CallMessage, WorkerMessage } from './messages.js';

const port = parentPort;
if (!port) throw new Error('engine/worker.ts runs as a worker thread (see engine/host.ts)');
const post = (message: WorkerMessage) => port.postMessage(message);

const log: Logger = { log: (level, message, fields) => post({ kind: 'log', level, message, fields }) };
const engine = new Engine(workerData as EngineOptions, log);

/** The engine's current figures, for the host's `server/stats`. */
const sendStats = () => post({ kind: 'stats', stats: engine.stats() });
sendStats();

async function run(call: CallMessage): Promise<void> {
  const flag = call.cancelFlag ? new Int32Array(call.cancelFlag) : null;
  const events: CallEvents = {
    token: (sessionId, text, tokenId) => post({ kind: 'token', id: call.id, sessionId, text, tokenId }),
    reading: (sessionId, tokensRead, tokensTotal) => post({ kind: 'reading', id: call.id, sessionId, tokensRead, tokensTotal }),
    progress: (step) => {
      post({ kind: 'progress', id: call.id, step });
      sendStats();
    },
    cancelled: () => (flag ? Atomics.load(flag, 0) === 1 : false),
    figures: sendStats,
  };
  // Fresh figures go out before the answer, so a client that asks server/stats right after it
  // sees what the call did.
  try {
    // Every engine method takes one parameter object and, where it reports or can be cancelled, the events.
    const method = engine[call.method].bind(engine) as (params: unknown, events: CallEvents) => unknown;
    const value = await method(call.params, events);
    sendStats();
    post({ kind: 'result', id: call.id, value });
  } catch (error) {
    sendStats();
    const known = classifyError(error);
    const message = known?.message ?? (error instanceof Error ? error.message : String(error));
    post({ kind: 'error', id: call.id, code: known?.code ?? null, message, stack: known ? undefined : error instanceof Error ? error.stack : undefined });
  }
}

port.on('message', (call: CallMessage) => void run(call));
