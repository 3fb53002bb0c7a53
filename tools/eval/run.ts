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
  /** Items on which the configuration could not run (reference mode fails where the official code does). */
  failed: number;
  error: string | null;
}

interface Reference {
  tokens: number[][];
  logits: Float32Array[][];
  correct: boolean[];
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

async function converse(runtime: ModelRuntime, item: EvalItem, settings: SessionSettings, forced?: number[][]): Promise<{ tokens: number[][]; logits: Float32Array[][]; texts: string[] }> {
  const conversation = new Conversation(item.id, settings);
  const features = new FeatureCache();
  const result = { tokens: [] as number[][], logits: [] as Float32Array[][], texts: [] as string[] };
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
  }
  return result;
}

export async function evaluate(runtime: ModelRuntime, items: EvalItem[], configs: EvalConfig[], maxNewTokens: number, progress: (line: string) => void = () => undefined): Promise<{ full: { accuracy: number }; scores: ConfigScore[] }> {
  const references: Reference[] = [];
  for (const item of items) {
    const settings = SessionSettings.parse({ policy: 'full', maxNewTokens });
    const run = await converse(runtime, item, settings);
    references.push({ tokens: run.tokens, logits: run.logits, correct: item.turns.map((turn, t) => run.texts[t].toLowerCase().includes(turn.expected.toLowerCase())) });
  }
  const fullAccuracy = references.reduce((n, r) => n + (r.correct.every(Boolean) ? 1 : 0), 0) / items.length;
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
    let failed = 0;
    let error: string | null = null;
    for (const [i, item] of items.entries()) {
      const ref = references[i];
      const settings = SessionSettings.parse({ policy: config.policy, mode: config.mode, budget: budgetOf(config.budget), maxNewTokens });
      let run: Awaited<ReturnType<typeof converse>>;
      try {
        run = await converse(runtime, item, settings, ref.tokens);
      } catch (e) {
        failed++;
        error ??= e instanceof Error ? e.message : String(e);
        continue;
      }
      let allAgree = true;
      for (let t = 0; t < item.turns.length; t++) {
        for (let s = 0; s < ref.tokens[t].length; s++) {
          const agree = argmax(run.logits[t][s]) === ref.tokens[t][s];
          if (t > 0 && s === 0) {
            followUps++;
            if (agree) followUpAgree++;
          }
          agreeing += agree ? 1 : 0;
          allAgree &&= agree;
          kl += klDivergence(ref.logits[t][s], run.logits[t][s]);
          steps++;
        }
      }
      if (allAgree) identical++;
      const right = allAgree && ref.correct.every(Boolean);
      if (right) correct++;
      const kind = byKind.get(item.kind) ?? { ran: 0, correct: 0 };
      byKind.set(item.kind, { ran: kind.ran + 1, correct: kind.correct + (right ? 1 : 0) });
    }
    const ran = Math.max(1, items.length - failed);
    scores.push({ ...config, answersIdentical: identical / ran, stepAgreement: agreeing / Math.max(1, steps), followUpFirstToken: followUps ? followUpAgree / followUps : null, meanKl: kl / Math.max(1, steps), accuracy: correct / ran, accuracyByKind: Object.fromEntries([...byKind].map(([k, v]) => [k, v.correct / v.ran])), steps, failed, error });
  }
  return { full: { accuracy: fullAccuracy }, scores };
}
