/**
 * Seeded generators of hostile protocol input, each with the answer the sidecar must give:
 * malformed JSON, wrong JSON-RPC shapes, wrong types in every field, huge strings and arrays,
 * deep nesting, binary frames, invalid UTF-8, truncated and bad base64 images, image bombs in
 * every format, hostile model folders, wrong ids, cancel storms, requests before `initialize`
 * and after `shutdown`.
 */
import { mulberry32 } from '../../sidecar/src/kv/index.js';
import { ErrorCode, LIMITS } from '../../sidecar/src/protocol/index.js';
import { imageBombs } from './imageBombs.js';

export type Expectation =
  | {
      kind: 'error';
      codes: number[];
      id?: string | number | null;
      /** What the message must say, and text it must never contain (a file's contents). */
      message?: RegExp;
      notInMessage?: string;
    }
  /** No answer is due (notifications); only liveness is checked. */
  | { kind: 'silence' };

export interface FuzzCase {
  name: string;
  /** Which connection state the case needs. */
  connection: 'initialized' | 'fresh' | 'after-shutdown';
  payload: string | Buffer;
  expect: Expectation;
}

export interface FuzzContext {
  sessionId: string;
  pngBase64: string;
  /** Broken model folders on disk (see hostileModels.ts), with the error each must give. */
  hostileModels: { name: string; dir: string; error: RegExp; notInMessage: string }[];
}

let bombs: { name: string; base64: string }[] | null = null;
/** The image bombs, built once per process (a few MB). */
function bombsBase64(): { name: string; base64: string }[] {
  bombs ??= imageBombs().map(({ name, bytes }) => ({ name, base64: bytes.toString('base64') }));
  return bombs;
}

type Random = () => number;

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)];

const WRONG_VALUES: unknown[] = [42, -1.5, '', 'x', null, true, [], [1, 2], {}, { a: 1 }, 1e308];

function request(id: unknown, method: string, params?: unknown): string {
  return JSON.stringify(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params });
}

/** A well-formed session id (a UUID) that no session has. */
function uuidFrom(random: Random): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

function deep(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

/** A params object for `method` with one field replaced by a value of the wrong type. */
function wrongField(random: Random, ctx: FuzzContext): { method: string; params: Record<string, unknown>; field: string } {
  const valid: Record<string, Record<string, unknown>> = {
    'model/load': { path: '/x' },
    'session/create': { settings: { policy: 'h2o', maxNewTokens: 4, temperature: 0 } },
    'session/chat': { sessionId: ctx.sessionId, text: 'hi', images: [], files: [] },
    'session/stats': { sessionId: ctx.sessionId },
    'session/delete': { sessionId: ctx.sessionId },
  };
  const method = pick(random, Object.keys(valid));
  const params = structuredClone(valid[method]);
  const fields = Object.keys(params);
  const field = pick(random, fields);
  const bad = WRONG_VALUES.filter((v) => typeof v !== typeof params[field] || Array.isArray(v) !== Array.isArray(params[field]));
  params[field] = pick(random, bad);
  if (method === 'session/create' && random() < 0.7) {
    // Or one field inside the settings.
    const settings: Record<string, unknown> = { policy: 'h2o', maxNewTokens: 4, temperature: 0 };
    const key = pick(random, ['policy', 'maxNewTokens', 'temperature', 'mode', 'topP', 'budget', 'coldTier', 'recallSpan', 'recallBudget']);
    const wrong: unknown[] = key === 'policy' || key === 'mode' || key === 'coldTier' ? [42, 'nope', null, []] : key === 'budget' ? [{ hhRatio: 2 }, 'x', 5] : ['x', -5, null, 1e9];
    settings[key] = pick(random, wrong);
    params.settings = settings;
    return { method, params, field: `settings.${key}` };
  }
  return { method, params, field };
}

export function generateCase(random: Random, index: number, ctx: FuzzContext): FuzzCase {
  const id = index + 1;
  const invalidParams = { kind: 'error' as const, codes: [ErrorCode.InvalidParams], id };
  const kinds: (() => FuzzCase)[] = [
    () => {
      const text = request(id, 'server/stats');
      let cut = text.slice(0, 1 + Math.floor(random() * (text.length - 2)));
      if (cut.trim().endsWith('}')) cut += '{';
      return { name: 'truncated JSON', connection: 'initialized', payload: cut, expect: { kind: 'error', codes: [ErrorCode.ParseError], id: null } };
    },
    () => ({ name: 'random bytes', connection: 'initialized', payload: `{${Array.from({ length: 1 + Math.floor(random() * 40) }, () => String.fromCharCode(32 + Math.floor(random() * 90))).join('')}`, expect: { kind: 'error', codes: [ErrorCode.ParseError], id: null } }),
    () => {
      const variants = [
        { jsonrpc: '1.0', id, method: 'server/stats' },
        { id, method: 'server/stats' },
        { jsonrpc: '2.0', id, method: 7 },
        { jsonrpc: '2.0', id, method: '' },
        { jsonrpc: '2.0', id, method: 'server/stats', params: 'x' },
        { jsonrpc: '2.0', id },
        [request(id, 'server/stats')],
        'just a string',
        12,
        null,
      ];
      const value = pick(random, variants);
      const hasId = typeof value === 'object' && value !== null && !Array.isArray(value) && 'id' in value;
      return { name: 'wrong JSON-RPC shape', connection: 'initialized', payload: JSON.stringify(value), expect: { kind: 'error', codes: [ErrorCode.InvalidRequest], id: hasId ? id : null } };
    },
    () => {
      const badId = pick<unknown>(random, [{}, [], true, { x: 1 }]);
      return { name: 'id of the wrong type', connection: 'initialized', payload: JSON.stringify({ jsonrpc: '2.0', id: badId, method: 'server/stats' }), expect: { kind: 'error', codes: [ErrorCode.InvalidRequest], id: null } };
    },
    () => {
      const { method, params, field } = wrongField(random, ctx);
      return { name: `wrong type: ${method} ${field}`, connection: 'initialized', payload: request(id, method, params), expect: invalidParams };
    },
    () => ({ name: 'unknown method', connection: 'initialized', payload: request(id, `no/such/${Math.floor(random() * 1000)}`, {}), expect: { kind: 'error', codes: [ErrorCode.MethodNotFound], id } }),
    () => ({ name: 'unknown session', connection: 'initialized', payload: request(id, 'session/stats', { sessionId: uuidFrom(random) }), expect: { kind: 'error', codes: [ErrorCode.SessionNotFound], id } }),
    () => ({ name: 'huge text', connection: 'initialized', payload: request(id, 'session/chat', { sessionId: ctx.sessionId, text: 'a'.repeat(LIMITS.maxTextChars + 1 + Math.floor(random() * 1000)) }), expect: invalidParams }),
    () => ({ name: 'too many images', connection: 'initialized', payload: request(id, 'session/chat', { sessionId: ctx.sessionId, text: 'x', images: Array.from({ length: LIMITS.maxImages + 1 }, () => ({ data: 'AAAA' })) }), expect: invalidParams }),
    () => ({ name: 'deep nesting', connection: 'initialized', payload: `{"jsonrpc":"2.0","id":${id},"method":"model/load","params":{"path":${deep(2000 + Math.floor(random() * 50000))}}}`, expect: { kind: 'error', codes: [ErrorCode.InvalidRequest], id: null } }),
    () => ({ name: 'binary frame', connection: 'initialized', payload: Buffer.from(Array.from({ length: 1 + Math.floor(random() * 64) }, () => Math.floor(random() * 256))), expect: { kind: 'error', codes: [ErrorCode.InvalidRequest], id: null } }),
    () => {
      // Invalid UTF-8 inside a string: decoded with replacement characters, then refused as a session id (not a UUID).
      const bytes = Buffer.concat([Buffer.from(`{"jsonrpc":"2.0","id":${id},"method":"session/stats","params":{"sessionId":"`), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}}')]);
      return { name: 'invalid UTF-8', connection: 'initialized', payload: bytes.toString('latin1'), expect: invalidParams };
    },
    () => {
      const png = Buffer.from(ctx.pngBase64, 'base64');
      // Cut inside the first 60%: pixel data is missing for sure (a file cut only in its trailing
      // chunks can still decode, and then answering is right).
      const truncated = png.subarray(0, Math.max(1, Math.floor(random() * png.length * 0.6))).toString('base64');
      return { name: 'truncated image', connection: 'initialized', payload: request(id, 'session/chat', { sessionId: ctx.sessionId, text: 'x', images: [{ data: truncated }] }), expect: { kind: 'error', codes: [ErrorCode.BadImage], id } };
    },
    () => {
      const bomb = pick(random, bombsBase64());
      return {
        name: `image bomb: ${bomb.name}`,
        connection: 'initialized',
        payload: request(id, 'session/chat', { sessionId: ctx.sessionId, text: 'x', images: [{ data: bomb.base64 }] }),
        expect: { kind: 'error', codes: [ErrorCode.BadImage], id, message: /the image cannot be used/ },
      };
    },
    () => {
      const model = pick(random, ctx.hostileModels);
      return {
        name: `hostile model folder: ${model.name}`,
        connection: 'initialized',
        payload: request(id, 'model/load', { path: model.dir }),
        expect: { kind: 'error', codes: [ErrorCode.ModelLoadFailed], id, message: model.error, notInMessage: model.notInMessage },
      };
    },
    () => ({ name: 'bad base64', connection: 'initialized', payload: request(id, 'session/chat', { sessionId: ctx.sessionId, text: 'x', images: [{ data: pick(random, ['***', 'abc', '====', 'a b c d']) }] }), expect: { kind: 'error', codes: [ErrorCode.BadImage], id } }),
    () => ({ name: 'cancel storm', connection: 'initialized', payload: JSON.stringify({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: Math.floor(random() * 1e6) } }), expect: { kind: 'silence' } }),
    () => ({ name: 'before initialize', connection: 'fresh', payload: request(id, pick(random, ['server/stats', 'model/info', 'session/create'])), expect: { kind: 'error', codes: [ErrorCode.ServerNotInitialized], id } }),
    () => ({ name: 'after shutdown', connection: 'after-shutdown', payload: request(id, pick(random, ['server/stats', 'model/info', 'session/create'])), expect: { kind: 'error', codes: [ErrorCode.ShuttingDown], id } }),
  ];
  return pick(random, kinds)();
}

export function generateCases(count: number, seed: number, ctx: FuzzContext): FuzzCase[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, (_, i) => generateCase(random, i, ctx));
}
