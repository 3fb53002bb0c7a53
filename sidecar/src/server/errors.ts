/**
 * What a failed request tells its client: each kind of failure gets its own code and a message
 * that says what to do. Only errors we do not recognise become InternalError (and are logged
 * with their stack by the caller).
 */
import { ResponseError } from 'vscode-jsonrpc/node';
import { KvSettingsError } from '../kv/index.js';
import { ImageError } from '../model/processor.js';
import { ErrorCode } from '../protocol/index.js';
import { SidecarError } from '../protocol/errors.js';

/** V8's and onnxruntime's ways of saying that memory could not be allocated. */
const ALLOCATION_FAILURE = /Array buffer allocation failed|Invalid typed array length|Invalid array length|bad_alloc|Failed to allocate memory|out of memory/i;

/** The JSON-RPC error for `error`, or null when it is not one we recognise. */
export function classifyError(method: string, error: unknown): ResponseError<unknown> | null {
  if (error instanceof ResponseError) return error as ResponseError<unknown>;
  if (error instanceof SidecarError) return new ResponseError(error.code, `${method}: ${error.message}`);
  // Bad images are the client's: say which and what to do; nothing of the session is lost.
  if (error instanceof ImageError) return new ResponseError(ErrorCode.BadImage, `${method}: ${error.message}`);
  if (error instanceof KvSettingsError) {
    return new ResponseError(ErrorCode.InvalidParams, `${method}: the session's KV settings cannot compress this conversation: ${error.message} (change the policy, mode or budget of a new session)`);
  }
  const message = error instanceof Error ? error.message : String(error);
  if (ALLOCATION_FAILURE.test(message)) {
    return new ResponseError(ErrorCode.OutOfMemory, `${method}: out of memory (${message}); free memory, lower the KV budget or attach less, then ask again`);
  }
  return null;
}
