/** The benchmark report's table: ratios against targets, marked met, missed or not measured. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reportMarkdown, reportRows, reportSvg, type EvalScore, type Inputs } from '../../bench/reportTable.js';

const score = (policy: string, budget: number, accuracy: number, meanKl: number): EvalScore => ({ policy, mode: 'improved', budget, accuracy, answersIdentical: accuracy, meanKl, failed: 0 });

const inputs: Inputs = {
  quick: false,
  engine: { at20: 0.2, at5: 0.06 },
  kv: { rows: [{ policy: 'text_prior_pivot_merge', matcher: 'ort', length: 8192, heads: 32, queryHeads: 32, shareOfPrefill: 0.34 }] },
  turns: { followUpTtftMs: 10, coldTtftMs: 1000, kvBytes: { lookm: 20, full: 100 }, decodeMsPerToken: { lookm: 50, full: 100 }, weightsBytes: 100 },
  runtime: { runtime: { decode_tokens_per_s: 14, long: { peak_rss_growth_bytes: 150, kv_bytes: 200, prompt: 8192 } }, transformers: { decode_tokens_per_s: 7 } },
  eval: {
    model: 'm',
    full: { accuracy: 0.9 },
    scores: [0.2, 0.1, 0.05].flatMap((b) => [score('text_prior_pivot_merge', b, 0.9, 0.1), score('h2o', b, 0.8, 0.3), score('snapkv', b, 0.85, b === 0.05 ? 0.05 : 0.2)]),
  },
};

describe('benchmark report', () => {
  const rows = reportRows(inputs);
  const row = (prefix: string) => rows.find((r) => r.figure.startsWith(prefix))!;

  it('marks each figure against its target', () => {
    assert.equal(row('KV bytes at nominal 20%').met, true);
    assert.equal(row('KV bytes at nominal 5%').met, false, '0.06 > 0.05');
    assert.equal(row('decode speed at 20%').measured, '2.000');
    assert.equal(row('decode speed-up / byte-bound').measured, (2 / (200 / 120)).toFixed(3));
    assert.equal(row('follow-up time').met, true);
    assert.equal(row('compression time').met, false);
    assert.equal(row('peak memory').measured, '0.750');
    assert.equal(row('accuracy at 20%').met, true);
  });

  it('compares LOOK-M with H2O and SnapKV by KL, per budget', () => {
    assert.equal(row('LOOK-M ahead of H2O and SnapKV at 10%').met, true);
    assert.equal(row('LOOK-M ahead of H2O and SnapKV at 5%').met, false, 'SnapKV is closer to full at 5%');
  });

  it('never claims what was not measured', () => {
    const bare = reportRows({ quick: true, engine: inputs.engine, eval: { ...inputs.eval!, full: { accuracy: 0 } } });
    for (const prefix of ['decode speed', 'follow-up', 'compression', 'peak memory', 'accuracy at']) assert.ok(bare.filter((r) => r.figure.startsWith(prefix)).every((r) => r.met === null), prefix);
    assert.match(reportMarkdown(bare, '# x'), /not measured/);
    assert.match(reportSvg(rows, 't'), /^<svg/);
  });
});
