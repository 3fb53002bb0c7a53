/** A short load round (the long one: npm run soak -- --sessions 20 --minutes M). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runSoak } from '../../tools/soak/run.js';

describe('load under a global budget', () => {
  it('20 concurrent sessions with images: budget never exceeded, evicted sessions answer exactly, stats stay responsive', async () => {
    const report = await runSoak(20, 3);
    assert.deepEqual(report.errors, []);
    assert.equal(report.wrongAnswers, 0);
    assert.ok(report.turns >= 80, `${report.turns} turns`);
    assert.equal(report.budgetViolations, 0);
    assert.ok(report.maxResidentBytes <= report.budgetBytes);
    assert.ok(report.evictions > 0, 'the budget must bind for this test to mean anything');
    assert.ok(report.samples > 10);
    assert.ok(report.statsLatencyMs.p99 < 1000, `p99 ${report.statsLatencyMs.p99} ms`);
  });
});
