/**
 * LOOK-M's evicted-to-kept key matching as one onnxruntime graph: normalised evicted keys
 * `[H, e, D]` times the normalised kept keys transposed, reduced at once to the row argmax
 * `[H, e]`; the maximal similarity is then one dot product per evicted row in JavaScript
 * (cheaper than a second pass over the block in the graph). Evicted rows go through in chunks sized so the `[H, e, N]` similarity block
 * stays under `maxBlockBytes`; only the small max/argmax outputs come back to JavaScript
 * (onnxruntime-node copies every fetched output).
 *
 * Same result as the engine's JavaScript matcher up to float32 rounding of the similarities
 * (first index on ties, as `ArgMax` with `select_last_index = 0`). Improved mode only: reference
 * mode keeps the exact JavaScript matcher so the golden indices stay bit-for-bit.
 */
import * as ort from 'onnxruntime-node';
import type { KvLayer } from '../kv/layout.js';
import type { Matcher, Matches } from '../kv/similarity.js';
import { normaliseKeys } from '../kv/similarity.js';
import { buildModel } from '../model/graph/onnxBuilder.js';

export interface OrtMatcherOptions {
  /** onnxruntime intra-op threads (default 2: unset, it ran ~3x slower on 2-core machines). */
  threads?: number;
  /**
   * Upper bound of the similarity block one run materialises. Default 16 MiB: onnxruntime's arena
   * keeps the largest block for the process's life. Measured (8-layer Qwen2-0.5B-shaped bench model,
   * LOOK-M 20% of 8K tokens): 64 MiB -> turn peak 1,479 MiB, 0.68 s; 16 MiB -> 1,369 MiB, 0.74-0.90 s.
   */
  maxBlockBytes?: number;
}

function similarityModel(): Uint8Array {
  return buildModel({
    name: 'kv_match',
    inputs: [
      { name: 'evicted', type: 'float32', dims: ['heads', 'rows', 'dim'] },
      { name: 'kept', type: 'float32', dims: ['heads', 'kept', 'dim'] },
    ],
    outputs: [{ name: 'target', type: 'int64', dims: ['heads', 'rows'] }],
    nodes: [
      { op: 'Transpose', inputs: ['kept'], outputs: ['kept_t'], attributes: { perm: [0, 2, 1] } },
      { op: 'MatMul', inputs: ['evicted', 'kept_t'], outputs: ['sim'] },
      { op: 'ArgMax', inputs: ['sim'], outputs: ['target'], attributes: { axis: 2, keepdims: 0, select_last_index: 0 } },
    ],
  });
}

export async function createOrtMatcher(options: OrtMatcherOptions = {}): Promise<Matcher & { release(): Promise<void> }> {
  const threads = options.threads ?? 2;
  const session = await ort.InferenceSession.create(similarityModel(), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const maxBlockBytes = options.maxBlockBytes ?? 16 * 1024 * 1024;

  const match = async (layer: KvLayer, kept: Int32Array, N: number, evicted: Int32Array, E: number): Promise<Matches> => {
    const { numHeads: H, headDim: D } = layer;
    const keptRows = new Float32Array(H * N * D);
    const evictedRows = new Float32Array(H * E * D);
    for (let h = 0; h < H; h++) {
      normaliseKeys(layer, h, kept.subarray(h * N, (h + 1) * N), keptRows.subarray(h * N * D, (h + 1) * N * D));
      normaliseKeys(layer, h, evicted.subarray(h * E, (h + 1) * E), evictedRows.subarray(h * E * D, (h + 1) * E * D));
    }
    const target = new Int32Array(H * E);
    const keptTensor = new ort.Tensor('float32', keptRows, [H, N, D]);
    const chunk = Math.max(1, Math.min(E, Math.floor(maxBlockBytes / (4 * H * Math.max(1, N)))));
    const block = new Float32Array(H * chunk * D);
    for (let start = 0; start < E; start += chunk) {
      const rows = Math.min(chunk, E - start);
      const view = block.subarray(0, H * rows * D);
      for (let h = 0; h < H; h++) view.set(evictedRows.subarray((h * E + start) * D, (h * E + start + rows) * D), h * rows * D);
      const out = await session.run({ evicted: new ort.Tensor('float32', view, [H, rows, D]), kept: keptTensor });
      const args = out.target.data as BigInt64Array;
      for (let h = 0; h < H; h++) for (let r = 0; r < rows; r++) target[h * E + start + r] = Number(args[h * rows + r]);
    }
    const maxSim = new Float64Array(H * E);
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < E; i++) {
        const e = (h * E + i) * D;
        const k = (h * N + target[h * E + i]) * D;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += evictedRows[e + d] * keptRows[k + d];
        maxSim[h * E + i] = dot;
      }
    }
    return { target, maxSim };
  };
  return Object.assign(match, { release: () => session.release() });
}
