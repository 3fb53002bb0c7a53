/**
 * What a failed engine call tells its client: each kind of failure its own protocol code and a
 * message that says what to do. Errors we do not recognise stay unclassified (null): the server
 * logs their stack and answers InternalError.
 */
import { KvSettingsError } from '../kv/index.js';
import { ImageError } from '../model/processor.js';
import { SidecarError } from '../protocol/errors.js';
import { ErrorCode } from '../protocol/index.js';

/** V8's and onnxruntime's ways of saying that memory could not be allocated. */
const ALLOCATION_FAILURE = /Array buffer allocation failed|Invalid typed array length|Invalid array length|bad_alloc|Failed to allocate memory|out of memory/i;

export function classifyError(error: unknown): SidecarError | null {
  if (error instanceof SidecarError) return error;
  // Bad images are the client's: say which and what to do; nothing of the session is lost.
  if (error instanceof ImageError) return new SidecarError(ErrorCode.BadImage, error.message);
  if (error instanceof KvSettingsError) {
    return new SidecarError(ErrorCode.InvalidParams, `the session's KV settings cannot compress this conversation: ${error.message} (change the policy, mode or budget of a new session)`);
  }
  const message = error instanceof Error ? error.message : String(error);
  if (ALLOCATION_FAILURE.test(message)) return new SidecarError(ErrorCode.OutOfMemory, `out of memory (${message}); free memory, lower the KV budget or attach less, then ask again`);
  return null;
}
