/**
 * Runs one LOOK-M golden file (see ../shared/golden/README.md) through the engine in reference
 * mode and reports the first mismatch of each run. Used by `npm run golden` and by the tests.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  compressLayer,
  createLayer,
  denseRows,
  denseSlots,
  modalityFromPlaceholders,
  resolveBudget,
  TEXT,
  isPolicyName,
  type KvLayer,
  type PolicyName,
} from '../../sidecar/src/kv/index.js';
import { mergeEvicted } from '../../sidecar/src/kv/merge.js';

/** Relative tolerance on keys, values and similarities: max |a-b| / max(1, |b|). */
export const TOLERANCE = 1e-5;

interface Tensor {
  shape: number[];
  dtype: 'float32';
  data: number[];
}

interface GoldenInputs {
  num_heads: number;
  head_dim: number;
  seq_len: number;
  img_tokens_per_image: number;
  image_placeholder_positions: number[];
  image_token_mask: number[];
  keys: Tensor;
  values: Tensor;
  attn_colsum?: Tensor;
  queries?: Tensor;
}

interface GoldenRun {
  hh_ratio: number;
  recent_ratio: number;
  hh_size: number;
  recent_size: number;
  compressed: boolean;
  outputs: { keys: Tensor; values: Tensor };
  kept_indices?: number[][];
  evicted_indices?: number[][];
  merge?: { target_slot: number[][]; max_cos_sim: number[][]; filter?: number[]; avg_source_evicted_slot?: number[] };
  avg_source_misalignment_changes_keys?: boolean;
  n_text_nonrecent?: number;
  n_image_selected?: number;
  snapkv_pooled_scores?: Tensor;
}

export interface GoldenFile {
  method: string;
  case: string;
  inputs_file?: string;
  inputs: GoldenInputs;
  runs: GoldenRun[];
}

export interface RunResult {
  method: string;
  case: string;
  budget: string;
  /** `null` when the run matches; otherwise the first mismatch, in words. */
  mismatch: string | null;
}

export function loadGoldenFile(path: string): GoldenFile {
  const file = JSON.parse(readFileSync(path, 'utf8')) as GoldenFile;
  // Method files are self-contained; fall back to the shared inputs file for anything missing.
  if (file.inputs_file && (!file.inputs.keys || (!file.inputs.attn_colsum && !file.inputs.queries))) {
    const shared = JSON.parse(readFileSync(join(dirname(path), file.inputs_file), 'utf8')) as GoldenInputs;
    file.inputs = { ...shared, ...file.inputs };
  }
  return file;
}

class Mismatch extends Error {}

function fail(message: string): never {
  throw new Mismatch(message);
}

function expectEqual(what: string, got: unknown, want: unknown): void {
  if (got !== want) fail(`${what}: got ${String(got)}, want ${String(want)}`);
}

function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  expectEqual(`${what} length`, got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    const error = Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i]));
    if (!(error <= TOLERANCE)) fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (relative error ${error.toExponential(2)})`);
  }
}

function expectRows(what: string, got: ArrayLike<number>, perRow: number, want: number[][]): void {
  const flat = want.flat();
  expectEqual(`${what} size`, got.length, flat.length);
  for (let i = 0; i < flat.length; i++) {
    if (got[i] !== flat[i]) fail(`${what}[head ${Math.floor(i / perRow)}][${i % perRow}]: got ${got[i]}, want ${flat[i]}`);
  }
}

function buildLayer(inputs: GoldenInputs): KvLayer {
  const { num_heads: H, head_dim: D, seq_len: L } = inputs;
  const modality = Int32Array.from(inputs.image_token_mask, (isImage, j) => (isImage ? imageIndexAt(inputs, j) : TEXT));
  const layer = createLayer(H, D, L);
  layer.append({
    keys: Float32Array.from(inputs.keys.data),
    values: Float32Array.from(inputs.values.data),
    positions: Int32Array.from({ length: L }, (_, j) => j),
    modality,
  });
  if (inputs.attn_colsum) layer.accumulate(Float32Array.from(inputs.attn_colsum.data), H);
  return layer;
}

/** Which image the expanded slot j belongs to, by the reference's span rule (lookm-spec §1.2). */
function imageIndexAt(inputs: GoldenInputs, j: number): number {
  const T = inputs.img_tokens_per_image;
  return inputs.image_placeholder_positions.findIndex((p, i) => j >= p + (T - 1) * i && j < p + (T - 1) * i + T);
}

async function checkRun(file: GoldenFile, run: GoldenRun, method: PolicyName): Promise<void> {
  const { inputs } = file;
  const L = inputs.seq_len;
  const H = inputs.num_heads;
  const expectedModality = modalityFromPlaceholders(inputs.image_placeholder_positions, inputs.img_tokens_per_image, L);
  inputs.image_token_mask.forEach((isImage, j) => expectEqual(`image_token_mask[${j}] vs placeholder spans`, expectedModality[j] !== TEXT, isImage === 1));

  const layer = buildLayer(inputs);
  const budget = { hhRatio: run.hh_ratio, recentRatio: run.recent_ratio };
  const slots = resolveBudget(budget, L, L, 'reference');
  expectEqual('hh_size', slots.heavy, run.hh_size);
  expectEqual('recent_size', slots.recent, run.recent_size);

  const before = { keys: denseRows(layer, 'keys'), values: denseRows(layer, 'values') };
  const queries = inputs.queries ? Float32Array.from(inputs.queries.data) : undefined;
  // Keep an untouched copy for recomputing the intended averaged merge below.
  const original = buildLayer(inputs);
  const plan = await compressLayer(layer, { policy: method, budget, mode: 'reference', queries, numQueryHeads: H });

  expectEqual('compressed', layer.length !== L, run.compressed);
  if (run.kept_indices) expectRows('kept_indices', denseSlots(layer, layer.positions), layer.length, run.kept_indices);
  if (run.evicted_indices) expectRows('evicted_indices', plan?.evicted ?? [], plan?.evictedPerHead ?? 0, run.evicted_indices);
  if (run.n_text_nonrecent !== undefined) expectEqual('n_text_nonrecent', plan?.trace.textNonRecent, run.n_text_nonrecent);
  if (run.n_image_selected !== undefined) expectEqual('n_image_selected', plan?.trace.imagesSelected, run.n_image_selected);
  if (run.snapkv_pooled_scores && plan) expectClose('snapkv_pooled_scores', plan.trace.snapkvPooledScores ?? [], run.snapkv_pooled_scores.data);

  if (run.merge) {
    if (!plan?.matches || !plan.merged) return fail('merge: the reference merged, the engine did not');
    expectRows('merge.target_slot', plan.matches.target, plan.evictedPerHead, run.merge.target_slot);
    expectClose('merge.max_cos_sim', plan.matches.maxSim, run.merge.max_cos_sim.flat());
    if (run.merge.filter) expectRows('merge.filter', plan.merged.filter ?? [], plan.evictedPerHead, [run.merge.filter]);
    if (run.merge.avg_source_evicted_slot) {
      expectRows('merge.avg_source_evicted_slot', plan.merged.sourceSlot ?? [], run.merge.avg_source_evicted_slot.length, [run.merge.avg_source_evicted_slot]);
    }
    if (run.avg_source_misalignment_changes_keys !== undefined) {
      // The improved (intended) averaged merge must differ from the reference exactly when the golden file says so.
      const intended = mergeEvicted(original, plan.kept, plan.keptPerHead, plan.evicted, plan.evictedPerHead, plan.matches, 'average', 'improved');
      const differs = intended.keys.some((x, i) => x !== plan.merged!.keys[i]);
      expectEqual('avg_source_misalignment_changes_keys', differs, run.avg_source_misalignment_changes_keys);
    }
  }
  const keys = run.compressed || plan ? denseRows(layer, 'keys') : before.keys;
  const values = run.compressed || plan ? denseRows(layer, 'values') : before.values;
  expectClose('outputs.keys', keys, run.outputs.keys.data);
  expectClose('outputs.values', values, run.outputs.values.data);
}

/** Runs every budget of one golden file. */
export async function checkGoldenFile(file: GoldenFile): Promise<RunResult[]> {
  const results: RunResult[] = [];
  for (const run of file.runs) results.push(await checkOneRun(file, run));
  return results;
}

async function checkOneRun(file: GoldenFile, run: GoldenRun): Promise<RunResult> {
  const budget = `${run.hh_ratio}/${run.recent_ratio}`;
  const result = { method: file.method, case: file.case, budget };
  if (!isPolicyName(file.method)) return { ...result, mismatch: `no engine policy named "${file.method}"` };
  try {
    await checkRun(file, run, file.method);
    return { ...result, mismatch: null };
  } catch (error) {
    if (error instanceof Mismatch) return { ...result, mismatch: error.message };
    return { ...result, mismatch: `error: ${error instanceof Error ? error.message : String(error)}` };
  }
}
