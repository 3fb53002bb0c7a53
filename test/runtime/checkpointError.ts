/** The message of the `CheckpointError` that `parse` throws; fails the test when it throws none or another error. */
import assert from 'node:assert/strict';
import { CheckpointError } from '../../sidecar/src/model/safetensors.js';

export function checkpointErrorOf(parse: () => unknown): string {
  try {
    parse();
  } catch (error) {
    assert.ok(error instanceof CheckpointError, String(error));
    return error.message;
  }
  return assert.fail('accepted: no CheckpointError was thrown');
}
