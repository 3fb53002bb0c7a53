/**
 * `npm run eval [-- --model DIR --items N --quick --milebench SUBSET_DIR]` (default: the embedded
 * model in sidecar/model, 60 items): every KV policy,
 * budgets 100/20/10/5%, both modes, scored against the full cache on a seeded synthetic set
 * (tools/eval/) or on a MileBench subset. Writes bench/results/eval[-milebench].json and .md. `--quick` (a subset, well under a minute on
 * the tiny checkpoint) is what CI runs.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { POLICY_NAMES, type Mode, type PolicyName } from '../sidecar/src/kv/index.js';
import { OnnxModelRuntime } from '../sidecar/src/runtime/onnxModelRuntime.js';
import { evalSet } from './eval/dataset.js';
import { loadMileBench } from './eval/milebench.js';
import { evaluate, type EvalConfig } from './eval/run.js';

const root = join(__dirname, '..');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: join(root, 'sidecar/model') },
      items: { type: 'string', default: '60' },
      'max-new-tokens': { type: 'string', default: '8' },
      quick: { type: 'boolean', default: false },
      milebench: { type: 'string' },
    },
  });
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

void main();
