/**
 * What the parity tests share: a fixture recorded from transformers (a JSON case beside a
 * safetensors file of tensors, under test/fixtures/parity/MODEL/) and the distances they compare by.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensorsHeader, readTensorBytes, toFloat32 } from '../../sidecar/src/model/safetensors.js';

const parityRoot = join(__dirname, '../fixtures/parity');

/** `test/fixtures/parity/<model>/<name>.json` and the tensors of `<name>.safetensors` (default name: case / tensors). */
export function parityFixture<C>(model: string, name?: string): { case: C; has: (tensor: string) => boolean; tensor: (tensor: string) => Float32Array } {
  const dir = join(parityRoot, model);
  const entries = readSafetensorsHeader(join(dir, `${name ?? 'tensors'}.safetensors`));
  return {
    case: JSON.parse(readFileSync(join(dir, `${name ?? 'case'}.json`), 'utf8')) as C,
    has: (tensor) => entries.has(tensor),
    tensor: (tensor) => {
      const entry = entries.get(tensor);
      assert.ok(entry, `fixture tensor ${tensor}`);
      return toFloat32(entry, readTensorBytes(entry));
    },
  };
}

export function maxAbsDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length, 'sizes differ');
  let max = 0;
  for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(got[i] - want[i]));
  return max;
}

/** Differences relative to the expected value, or absolute where it is below 1. */
export function maxRelDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length, 'sizes differ');
  let max = 0;
  for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i])));
  return max;
}

/**
 * `[numKvHeads, columns]` sums of per-query-head column sums `[numQueryHeads, columns]`: each KV
 * head's group of query heads added up, as the decoder graph emits them (transformers' fixtures keep
 * one row per query head).
 */
export function groupSums(perQueryHead: ArrayLike<number>, numQueryHeads: number, numKvHeads: number): Float64Array {
  const columns = perQueryHead.length / numQueryHeads;
  const group = numQueryHeads / numKvHeads;
  assert.ok(Number.isInteger(columns) && Number.isInteger(group), `${perQueryHead.length} sums are not ${numQueryHeads} query heads' rows over ${numKvHeads} KV heads`);
  const out = new Float64Array(numKvHeads * columns);
  for (let q = 0; q < numQueryHeads; q++) for (let j = 0; j < columns; j++) out[Math.floor(q / group) * columns + j] += perQueryHead[q * columns + j];
  return out;
}

/** The index of the largest value (the first of equals): a greedy step. */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
