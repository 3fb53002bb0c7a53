/**
 * A conversation's settings as the KV engine takes them: the policy, its budget and its own
 * parameters (seed, sinks, SnapKV window), and how many of a prefill's newest query rows the
 * policy will observe, so the prefill's window scores are the ones the policy expects.
 */
import { observedRows, type CompressOptions, type KvCache } from '../kv/index.js';
import type { SessionSettings } from '../protocol/index.js';
import type { ModelRuntime } from '../runtime/modelRuntime.js';

export function compressOptions(settings: SessionSettings, runtime: ModelRuntime): CompressOptions {
  const { policy, budget, mode, seed, sinks, snapkvWindow } = settings;
  return { policy, budget, mode, seed, sinks, snapkvWindow, numQueryHeads: runtime.info.heads, matcher: runtime.matcher };
}

/** Rows of the prefill's end whose attention the policy observes, for a cache about to take `newTokens` more. */
export function observedWindow(settings: SessionSettings, runtime: ModelRuntime, cache: KvCache, newTokens: number): number {
  const { length, tokensSeen } = cache;
  return observedRows(compressOptions(settings, runtime), length + newTokens, tokensSeen + newTokens);
}
