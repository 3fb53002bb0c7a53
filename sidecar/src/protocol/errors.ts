/**
 * An error that already knows its protocol code and a message meant for the user: any layer
 * below the server may throw it, and the server answers it as is (no guessing from the class).
 */
import type { ErrorCodeValue } from './index.js';

export class SidecarError extends Error {
  override name = 'SidecarError';
  constructor(
    readonly code: ErrorCodeValue,
    message: string,
  ) {
    super(message);
  }
}
