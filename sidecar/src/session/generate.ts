/**
 * One answer to one question about some images, outside the sidecar: a single-turn
 * `Conversation`, so the CLI and the tests run exactly the prefill, compression and decode path
 * the sidecar's sessions use. Tokens stream through `onToken`; the abort signal stops decoding.
 */
import type { Budget, Mode, PolicyName } from '../kv/index.js';
import { SessionSettings } from '../protocol/index.js';
import { Conversation, FeatureCache, type TurnOutput } from './conversation.js';
import type { ModelRuntime } from '../runtime/modelRuntime.js';
import type { SamplingOptions } from '../runtime/sampling.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  signal?: AbortSignal;
  /** KV policy applied after the prefill; `full` keeps the whole cache. Default LOOK-M. */
  policy?: PolicyName;
  budget?: Budget;
  mode?: Mode;
}

export function generate(
  runtime: ModelRuntime,
  question: string,
  images: Uint8Array[],
  options: GenerateOptions = {},
  onToken: (text: string, id: number) => void = () => undefined,
): Promise<TurnOutput> {
  const { signal, ...settings } = options;
  const conversation = new Conversation('generate', SessionSettings.parse(settings));
  return conversation.turn(runtime, new FeatureCache(), { text: question, images, files: [] }, onToken, () => signal?.aborted ?? false);
}
