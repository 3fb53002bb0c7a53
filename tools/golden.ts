/**
 * `npm run golden -- [DIR]`: runs every `lookm_<method>_<case>.json` in DIR (default
 * ../shared/golden) through the KV engine in reference mode, one line per run, and ends with
 * `N passed, N failed`. Exits non-zero when a run fails or DIR holds no runs.
 */
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkGoldenFile, loadGoldenFile } from './golden/check.js';

const dir = resolve(process.argv[2] ?? '../shared/golden');
let files: string[];
try {
  files = readdirSync(dir).filter((name) => /^lookm_.+\.json$/.test(name) && !name.startsWith('lookm_inputs_')).sort();
} catch (error) {
  console.error(`cannot read golden directory ${dir}: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(2);
}

let passed = 0;
let failed = 0;
for (const name of files) {
  for (const run of checkGoldenFile(loadGoldenFile(join(dir, name)))) {
    const label = `${run.method.padEnd(26)} ${run.case.padEnd(10)} ${run.budget.padEnd(8)}`;
    if (run.mismatch === null) {
      passed++;
      console.log(`${label} PASS`);
    } else {
      failed++;
      console.log(`${label} FAIL  ${run.mismatch}`);
    }
  }
}
if (passed + failed === 0) console.error(`no golden runs (lookm_<method>_<case>.json) in ${dir}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
