/**
 * The baseline the KV compression is compared with: one layer's attention prefill in
 * onnxruntime-node, plain ops as the sidecar's prefill graphs use them (scores, causal mask,
 * softmax, values, and the attention column sums LOOK-M needs), in query chunks over a growing
 * key prefix, so the causal half of the work is skipped like a chunked prefill does.
 */
import * as ort from 'onnxruntime-node';
import { buildModel } from '../sidecar/src/model/graph/onnxBuilder.js';
import { fillUniform } from './shapes.js';

function attentionModel(heads: number, headDim: number): Uint8Array {
  return buildModel({
    name: 'attention_prefill',
    inputs: [
      { name: 'q', type: 'float32', dims: [1, heads, 'chunk', headDim] },
      { name: 'k', type: 'float32', dims: [1, heads, 'kv_len', headDim] },
      { name: 'v', type: 'float32', dims: [1, heads, 'kv_len', headDim] },
      { name: 'mask', type: 'float32', dims: ['chunk', 'kv_len'] },
    ],
    outputs: [
      { name: 'out', type: 'float32', dims: [1, heads, 'chunk', headDim] },
      { name: 'colsum', type: 'float32', dims: [1, heads, 'kv_len'] },
    ],
    constants: { scale: [1 / Math.sqrt(headDim)] },
    nodes: [
      { op: 'Transpose', inputs: ['k'], outputs: ['k_t'], attributes: { perm: [0, 1, 3, 2] } },
      { op: 'MatMul', inputs: ['q', 'k_t'], outputs: ['logits'] },
      { op: 'Mul', inputs: ['logits', 'scale'], outputs: ['scaled'] },
      { op: 'Add', inputs: ['scaled', 'mask'], outputs: ['masked'] },
      { op: 'Softmax', inputs: ['masked'], outputs: ['probs'], attributes: { axis: -1 } },
      { op: 'MatMul', inputs: ['probs', 'v'], outputs: ['out'] },
      { op: 'ReduceSum', inputs: ['probs', 'axes'], outputs: ['colsum'], attributes: { keepdims: 0 } },
    ],
    int64Constants: { axes: [2] },
  });
}

/**
 * Milliseconds of one layer's causal attention prefill over `length` tokens: the second of two
 * passes, so onnxruntime's memory arena has grown to the largest chunk first, as in a warm sidecar.
 */
export async function timeAttentionPrefill(heads: number, headDim: number, length: number, chunk = 256, threads = 2): Promise<number> {
  const session = await ort.InferenceSession.create(attentionModel(heads, headDim), { intraOpNumThreads: threads, interOpNumThreads: 1 });
  await prefillPass(session, heads, headDim, length, chunk);
  const ms = await prefillPass(session, heads, headDim, length, chunk);
  await session.release();
  return ms;
}

async function prefillPass(session: ort.InferenceSession, heads: number, headDim: number, length: number, chunk: number): Promise<number> {
  const q = new Float32Array(heads * chunk * headDim);
  const k = new Float32Array(heads * length * headDim);
  const v = new Float32Array(heads * length * headDim);
  fillUniform(q, 7);
  fillUniform(k, 8);
  fillUniform(v, 9);
  const mask = new Float32Array(chunk * length);
  let total = 0;
  for (let start = 0; start < length; start += chunk) {
    const rows = Math.min(chunk, length - start);
    const kvLen = start + rows;
    // Keys of the prefix [0, kvLen) for every head: one contiguous [heads, kvLen, D] copy per chunk
    // (measured outside the timer, like the cache views the sidecar feeds).
    const kPrefix = new Float32Array(heads * kvLen * headDim);
    const vPrefix = new Float32Array(heads * kvLen * headDim);
    for (let h = 0; h < heads; h++) {
      kPrefix.set(k.subarray(h * length * headDim, (h * length + kvLen) * headDim), h * kvLen * headDim);
      vPrefix.set(v.subarray(h * length * headDim, (h * length + kvLen) * headDim), h * kvLen * headDim);
    }
    const m = mask.subarray(0, rows * kvLen);
    for (let r = 0; r < rows; r++) for (let j = 0; j < kvLen; j++) m[r * kvLen + j] = j <= start + r ? 0 : -3.4e38;
    const feeds = {
      q: new ort.Tensor('float32', q.subarray(0, heads * rows * headDim), [1, heads, rows, headDim]),
      k: new ort.Tensor('float32', kPrefix, [1, heads, kvLen, headDim]),
      v: new ort.Tensor('float32', vPrefix, [1, heads, kvLen, headDim]),
      mask: new ort.Tensor('float32', m, [rows, kvLen]),
    };
    const t = performance.now();
    await session.run(feeds);
    total += performance.now() - t;
  }
  return total;
}
