/**
 * `npm run golden -- [DIR]`: runs every `lookm_<method>_<case>.json` in DIR (default
 * ../shared/golden) through the KV engine in reference mode, one line per run, and ends with
 * `N passed, N failed`. Exits non-zero when a run fails or DIR holds no runs.
 */
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkGoldenFile, loadGoldenFile } from './golden/check.js';

async function main(dir: string): Promise<number> {
  let files: string[];
  try {
    files = readdirSync(dir).filter((name) => /^lookm_.+\.json$/.test(name) && !name.startsWith('lookm_inputs_')).sort();
  } catch (error) {
    console.error(`cannot read golden directory ${dir}: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  let passed = 0;
  let failed = 0;
  for (const name of files) {
    for (const run of await checkGoldenFile(loadGoldenFile(join(dir, name)))) {
      const label = `${run.method.padEnd(26)} ${run.case.padEnd(16)} ${run.budget.padEnd(10)}`;
      if (run.mismatch === null) passed++;
      else failed++;
      console.log(run.mismatch === null ? `${label} PASS` : `${label} FAIL  ${run.mismatch}`);
    }
  }
  if (passed + failed === 0) console.error(`no golden runs (lookm_<method>_<case>.json) in ${dir}`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed > 0 || passed === 0 ? 1 : 0;
}

void main(resolve(process.argv[2] ?? '../shared/golden')).then((code) => process.exit(code));
