/**
 * The sidecar process: `node dist/sidecar.js [--model DIR] [--port 0] [--host 127.0.0.1] [--device auto|cpu|webgpu|cuda]`
 * (or `npm run sidecar -- ...`). Binds loopback, prints ONE JSON handshake line on stdout
 * (`{"port", "pid", "version"}`) once it listens, logs JSON lines to stderr. The WebSocket upgrade
 * must carry the secret from the LOOKM_SIDECAR_TOKEN environment variable.
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { version } from '../../package.json';
import { LIMITS, TOKEN_ENV } from './protocol/index.js';
import { LEVELS, stderrLogger } from './log.js';
import { parseWeightBits } from './model/text/decoderGraph.js';
import { parseDeviceRequest } from './runtime/deviceRequest.js';
import { SidecarServer } from './server/server.js';
import { DEFAULT_RETENTION } from './session/store.js';

const USAGE = 'usage: sidecar [--model DIR] [--port 0] [--host 127.0.0.1] [--device auto|cpu|webgpu|cuda] [--threads N] [--kv-budget-mb MB] [--cold-budget-mb MB] [--state-dir DIR] [--max-sessions 200] [--session-max-age-days 90] [--state-max-mb 1024] [--allow-dir DIR ...] [--max-image-pixels N] [--weight-bits 32|8|4] [--prefill-chunk 512] [--packed-weights-mb 8192] [--packed-weights-dir DIR] [--log-level info]';

/** Disk for onnxruntime's packed weights kept between loads: about twice a model's float32 weights each. */
const DEFAULT_PACKED_WEIGHTS_MB = 8192;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      device: { type: 'string', default: 'cpu' },
      threads: { type: 'string' },
      'kv-budget-mb': { type: 'string' },
      'cold-budget-mb': { type: 'string' },
      'state-dir': { type: 'string' },
      'max-sessions': { type: 'string' },
      'session-max-age-days': { type: 'string' },
      'state-max-mb': { type: 'string' },
      'allow-dir': { type: 'string', multiple: true },
      'log-level': { type: 'string', default: 'info' },
      'max-image-pixels': { type: 'string' },
      'weight-bits': { type: 'string' },
      'prefill-chunk': { type: 'string' },
      'packed-weights-mb': { type: 'string' },
      'packed-weights-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.error(USAGE);
    return;
  }
  const level = LEVELS.find((l) => l === values['log-level']);
  if (!level) throw new Error(`--log-level must be one of ${LEVELS.join(', ')}, got ${values['log-level']}`);
  const log = stderrLogger(level);
  const token = process.env[TOKEN_ENV];
  if (!token) throw new Error(`${TOKEN_ENV} is not set: the sidecar never runs without its per-launch secret`);
  // Resolved by the engine at the first model load (onnxruntime lives in its thread): a device that
  // cannot be used fails the load with what to do (e.g. how to get CUDA's libraries), in the log and model/load's answer.
  const device = parseDeviceRequest(values.device);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0..65535, got ${values.port}`);
  const budgetMb = values['kv-budget-mb'] === undefined ? undefined : Number(values['kv-budget-mb']);
  if (budgetMb !== undefined && !(budgetMb * 2 ** 20 >= LIMITS.minKvBudgetBytes)) throw new Error(`--kv-budget-mb must be at least ${LIMITS.minKvBudgetBytes / 2 ** 20}, got ${values['kv-budget-mb']}`);
  const coldBudgetMb = values['cold-budget-mb'] === undefined ? undefined : Number(values['cold-budget-mb']);
  if (coldBudgetMb !== undefined && !(values['cold-budget-mb']!.trim() !== '' && coldBudgetMb >= 0 && Number.isFinite(coldBudgetMb))) throw new Error(`--cold-budget-mb must be a non-negative number of MiB (all sessions' cold tiers together; 0 keeps none), got ${values['cold-budget-mb']}`);
  const maxImagePixels = values['max-image-pixels'] === undefined ? undefined : Number(values['max-image-pixels']);
  if (maxImagePixels !== undefined && !(Number.isInteger(maxImagePixels) && maxImagePixels > 0)) throw new Error(`--max-image-pixels must be a positive integer, got ${values['max-image-pixels']}`);
  const prefillChunk = values['prefill-chunk'] === undefined ? undefined : Number(values['prefill-chunk']);
  if (prefillChunk !== undefined && !(Number.isInteger(prefillChunk) && prefillChunk >= 1)) throw new Error(`--prefill-chunk must be a positive integer (tokens per prefill run), got ${values['prefill-chunk']}`);
  // onnxruntime's packed weights, kept between loads: beside the conversations unless told where; nowhere without either.
  const packedDir = values['packed-weights-dir'] ?? (values['state-dir'] ? join(values['state-dir'], 'packed-weights') : undefined);
  const packedMb = values['packed-weights-mb'] === undefined ? DEFAULT_PACKED_WEIGHTS_MB : Number(values['packed-weights-mb']);
  if (!(values['packed-weights-mb']?.trim() !== '' && packedMb >= 0 && Number.isFinite(packedMb))) throw new Error(`--packed-weights-mb must be a non-negative number of MiB (0: pack the weights at every load, keep none), got ${values['packed-weights-mb']}`);
  const packedBytes = Math.floor(packedMb * 2 ** 20);
  const retention = {
    maxSessions: limit(values['max-sessions'], '--max-sessions', DEFAULT_RETENTION.maxSessions, true),
    maxAgeDays: limit(values['session-max-age-days'], '--session-max-age-days', DEFAULT_RETENTION.maxAgeDays, false),
    maxStateBytes: Math.floor(limit(values['state-max-mb'], '--state-max-mb', DEFAULT_RETENTION.maxStateBytes / 2 ** 20, false) * 2 ** 20),
  };
  const server = new SidecarServer({
    retention,
    maxImagePixels,
    weightBits: parseWeightBits(values['weight-bits']),
    device,
    prefillChunk,
    host: values.host,
    port,
    token,
    version,
    log,
    threads: values.threads ? Number(values.threads) : undefined,
    kvBudgetBytes: budgetMb === undefined ? undefined : Math.floor(budgetMb * 2 ** 20),
    coldBudgetBytes: coldBudgetMb === undefined ? undefined : Math.floor(coldBudgetMb * 2 ** 20),
    stateDir: values['state-dir'] ? resolve(values['state-dir']) : undefined,
    allowedDirs: values['allow-dir']?.map((dir) => resolve(dir)),
    packedWeights: packedDir ? { dir: resolve(packedDir), budgetBytes: packedBytes } : undefined,
  });
  const bound = await server.listen();
  process.stdout.write(`${JSON.stringify({ port: bound, pid: process.pid, version })}\n`);
  log.log('info', 'listening', { host: values.host, port: bound });
  // Never crash on a stray error: log it and keep serving.
  process.on('uncaughtException', (error) => log.log('error', 'uncaught exception', { error: error.stack }));
  process.on('unhandledRejection', (error) => log.log('error', 'unhandled rejection', { error: error instanceof Error ? error.stack : String(error) }));
  process.once('SIGTERM', () => void server.close().then(() => process.exit(0)));
  if (values.model) server.loadModel(resolve(values.model), (step) => log.log('info', 'model progress', { step })).catch(() => undefined);
  process.exit(await server.exited);
}

/** A retention limit: a non-negative number (0: no limit), `fallback` when the flag is absent. */
function limit(value: string | undefined, flag: string, fallback: number, integer: boolean): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !(n >= 0 && Number.isFinite(n)) || (integer && !Number.isInteger(n))) throw new Error(`${flag} must be a non-negative ${integer ? 'integer' : 'number'} (0: no limit), got ${value}`);
  return n;
}

main().catch((error: unknown) => {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', message: error instanceof Error ? error.message : String(error) })}\n`);
  process.exit(1);
});
