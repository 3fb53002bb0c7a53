/**
 * Small graphs that change a layer's K/V where they live (on the GPU under WebGPU), so a KV cache
 * kept on the device is never copied to the host to be grown or compressed. One graph serves
 * every layer of a model: heads and head size are fixed, slot counts are dynamic.
 *
 * K/V are `[heads, slots, headDim]` float32, as the decoder takes its past. Indices are flat rows
 * of `[heads * slots, headDim]` (`head * slots + slot`), computed on the CPU from a compression
 * plan (`runtime/deviceKv.ts`): the plan is small, the rows it moves are not.
 */
import { buildModel, GraphBuilder, type ValueSpec } from './onnxBuilder.js';

export interface KvGraphShape {
  numHeads: number;
  headDim: number;
}

/** ScatterND's `reduction` needs opset 16; 18 is what the WebGPU provider registers it under. */
const OPSET = 18;

function kv(name: string, { numHeads, headDim }: KvGraphShape, slots: string): ValueSpec {
  return { name, type: 'float32', dims: [numHeads, slots, headDim] };
}

/**
 * Compaction: `out[h, n] = selfScale[h*N+n] * x[h, kept[h, n]] + sum_k srcWeight[k] * x[src[k]]`
 * over the contributions `k` whose destination is `h*N+n` (ScatterND with `reduction = add`).
 * Without `merge`, the kept rows are gathered as they are (eviction-only policies, or a merge
 * with nothing to add).
 */
export function compactGraph(shape: KvGraphShape, merge: boolean): Uint8Array {
  const g = new GraphBuilder();
  const flat = g.ints([-1, shape.headDim]);
  const back = g.ints([shape.numHeads, -1, shape.headDim]);
  const inputs: ValueSpec[] = [kv('keys', shape, 'slots'), kv('values', shape, 'slots'), { name: 'kept_rows', type: 'int64', dims: ['kept_total'] }];
  if (merge) {
    inputs.push(
      { name: 'self_scale', type: 'float32', dims: ['kept_total', 1] },
      { name: 'source_rows', type: 'int64', dims: ['merged'] },
      { name: 'target_rows', type: 'int64', dims: ['merged', 1] },
      { name: 'source_weight', type: 'float32', dims: ['merged', 1] },
    );
  }
  for (const which of ['keys', 'values'] as const) {
    const rows = g.op('Reshape', [which, flat], {}, `/${which}/flat`);
    let out = g.op('Gather', [rows, 'kept_rows'], { axis: 0 }, `/${which}/kept`);
    if (merge) {
      const base = g.op('Mul', [out, 'self_scale'], {}, `/${which}/self`);
      const sources = g.op('Gather', [rows, 'source_rows'], { axis: 0 }, `/${which}/sources`);
      const weighted = g.op('Mul', [sources, 'source_weight'], {}, `/${which}/weighted`);
      out = g.op('ScatterND', [base, 'target_rows', weighted], { reduction: 'add' }, `/${which}/merged`);
    }
    g.nodes.push({ name: `/${which}/out`, op: 'Reshape', inputs: [out, back], outputs: [`${which}_out`] });
  }
  return buildModel({
    name: merge ? 'kv_compact_merge' : 'kv_compact_gather',
    opset: OPSET,
    inputs,
    outputs: [kv('keys_out', shape, 'kept'), kv('values_out', shape, 'kept')],
    nodes: g.nodes,
    int64Constants: g.int64Constants,
  });
}

/** Decode/prefill growth: the past and a run's new rows, concatenated per head. */
export function appendGraph(shape: KvGraphShape): Uint8Array {
  return buildModel({
    name: 'kv_append',
    opset: OPSET,
    inputs: [kv('past_keys', shape, 'past'), kv('past_values', shape, 'past'), kv('new_keys', shape, 'new'), kv('new_values', shape, 'new')],
    outputs: [kv('keys_out', shape, 'total'), kv('values_out', shape, 'total')],
    nodes: [
      { name: '/keys/concat', op: 'Concat', inputs: ['past_keys', 'new_keys'], outputs: ['keys_out'], attributes: { axis: 1 } },
      { name: '/values/concat', op: 'Concat', inputs: ['past_values', 'new_values'], outputs: ['values_out'], attributes: { axis: 1 } },
    ],
  });
}

/**
 * A copy of K/V to wherever the session puts its outputs: onto the device (a first prefill's rows
 * that came from the host) or back to the host (tests, snapshots). onnxruntime-node cannot read a
 * `gpu-buffer` tensor in JavaScript, so a session with host outputs is the way back.
 */
export function copyGraph(shape: KvGraphShape): Uint8Array {
  const g = new GraphBuilder();
  const same = g.ints([shape.numHeads, -1, shape.headDim]);
  // A Reshape to the same shape rather than an Identity: the optimiser may drop an Identity that links an input to an output.
  return buildModel({
    name: 'kv_copy',
    opset: OPSET,
    inputs: [kv('keys', shape, 'slots'), kv('values', shape, 'slots')],
    outputs: [kv('keys_out', shape, 'slots'), kv('values_out', shape, 'slots')],
    nodes: [
      { name: '/keys/copy', op: 'Reshape', inputs: ['keys', same], outputs: ['keys_out'] },
      { name: '/values/copy', op: 'Reshape', inputs: ['values', same], outputs: ['values_out'] },
    ],
    int64Constants: g.int64Constants,
  });
}

/**
 * LOOK-M's matching where the keys live: each evicted key's most similar kept key (cosine),
 * `target` (first index on ties, as `ArgMax` with `select_last_index = 0`) and that similarity.
 * Only these `[heads, evicted]` answers leave the device. A zero key stays zero after the
 * normalisation (its norm is floored, not divided by), so it has similarity 0 to everything, as
 * in the engine's matcher.
 */
export function matchGraph(shape: KvGraphShape): Uint8Array {
  const g = new GraphBuilder();
  const flat = g.op('Reshape', ['keys', g.ints([-1, shape.headDim])], {}, '/keys/flat');
  const byHead = g.ints([shape.numHeads, -1, shape.headDim]);
  const lastAxis = g.ints([2]);
  const unit = (rows: string, name: string) => {
    const picked = g.op('Reshape', [g.op('Gather', [flat, rows], { axis: 0 }, `/${name}/rows`), byHead], {}, `/${name}/by_head`);
    const norm = g.op('Sqrt', [g.op('ReduceSumSquare', [picked, lastAxis], { keepdims: 1 }, `/${name}/norm2`)], {}, `/${name}/norm`);
    return g.op('Div', [picked, g.op('Max', [norm, g.scalar(1e-30)], {}, `/${name}/floored`)], {}, `/${name}/unit`);
  };
  const kept = unit('kept_rows', 'kept');
  const evicted = unit('evicted_rows', 'evicted');
  const sim = g.op('MatMul', [evicted, g.op('Transpose', [kept], { perm: [0, 2, 1] }, '/kept/t')], {}, '/sim');
  g.nodes.push(
    { name: '/target', op: 'ArgMax', inputs: [sim], outputs: ['target'], attributes: { axis: 2, keepdims: 0, select_last_index: 0 } },
    { name: '/max_sim', op: 'ReduceMax', inputs: [sim, lastAxis], outputs: ['max_sim'], attributes: { keepdims: 0 } },
  );
  return buildModel({
    name: 'kv_match_device',
    opset: OPSET,
    inputs: [kv('keys', shape, 'slots'), { name: 'kept_rows', type: 'int64', dims: ['kept_total'] }, { name: 'evicted_rows', type: 'int64', dims: ['evicted_total'] }],
    outputs: [
      { name: 'target', type: 'int64', dims: [shape.numHeads, 'evicted'] },
      { name: 'max_sim', type: 'float32', dims: [shape.numHeads, 'evicted'] },
    ],
    nodes: g.nodes,
    constants: g.constants,
    int64Constants: g.int64Constants,
  });
}
