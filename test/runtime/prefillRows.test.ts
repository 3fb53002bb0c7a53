import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MIN_PREFILL_ROWS, PREFILL_SCORES_BUDGET_BYTES, prefillRows } from '../../sidecar/src/runtime/modelRuntime.js';

const scoresBytes = (rows: number, past: number, heads: number) => 4 * heads * rows * (past + rows);

test('a short past keeps the whole chunk', () => {
  assert.equal(prefillRows(256, 0, 14), 256);
  assert.equal(prefillRows(256, 100, 14), 256);
  assert.equal(prefillRows(512, 0, 4), 512);
  assert.equal(prefillRows(7, 0, 14), 7, 'a chunk setting below the floor is kept');
});

test('a long past gets fewer rows, whose scores fit the budget', () => {
  for (const [past, heads] of [[8192, 14], [4096, 14], [8192, 32], [30_000, 16]]) {
    const rows = prefillRows(512, past, heads);
    assert.ok(rows < 512, `past ${past}, ${heads} heads: ${rows} rows`);
    assert.ok(rows >= MIN_PREFILL_ROWS);
    if (rows > MIN_PREFILL_ROWS) assert.ok(scoresBytes(rows, past, heads) <= PREFILL_SCORES_BUDGET_BYTES, `${scoresBytes(rows, past, heads)} bytes`);
  }
  // The rows shrink as the past grows, and with more heads.
  assert.ok(prefillRows(512, 8192, 14) < prefillRows(512, 4096, 14));
  assert.ok(prefillRows(512, 8192, 32) < prefillRows(512, 8192, 14));
});

test('a very long past stops at the floor; an explicit budget is honoured', () => {
  assert.equal(prefillRows(512, 1_000_000, 32), MIN_PREFILL_ROWS);
  assert.equal(prefillRows(512, 100, 2, 4 * 2 * 10 * (100 + 512)), MIN_PREFILL_ROWS);
  assert.equal(prefillRows(512, 100, 2, 4 * 2 * 100 * (100 + 512)), 100);
});
