/**
 * `npm run eval [-- --model DIR --items N --quick --milebench SUBSET_DIR]` (default: the embedded
 * model in sidecar/model, 60 items): every KV policy,
 * budgets 100/20/10/5%, both modes, scored against the full cache on a seeded synthetic set
 * (tools/eval/) or on a MileBench subset. Writes bench/results/eval[-milebench].json and .md. `--quick` (a subset, well under a minute on
 * the tiny checkpoint) is what CI runs.
 *
 * `--later-turns` (issue 19): the question comes one to three turns after the file or images
 * (tools/eval/laterTurns.ts): long `name = value` and code files for a text-only model (e.g.
 * `--model .models/smollm2-135m-instruct`, `--lengths 500,1000,2000,4000`), image follow-ups and
 * file lookups for a LLaVA model. Scored per kind relative to the full cache, with KV bytes;
 * `--policies a,b --budgets 0.2,0.1` choose the grid, `--session '{"...": ...}'` adds session
 * settings to every configuration (the cold tier's, once the session has them), and
 * `--export-items FILE` writes the items as chat messages (for bench/kvpress_peer.py) and stops.
 * A text-only model gets passkey-style log and README items by default (`--text-items passkey`;
 * `lookup` for the `name = value` and code files SmolLM2-135M fails on past ~300 tokens);
 * `--keep-correct` drops the items the full cache answers wrong before the other configurations run.
 * Writes bench/results/eval-later-<model folder, or embedded>.json and .md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { mulberry32, POLICY_NAMES, type Mode, type PolicyName } from '../sidecar/src/kv/index.js';
import { OnnxModelRuntime } from '../sidecar/src/runtime/onnxModelRuntime.js';
import { evalSet } from './eval/dataset.js';
import { loadMileBench } from './eval/milebench.js';
import { evaluate, type ConfigScore, type EvalConfig, type FullAccuracy } from './eval/run.js';
import { exportItems, laterTurnMarkdown } from './eval/laterReport.js';
import { laterTurnEmbeddedItems, laterTurnPasskeyItems, laterTurnTextItems } from './eval/laterTurns.js';

const root = join(__dirname, '..');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: join(root, 'sidecar/model') },
      items: { type: 'string', default: '60' },
      'max-new-tokens': { type: 'string', default: '8' },
      quick: { type: 'boolean', default: false },
      milebench: { type: 'string' },
      'later-turns': { type: 'boolean', default: false },
      lengths: { type: 'string', default: '500,1000,2000,4000' },
      policies: { type: 'string' },
      budgets: { type: 'string' },
      session: { type: 'string' },
      'cold-tiers': { type: 'string', default: 'off' },
      seed: { type: 'string', default: '19' },
      'export-items': { type: 'string' },
      'text-items': { type: 'string', default: 'passkey' },
      'keep-correct': { type: 'boolean', default: false },
      only: { type: 'string' },
    },
  });
  if (values['later-turns']) return laterTurns(values);
  const quick = values.quick;
  const policies: PolicyName[] = quick ? ['full', 'text_prior_pivot_merge', 'h2o', 'snapkv', 'window', 'random'] : [...POLICY_NAMES];
  const budgets = quick ? [1, 0.2, 0.05] : [1, 0.2, 0.1, 0.05];
  const modes: Mode[] = quick ? ['improved'] : ['improved', 'reference'];
  const configs: EvalConfig[] = policies.flatMap((policy) => budgets.flatMap((budget) => modes.map((mode) => ({ policy, mode, budget }))));
  const runtime = await OnnxModelRuntime.load(resolve(values.model));
  // MileBench's JSON format (a subset folder) instead of the synthetic set.
  const items = values.milebench ? loadMileBench(resolve(values.milebench), quick ? 6 : Number(values.items)) : await evalSet(quick ? 6 : Number(values.items));
  const started = Date.now();
  const result = await evaluate(runtime, items, configs, Number(values['max-new-tokens']), (line) => process.stderr.write(`${line}\n`));
  await runtime.release();
  const report = { date: new Date().toISOString(), model: resolve(values.model), items: items.length, quick, seconds: (Date.now() - started) / 1000, ...result };
  const dir = process.env.BENCH_RESULTS_DIR ?? join(root, 'bench/results'); // npm run bench --quick writes elsewhere
  mkdirSync(dir, { recursive: true });
  const name = `eval${values.milebench ? '-milebench' : ''}${quick ? '-quick' : ''}`;
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
  const md = [
    `# KV policies vs the full cache (${items.length} items, ${Number(values['max-new-tokens'])} tokens per answer)`,
    '',
    `${report.date} · ${report.model} · full-cache exact-match accuracy ${pct(result.full.accuracy)}`,
    '',
    'Teacher-forced on the full cache\'s answers. "identical": every step\'s argmax agrees (the greedy answer would be the same); "follow-up": first token of a follow-up turn, decided on the compressed cache; KL: mean KL(full || policy) per step; accuracy: identical to a correct full answer (a lower bound).',
    '',
    '| policy | mode | budget | identical | step agreement | follow-up first token | mean KL | accuracy | accuracy by kind | could not run |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...result.scores.map(
      (s) =>
        `| ${s.policy} | ${s.mode} | ${s.budget * 100}% | ${pct(s.answersIdentical)} | ${pct(s.stepAgreement)} | ${pct(s.followUpFirstToken)} | ${s.meanKl.toExponential(2)} | ${pct(s.accuracy)} | ${Object.entries(s.accuracyByKind).map(([k, v]) => `${k} ${pct(v)}`).join(' · ')} | ${s.failed ? `${s.failed} items: ${s.error}` : ''} |`,
    ),
    '',
  ].join('\n');
  writeFileSync(join(dir, `${name}.md`), md);
  process.stdout.write(md);
}

type Values = { model: string; items: string; 'max-new-tokens': string; lengths: string; policies?: string; budgets?: string; session?: string; 'cold-tiers': string; seed: string; 'export-items'?: string; 'text-items': string; 'keep-correct': boolean; only?: string };

/** The later-turn evaluation (issue 19, section 3): see the comment at the top. */
async function laterTurns(values: Values): Promise<void> {
  const policies = (values.policies?.split(',') ?? ['full', 'text_prior_pivot_merge', 'snapkv', 'h2o', 'window']) as PolicyName[];
  const unknown = policies.filter((p) => !(POLICY_NAMES as readonly string[]).includes(p));
  if (unknown.length) throw new Error(`--policies: ${unknown.join(', ')} not among ${POLICY_NAMES.join(', ')}`);
  const budgets = values.budgets?.split(',').map(Number) ?? [0.2, 0.1, 0.05];
  if (budgets.some((b) => !(b > 0 && b <= 1))) throw new Error(`--budgets: shares in (0, 1], e.g. 0.2,0.1,0.05 (got ${values.budgets})`);
  // `--session '[{...}, {...}]'`: every configuration with the cold tier on once per variant (e.g. recall settings
  // compared); with it off, the first variant only.
  const parsed = values.session === undefined ? [undefined] : (JSON.parse(values.session) as Record<string, unknown> | Record<string, unknown>[]);
  const sessions = Array.isArray(parsed) ? parsed : [parsed];
  const session = sessions.length === 1 ? sessions[0] : undefined;
  // The full cache once (the 100% row), every other policy at each budget.
  // `--cold-tiers off,int8`: every compressed configuration with the cold tier off and on.
  const coldTiers = values['cold-tiers'].split(',');
  if (coldTiers.some((t) => !['off', 'int8', 'int4'].includes(t))) throw new Error(`--cold-tiers: off, int8, int4 (got ${values['cold-tiers']})`);
  const withTier = (variant: Record<string, unknown> | undefined, tier: string) => (tier === 'off' ? variant : { ...variant, coldTier: tier });
  const configs: EvalConfig[] = [
    { policy: 'full', mode: 'improved', budget: 1 },
    ...policies.filter((p) => p !== 'full').flatMap((policy) => budgets.flatMap((budget) => coldTiers.flatMap((tier) => (tier === 'off' ? sessions.slice(0, 1) : sessions).map((variant) => ({ policy, mode: 'improved' as const, budget, session: withTier(variant, tier) }))))),
  ];
  const model = resolve(values.model);
  const runtime = await OnnxModelRuntime.load(model);
  try {
    const random = mulberry32(Number(values.seed));
    const count = Number(values.items);
    const lengths = values.lengths.split(',').map(Number);
    const countTokens = (text: string) => runtime.processor.encode(text, false).length;
    const textItems = { passkey: laterTurnPasskeyItems, lookup: laterTurnTextItems }[values['text-items']];
    if (!textItems) throw new Error(`--text-items: passkey or lookup (got ${values['text-items']})`);
    const generated = runtime.imageInput ? await laterTurnEmbeddedItems(count, random) : textItems(count, countTokens, random, lengths);
    // `--only id,id`: those items of the generated set (e.g. the ones a previous run kept).
    const only = values.only?.split(',');
    const items = only ? generated.filter((item) => only.includes(item.id)) : generated;
    if (only && items.length !== only.length) throw new Error(`--only: ${only.filter((id) => !items.some((item) => item.id === id)).join(', ')} not among the generated items (${generated.map((item) => item.id).join(', ')})`);
    if (values['export-items']) {
      writeFileSync(resolve(values['export-items']), exportItems(items, { model, seed: Number(values.seed), maxNewTokens: Number(values['max-new-tokens']) }));
      process.stderr.write(`wrote ${items.length} items to ${values['export-items']}\n`);
      return;
    }
    const started = Date.now();
    const dir = process.env.BENCH_RESULTS_DIR ?? join(root, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const name = `eval-later-${model === resolve(root, 'sidecar/model') ? 'embedded' : basename(model)}${coldTiers.some((t) => t !== 'off') ? '-cold' : ''}`;
    const write = (result: { full: FullAccuracy; scores: readonly ConfigScore[]; dropped: string[] }, partial: boolean): string => {
      const report = { date: new Date().toISOString(), model, items: items.length, textItems: runtime.imageInput ? null : values['text-items'], seed: Number(values.seed), lengths, maxNewTokens: Number(values['max-new-tokens']), session: session ?? null, seconds: (Date.now() - started) / 1000, partial, ...result, scores: [...result.scores] };
      writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
      const md = laterTurnMarkdown(report);
      writeFileSync(join(dir, `${name}.md`), md);
      return md;
    };
    const result = await evaluate(runtime, items, configs, Number(values['max-new-tokens']), (line) => process.stderr.write(`${line}\n`), {
      keepCorrect: values['keep-correct'],
      // Written after every configuration (marked partial), so a stopped run keeps what it finished.
      onScore: (scores, full, dropped) => write({ full, scores, dropped }, scores.length < configs.length),
    });
    process.stdout.write(write(result, false));
  } finally {
    await runtime.release();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`eval: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
