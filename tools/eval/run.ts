/**
 * Scores KV policies against the full cache through the real turn pipeline (`Conversation`):
 * the full-cache run answers greedily; every other configuration is teacher-forced on that answer,
 * turn after turn, so each step compares next-token distributions on the same history. Reported:
 * answers identical to full (every forced step's argmax agrees, i.e. the greedy answer would be
 * the same), step agreement, first-token agreement of follow-up turns (decided on the compressed
 * cache), mean KL(full || policy), and exact-match accuracy against the expected answers.
 */
import type { Budget, Mode, PolicyName } from '../../sidecar/src/kv/index.js';
import { SessionSettings } from '../../sidecar/src/protocol/index.js';
import type { ModelRuntime } from '../../sidecar/src/runtime/modelRuntime.js';
import { argmax } from '../../sidecar/src/runtime/sampling.js';
import { Conversation, FeatureCache } from '../../sidecar/src/session/conversation.js';
import type { EvalItem } from './dataset.js';

export interface EvalConfig {
  policy: PolicyName;
  mode: Mode;
  /** Nominal share kept: hh and recent ratios are half of it each. */
  budget: number;
  /**
   * More session settings for this configuration, passed through to `SessionSettings` as they
   * are (e.g. the cold tier's, issue 19 section 2, once the session has them). SessionSettings is
   * strict: a setting this build does not know is refused by name, never silently ignored.
   */
  session?: Record<string, unknown>;
}

export interface ConfigScore extends EvalConfig {
  answersIdentical: number;
  stepAgreement: number;
  followUpFirstToken: number | null;
  meanKl: number;
  accuracy: number;
  /** Accuracy per item kind (multi-image, follow-up, file-lookup, or a MileBench subset). */
  accuracyByKind: Record<string, number>;
  steps: number;
  /** Share of items per kind whose scored answers are identical to the full cache's (right or wrong). */
  identicalByKind: Record<string, number>;
  /** Accuracy over the full cache's accuracy, per kind (null where the full cache got none right). */
  relativeByKind: Record<string, number | null>;
  /** Mean bytes of KV the conversation holds after its last turn (allocated, see TurnStats.kvBytes). */
  kvBytes: number;
  /** Mean of kvBytes over the bytes a full cache of the same tokens would take. */
  kvShare: number;
  /** Mean bytes of the cold tier after the last turn (0 with it off), and hot + cold over the full cache's bytes. */
  coldBytes: number;
  hotColdShare: number;
  /** Mean milliseconds per item spent recalling from the cold tier (all turns). */
  recallMs: number;
  /** Items on which the configuration could not run (reference mode fails where the official code does). */
  failed: number;
  error: string | null;
}

interface Reference {
  tokens: number[][];
  logits: Float32Array[][];
  correct: boolean[];
}

/** Whether turn `t` of `item` is scored (turns that only build the history are not). */
const scored = (item: EvalItem, t: number) => item.turns[t].scored !== false;

/** Full-cache exact-match accuracy per kind (and per file length where an item has one). */
export interface FullAccuracy {
  accuracy: number;
  byKind: Record<string, number>;
  byLength: Record<string, number>;
}

function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  const log = Math.log(sum) + max;
  return Float64Array.from(logits, (x) => x - log);
}

export function klDivergence(p: Float32Array, q: Float32Array): number {
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
  return Math.max(0, kl);
}

const budgetOf = (share: number): Budget => ({ hhRatio: share / 2, recentRatio: share / 2 });

/** The session settings of a configuration; a setting SessionSettings does not know is refused by name. */
export function settingsOf(config: EvalConfig, maxNewTokens: number): SessionSettings {
  const parsed = SessionSettings.safeParse({ policy: config.policy, mode: config.mode, budget: budgetOf(config.budget), maxNewTokens, ...config.session });
  if (!parsed.success) throw new Error(`evaluation settings ${JSON.stringify(config.session ?? {})} are not session settings of this build: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}

const meanOf = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

function rates(groups: Map<string, { ran: number; correct: number }>): Record<string, number> {
  return Object.fromEntries([...groups].map(([k, v]) => [k, v.correct / v.ran]));
}

function tally(groups: Map<string, { ran: number; correct: number }>, key: string, right: boolean): void {
  const group = groups.get(key) ?? { ran: 0, correct: 0 };
  groups.set(key, { ran: group.ran + 1, correct: group.correct + (right ? 1 : 0) });
}

async function converse(runtime: ModelRuntime, item: EvalItem, settings: SessionSettings, forced?: number[][]): Promise<{ tokens: number[][]; logits: Float32Array[][]; texts: string[]; kvBytes: number; fullKvBytes: number; coldBytes: number; recallMs: number }> {
  const conversation = new Conversation(item.id, settings);
  const features = new FeatureCache();
  const result = { tokens: [] as number[][], logits: [] as Float32Array[][], texts: [] as string[], kvBytes: 0, fullKvBytes: 0, coldBytes: 0, recallMs: 0 };
  for (const [t, turn] of item.turns.entries()) {
    const logits: Float32Array[] = [];
    const tokens: number[] = [];
    const out = await conversation.turn(
      runtime,
      features,
      { text: turn.text, images: turn.images, files: turn.files, forcedTokens: forced?.[t], onLogits: (l) => logits.push(l) },
      (_text, id) => tokens.push(id),
      () => false,
    );
    result.tokens.push(tokens);
    result.logits.push(logits);
    result.texts.push(out.text);
    result.kvBytes = out.stats.kvBytes;
    result.fullKvBytes = out.stats.fullKvBytes;
    result.coldBytes = out.stats.coldBytes ?? 0;
    result.recallMs += out.stats.recallMs ?? 0;
  }
  return result;
}

export async function evaluate(
  runtime: ModelRuntime,
  items: EvalItem[],
  configs: EvalConfig[],
  maxNewTokens: number,
  progress: (line: string) => void = () => undefined,
  options: { keepCorrect?: boolean; onScore?: (scores: readonly ConfigScore[], full: FullAccuracy, dropped: string[]) => void } = {},
): Promise<{ full: FullAccuracy; scores: ConfigScore[]; dropped: string[] }> {
  let references: Reference[] = [];
  const fullByKind = new Map<string, { ran: number; correct: number }>();
  const fullByLength = new Map<string, { ran: number; correct: number }>();
  for (const item of items) {
    const settings = settingsOf({ policy: 'full', mode: 'improved', budget: 1 }, maxNewTokens);
    const run = await converse(runtime, item, settings);
    const correct = item.turns.map((turn, t) => !scored(item, t) || run.texts[t].toLowerCase().includes(turn.expected.toLowerCase()));
    references.push({ tokens: run.tokens, logits: run.logits, correct });
    tally(fullByKind, item.kind, correct.every(Boolean));
    if (item.fileTokens !== undefined) tally(fullByLength, `${item.kind} ${item.fileTokens}`, correct.every(Boolean));
    progress(`full ${item.id}: ${item.turns.map((turn, t) => (scored(item, t) ? `${JSON.stringify(run.texts[t])} (expected ${turn.expected})` : null)).filter(Boolean).join(', ')}`);
  }
  const fullAccuracy = references.reduce((n, r) => n + (r.correct.every(Boolean) ? 1 : 0), 0) / items.length;
  const fullRates = rates(fullByKind);
  // Relative accuracy is over the items scored: with keepCorrect those the full cache got right.
  let relativeBase = fullRates;
  // Items the full cache got wrong say nothing about a policy's relative accuracy: with
  // keepCorrect they are dropped before the (expensive) compressed configurations run.
  const dropped = options.keepCorrect ? items.filter((_, i) => !references[i].correct.every(Boolean)).map((item) => item.id) : [];
  if (options.keepCorrect) {
    const kept = items.map((_, i) => references[i].correct.every(Boolean));
    items = items.filter((_, i) => kept[i]);
    references = references.filter((_, i) => kept[i]);
    relativeBase = Object.fromEntries(Object.keys(fullRates).map((k) => [k, 1]));
  }
  const scores: ConfigScore[] = [];
  for (const config of configs) {
    progress(`${config.policy} ${config.mode} ${config.budget}`);
    let identical = 0;
    let agreeing = 0;
    let steps = 0;
    let kl = 0;
    let followUps = 0;
    let followUpAgree = 0;
    let correct = 0;
    const byKind = new Map<string, { ran: number; correct: number }>();
    const identicalByKind = new Map<string, { ran: number; correct: number }>();
    const kvBytes: number[] = [];
    const kvShares: number[] = [];
    const coldBytes: number[] = [];
    const hotColdShares: number[] = [];
    const recallMs: number[] = [];
    let failed = 0;
    let error: string | null = null;
    for (const [i, item] of items.entries()) {
      const ref = references[i];
      const settings = settingsOf(config, maxNewTokens);
      let run: Awaited<ReturnType<typeof converse>>;
      try {
        run = await converse(runtime, item, settings, ref.tokens);
      } catch (e) {
        failed++;
        error ??= e instanceof Error ? e.message : String(e);
        continue;
      }
      kvBytes.push(run.kvBytes);
      kvShares.push(run.kvBytes / Math.max(1, run.fullKvBytes));
      coldBytes.push(run.coldBytes);
      hotColdShares.push((run.kvBytes + run.coldBytes) / Math.max(1, run.fullKvBytes));
      recallMs.push(run.recallMs);
      let allAgree = true;
      for (let t = 0; t < item.turns.length; t++) {
        // An unscored turn is forced like the others (the same history) but need not agree.
        const counts = scored(item, t);
        for (let s = 0; s < ref.tokens[t].length; s++) {
          const agree = argmax(run.logits[t][s]) === ref.tokens[t][s];
          if (t > 0 && s === 0 && counts) {
            followUps++;
            if (agree) followUpAgree++;
          }
          agreeing += agree ? 1 : 0;
          if (counts) allAgree &&= agree;
          kl += klDivergence(ref.logits[t][s], run.logits[t][s]);
          steps++;
        }
      }
      if (allAgree) identical++;
      const right = allAgree && ref.correct.every(Boolean);
      if (right) correct++;
      tally(byKind, item.kind, right);
      tally(identicalByKind, item.kind, allAgree);
    }
    const ran = Math.max(1, items.length - failed);
    const accuracyByKind = rates(byKind);
    const relativeByKind = Object.fromEntries(Object.entries(accuracyByKind).map(([k, v]) => [k, relativeBase[k] ? v / relativeBase[k] : null]));
    scores.push({
      ...config,
      answersIdentical: identical / ran,
      stepAgreement: agreeing / Math.max(1, steps),
      followUpFirstToken: followUps ? followUpAgree / followUps : null,
      meanKl: kl / Math.max(1, steps),
      accuracy: correct / ran,
      accuracyByKind,
      identicalByKind: rates(identicalByKind),
      relativeByKind,
      kvBytes: meanOf(kvBytes),
      kvShare: meanOf(kvShares),
      coldBytes: meanOf(coldBytes),
      hotColdShare: meanOf(hotColdShares),
      recallMs: meanOf(recallMs),
      steps,
      failed,
      error,
    });
    // A long run's finished configurations are worth keeping if it is stopped before the end.
    options.onScore?.(scores, { accuracy: fullAccuracy, byKind: fullRates, byLength: rates(fullByLength) }, dropped);
  }
  return { full: { accuracy: fullAccuracy, byKind: fullRates, byLength: rates(fullByLength) }, scores, dropped };
}
