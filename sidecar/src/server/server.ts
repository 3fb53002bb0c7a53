/**
 * The sidecar's server: HTTP upgrade to WebSocket on loopback only, refused with 401 without the
 * per-launch token and with 403 when a browser `Origin` is present (before any message is read),
 * then one vscode-jsonrpc connection per socket. Every parameter object is validated against the
 * protocol's zod schema; every failure is a JSON-RPC error with a stable code; nothing a client
 * sends can throw out of a handler.
 */
import { timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isAbsolute, relative, resolve } from 'node:path';
import { createMessageConnection, NotificationType, ResponseError, type CancellationToken, type MessageConnection } from 'vscode-jsonrpc/node';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import type { EngineOptions } from '../engine/engine.js';
import { EngineHost } from '../engine/host.js';
import type { Logger } from '../log.js';
import { SidecarError } from '../protocol/errors.js';
import {
  CountTokensParams,
  ErrorCode,
  InitializeParams,
  LIMITS,
  Methods,
  ModelLoadParams,
  POLICY_NAMES,
  PROTOCOL_VERSION,
  SessionCacheParams,
  SessionChatParams,
  SessionCreateParams,
  SessionRefParams,
  TOKEN_HEADER,
  type ChatResult,
  type ModelInfo,
  type ServerStats,
} from '../protocol/index.js';
import { WebSocketMessageReader, WebSocketMessageWriter } from '../transport/wsTransport.js';

export interface ServerOptions extends EngineOptions {
  host: string;
  port: number;
  token: string;
  version: string;
  log: Logger;
  /** Folders `model/load` may read (resolved, symlinks followed); unset: any folder. */
  allowedDirs?: string[];
  /** Time a client has to complete its WebSocket upgrade (default `LIMITS.upgradeTimeoutMs`). */
  upgradeTimeoutMs?: number;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** The zod schema of each request that takes parameters (the others take none). */
const PARAMS = {
  initialize: InitializeParams,
  modelLoad: ModelLoadParams,
  modelCountTokens: CountTokensParams,
  sessionCreate: SessionCreateParams,
  sessionChat: SessionChatParams,
  sessionStats: SessionRefParams,
  sessionCache: SessionCacheParams,
  sessionDelete: SessionRefParams,
} as const;

/** A message type's phantom signature: `[P, R, E, _]` for requests, `[R, E, _]` without params. */
type Signature<T> = T extends { readonly _: infer S } ? NonNullable<S> : never;
type MethodTable = typeof Methods;
/** The keys of `Methods` that are requests (notifications are handled apart). */
type RequestKey = { [K in keyof MethodTable]: Signature<MethodTable[K]> extends [unknown, unknown, unknown, ...unknown[]] ? K : never }[keyof MethodTable];
type ResultOf<K extends RequestKey> = Signature<MethodTable[K]> extends [unknown, infer R, unknown, unknown] ? R : Signature<MethodTable[K]> extends [infer R, unknown, unknown] ? R : never;
type ParamsOf<K extends RequestKey> = K extends keyof typeof PARAMS ? z.output<(typeof PARAMS)[K]> : undefined;
type Handler<K extends RequestKey> = (params: ParamsOf<K>, signal: AbortSignal) => ResultOf<K> | Promise<ResultOf<K>>;
type Handlers = { [K in RequestKey]: Handler<K> };

/** Request keys by wire method name. */
const METHOD_KEYS = new Map<string, RequestKey>(
  (Object.keys(Methods) as (keyof MethodTable)[]).filter((key): key is RequestKey => !(Methods[key] instanceof NotificationType)).map((key) => [Methods[key].method, key]),
);

function validate<T>(schema: z.ZodType<T>, params: unknown): T {
  const parsed = schema.safeParse(params ?? {});
  if (!parsed.success) throw new ResponseError(ErrorCode.InvalidParams, `Invalid params: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** Image bytes of a base64 field, strictly decoded and size-checked. */
function decodeImage(data: string, name: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(data) || data.length % 4 !== 0) throw new ResponseError(ErrorCode.BadImage, `${name}: not valid base64`);
  const bytes = Buffer.from(data, 'base64');
  if (bytes.length === 0) throw new ResponseError(ErrorCode.BadImage, `${name}: empty image`);
  if (bytes.length > LIMITS.maxImageBytes) throw new ResponseError(ErrorCode.BadImage, `${name}: ${bytes.length} bytes, over the ${LIMITS.maxImageBytes}-byte limit`);
  return bytes;
}

export class SidecarServer {
  private http: Server | null = null;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: LIMITS.maxPayloadBytes });
  private readonly started = Date.now();
  /** The model and the conversations, in a worker thread: this thread only talks and answers. */
  private readonly engine: EngineHost;
  /** Resolves with the process exit code once a client sent `exit` (0 after `shutdown`, else 1). */
  readonly exited: Promise<number>;
  private exit!: (code: number) => void;

  constructor(private readonly options: ServerOptions) {
    if (!LOOPBACK.has(options.host)) throw new RangeError(`--host must be a loopback address (127.0.0.1 or ::1), got ${options.host}`);
    if (options.token.length < 16) throw new RangeError('the sidecar token must be at least 16 characters');
    this.exited = new Promise((resolveExit) => (this.exit = resolveExit));
    const { threads, kvBudgetBytes, stateDir, retention, maxImagePixels, weightBits, prefillChunk, device, coldBudgetBytes, packedWeights } = options;
    this.engine = new EngineHost({ threads, kvBudgetBytes, stateDir, retention, maxImagePixels, weightBits, prefillChunk, device, coldBudgetBytes, packedWeights }, options.log);
  }

  async listen(): Promise<number> {
    const upgradeTimeoutMs = this.options.upgradeTimeoutMs ?? LIMITS.upgradeTimeoutMs;
    // A client that never completes its upgrade is dropped after upgradeTimeoutMs (Node checks
    // every second), and sockets beyond a cap are closed as they arrive, so a flood of slow or
    // unauthorised connections cannot hold the process's file descriptors and memory.
    const http = createServer({ headersTimeout: upgradeTimeoutMs, requestTimeout: upgradeTimeoutMs, connectionsCheckingInterval: 1000, keepAliveTimeout: 1000 }, (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' }).end('WebSocket upgrade required\n');
    });
    http.maxConnections = 8 * LIMITS.maxConnections; // sockets of any kind, upgraded or not
    // Node's header timeout does not cover a socket that never sends a byte: time every socket.
    const upgradeDeadlines = new WeakMap<object, NodeJS.Timeout>();
    http.on('connection', (socket) => {
      upgradeDeadlines.set(socket, setTimeout(() => socket.destroy(), upgradeTimeoutMs).unref());
    });
    http.on('upgrade', (req, socket, head) => {
      const refusal = this.refuse(req) ?? (this.wss.clients.size >= LIMITS.maxConnections ? '503 Service Unavailable' : null);
      if (refusal) {
        this.options.log.log('warn', 'upgrade refused', { status: refusal, remote: req.socket.remoteAddress });
        // Closed once the answer is out, whether or not the client closes its end.
        socket.once('finish', () => socket.destroy());
        socket.end(`HTTP/1.1 ${refusal}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      clearTimeout(upgradeDeadlines.get(socket));
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
    });
    this.http = http;
    await new Promise<void>((resolveListen, reject) => {
      http.once('error', reject);
      http.listen(this.options.port, this.options.host, () => resolveListen());
    });
    return (http.address() as AddressInfo).port;
  }

  /** The HTTP status line that refuses this upgrade, or null to accept it. */
  private refuse(req: IncomingMessage): string | null {
    if (req.headers.origin !== undefined) return '403 Forbidden';
    const given = Buffer.from(String(req.headers[TOKEN_HEADER] ?? ''));
    const expected = Buffer.from(this.options.token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return '401 Unauthorized';
    return null;
  }

  private accept(socket: WebSocket): void {
    const connection = createMessageConnection(new WebSocketMessageReader(socket), new WebSocketMessageWriter(socket));
    // A client that leaves cancels what it asked for: its turns stop at the next step.
    const inFlight = new Set<AbortController>();
    this.register(connection, inFlight);
    socket.on('close', (code) => {
      this.options.log.log('info', 'connection closed', { code });
      for (const controller of inFlight) controller.abort();
      connection.dispose();
    });
    connection.listen();
    this.options.log.log('info', 'connection accepted');
  }

  private register(connection: MessageConnection, inFlight: Set<AbortController>): void {
    const lifecycle = { initialized: false, shuttingDown: false };
    const handlers = this.handlers(connection, lifecycle);

    // One dispatcher for every request, so the order of the checks is ours: unknown method, then
    // the lifecycle, then the parameters (vscode-jsonrpc's typed handlers would reject missing
    // parameters before the lifecycle, and optional ones altogether). Nothing a client sends
    // escapes as an exception; failures the engine could not classify become InternalError.
    connection.onRequest(async (method: string, raw: unknown, token: CancellationToken) => {
      const key = METHOD_KEYS.get(method);
      if (key === undefined) throw new ResponseError(ErrorCode.MethodNotFound, `unknown method "${method}"`);
      const handler = handlers[key] as Handler<RequestKey>;
      if (!lifecycle.initialized && key !== 'initialize') throw new ResponseError(ErrorCode.ServerNotInitialized, `${method}: the server is not initialized; send "initialize" first`);
      if (lifecycle.shuttingDown && key !== 'shutdown') throw new ResponseError(ErrorCode.ShuttingDown, `${method}: the server is shutting down; reconnect to a new sidecar`);
      const schema = PARAMS[key as keyof typeof PARAMS] as z.ZodType | undefined;
      const params: unknown = schema ? validate(schema, raw) : undefined;
      const controller = new AbortController();
      const cancelled = token.onCancellationRequested(() => controller.abort());
      inFlight.add(controller);
      try {
        return await handler(params as never, controller.signal);
      } catch (error) {
        if (error instanceof ResponseError) throw error;
        if (error instanceof SidecarError) throw new ResponseError(error.code, `${method}: ${error.message}`);
        this.options.log.log('error', 'handler failed', { method, error: error instanceof Error ? error.stack : String(error) });
        throw new ResponseError(ErrorCode.InternalError, `${method} failed: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        cancelled.dispose();
        inFlight.delete(controller);
      }
    });
    connection.onNotification(Methods.initialized, () => undefined);
    connection.onNotification(Methods.exit, () => {
      this.options.log.log('info', 'exit requested', { afterShutdown: lifecycle.shuttingDown });
      void this.close().then(() => this.exit(lifecycle.shuttingDown ? 0 : 1));
    });
  }

  /** The request handlers of one connection, each typed by its entry in `Methods` and `PARAMS`. */
  private handlers(connection: MessageConnection, lifecycle: { initialized: boolean; shuttingDown: boolean }): Handlers {
    const engine = this.engine;
    return {
      initialize: async (params) => {
        if (lifecycle.initialized) throw new ResponseError(ErrorCode.InvalidRequest, 'initialize: already initialized');
        const kvBudgetBytes = params.initializationOptions?.kvBudgetBytes;
        if (kvBudgetBytes !== undefined) await engine.call('setKvBudget', { kvBudgetBytes });
        lifecycle.initialized = true;
        return {
          capabilities: { protocolVersion: PROTOCOL_VERSION, policies: [...POLICY_NAMES], modes: ['improved', 'reference'] },
          serverInfo: { name: 'lookm-sidecar', version: this.options.version },
          model: await engine.call('modelInfo', undefined),
        };
      },
      shutdown: () => {
        lifecycle.shuttingDown = true;
        return null;
      },
      modelLoad: ({ path }) => this.loadModel(this.checkAllowed(path), (step) => void connection.sendNotification(Methods.modelProgress, { path, step })),
      modelInfo: () => engine.call('modelInfo', undefined),
      serverStats: () => this.stats(),
      modelCountTokens: (params, signal) => engine.call('countTokens', params, { signal }),
      sessionCreate: (params) => engine.call('createSession', params),
      sessionChat: (params, signal) => this.chat(connection, params, signal),
      sessionStats: (params) => engine.call('sessionStats', params),
      sessionCache: (params) => engine.call('sessionCache', params),
      sessionDelete: (params) => engine.call('deleteSession', params),
    };
  }

  /** One turn in the engine; streams its reading progress as `session/progress` and its tokens as `session/token`. */
  private chat(connection: MessageConnection, params: z.infer<typeof SessionChatParams>, signal: AbortSignal): Promise<ChatResult> {
    const images = params.images.map((image, i) => decodeImage(image.data, image.name ?? `image ${i + 1}`));
    const token = (sessionId: string, text: string, tokenId: number) => void connection.sendNotification(Methods.sessionToken, { sessionId, text, tokenId });
    const reading = (sessionId: string, tokensRead: number, tokensTotal: number) => void connection.sendNotification(Methods.sessionProgress, { sessionId, tokensRead, tokensTotal });
    return this.engine.call('chat', { sessionId: params.sessionId, text: params.text, images, files: params.files }, { signal, token, reading });
  }

  /** The real path of `path` if it lies inside an allowed folder; otherwise an InvalidParams error. */
  private checkAllowed(path: string): string {
    const allowed = this.options.allowedDirs;
    let real: string;
    try {
      real = realpathSync(resolve(path));
    } catch {
      real = resolve(path); // missing: the loader says so, with the path
    }
    if (!allowed) return real;
    const inside = allowed.some((dir) => {
      let root: string;
      try {
        root = realpathSync(dir);
      } catch {
        root = resolve(dir); // missing: only itself (the loader then says it is not found)
      }
      const rel = relative(root, real);
      return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
    });
    if (!inside) throw new ResponseError(ErrorCode.InvalidParams, `model/load: ${path} is outside the folders this sidecar may read (${allowed.join(', ')})`);
    return real;
  }

  /** Loads (or replaces) the model once the turns queued before it are done. */
  loadModel(path: string, onProgress: (step: string) => void = () => undefined): Promise<ModelInfo> {
    return this.engine.call('loadModel', { path }, { progress: onProgress });
  }

  /** Answered on this thread from the engine's latest figures: never waits for the model. */
  stats(): ServerStats {
    return { uptimeMs: Date.now() - this.started, rssBytes: process.memoryUsage().rss, ...this.engine.stats };
  }

  async close(): Promise<void> {
    for (const client of this.wss.clients) client.close(1001, 'server shutting down');
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    await this.engine.close();
  }
}
