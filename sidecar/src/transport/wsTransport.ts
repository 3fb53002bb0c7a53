/**
 * vscode-jsonrpc message transports over a `ws` WebSocket: one JSON-RPC message per text frame.
 *
 * What the JSON-RPC spec says a server must answer but vscode-jsonrpc never sees is answered
 * here: unparsable JSON gets a Parse error (-32700), and text that parses but is not a JSON-RPC
 * 2.0 message (wrong `jsonrpc`, no method, ids of the wrong type, binary frames, batches) gets an
 * Invalid Request (-32600) with the id when there is one. The connection stays open.
 */
import { AbstractMessageReader, AbstractMessageWriter, Disposable, type DataCallback, type Message } from 'vscode-jsonrpc/node';
import type WebSocket from 'ws';
import { ErrorCode } from '../protocol/index.js';

type RawData = Buffer | ArrayBuffer | Buffer[];

function sendError(socket: WebSocket, id: string | number | null, code: number, message: string): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ jsonrpc: '2.0', id, error: { code, message } }));
}

/** Why `value` is not a JSON-RPC 2.0 request, notification or response, or null when it is one. */
export function jsonRpcShapeError(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return Array.isArray(value) ? 'batches are not supported' : 'a message must be a JSON object';
  const m = value as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') return '"jsonrpc" must be "2.0"';
  if ('id' in m && !(typeof m.id === 'string' || (typeof m.id === 'number' && Number.isFinite(m.id)) || m.id === null)) return '"id" must be a string, a number or null';
  if ('method' in m) {
    if (typeof m.method !== 'string' || m.method.length === 0 || m.method.length > 200) return '"method" must be a non-empty string';
    if ('params' in m && (typeof m.params !== 'object' || m.params === null)) return '"params" must be an object or an array';
    return null;
  }
  if ('id' in m && ('result' in m || 'error' in m)) return null;
  return 'neither a request, a notification nor a response';
}

/** Deepest nesting of arrays and objects a message may have; ours need 6. */
export const MAX_JSON_DEPTH = 64;

/**
 * Whether JSON text nests arrays/objects deeper than `limit`, found by one pass over its bytes
 * (brackets inside strings do not count). Checked before `JSON.parse`: a 20 MB frame of nested
 * arrays would otherwise hold the event loop for seconds while it is parsed and walked.
 */
export function nestsDeeperThan(bytes: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Why a `$/cancelRequest` cannot be acted on, or null when its params name a request id. */
function cancelParamsError(value: Record<string, unknown>): string | null {
  if (value.method !== '$/cancelRequest') return null;
  const id = (value.params as { id?: unknown } | undefined)?.id;
  return typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) ? null : '$/cancelRequest needs params {"id": <the id of the request to cancel>}';
}

function idOf(value: unknown): string | number | null {
  const id = (value as { id?: unknown } | null)?.id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

export class WebSocketMessageReader extends AbstractMessageReader {
  constructor(private readonly socket: WebSocket) {
    super();
    socket.on('error', (error) => this.fireError(error));
    socket.on('close', () => this.fireClose());
  }

  listen(callback: DataCallback): Disposable {
    const onMessage = (data: RawData, isBinary: boolean) => {
      if (isBinary) return sendError(this.socket, null, ErrorCode.InvalidRequest, 'Invalid Request: binary frames are not accepted; send JSON text');
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (nestsDeeperThan(bytes, MAX_JSON_DEPTH)) return sendError(this.socket, null, ErrorCode.InvalidRequest, `Invalid Request: arrays and objects nested deeper than ${MAX_JSON_DEPTH} levels`);
      let value: unknown;
      try {
        value = JSON.parse(bytes.toString('utf8'));
      } catch (error) {
        return sendError(this.socket, null, ErrorCode.ParseError, `Parse error: ${error instanceof Error ? error.message : String(error)}`);
      }
      const problem = jsonRpcShapeError(value);
      if (problem) return sendError(this.socket, idOf(value), ErrorCode.InvalidRequest, `Invalid Request: ${problem}`);
      // vscode-jsonrpc throws on a cancel without an id, and that connection never reads again.
      const badCancel = cancelParamsError(value as Record<string, unknown>);
      if (badCancel) return sendError(this.socket, null, ErrorCode.InvalidParams, `Invalid params: ${badCancel}`);
      callback(value as Message);
    };
    this.socket.on('message', onMessage);
    return Disposable.create(() => this.socket.off('message', onMessage));
  }
}

export class WebSocketMessageWriter extends AbstractMessageWriter {
  constructor(private readonly socket: WebSocket) {
    super();
  }

  write(message: Message): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.readyState !== this.socket.OPEN) return reject(new Error('the WebSocket is closed'));
      this.socket.send(JSON.stringify(message), (error) => {
        if (error) {
          this.fireError([error, message, 0]);
          reject(error);
        } else resolve();
      });
    });
  }

  end(): void {
    this.socket.close();
  }
}
