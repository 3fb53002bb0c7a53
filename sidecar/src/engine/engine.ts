/**
 * The engine: the loaded model, every conversation and its KV cache, the image feature cache, the
 * persisted state and the global KV budget. It runs in a worker thread of its own (see
 * `worker.ts` and `host.ts`) because tokenizing and onnxruntime's runs are synchronous: on the
 * server's thread they would stop it from answering stats, cancels and other clients.
 *
 * Turns and model loads share the one model, so they run one at a time in arrival order (a load
 * never releases a runtime a turn is using). Failures are `SidecarError`s with their protocol code.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import type { WeightBits } from '../model/text/decoderGraph.js';
import { SidecarError } from '../protocol/errors.js';
import { ErrorCode, type CacheMap, type ChatResult, type ModelInfo, type SessionSettings, type SessionStats } from '../protocol/index.js';
import { resolveDevice, type ResolvedDevice } from '../runtime/device.js';
import type { DeviceRequest } from '../runtime/deviceRequest.js';
import type { ModelRuntime } from '../runtime/modelRuntime.js';
import { OnnxModelRuntime } from '../runtime/onnxModelRuntime.js';
import { PackedWeightsCache } from '../runtime/packedWeights.js';
import { Conversation, FeatureCache, MemoryImageStore, type ImageStore } from '../session/conversation.js';
import { SessionStore, type RetentionRules } from '../session/store.js';

export interface EngineOptions {
  /** onnxruntime threads per session (default: the cores available). */
  threads?: number;
  /** Global byte budget of all sessions' KV caches (also settable by `initialize`). */
  kvBudgetBytes?: number;
  /**
   * Global byte budget of all sessions' cold tiers (host memory; sessions whose settings turn the
   * cold tier on). Beyond it the oldest cold entries are dropped, least recently used sessions
   * first (their transcripts still rebuild the caches). Default: none.
   */
  coldBudgetBytes?: number;
  /** Where transcripts persist; without it, conversations live as long as the process. */
  stateDir?: string;
  /** What the state directory keeps (default: `DEFAULT_RETENTION`). */
  retention?: RetentionRules;
  /** Largest image accepted, in declared pixels. */
  maxImagePixels?: number;
  /** 4: the decoder's linear layers on 4-bit weights. */
  weightBits?: WeightBits;
  /** Tokens per prefill run (default: the runtime's); smaller reports reading progress and honours a stop more often. */
  prefillChunk?: number;
  /**
   * `--device`: where the model's sessions run (`resolveDevice` chooses once, at the first load;
   * `createSession` places every session there). Default: the CPU.
   */
  device?: DeviceRequest;
  /**
   * Where onnxruntime's prepacked weights are kept between loads (`PackedWeightsCache`), and the most
   * disk they may take; unset or a budget of 0: the weights are packed at every load.
   */
  packedWeights?: { dir: string; budgetBytes: number };
}

/** What a call may report while it runs, and how it learns that its client gave up. */
export interface CallEvents {
  token?(sessionId: string, text: string, tokenId: number): void;
  progress?(step: string): void;
  /** A turn's reading (prefill, a rebuild's replay): tokens read of all it reads. */
  reading?(sessionId: string, tokensRead: number, tokensTotal: number): void;
  cancelled?(): boolean;
  /** The engine's figures changed during the call (a running turn's cache grew): post fresh stats. */
  figures?(): void;
}

export interface ChatInput {
  sessionId: string;
  text: string;
  images: Uint8Array[];
  files: { name: string; text: string }[];
}

/** The engine's figures that `server/stats` reports; posted to the server after every call. */
export interface EngineStats {
  sessions: number;
  kvBytes: number;
  model: { state: 'none' | 'loading' | 'ready' | 'failed'; path: string | null; error: string | null };
  kvBudgetBytes: number | null;
  evictions: number;
  /** Bytes of all resident sessions' cold tiers. */
  coldBytes: number;
}

type ModelState =
  | { state: 'none' }
  | { state: 'loading'; path: string; done: Promise<void> }
  | { state: 'ready'; path: string; runtime: ModelRuntime; info: ModelInfo }
  | { state: 'failed'; path: string; error: string };

function describe(runtime: ModelRuntime, path: string): ModelInfo {
  return { path, ...runtime.info };
}

export class Engine {
  private model: ModelState = { state: 'none' };
  private device: Promise<ResolvedDevice> | null = null;
  private kvBudgetBytes: number | null;
  private evictions = 0;
  private readonly store: SessionStore | null;
  private readonly images: ImageStore;
  /** Conversations in memory; with a state directory, the others are loaded on first use. */
  private readonly sessions = new Map<string, Conversation>();
  /** Turns queued or running, per session id (retention never removes those sessions). */
  private readonly turnsPending = new Map<string, number>();
  private features = new FeatureCache();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly options: EngineOptions,
    private readonly log: Logger,
  ) {
    this.kvBudgetBytes = options.kvBudgetBytes ?? null;
    this.store = options.stateDir ? new SessionStore(options.stateDir, log, options.retention) : null;
    this.images = this.store?.images ?? new MemoryImageStore();
    this.store?.enforceRetention(new Set(), { rescan: false });
    if (this.store?.size) log.log('info', 'sessions resumed from the state directory (each is read on first use)', { sessions: this.store.size });
  }

  setKvBudget({ kvBudgetBytes }: { kvBudgetBytes: number }): void {
    this.kvBudgetBytes = kvBudgetBytes;
  }

  modelInfo(): ModelInfo | null {
    return this.model.state === 'ready' ? this.model.info : null;
  }

  async countTokens({ text }: { text: string }): Promise<{ tokens: number }> {
    return { tokens: (await this.readyRuntime()).processor.encodeText(text).length };
  }

  createSession({ settings }: { settings: SessionSettings }): { sessionId: string } {
    const id = randomUUID();
    const conversation = new Conversation(id, settings, this.images);
    this.sessions.set(id, conversation);
    this.persist(conversation);
    return { sessionId: id };
  }

  /** An unknown id answers `{deleted: false}` and touches nothing on disk. */
  deleteSession({ sessionId }: { sessionId: string }): { deleted: boolean } {
    this.sessions.get(sessionId)?.evict(); // frees its cache now (on a GPU, garbage collection would not)
    const inMemory = this.sessions.delete(sessionId);
    const stored = this.store?.delete(sessionId) ?? false;
    return { deleted: inMemory || stored };
  }

  sessionStats({ sessionId }: { sessionId: string }): SessionStats {
    const c = this.session(sessionId);
    return { sessionId: c.id, settings: c.settings, turns: c.turns, kvBytes: c.kvBytes, coldBytes: c.coldBytes, tokensSeen: c.tokensSeen, cached: c.cached };
  }

  sessionCache({ sessionId, maxColumns }: { sessionId: string; maxColumns?: number }): CacheMap {
    const c = this.session(sessionId);
    return { sessionId: c.id, settings: c.settings, cached: c.cached, tokensSeen: c.tokensSeen, kvBytes: c.kvBytes, keptKvBytes: c.turns.at(-1)?.keptKvBytes, fullKvBytes: c.turns.at(-1)?.fullKvBytes ?? 0, kvBudgetBytes: this.kvBudgetBytes, turns: c.turns, ...c.cacheMap(maxColumns) };
  }

  /** One turn, queued behind the work in flight; streams its tokens through `events.token`. */
  chat(input: ChatInput, events: CallEvents = {}): Promise<ChatResult> {
    const conversation = this.session(input.sessionId);
    const isCancelled = () => events.cancelled?.() ?? false;
    return this.whilePending(conversation.id, async () => {
      if (isCancelled()) throw new SidecarError(ErrorCode.RequestCancelled, 'cancelled (or its client left) before it started');
      const runtime = await this.readyRuntime();
      if (conversation.madeByAnotherModel(runtime.fingerprint)) {
        // Its token ids are another tokenizer's: the turn feeds its transcript again as text.
        this.log.log('info', 'conversation made by another model (or saved before models were recorded): rebuilt from its transcript text with this model\'s tokenizer and template', { session: conversation.id, turns: conversation.turns.length, model: this.model.state === 'ready' ? this.model.path : null });
      } else {
        // Its tokens are this model's and are replayed: refuse ids it cannot embed (a damaged file), naming the conversation.
        conversation.checkTokenIds(runtime.info.vocabSize, runtime.processor.imageTokenId);
      }
      this.enforceBudget(conversation);
      try {
        const onToken = (text: string, tokenId: number) => events.token?.(conversation.id, text, tokenId);
        const onRead = (tokensRead: number, tokensTotal: number) => events.reading?.(conversation.id, tokensRead, tokensTotal);
        const onCacheGrowth = () => {
          this.enforceBudget(conversation);
          events.figures?.();
        };
        const result = await conversation.turn(runtime, this.features, { text: input.text, images: input.images, files: input.files }, onToken, isCancelled, onCacheGrowth, onRead);
        this.logTurn(conversation.id, result);
        return result;
      } finally {
        this.enforceBudget(conversation);
        this.enforceColdBudget();
        // Persist whatever the turn added, a cancelled or failed one included (unless deleted meanwhile).
        if (this.sessions.get(conversation.id) === conversation) this.persist(conversation);
      }
    });
  }

  /** One readable line per turn at the default level: what was read, what the cache holds, how long it took. */
  private logTurn(sessionId: string, { stopReason, stats: s }: ChatResult): void {
    const kib = (bytes: number) => `${(bytes / 1024).toFixed(0)}KiB`;
    this.log.log('info', 'turn', {
      session: sessionId.slice(0, 8),
      newTokens: s.newTokens,
      generated: s.generatedTokens,
      stop: stopReason,
      // kept/full compares slots with slots; allocated (spare capacity included) is the memory figure.
      kv: `${s.keptKvBytes === undefined ? '?' : kib(s.keptKvBytes)}/${kib(s.fullKvBytes)}`,
      kvAllocated: kib(s.kvBytes),
      images: `${s.imagesEncoded}+${s.imagesReused}`,
      firstTokenMs: Math.round(s.timeToFirstTokenMs),
      prefillMs: Math.round(s.prefillMs),
      decodeMs: Math.round(s.decodeMs),
      ...(s.rebuilt ? { rebuilt: true } : {}),
    });
  }

  /** Loads (or replaces) the model once the work queued before it is done. */
  loadModel({ path }: { path: string }, events: CallEvents = {}): Promise<ModelInfo> {
    return this.enqueue(() => this.replaceModel(path, (step) => events.progress?.(step)));
  }

  stats(): EngineStats {
    const m = this.model;
    return {
      sessions: this.store ? new Set([...this.sessions.keys(), ...this.store.ids()]).size : this.sessions.size,
      kvBytes: [...this.sessions.values()].reduce((sum, c) => sum + c.kvBytes, 0),
      model: { state: m.state, path: 'path' in m ? m.path : null, error: m.state === 'failed' ? m.error : null },
      kvBudgetBytes: this.kvBudgetBytes,
      evictions: this.evictions,
      coldBytes: [...this.sessions.values()].reduce((sum, c) => sum + c.coldBytes, 0),
    };
  }

  async close(): Promise<void> {
    if (this.model.state === 'ready') await this.model.runtime.release();
    this.model = { state: 'none' };
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work, work);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** `work` queued, its session counted as having a turn pending until it ends. */
  private whilePending<T>(id: string, work: () => Promise<T>): Promise<T> {
    this.turnsPending.set(id, (this.turnsPending.get(id) ?? 0) + 1);
    return this.enqueue(work).finally(() => {
      const left = (this.turnsPending.get(id) ?? 1) - 1;
      if (left > 0) this.turnsPending.set(id, left);
      else this.turnsPending.delete(id);
    });
  }

  /** Saves a conversation, then applies the retention rules (never to it or to sessions with turns queued or running). */
  private persist(conversation: Conversation): void {
    if (!this.store) return;
    this.store.save(conversation);
    const keep = new Set([conversation.id, ...this.turnsPending.keys()]);
    for (const id of this.store.enforceRetention(keep)) this.sessions.delete(id);
  }

  /**
   * Keeps the resident caches within the global budget: the least recently used sessions other
   * than `active` are evicted to their transcripts (their next turn rebuilds by re-prefill).
   *
   * The invariant: whenever this thread can be observed (at every await of a turn, between
   * turns), the allocated KV bytes of all resident sessions, the running turn's caches included,
   * are at most max(budget, the running session's own allocated bytes). It runs before a turn,
   * synchronously whenever the running turn's cache grows (a prefill's reservation, a decode
   * step past its headroom), and after the turn; growth is the only way allocated bytes rise.
   * What the running turn alone needs (its prompt's full cache before compression) is never
   * refused: the other sessions make room for it.
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
      this.log.log('info', 'session evicted to its transcript', { session: victim.id, budget });
    }
  }

  /**
   * Keeps all cold tiers within the global cold budget: the oldest entries go first, from the
   * least recently used sessions first. Runs after every turn (the only time a cold tier grows).
   */
  private enforceColdBudget(): void {
    const budget = this.options.coldBudgetBytes;
    if (budget === undefined) return;
    let excess = [...this.sessions.values()].reduce((sum, c) => sum + c.coldBytes, 0) - budget;
    for (const c of [...this.sessions.values()].sort((a, b) => a.lastUsed - b.lastUsed)) {
      if (excess <= 0) break;
      const freed = c.trimCold(Math.max(0, c.coldBytes - excess));
      if (freed > 0) this.log.log('debug', 'cold tier trimmed to the global cold budget', { session: c.id, freed, budget });
      excess -= freed;
    }
  }

  /** The session `id`, read from the state directory on its first use. */
  private session(id: string): Conversation {
    let conversation = this.sessions.get(id);
    if (!conversation && this.store?.has(id)) {
      conversation = this.store.load(id); // a damaged file: SessionNotFound, saying why
      this.sessions.set(id, conversation);
    }
    if (!conversation) throw new SidecarError(ErrorCode.SessionNotFound, `no session ${JSON.stringify(id)} (create one with session/create)`);
    return conversation;
  }

  /** The loaded model, waiting for a load in flight. */
  private async readyRuntime(): Promise<ModelRuntime> {
    while (this.model.state === 'loading') await this.model.done;
    if (this.model.state === 'ready') return this.model.runtime;
    throw new SidecarError(ErrorCode.ModelNotLoaded, `no model is loaded${this.model.state === 'failed' ? ` (loading ${this.model.path} failed: ${this.model.error})` : ''}; send model/load`);
  }

  /** The device `--device` asked for, chosen once (a failed choice is asked again at the next load). */
  private resolvedDevice(): Promise<ResolvedDevice> {
    if (!this.device) {
      const request = this.options.device ?? 'cpu';
      this.device = resolveDevice(request).then(
        (device) => {
          this.log.log('info', 'device', { requested: request, provider: device.provider, adapter: device.adapter, reason: device.reason });
          return device;
        },
        (error: unknown) => {
          this.device = null;
          throw error;
        },
      );
    }
    return this.device;
  }

  /** The packed-weights cache of the options, reporting to the log and, while it saves an entry, to the load's progress. */
  private packedWeights(onProgress: (step: string) => void): PackedWeightsCache | undefined {
    const options = this.options.packedWeights;
    if (!options || options.budgetBytes <= 0) return undefined;
    return new PackedWeightsCache(options.dir, options.budgetBytes, (event) => {
      if (event.event === 'saving') onProgress(`packing the weights and saving them for faster loads (once per model, about ${Math.round(event.bytes / 2 ** 20)} MiB on disk)`);
      this.log.log(event.event === 'skipped' || event.event === 'discarded' ? 'warn' : 'info', 'packed weights', { ...event });
    });
  }

  private async replaceModel(path: string, onProgress: (step: string) => void): Promise<ModelInfo> {
    if (this.model.state === 'ready' && this.model.path === path) return this.model.info;
    const previous = this.model.state === 'ready' ? this.model : null;
    let finish!: () => void;
    this.model = { state: 'loading', path, done: new Promise<void>((r) => (finish = r)) };
    this.log.log('info', 'loading model', { path });
    try {
      const device = await this.resolvedDevice();
      const packedWeights = this.packedWeights(onProgress);
      const runtime = await OnnxModelRuntime.load(path, { threads: this.options.threads, maxImagePixels: this.options.maxImagePixels, weightBits: this.options.weightBits, prefillChunk: this.options.prefillChunk, device, onProgress, packedWeights });
      const info = describe(runtime, path);
      this.model = { state: 'ready', path, runtime, info };
      // Caches and image features belong to the previous model: conversations rebuild on their next turn.
      this.features = new FeatureCache();
      for (const conversation of this.sessions.values()) conversation.evict();
      await previous?.runtime.release();
      this.log.log('info', 'model ready', { path, device: info.device });
      return info;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.model = previous ?? { state: 'failed', path, error: message };
      this.log.log('error', 'model load failed', { path, error: message });
      throw new SidecarError(ErrorCode.ModelLoadFailed, message);
    } finally {
      finish();
    }
  }
}
