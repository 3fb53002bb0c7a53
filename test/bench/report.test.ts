/** The benchmark report's table: ratios against targets, marked met, missed or not measured. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { reportMarkdown, reportRows, reportSvg, type EvalScore, type Inputs, type LlamacppResults } from '../../bench/reportTable.js';

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
  llamacpp: {
    model: 'm',
    lengths: [100, 4096, 8192],
    check: { maxAbs: 2e-5, greedyIdentical: true },
    ratios: [
      { peer: 'llama-f16', prefill: { 100: 1.6, 4096: 1.9, 8192: 1.8 }, decodeFull: { 100: 0.66, 4096: 1.02, 8192: 1.1 }, decodeLookm: { 100: 0.7, 4096: 0.9, 8192: 1.2 }, turnPeakRss: { 100: 1.0, 4096: 1.5, 8192: 1.2 }, wholePeakRss: 2.5, load: 1.4 },
      { peer: 'llama-f32', prefill: { 100: 1.6, 4096: 1.9, 8192: 1.8 }, decodeFull: { 100: 0.7, 4096: 1.1, 8192: 1.3 }, decodeLookm: { 100: 0.7, 4096: 0.9, 8192: 1.2 }, turnPeakRss: { 100: 1, 4096: 1, 8192: 1 }, wholePeakRss: 2, load: 1 },
    ],
    compressionShare: { 100: 0.1, 4096: 0.02, 8192: 0.025 },
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

  it('holds the runtime to llama.cpp\'s defaults (F16 KV) at each length, and reports the whole-model compression share', () => {
    assert.equal(row('next-token log-probabilities').met, true);
    assert.equal(row('next-token log-probabilities').measured, '2.0e-5');
    assert.ok(rows.every((r) => !r.figure.includes('|')), 'no pipe breaks the markdown table');
    assert.equal(row('decode tokens/s, full cache, ours / llama.cpp (F16 KV) at 100 tokens').met, false);
    assert.equal(row('decode tokens/s, full cache, ours / llama.cpp (F16 KV) at 4096 tokens').met, true);
    assert.match(row('decode tokens/s, full cache, ours / llama.cpp (F16 KV) at 8192 tokens').note, /F32 KV: 1\.30/);
    assert.equal(row('decode tokens/s, LOOK-M 20% / llama.cpp full cache, at 8K').met, false, '1.2 < 1.3');
    assert.equal(row('peak RSS during a turn').measured, '1.500', 'the largest over lengths');
    assert.equal(row('peak RSS of the whole process').met, false);
    assert.equal(row('load time').met, true);
    assert.equal(row('compression of all layers').measured, '4096: 0.020, 8192: 0.025');
  });

  it('reads the decode figures from the paired decode when the run has it, and says so', () => {
    const figure = (median: number) => ({ median, min: median - 0.1, max: median + 0.1, rounds: 8 });
    const paired: NonNullable<LlamacppResults['paired']> = {
      rounds: 8,
      ratios: [
        { peer: 'llama-f16', decodeFull: { 100: figure(1.05), 4096: figure(0.95) }, decodeLookm: { 8192: figure(1.4) } },
        { peer: 'llama-f32', decodeFull: { 100: figure(1.2) }, decodeLookm: {} },
      ],
    };
    const withPaired = reportRows({ ...inputs, llamacpp: { ...inputs.llamacpp!, paired } });
    const at = (prefix: string) => withPaired.find((r) => r.figure.startsWith(prefix))!;
    const at100 = at('decode tokens/s, full cache, ours / llama.cpp (F16 KV) at 100 tokens');
    assert.equal(at100.met, true, 'paired 1.05, although the separate processes said 0.66');
    assert.match(at100.note, /paired, median of 8 rounds \(0\.95-1\.15\); separate processes: 0\.66; vs llama.cpp with F32 KV: 1\.20/);
    assert.equal(at('decode tokens/s, full cache, ours / llama.cpp (F16 KV) at 4096 tokens').met, false, 'paired 0.95, although the separate processes said 1.02');
    assert.match(at('decode tokens/s, full cache, ours / llama.cpp (F16 KV) at 8192 tokens').note, /^separate processes/, 'no pair at 8K: the separate figure');
    assert.equal(at('decode tokens/s, LOOK-M 20% / llama.cpp full cache, at 8K').met, true);
  });

  it('never claims what was not measured', () => {
    const bare = reportRows({ quick: true, engine: inputs.engine, eval: { ...inputs.eval!, full: { accuracy: 0 } } });
    for (const prefix of ['decode speed', 'follow-up', 'compression', 'peak memory', 'accuracy at', 'decode tokens/s', 'peak RSS', 'load time']) assert.ok(bare.filter((r) => r.figure.startsWith(prefix)).every((r) => r.met === null), prefix);
    assert.match(reportMarkdown(bare, '# x'), /not measured/);
    assert.match(reportSvg(rows, 't'), /^<svg/);
  });
});
