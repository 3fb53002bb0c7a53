/**
 * The weights one onnxruntime session needs, as float32 in one external-data buffer.
 *
 * onnxruntime refuses external-data paths for models created from bytes unless the bytes are
 * handed over (`externalData: [{ path, data }]`), and writing a `.onnx` file into the user's
 * model folder is not ours to do. So each tensor is read from its `.safetensors` file once,
 * widened to float32 when stored as F16/BF16, and placed in the buffer the session receives.
 */
import * as ort from 'onnxruntime-node';
import type { Checkpoint } from '../model/checkpoint.js';
import type { ExternalTensor } from './onnxBuilder.js';

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

export class WeightPool {
  private readonly tensors: { canonical: string; shape: number[]; external: ExternalTensor }[] = [];
  private size = 0;

  constructor(
    private readonly checkpoint: Checkpoint,
    readonly location = 'weights.bin',
  ) {}

  /** Registers a checkpoint tensor (checked against `shape`) and returns its initializer name. */
  use(canonical: string, shape: number[]): string {
    const existing = this.tensors.find((t) => t.canonical === canonical);
    if (existing) return existing.external.name;
    this.checkpoint.entry(canonical, shape); // fail early, naming the tensor, before any byte is read
    return this.push(canonical, shape);
  }

  private push(canonical: string, shape: number[]): string {
    const external = { name: canonical, dims: shape, location: this.location, offset: this.size };
    this.tensors.push({ canonical, shape, external });
    this.size += 4 * shape.reduce((a, b) => a * b, 1);
    return canonical;
  }

  get initializers(): ExternalTensor[] {
    return this.tensors.map((t) => t.external);
  }

  /** Reads every registered tensor into one buffer, for `InferenceSession.create(..., { externalData })`. */
  load(): { path: string; data: Uint8Array } {
    const buffer = new Float32Array(this.size / 4);
    for (const t of this.tensors) buffer.set(this.checkpoint.float32(t.canonical, t.shape), t.external.offset / 4);
    return { path: this.location, data: new Uint8Array(buffer.buffer) };
  }
}
