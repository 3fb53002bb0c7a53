/**
 * `npm run killloop -- [--rounds 30] [--seed 1] [--policy NAME] [--model DIR] [--corrupt-every 5] [--file-lines 40]`:
 * SIGKILLs a real sidecar at seeded random moments of scripted conversations and restarts it on the
 * same state directory (see tools/killloop/run.ts); prints the figures and ends with
 * `N passed, N failed` over the checks. Exits non-zero on any failure.
 */
import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { POLICY_NAMES } from '../sidecar/src/protocol/index.js';
import { killLoopChecks, runKillLoop, type PolicyName } from './killloop/run.js';

const root = join(__dirname, '..');
const USAGE = 'usage: npm run killloop -- [--rounds 30] [--seed 1] [--policy NAME] [--model DIR] [--max-new-tokens 16] [--corrupt-every 5] [--file-lines 40] [--quiet]';

function positiveInteger(name: string, value: string, allowZero = false): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new Error(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}\n${USAGE}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '30' },
      seed: { type: 'string', default: '1' },
      policy: { type: 'string', default: 'text_prior_pivot_merge' },
      model: { type: 'string', default: join(root, 'sidecar/model') },
      'max-new-tokens': { type: 'string', default: '16' },
      'corrupt-every': { type: 'string', default: '5' },
      // Each file's first lines only, so the conversations fit the embedded model's 2,048 positions.
      'file-lines': { type: 'string', default: '40' },
      quiet: { type: 'boolean', default: false },
    },
  });
  const policy = POLICY_NAMES.find((p) => p === values.policy);
  if (!policy) throw new Error(`--policy must be one of ${POLICY_NAMES.join(', ')}, got ${values.policy}`);
  const model = isAbsolute(values.model) ? values.model : resolve(values.model);
  const started = Date.now();
  const report = await runKillLoop(root, {
    rounds: positiveInteger('rounds', values.rounds),
    seed: Number(values.seed),
    policy: policy satisfies PolicyName,
    model,
    maxNewTokens: positiveInteger('max-new-tokens', values['max-new-tokens']),
    corruptEvery: positiveInteger('corrupt-every', values['corrupt-every'], true),
    fileLines: positiveInteger('file-lines', values['file-lines']),
    log: values.quiet ? undefined : (line) => console.log(line),
  });
  const { failures, ...figures } = report;
  console.log(JSON.stringify(figures, null, 2));
  const k = report.killsByPhase;
  console.log(
    `${report.rounds} rounds in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${report.seed}, policy ${report.policy}, ${report.entry}): ` +
      `kills ${report.kills} (prefill ${k.prefill}, decode ${k.decode}, after the last token ${k.persist}, after the answer ${k.after}); ` +
      `turns completed ${report.turnsCompleted}, lost ${report.turnsLost}; interrupted turns persisted whole ${report.interruptedPersisted}, absent ${report.interruptedAbsent}; ` +
      `answers compared ${report.answersCompared}, mismatched ${report.answersMismatched} (first after a restart: ${report.resumedAnswersCompared}, mismatched ${report.resumedAnswersMismatched}); ` +
      `corruptions ${report.corruptions}, isolated ${report.corruptionsIsolated}; restart p50 ${report.restartMs.p50.toFixed(0)} ms, max ${report.restartMs.max.toFixed(0)} ms; ` +
      `RSS first ${report.rssMiB.first.toFixed(1)} MiB, p50 ${report.rssMiB.p50.toFixed(1)}, max ${report.rssMiB.max.toFixed(1)}, last ${report.rssMiB.last.toFixed(1)}; stray temporary files ${report.strayTempFiles}`,
  );
  if (failures.length) console.log(`failures (${failures.length}):\n  ${failures.slice(0, 20).join('\n  ')}${failures.length > 20 ? `\n  ... ${failures.length - 20} more` : ''}`);
  const results = killLoopChecks(report);
  for (const [name, ok] of results) console.log(`${ok ? 'PASS' : 'FAIL'} ${name}`);
  const failed = results.filter(([, ok]) => !ok).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(2);
  },
);
