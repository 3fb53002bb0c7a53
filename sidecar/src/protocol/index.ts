/**
 * The sidecar protocol, written once and imported by both ends: JSON-RPC 2.0 method names, zod
 * schemas of every parameter object (the server validates each message against them; the types
 * are inferred from them), result types, error codes and limits. No Node or VS Code imports here.
 *
 * The lifecycle (`initialize`, `initialized`, `shutdown`, `exit`) follows the Language Server
 * Protocol so `vscode-languageclient` can drive the sidecar.
 */
import { NotificationType, RequestType, RequestType0 } from 'vscode-jsonrpc';
import { z } from 'zod';
import { DEFAULT_POLICY, POLICY_NAMES } from './policies.js';

export const PROTOCOL_VERSION = 1;

/** Header the WebSocket upgrade must carry with the per-launch secret. */
export const TOKEN_HEADER = 'x-lookm-token';
/** Environment variable through which the extension hands the secret to the sidecar. */
export const TOKEN_ENV = 'LOOKM_SIDECAR_TOKEN';

export const LIMITS = {
  /** Largest WebSocket message accepted; a larger one closes the connection (1009). */
  maxPayloadBytes: 64 * 1024 * 1024,
  maxPathChars: 4096,
  maxImages: 16,
  /** Decoded bytes of one image. */
  maxImageBytes: 20 * 1024 * 1024,
  maxTextChars: 1_000_000,
  maxFiles: 16,
  maxNewTokens: 4096,
  /**
   * Smallest global KV budget accepted (64 KiB: a few hundred tokens of the tiny test models, a
   * few tokens of a 7B model); below it every turn would evict every other session.
   */
  minKvBudgetBytes: 64 * 1024,
  /** Open WebSocket connections at once; more are refused with 503 at the upgrade. */
  maxConnections: 64,
  /** Time a client has to complete the HTTP upgrade (headers included). */
  upgradeTimeoutMs: 10_000,
} as const;

/** Stable error codes: the JSON-RPC ones and ours (-32000 .. -32099 is the server range). */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  ServerNotInitialized: -32002,
  RequestCancelled: -32800,
  ModelNotLoaded: -32010,
  ModelLoadFailed: -32011,
  ShuttingDown: -32012,
  SessionNotFound: -32013,
  BadImage: -32014,
  /** The prompt does not fit the model's context length (`max_position_embeddings`). */
  ContextTooLong: -32015,
  /** Memory for the turn could not be allocated (the KV cache or a buffer of the model run). */
  OutOfMemory: -32016,
  /** A token id outside the tokenizer's vocabulary (a corrupt state file or a bad model folder). */
  TokenOutOfRange: -32017,
  /** The prompt's image tokens and the images given do not match. */
  ImageTokenMismatch: -32018,
} as const;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export { DEFAULT_POLICY, isPolicyName, POLICY_DESCRIPTIONS, POLICY_NAMES, type PolicyName } from './policies.js';

const ratio = z.number().min(0).max(1);

export const SessionSettings = z
  .object({
    policy: z.enum(POLICY_NAMES).default(DEFAULT_POLICY),
    mode: z.enum(['improved', 'reference']).default('improved'),
    budget: z.object({ hhRatio: ratio.optional(), recentRatio: ratio.optional(), maxSlots: z.number().int().positive().optional() }).strict().default({ hhRatio: 0.1, recentRatio: 0.1 }),
    /**
     * Attention sinks (the first slots, always kept) of `window` and, in improved mode, of the
     * H2O merge policies (pivot/avg/weighted_merge); default 4. Ignored by policies without sinks.
     */
    sinks: z.number().int().min(0).max(1024).optional(),
    /** SnapKV's observation window in query rows, improved mode (the reference's is the recent window); default 64. */
    snapkvWindow: z.number().int().min(1).max(4096).optional(),
    maxNewTokens: z.number().int().positive().max(LIMITS.maxNewTokens).default(256),
    temperature: z.number().min(0).max(10).default(0),
    topK: z.number().int().min(0).default(0),
    topP: z.number().gt(0).max(1).default(1),
    seed: z.number().int().default(0),
    /**
     * Where compression's evicted K/V go: `off` (dropped, as LOOK-M does; the default), or a cold
     * tier in host memory quantized to `int8` / `int4`, from which each new turn recalls the spans
     * its question attends to (ARCHITECTURE.md, "The cold tier").
     */
    coldTier: z.enum(['off', 'int8', 'int4']).optional(),
    /** Longest recall span in tokens (a line of a file, a block of image patches); default 16. */
    recallSpan: z.number().int().min(1).max(4096).optional(),
    /**
     * Slots per head a turn may recall: an integer count, or a share (below 1) of the tokens
     * seen; default 0.1.
     */
    recallBudget: z
      .number()
      .positive()
      .max(1_000_000)
      .refine((n) => n < 1 || Number.isInteger(n), 'recallBudget is a share of the tokens seen (below 1) or a whole number of slots')
      .optional(),
    /** The prompt's last rows whose attention ranks the cold entries for a recall (at most 64); default 1. */
    recallQueryRows: z.number().int().min(1).max(64).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    // Reference mode computes what the official code computes: its parameters are fixed.
    if (s.mode !== 'reference') return;
    if (s.snapkvWindow !== undefined) ctx.addIssue({ code: 'custom', path: ['snapkvWindow'], message: 'snapkvWindow is an improved-mode setting: the reference observes the recent window; leave it unset or use mode "improved"' });
    if (s.sinks !== undefined && s.policy !== 'window') ctx.addIssue({ code: 'custom', path: ['sinks'], message: `sinks is an improved-mode setting for ${s.policy}: the reference protects 4 sinks; leave it unset or use mode "improved"` });
    if (s.coldTier !== undefined && s.coldTier !== 'off') ctx.addIssue({ code: 'custom', path: ['coldTier'], message: 'the cold tier is an improved-mode setting: the reference drops what it evicts; set coldTier "off" or use mode "improved"' });
  });
export type SessionSettings = z.infer<typeof SessionSettings>;

export const SessionCreateParams = z.object({ settings: SessionSettings.default(SessionSettings.parse({})) }).strict();
export type SessionCreateParams = z.input<typeof SessionCreateParams>;

/** Session ids are what `session/create` hands out: lowercase `randomUUID()`s (also the file names of the state folder). */
export const SESSION_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const SessionId = z.string().regex(SESSION_ID_PATTERN, 'a session id is a UUID as session/create returns it');
const sessionId = SessionId;

export const ChatImage = z
  .object({
    /** Base64 of the encoded image (PNG, JPEG, WebP, GIF, TIFF). */
    data: z.string().min(1).max(Math.ceil((LIMITS.maxImageBytes * 4) / 3) + 4),
    name: z.string().max(500).optional(),
  })
  .strict();

export const ChatFile = z.object({ name: z.string().min(1).max(500), text: z.string().max(LIMITS.maxTextChars) }).strict();

export const SessionChatParams = z
  .object({
    sessionId,
    text: z.string().max(LIMITS.maxTextChars),
    images: z.array(ChatImage).max(LIMITS.maxImages).default([]),
    files: z.array(ChatFile).max(LIMITS.maxFiles).default([]),
  })
  .strict();
export type SessionChatParams = z.input<typeof SessionChatParams>;

export const SessionRefParams = z.object({ sessionId }).strict();
export type SessionRefParams = z.infer<typeof SessionRefParams>;

export const SessionCacheParams = z.object({ sessionId, maxColumns: z.number().int().min(16).max(4096).optional() }).strict();
export type SessionCacheParams = z.infer<typeof SessionCacheParams>;

export interface TurnStats {
  /** Tokens prefilled this turn (only what was new). */
  newTokens: number;
  generatedTokens: number;
  tokensSeen: number;
  /** Kept slots per head, per layer, after this turn's compression. */
  keptSlots: number[];
  /**
   * Bytes the conversation's KV cache holds allocated after this turn: K/V rows, positions,
   * modality and scores of the kept slots plus the bounded spare capacity (compression releases
   * the rest). Every `kvBytes` of the protocol means this: what the cache costs the process, the
   * figure budgets bound. Not to be compared with `fullKvBytes`: a short conversation's spare
   * capacity alone can make it larger.
   */
  kvBytes: number;
  /**
   * Bytes of the slots kept after this turn (the same per-slot buffers, no spare capacity): the
   * figure to compare with `fullKvBytes`, like with like (at most 100%). Absent in turns saved
   * before it was reported.
   */
  keptKvBytes?: number;
  /** Bytes a full cache of every token seen would take (the same per-slot buffers, no spare capacity); compare `keptKvBytes` with it. */
  fullKvBytes: number;
  timeToFirstTokenMs: number;
  prefillMs: number;
  compressMs: number;
  decodeMs: number;
  imagesEncoded: number;
  imagesReused: number;
  /** The cache was rebuilt from the transcript (first turn after an eviction or a restart). */
  rebuilt: boolean;
  /** Cold tier on: bytes of the conversation's cold tier after this turn (host memory, quantized). */
  coldBytes?: number;
  /** Cold tier on: slots per head (every layer) this turn recalled from the cold tier. */
  recalledSlots?: number;
  /** Cold tier on: time this turn spent scoring the cold tier and recalling from it. */
  recallMs?: number;
}

export interface ChatResult {
  text: string;
  stopReason: 'eos' | 'length' | 'cancelled';
  stats: TurnStats;
}

export interface SessionStats {
  sessionId: string;
  settings: SessionSettings;
  turns: TurnStats[];
  /**
   * Allocated bytes of the session's KV cache now, a running turn's included (see `TurnStats.kvBytes`):
   * memory, not a share of the full cache; each turn's `keptKvBytes` against its `fullKvBytes` is that.
   */
  kvBytes: number;
  /** Bytes of the session's cold tier now (0 when it is off or empty; the sidecar always sends it). */
  coldBytes?: number;
  tokensSeen: number;
  cached: boolean;
}

/** A conversation's cache as the cache view draws it (`session/cache`). */
export interface CacheMap {
  sessionId: string;
  settings: SessionSettings;
  /** False when the cache was evicted to the transcript (rebuilt on the next turn). */
  cached: boolean;
  tokensSeen: number;
  /** Allocated bytes of the session's KV cache now (see `TurnStats.kvBytes`); 0 while evicted. */
  kvBytes: number;
  /** The last turn's kept bytes (see `TurnStats.keptKvBytes`; absent when it did not report them): compare with `fullKvBytes`. */
  keptKvBytes?: number;
  /** The last turn's full-cache bytes (see `TurnStats.fullKvBytes`); 0 before any turn. */
  fullKvBytes: number;
  /** The sidecar's global KV budget (null: none). */
  kvBudgetBytes: number | null;
  /** Kept slots per KV head (every head of a layer keeps as many; layer 0's figure). */
  keptPerHead: number;
  /** Token positions per column of the layer strips (the conversation in at most `maxColumns`). */
  bucket: number;
  /** Per column: the most frequent modality among its positions (-1 text, k image k). */
  columnModality: number[];
  /** Per layer, per KV head, per column: the share of the column's positions whose K/V is kept. */
  layers: { heads: number[][] }[];
  /**
   * Per image: first position, token count, patch grid [rows, cols], and per patch the share of
   * (layer, head) pairs that keep it and that merged it into a kept slot. An image read as several
   * frames (SmolVLM: its tiles row by row, then its global image) has an entry per frame, each with
   * its `frame` number of `frames`; a part an architecture names (LLaVA-NeXT: the base image, then
   * the unpadded tiles with a row end after every row) has its `part` name.
   */
  images: { index: number; firstPosition: number; tokens: number; grid: number[]; frame?: number; frames?: number; part?: string; kept: number[]; merged: number[] }[];
  turns: TurnStats[];
}

export interface TokenNotification {
  sessionId: string;
  text: string;
  tokenId: number;
}

/** A turn's reading progress: prompt tokens run through the model (a rebuild's replay included) of all it reads. */
export interface ReadingProgressNotification {
  sessionId: string;
  tokensRead: number;
  tokensTotal: number;
}

export const InitializeParams = z
  .object({
    processId: z.number().int().nullable().optional(),
    clientInfo: z.object({ name: z.string().max(200), version: z.string().max(100).optional() }).optional(),
    capabilities: z.object({}).loose().default({}),
    initializationOptions: z
      .object({
        /** Global byte budget of all sessions' KV caches. */
        kvBudgetBytes: z.number().int().min(LIMITS.minKvBudgetBytes).optional(),
      })
      .loose()
      .nullish(),
  })
  .loose();
export type InitializeParams = z.infer<typeof InitializeParams>;

export const CountTokensParams = z.object({ text: z.string().max(LIMITS.maxTextChars) }).strict();
export type CountTokensParams = z.infer<typeof CountTokensParams>;

export const ModelLoadParams = z.object({ path: z.string().min(1).max(LIMITS.maxPathChars) }).strict();
export type ModelLoadParams = z.infer<typeof ModelLoadParams>;

export interface ModelInfo {
  path: string;
  architecture: string;
  textModel: string;
  /** Whether the model reads images: false for a text-only causal LM (LlamaForCausalLM...), which refuses them. */
  imageInput: boolean;
  /** The vision tower's model_type; null for a text-only model. */
  visionModel: string | null;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
  /** The image side the vision tower reads; null for a text-only model. */
  imageSize: number | null;
  /** Prompt tokens per image; 0 for a text-only model. */
  tokensPerImage: number;
  /** Where an image's tokens depend on its size (Qwen2-VL: its own resolution), the most one image can become. */
  maxTokensPerImage?: number;
  /** Where the model runs (`--device`'s choice); absent from runtimes that do not say. */
  device?: ModelDevice;
}

/** The execution provider the model's sessions run on, and what is known of its adapter. */
export interface ModelDevice {
  provider: 'cpu' | 'webgpu' | 'cuda';
  /** e.g. "WebGPU on Vulkan", "WebGPU on SwiftShader (software Vulkan, no GPU)", "CPU". */
  adapter: string;
  /** Why this provider (what `--device` asked, why `auto` fell back). */
  reason: string;
  /** Whether conversations' K/V stay in the device's memory between runs. */
  kvOnDevice: boolean;
}

export interface ServerCapabilities {
  protocolVersion: number;
  policies: string[];
  modes: string[];
}

export interface InitializeResult {
  capabilities: ServerCapabilities;
  serverInfo: { name: string; version: string };
  /** The loaded model, or null while none is (see `model/load` and `model/progress`). */
  model: ModelInfo | null;
}

export interface ServerStats {
  uptimeMs: number;
  sessions: number;
  /** Allocated KV bytes of all resident sessions, a running turn's caches included (what the budget bounds). */
  kvBytes: number;
  /** Bytes of all resident sessions' cold tiers (host memory; bounded by `--cold-budget-mb`). */
  coldBytes?: number;
  model: { state: 'none' | 'loading' | 'ready' | 'failed'; path: string | null; error: string | null };
  rssBytes: number;
  kvBudgetBytes: number | null;
  /** Sessions evicted to their transcripts to keep within the budget, since start. */
  evictions: number;
}

export interface ModelProgress {
  path: string;
  step: string;
}

export const Methods = {
  initialize: new RequestType<InitializeParams, InitializeResult, void>('initialize'),
  initialized: new NotificationType<object>('initialized'),
  shutdown: new RequestType0<null, void>('shutdown'),
  exit: new NotificationType<void>('exit'),
  modelLoad: new RequestType<ModelLoadParams, ModelInfo, void>('model/load'),
  modelInfo: new RequestType0<ModelInfo | null, void>('model/info'),
  modelProgress: new NotificationType<ModelProgress>('model/progress'),
  /** Tokens of a text under the loaded model's tokenizer (no special tokens added). */
  modelCountTokens: new RequestType<CountTokensParams, { tokens: number }, void>('model/countTokens'),
  serverStats: new RequestType0<ServerStats, void>('server/stats'),
  sessionCreate: new RequestType<SessionCreateParams, { sessionId: string }, void>('session/create'),
  sessionChat: new RequestType<SessionChatParams, ChatResult, void>('session/chat'),
  sessionToken: new NotificationType<TokenNotification>('session/token'),
  /** Sent while a turn reads its prompt: at the start, after each prefill chunk (or half a second of a replay), at the end. */
  sessionProgress: new NotificationType<ReadingProgressNotification>('session/progress'),
  sessionStats: new RequestType<SessionRefParams, SessionStats, void>('session/stats'),
  sessionDelete: new RequestType<SessionRefParams, { deleted: boolean }, void>('session/delete'),
  sessionCache: new RequestType<SessionCacheParams, CacheMap, void>('session/cache'),
} as const;
