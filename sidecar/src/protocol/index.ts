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

export const PROTOCOL_VERSION = 1;

/** Header the WebSocket upgrade must carry with the per-launch secret. */
export const TOKEN_HEADER = 'x-lookm-token';
/** Environment variable through which the extension hands the secret to the sidecar. */
export const TOKEN_ENV = 'LOOKM_SIDECAR_TOKEN';

export const LIMITS = {
  /** Largest WebSocket message accepted; a larger one closes the connection (1009). */
  maxPayloadBytes: 64 * 1024 * 1024,
  maxPathChars: 4096,
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
} as const;

export const InitializeParams = z
  .object({
    processId: z.number().int().nullable().optional(),
    clientInfo: z.object({ name: z.string().max(200), version: z.string().max(100).optional() }).optional(),
    capabilities: z.object({}).loose().default({}),
    initializationOptions: z
      .object({
        /** Global byte budget of all sessions' KV caches. */
        kvBudgetBytes: z.number().int().positive().optional(),
      })
      .loose()
      .nullish(),
  })
  .loose();
export type InitializeParams = z.infer<typeof InitializeParams>;

export const ModelLoadParams = z.object({ path: z.string().min(1).max(LIMITS.maxPathChars) }).strict();
export type ModelLoadParams = z.infer<typeof ModelLoadParams>;

export interface ModelInfo {
  path: string;
  architecture: string;
  textModel: string;
  visionModel: string;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  hiddenSize: number;
  vocabSize: number;
  imageSize: number;
  tokensPerImage: number;
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
  model: { state: 'none' | 'loading' | 'ready' | 'failed'; path: string | null; error: string | null };
  rssBytes: number;
  kvBudgetBytes: number | null;
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
  serverStats: new RequestType0<ServerStats, void>('server/stats'),
} as const;
