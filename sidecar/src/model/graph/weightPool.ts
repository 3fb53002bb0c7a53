/**
 * The weights one graph uses, as float32 (or 4-bit packed) in one external-data buffer.
 *
 * onnxruntime refuses external-data paths for models created from bytes unless the bytes are
 * handed over (`externalData: [{ path, data }]`), and writing a `.onnx` file into the user's
 * model folder is not ours to do. So each tensor is read from its `.safetensors` file once,
 * widened to float32 when stored as F16/BF16, and placed in the buffer the session receives.
 */
import type { Checkpoint } from '../checkpoint.js';
import { externalBytes, type ExternalTensor } from './onnxBuilder.js';
import { quantize4, type Quantized } from './quantize.js';

/** Offsets of the external buffer are kept aligned (float32 views, and onnxruntime's own copies). */
const ALIGN = 64;

type PoolEntry = { canonical: string; shape: number[]; external: ExternalTensor } & ({ kind: 'float32' } | { kind: 'q4-data' | 'q4-scales'; blockSize: number });

export class WeightPool {
  private readonly tensors: PoolEntry[] = [];
  private size = 0;

  constructor(
    private readonly checkpoint: Checkpoint,
    readonly location = 'weights.bin',
  ) {}

  /** Registers a checkpoint tensor (checked against `shape`) and returns its initializer name. */
  use(canonical: string, shape: number[]): string {
    const existing = this.tensors.find((t) => t.canonical === canonical && t.kind === 'float32');
    if (existing) return existing.external.name;
    this.checkpoint.entry(canonical, shape); // fail early, naming the tensor, before any byte is read
    return this.push({ canonical, shape, kind: 'float32', external: { name: canonical, dims: shape, location: this.location, offset: 0 } });
  }

  /**
   * Registers a `[N, K]` linear weight to be quantized to 4 bits at load (see quantize.ts); returns
   * the initializer names of its packed codes and its scales, the inputs of `MatMulNBits`.
   */
  useQuantized(canonical: string, [N, K]: [number, number], blockSize = 32): { data: string; scales: string } {
    this.checkpoint.entry(canonical, [N, K]);
    const blocks = Math.ceil(K / blockSize);
    const entry = (kind: 'q4-data' | 'q4-scales', suffix: string, dims: number[], type: 'uint8' | 'float32') =>
      this.push({ canonical, shape: [N, K], kind, blockSize, external: { name: `${canonical}${suffix}`, dims, location: this.location, offset: 0, type } });
    return { data: entry('q4-data', '.q4', [N, blocks, blockSize / 2], 'uint8'), scales: entry('q4-scales', '.q4_scales', [N * blocks], 'float32') };
  }

  private push(entry: PoolEntry): string {
    entry.external.offset = Math.ceil(this.size / ALIGN) * ALIGN;
    this.tensors.push(entry);
    this.size = entry.external.offset + externalBytes(entry.external);
    return entry.external.name;
  }

  get initializers(): ExternalTensor[] {
    return this.tensors.map((t) => t.external);
  }

  /** Reads every registered tensor into one buffer, for `InferenceSession.create(..., { externalData })`. */
  load(): { path: string; data: Uint8Array } {
    const buffer = new ArrayBuffer(Math.ceil(this.size / ALIGN) * ALIGN);
    const quantized = new Map<string, Quantized>();
    for (const t of this.tensors) {
      const at = t.external.offset;
      if (t.kind === 'float32') {
        new Float32Array(buffer, at, t.external.dims.reduce((a, b) => a * b, 1)).set(this.checkpoint.float32(t.canonical, t.shape));
        continue;
      }
      let q = quantized.get(t.canonical);
      if (!q) {
        q = quantize4(this.checkpoint.float32(t.canonical, t.shape), t.shape[0], t.shape[1], t.blockSize);
        quantized.set(t.canonical, q);
      }
      if (t.kind === 'q4-data') new Uint8Array(buffer, at, q.data.length).set(q.data);
      else new Float32Array(buffer, at, q.scales.length).set(q.scales);
    }
    return { path: this.location, data: new Uint8Array(buffer) };
  }
}
