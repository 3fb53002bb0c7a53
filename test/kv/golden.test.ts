/**
 * The engine in reference mode against the official LOOK-M classes: the shared golden vectors
 * and the extra cases recorded by tools/golden/make_cases.py. Also checks that the checker can fail.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { checkGoldenFile, loadGoldenFile } from '../../tools/golden/check.js';

const root = resolve(__dirname, '../..');
const DIRS = [resolve(root, '../shared/golden'), join(root, 'test/fixtures/golden-extra')];

function goldenFiles(dir: string): string[] {
  return readdirSync(dir).filter((name) => /^lookm_.+\.json$/.test(name) && !name.startsWith('lookm_inputs_')).map((name) => join(dir, name));
}

for (const dir of DIRS.filter(existsSync)) {
  describe(`golden vectors in ${dir}`, () => {
    for (const path of goldenFiles(dir)) {
      it(path.slice(dir.length + 1), async () => {
        const results = await checkGoldenFile(loadGoldenFile(path));
        assert.ok(results.length > 0);
        for (const result of results) assert.equal(result.mismatch, null, `${result.method} ${result.case} ${result.budget}`);
      });
    }
  });
}

describe('golden checker', () => {
  const path = join(DIRS[0], 'lookm_text_prior_pivot_merge_mixed40.json');

  it('reports a changed kept index', { skip: !existsSync(path) }, async () => {
    const file = loadGoldenFile(path);
    const run = file.runs[1];
    run.kept_indices![0][5] += 1;
    const [, result] = await checkGoldenFile(file);
    assert.match(result.mismatch ?? '', /^kept_indices\[head 0\]\[5\]/);
  });

  it('reports a merged value off by more than the tolerance', { skip: !existsSync(path) }, async () => {
    const file = loadGoldenFile(path);
    file.runs[0].outputs.values.data[3] += 1e-3;
    const [result] = await checkGoldenFile(file);
    assert.match(result.mismatch ?? '', /^outputs\.values\[3\]/);
  });

  it('reports an unknown method instead of passing it', { skip: !existsSync(path) }, async () => {
    const file = loadGoldenFile(path);
    file.method = 'mean_h2o';
    assert.match((await checkGoldenFile(file))[0].mismatch ?? '', /no engine policy/);
  });
});
