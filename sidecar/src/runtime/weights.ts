/** onnxruntime sessions for the graphs the model code builds, with their weights handed over. */
import * as ort from 'onnxruntime-node';
import type { WeightPool } from '../model/graph/weightPool.js';

export interface SessionOptions {
  /** onnxruntime intra-op threads; unset, onnxruntime ran several times slower on 2 cores. */
  threads: number;
}

/**
 * A session for a graph built against `weights`: the pool is read into its external-data buffer
 * here, once, after every tensor the graph uses has been registered.
 */
export function createSession(model: Uint8Array, weights: WeightPool, options: SessionOptions): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(model, {
    externalData: [weights.load()],
    intraOpNumThreads: options.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
}
