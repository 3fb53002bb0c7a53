/**
 * The sidecar's server: HTTP upgrade to WebSocket on loopback only, refused with 401 without the
 * per-launch token and with 403 when a browser `Origin` is present (before any message is read),
 * then one vscode-jsonrpc connection per socket. Every parameter object is validated against the
 * protocol's zod schema; every failure is a JSON-RPC error with a stable code; nothing a client
 * sends can throw out of a handler.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';
import { createMessageConnection, ResponseError, type CancellationToken, type MessageConnection } from 'vscode-jsonrpc/node';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { POLICY_NAMES } from '../kv/index.js';
import type { WeightBits } from '../model/text/decoderGraph.js';
import { tokensPerImage } from '../model/vision/visionGraph.js';
import { randomUUID } from 'node:crypto';
import {
  ErrorCode,
  InitializeParams,
  LIMITS,
  Methods,
  ModelLoadParams,
  PROTOCOL_VERSION,
  CountTokensParams,
  SessionCacheParams,
  SessionChatParams,
  SessionCreateParams,
  SessionRefParams,
  TOKEN_HEADER,
  type CacheMap,
  type ModelInfo,
  type ServerStats,
  type SessionStats,
} from '../protocol/index.js';
import { Conversation, FeatureCache, MemoryImageStore, type ImageStore } from '../session/conversation.js';
import { SessionStore } from '../session/store.js';
import { SidecarError } from '../protocol/errors.js';
import { ImageError } from '../model/processor.js';
import { LlavaRuntime } from '../runtime/llava.js';
import type { Logger } from './log.js';
import { WebSocketMessageReader, WebSocketMessageWriter } from './wsTransport.js';

export interface ServerOptions {
  host: string;
  port: number;
  token: string;
  version: string;
  log: Logger;
  /** onnxruntime threads per session (default: the cores available). */
  threads?: number;
  /** Global byte budget of all sessions' KV caches (also settable by `initialize`). */
  kvBudgetBytes?: number;
  /** Where transcripts persist; without it, conversations live as long as the process. */
  stateDir?: string;
  /** Folders `model/load` may read (resolved, symlinks followed); unset: any folder. */
  allowedDirs?: string[];
  /** Largest image accepted, in declared pixels. */
  maxImagePixels?: number;
  /** 4: the decoder's linear layers on 4-bit weights. */
  weightBits?: WeightBits;
}

type ModelState =
  | { state: 'none' }
  | { state: 'loading'; path: string; done: Promise<void> }
  | { state: 'ready'; path: string; runtime: LlavaRuntime; info: ModelInfo }
  | { state: 'failed'; path: string; error: string };

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function validate<T>(schema: z.ZodType<T>, params: unknown): T {
  const parsed = schema.safeParse(params ?? {});
  if (!parsed.success) throw new ResponseError(ErrorCode.InvalidParams, `Invalid params: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

function describe(runtime: LlavaRuntime, path: string): ModelInfo {
  const { config } = runtime;
  return {
    path,
    architecture: config.architecture,
    textModel: config.text.modelType,
    visionModel: config.vision.modelType,
    layers: config.text.numLayers,
    heads: config.text.numHeads,
    kvHeads: config.text.numKvHeads,
    headDim: config.text.headDim,
    hiddenSize: config.text.hiddenSize,
    vocabSize: config.text.vocabSize,
    imageSize: config.vision.imageSize,
    tokensPerImage: tokensPerImage(config),
  };
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
  private model: ModelState = { state: 'none' };
  private readonly started = Date.now();
  private kvBudgetBytes: number | null;
  private evictions = 0;
  private readonly store: SessionStore | null;
  private readonly images: ImageStore;
  private readonly sessions = new Map<string, Conversation>();
  private features = new FeatureCache();
  /** Turns run one at a time on the one model, in arrival order; stats and cancels never wait. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Resolves with the process exit code once a client sent `exit` (0 after `shutdown`, else 1). */
  readonly exited: Promise<number>;
  private exit!: (code: number) => void;

  constructor(private readonly options: ServerOptions) {
    if (!LOOPBACK.has(options.host)) throw new RangeError(`--host must be a loopback address (127.0.0.1 or ::1), got ${options.host}`);
    if (options.token.length < 16) throw new RangeError('the sidecar token must be at least 16 characters');
    this.exited = new Promise((resolveExit) => (this.exit = resolveExit));
    this.kvBudgetBytes = options.kvBudgetBytes ?? null;
    this.store = options.stateDir ? new SessionStore(options.stateDir, options.log) : null;
    this.images = this.store?.images ?? new MemoryImageStore();
    for (const conversation of this.store?.loadAll() ?? []) this.sessions.set(conversation.id, conversation);
    if (this.sessions.size) options.log.log('info', 'sessions resumed from the state directory', { sessions: this.sessions.size });
  }

  async listen(): Promise<number> {
    const http = createServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket upgrade required\n');
    });
    http.on('upgrade', (req, socket, head) => {
      const refusal = this.refuse(req);
      if (refusal) {
        this.options.log.log('warn', 'upgrade refused', { status: refusal, remote: req.socket.remoteAddress });
        socket.end(`HTTP/1.1 ${refusal}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
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
    this.register(connection, () => socket.readyState === socket.OPEN);
    socket.on('close', (code) => {
      this.options.log.log('info', 'connection closed', { code });
      connection.dispose();
    });
    connection.listen();
    this.options.log.log('info', 'connection accepted');
  }

  private register(connection: MessageConnection, isOpen: () => boolean): void {
    let initialized = false;
    let shuttingDown = false;
    type Handler = { run: (params: unknown, token: CancellationToken) => unknown; beforeInitialize?: boolean };

    const handlers: Record<string, Handler> = {
      [Methods.initialize.method]: {
        beforeInitialize: true,
        run: (raw) => {
          if (initialized) throw new ResponseError(ErrorCode.InvalidRequest, 'initialize: already initialized');
          const params = validate(InitializeParams, raw);
          this.kvBudgetBytes = params.initializationOptions?.kvBudgetBytes ?? this.kvBudgetBytes;
          initialized = true;
          return {
            capabilities: { protocolVersion: PROTOCOL_VERSION, policies: POLICY_NAMES, modes: ['improved', 'reference'] },
            serverInfo: { name: 'lookm-sidecar', version: this.options.version },
            model: this.model.state === 'ready' ? this.model.info : null,
          };
        },
      },
      [Methods.shutdown.method]: {
        run: () => {
          shuttingDown = true;
          return null;
        },
      },
      [Methods.modelLoad.method]: {
        run: async (raw) => {
          const { path } = validate(ModelLoadParams, raw);
          return this.loadModel(this.checkAllowed(path), (step) => void connection.sendNotification(Methods.modelProgress, { path, step }));
        },
      },
      [Methods.modelInfo.method]: { run: () => (this.model.state === 'ready' ? this.model.info : null) },
      [Methods.serverStats.method]: { run: () => this.stats() },
      [Methods.modelCountTokens.method]: { run: async (raw) => ({ tokens: (await this.readyRuntime()).processor.encode(validate(CountTokensParams, raw).text, false).length }) },
      [Methods.sessionCreate.method]: {
        run: (raw) => {
          const { settings } = validate(SessionCreateParams, raw);
          const id = randomUUID();
          const conversation = new Conversation(id, settings, this.images);
          this.sessions.set(id, conversation);
          this.store?.save(conversation);
          return { sessionId: id };
        },
      },
      [Methods.sessionChat.method]: { run: (raw, token) => this.chat(connection, validate(SessionChatParams, raw), () => token.isCancellationRequested || !isOpen()) },
      [Methods.sessionStats.method]: { run: (raw) => this.sessionStats(this.session(validate(SessionRefParams, raw).sessionId)) },
      [Methods.sessionCache.method]: {
        run: (raw) => {
          const { sessionId, maxColumns } = validate(SessionCacheParams, raw);
          return this.sessionCache(this.session(sessionId), maxColumns);
        },
      },
      [Methods.sessionDelete.method]: {
        run: (raw) => {
          const { sessionId } = validate(SessionRefParams, raw);
          this.store?.delete(sessionId);
          return { deleted: this.sessions.delete(sessionId) };
        },
      },
    };

    // One dispatcher for every request, so the order of the checks is ours: unknown method, then
    // the lifecycle, then the parameters (vscode-jsonrpc's typed handlers would reject missing
    // parameters before the lifecycle, and optional ones altogether). Unexpected throws become
    // InternalError; nothing a client sends escapes as an exception.
    connection.onRequest(async (method: string, params: unknown, token: CancellationToken) => {
      if (!Object.hasOwn(handlers, method)) throw new ResponseError(ErrorCode.MethodNotFound, `unknown method "${method}"`);
      const handler = handlers[method];
      if (!initialized && !handler.beforeInitialize) throw new ResponseError(ErrorCode.ServerNotInitialized, `${method}: the server is not initialized; send "initialize" first`);
      if (shuttingDown && method !== Methods.shutdown.method) throw new ResponseError(ErrorCode.InvalidRequest, `${method}: the server is shutting down`);
      try {
        return await handler.run(params, token);
      } catch (error) {
        if (error instanceof ResponseError) throw error;
        if (error instanceof SidecarError) throw new ResponseError(error.code, `${method}: ${error.message}`);
        this.options.log.log('error', 'handler failed', { method, error: error instanceof Error ? error.stack : String(error) });
        throw new ResponseError(ErrorCode.InternalError, `${method} failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    });
    connection.onNotification(Methods.initialized, () => undefined);
    connection.onNotification(Methods.exit, () => {
      this.options.log.log('info', 'exit requested', { afterShutdown: shuttingDown });
      void this.close().then(() => this.exit(shuttingDown ? 0 : 1));
    });
  }

  /** One turn, queued behind the turns in flight; streams its tokens as `session/token`. */
  private chat(connection: MessageConnection, params: z.infer<typeof SessionChatParams>, isCancelled: () => boolean): Promise<unknown> {
    const conversation = this.session(params.sessionId);
    const images = params.images.map((image, i) => decodeImage(image.data, image.name ?? `image ${i + 1}`));
    const run = async () => {
      if (isCancelled()) throw new ResponseError(ErrorCode.RequestCancelled, 'session/chat: cancelled (or its client left) before it started');
      const runtime = await this.readyRuntime();
      this.enforceBudget(conversation);
      try {
        return await conversation.turn(
          runtime,
          this.features,
          { text: params.text, images, files: params.files },
          (text, tokenId) => void connection.sendNotification(Methods.sessionToken, { sessionId: conversation.id, text, tokenId }),
          isCancelled, // a cancel request, or the client went away: stop decoding
        );
      } catch (error) {
        // Bad images are the client's: say which and what to do; nothing of the session is lost.
        if (error instanceof ImageError) throw new ResponseError(ErrorCode.BadImage, `session/chat: ${error.message}`);
        // A policy that cannot run on this conversation (reference mode reproduces the official
        // classes' failures on short prompts) is the session's settings, not a server fault.
        if (error instanceof RangeError) throw new ResponseError(ErrorCode.InvalidParams, `session/chat: the session's KV settings cannot compress this conversation: ${error.message}`);
        throw error;
      } finally {
        this.enforceBudget(conversation);
        // Persist whatever the turn added, a cancelled or failed one included (unless deleted meanwhile).
        if (this.sessions.get(conversation.id) === conversation) this.store?.save(conversation);
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Keeps the resident caches within the global budget: the least recently used sessions other
   * than `active` are evicted to their transcripts (their next turn rebuilds by re-prefill).
   * Checked before a turn starts and after it compressed, so between turns the budget holds; the
   * active turn's own prefill, before its compression, is not counted.
   */
  private enforceBudget(active: Conversation): void {
    const budget = this.kvBudgetBytes;
    if (budget === null) return;
    const resident = () => [...this.sessions.values()].reduce((sum, c) => sum + c.kvBytes, 0);
    const idle = [...this.sessions.values()].filter((c) => c !== active && c.cached).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const victim of idle) {
      if (resident() <= budget) break;
      victim.evict();
      this.evictions++;
      this.options.log.log('info', 'session evicted to its transcript', { session: victim.id, budget });
    }
  }

  private session(id: string): Conversation {
    const conversation = this.sessions.get(id);
    if (!conversation) throw new ResponseError(ErrorCode.SessionNotFound, `no session ${JSON.stringify(id)} (create one with session/create)`);
    return conversation;
  }

  private sessionStats(c: Conversation): SessionStats {
    return { sessionId: c.id, settings: c.settings, turns: c.turns, kvBytes: c.kvBytes, tokensSeen: c.tokensSeen, cached: c.cached };
  }

  private sessionCache(c: Conversation, maxColumns?: number): CacheMap {
    return { sessionId: c.id, settings: c.settings, cached: c.cached, tokensSeen: c.tokensSeen, kvBytes: c.kvBytes, fullKvBytes: c.turns.at(-1)?.fullKvBytes ?? 0, kvBudgetBytes: this.kvBudgetBytes, turns: c.turns, ...c.cacheMap(maxColumns) };
  }

  /** The loaded model, waiting for a load in flight. */
  private async readyRuntime(): Promise<LlavaRuntime> {
    while (this.model.state === 'loading') await this.model.done;
    if (this.model.state === 'ready') return this.model.runtime;
    throw new ResponseError(ErrorCode.ModelNotLoaded, `no model is loaded${this.model.state === 'failed' ? ` (loading ${this.model.path} failed: ${this.model.error})` : ''}; send model/load`);
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
        return false; // an allowed folder that does not exist allows nothing
      }
      const rel = relative(root, real);
      return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
    });
    if (!inside) throw new ResponseError(ErrorCode.InvalidParams, `model/load: ${path} is outside the folders this sidecar may read (${allowed.join(', ')})`);
    return real;
  }

  /** Loads (or replaces) the model; concurrent loads wait for the one in flight. */
  async loadModel(path: string, onProgress: (step: string) => void = () => undefined): Promise<ModelInfo> {
    while (this.model.state === 'loading') await this.model.done.catch(() => undefined);
    if (this.model.state === 'ready' && this.model.path === path) return this.model.info;
    const previous = this.model.state === 'ready' ? this.model.runtime : null;
    let finish!: () => void;
    this.model = { state: 'loading', path, done: new Promise<void>((r) => (finish = r)) };
    this.options.log.log('info', 'loading model', { path });
    try {
      const runtime = await LlavaRuntime.load(path, { threads: this.options.threads, maxImagePixels: this.options.maxImagePixels, weightBits: this.options.weightBits, onProgress });
      const info = describe(runtime, path);
      this.model = { state: 'ready', path, runtime, info };
      // Caches and image features belong to the previous model: conversations rebuild on their next turn.
      this.features = new FeatureCache();
      for (const conversation of this.sessions.values()) conversation.evict();
      await previous?.release();
      this.options.log.log('info', 'model ready', { path });
      return info;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.model = previous ? { state: 'ready', path: previous.checkpoint.dir, runtime: previous, info: describe(previous, previous.checkpoint.dir) } : { state: 'failed', path, error: message };
      this.options.log.log('error', 'model load failed', { path, error: message });
      throw new ResponseError(ErrorCode.ModelLoadFailed, `model/load: ${message}`);
    } finally {
      finish();
    }
  }

  stats(): ServerStats {
    const m = this.model;
    return {
      uptimeMs: Date.now() - this.started,
      sessions: this.sessions.size,
      kvBytes: [...this.sessions.values()].reduce((sum, c) => sum + c.kvBytes, 0),
      model: { state: m.state, path: 'path' in m ? m.path : null, error: m.state === 'failed' ? m.error : null },
      rssBytes: process.memoryUsage().rss,
      kvBudgetBytes: this.kvBudgetBytes,
      evictions: this.evictions,
    };
  }

  async close(): Promise<void> {
    for (const client of this.wss.clients) client.close(1001, 'server shutting down');
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
    if (this.model.state === 'ready') await this.model.runtime.release();
    this.model = { state: 'none' };
  }
}
