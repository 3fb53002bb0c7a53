/**
 * What the runtime conversation tests share: one turn's answer ids, a scripted conversation under a
 * KV policy and a budget, and transformers' recorded greedy two-turn conversation replayed.
 */
import assert from 'node:assert/strict';
import { SessionSettings, type PolicyName } from '../../sidecar/src/protocol/index.js';
import type { ModelRuntime } from '../../sidecar/src/runtime/modelRuntime.js';
import { Conversation, FeatureCache } from '../../sidecar/src/session/conversation.js';

/** One turn of `conversation`: the answer's token ids. */
export async function answerIds(conversation: Conversation, runtime: ModelRuntime, features: FeatureCache, text: string, images: Uint8Array[], isCancelled = () => false): Promise<number[]> {
  const ids: number[] = [];
  await conversation.turn(runtime, features, { text, images, files: [] }, (_, id) => ids.push(id), isCancelled);
  return ids;
}

/** A conversation under `policy` (6 new tokens a turn at most, a budget of 20 % heavy hitters and 20 % recent) through `turns`: its answers' ids, and itself. */
export async function budgetedConversation(runtime: ModelRuntime, policy: PolicyName, turns: readonly (readonly [text: string, images: Uint8Array[]])[]): Promise<{ answers: number[][]; conversation: Conversation }> {
  const conversation = new Conversation('c', SessionSettings.parse({ policy, maxNewTokens: 6, budget: { hhRatio: 0.2, recentRatio: 0.2 } }));
  const features = new FeatureCache();
  const answers: number[][] = [];
  for (const [text, images] of turns) answers.push(await answerIds(conversation, runtime, features, text, images));
  return { answers, conversation };
}

/** transformers' greedy conversation as a parity fixture records it: an image in turn 1, none in turn 2. */
export interface RecordedTwoTurns {
  turns: string[];
  input_ids: number[];
  greedy_tokens: number[];
  answer1: string;
  ids2: number[];
  generated2: number[];
}

/** Two greedy turns of a `Conversation` (policy full): transformers' prompt ids and answers, turn by turn. */
export async function assertRecordedTwoTurns(runtime: ModelRuntime, recorded: RecordedTwoTurns, image: Uint8Array, turn1Ids = 'turn 1 prompt ids'): Promise<void> {
  const conversation = new Conversation('c', SessionSettings.parse({ policy: 'full', maxNewTokens: recorded.greedy_tokens.length }));
  const ids: number[][] = [[], []];
  const features = new FeatureCache();
  const turn = (i: number, images: Uint8Array[]) => conversation.turn(runtime, features, { text: recorded.turns[i], images, files: [] }, (_, id) => ids[i].push(id), () => false);
  const first = await turn(0, [image]);
  assert.deepEqual(conversation.toJSON().segments[0].ids, recorded.input_ids, turn1Ids);
  assert.deepEqual(ids[0], recorded.greedy_tokens, 'turn 1 answer');
  assert.equal(first.text, recorded.answer1);
  await turn(1, []);
  assert.deepEqual(conversation.toJSON().segments[2].ids, recorded.ids2, 'turn 2: the text after the answer');
  assert.deepEqual(ids[1], recorded.generated2, 'turn 2 answer');
}
