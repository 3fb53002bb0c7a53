/**
 * `npm run soak -- --sessions 20 --minutes M`: concurrent sessions with images under a global KV
 * budget smaller than their sum (see tools/soak/run.ts); prints the figures and ends with
 * `N passed, N failed` over the checks.
 */
import { parseArgs } from 'node:util';
import { runSoak } from './soak/run.js';

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { sessions: { type: 'string', default: '20' }, minutes: { type: 'string', default: '1' } } });
  const report = await runSoak(Number(values.sessions), Number(values.minutes) * 60, (line) => console.log(line));
  console.log(JSON.stringify(report, null, 2));
  const growth = report.rssLastQuarterMiB / report.rssFirstQuarterMiB;
  const checks: [string, boolean][] = [
    ['no turn failed', report.errors.length === 0],
    ['every answer equals the script run alone', report.wrongAnswers === 0],
    ['the budget was never exceeded', report.budgetViolations === 0 && report.maxResidentBytes <= report.budgetBytes],
    ['sessions were evicted (the budget was binding)', report.evictions > 0],
    ['memory flat: last quarter RSS within 10% of the first', growth < 1.1],
    ['server/stats p99 under 250 ms', report.statsLatencyMs.p99 < 250],
  ];
  for (const [name, ok] of checks) console.log(`${ok ? 'PASS' : 'FAIL'} ${name}`);
  const failed = checks.filter(([, ok]) => !ok).length;
  console.log(`${checks.length - failed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

void main().then((code) => process.exit(code));
