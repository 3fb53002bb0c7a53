/** onnxruntime sessions for the graphs the model code builds, with their weights handed over. */
import * as ort from 'onnxruntime-node';
import type { WeightPool } from '../model/graph/weightPool.js';

export interface SessionOptions {
  /** onnxruntime intra-op threads; unset, onnxruntime ran several times slower on 2 cores. */
  threads: number;
}

/**
 * A session for a graph built against `weights`: the pool is read into its external-data buffer
 * here, once, after every tensor the graph uses has been registered. onnxruntime copies external
 * data given in memory into its own tensors (measured with onnxruntime-node 1.30: overwriting the
 * buffer after creation leaves the results unchanged), so no reference to the buffer outlives
 * this call: the one float32 copy the session keeps is onnxruntime's. The peak of a load is
 * therefore our buffer plus onnxruntime's copy, while `create` runs.
 */
export function createSession(model: Uint8Array, weights: WeightPool, options: SessionOptions): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, {
    externalData: [weights.load()],
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
}
