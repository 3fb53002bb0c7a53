/**
 * The weights one graph uses, as float32 (or 4-/8-bit packed) in one external-data buffer.
 *
 * onnxruntime refuses external-data paths for models created from bytes unless the bytes are
 * handed over (`externalData: [{ path, data }]`), and writing a `.onnx` file into the user's
 * model folder is not ours to do. So each tensor is read from its `.safetensors` file once,
 * straight into its place in the buffer the session receives.
 *
 * Precision: the CPU execution provider computes in float32 here, so F16/BF16 weights are widened
 * to float32 as they are read (one float32 copy, never two). A device that runs half precision
 * would instead register the tensor with its stored type (an `ExternalTensor` type of float16)
 * and read its bytes unwidened: the per-tensor read in `load` is the one place that decides.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Checkpoint } from '../checkpoint.js';
import { externalBytes, type ExternalTensor } from './onnxBuilder.js';
import { blockBytes, quantizeBlocks, type QuantizedBits } from './quantize.js';

/** Offsets of the external buffer are kept aligned (float32 views, and onnxruntime's own copies). */
const ALIGN = 64;
/** Floats of a linear weight read at a time for block quantization (4 MiB). */
const QUANTIZE_SLICE_ELEMENTS = 1 << 20;

type PoolEntry = { canonical: string; shape: number[]; external: ExternalTensor } & ({ kind: 'float32' } | { kind: 'q-data' | 'q-scales'; bits: QuantizedBits; blockSize: number });

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
   * Registers a `[N, K]` linear weight to be quantized to `bits` (4 or 8) at load (see
   * quantize.ts); returns the initializer names of its packed codes and its scales, the inputs of
   * `MatMulNBits`.
   */
  useQuantized(canonical: string, [N, K]: [number, number], blockSize = 32, bits: QuantizedBits = 4): { data: string; scales: string } {
    this.checkpoint.entry(canonical, [N, K]);
    const blocks = Math.ceil(K / blockSize);
    const entry = (kind: 'q-data' | 'q-scales', suffix: string, dims: number[], type: 'uint8' | 'float32') =>
      this.push({ canonical, shape: [N, K], kind, bits, blockSize, external: { name: `${canonical}${suffix}`, dims, location: this.location, offset: 0, type } });
    return { data: entry('q-data', `.q${bits}`, [N, blocks, blockBytes(bits, blockSize)], 'uint8'), scales: entry('q-scales', `.q${bits}_scales`, [N * blocks], 'float32') };
  }

  private push(entry: PoolEntry): string {
    entry.external.offset = Math.ceil(this.size / ALIGN) * ALIGN;
    this.tensors.push(entry);
    this.size = entry.external.offset + externalBytes(entry.external);
    return entry.external.name;
  }

  /**
   * Where onnxruntime can read every tensor of the pool itself: when each is float32 as stored
   * (an F32 tensor of a `.safetensors` file, not widened, not quantized) and the files resolve
   * (symlinks followed: the Hugging Face cache links into a blobs folder) into one folder, the
   * folder and each tensor's place in its file; otherwise null (the buffer of `load` it is).
   * onnxruntime takes external data either all from memory or all from files, never mixed.
   */
  fileRanges(): { folder: string; ranges: Map<string, { location: string; offset: number }> } | null {
    const ranges = new Map<string, { location: string; offset: number }>();
    let folder: string | null = null;
    for (const t of this.tensors) {
      if (t.kind !== 'float32') return null;
      const entry = this.checkpoint.entry(t.canonical, t.shape);
      if (entry.dtype !== 'F32') return null;
      const file = realpathSync(entry.file);
      if (folder !== null && dirname(file) !== folder) return null;
      folder = dirname(file);
      ranges.set(t.external.name, { location: basename(file), offset: entry.offset });
    }
    return folder === null ? null : { folder, ranges };
  }

  /** The checkpoint files the registered tensors are read from. */
  sourceFiles(): string[] {
    return [...new Set(this.tensors.map((t) => realpathSync(this.checkpoint.entry(t.canonical, t.shape).file)))];
  }

  get initializers(): ExternalTensor[] {
    return this.tensors.map((t) => t.external);
  }

  /** Bytes of the buffer `load` returns: the weights of the graph, as the session receives them. */
  get bytes(): number {
    return Math.ceil(this.size / ALIGN) * ALIGN;
  }

  /**
   * Reads every registered tensor into one buffer, for `InferenceSession.create(..., { externalData })`.
   * Each tensor is read from its file straight into its place (F16/BF16 widened in slices), and a
   * quantized weight is read and quantized a bounded slice of rows at a time: beyond the buffer
   * itself, load holds a few MiB (QUANTIZE_SLICE_ELEMENTS floats, their codes, the half slice).
   * onnxruntime copies the buffer into its own tensors (measured: overwriting it after the
   * session is created changes nothing), so callers hand it over and keep no reference.
   */
  load(): { path: string; data: Uint8Array } {
    const buffer = new ArrayBuffer(this.bytes);
    const scales = new Map(this.tensors.flatMap((t) => (t.kind === 'q-scales' ? [[`${t.canonical}/${t.bits}`, t.external.offset] as const] : [])));
    for (const t of this.tensors) {
      const at = t.external.offset;
      if (t.kind === 'float32') this.checkpoint.readFloat32Into(t.canonical, t.shape, new Float32Array(buffer, at, t.external.dims.reduce((a, b) => a * b, 1)));
      else if (t.kind === 'q-data') this.quantizeInto(buffer, t.canonical, t.shape as [number, number], t.bits, t.blockSize, at, scales.get(`${t.canonical}/${t.bits}`)!);
    }
    return { path: this.location, data: new Uint8Array(buffer) };
  }

  /** Quantizes `[N, K]` rows a slice at a time into the packed codes at `dataAt` and the scales at `scalesAt` (rows are independent). */
  private quantizeInto(buffer: ArrayBuffer, canonical: string, [N, K]: [number, number], bits: QuantizedBits, blockSize: number, dataAt: number, scalesAt: number): void {
    const blocks = Math.ceil(K / blockSize);
    const rowBytes = blocks * blockBytes(bits, blockSize);
    const rowsPerSlice = Math.max(1, Math.floor(QUANTIZE_SLICE_ELEMENTS / K));
    const slice = new Float32Array(Math.min(N, rowsPerSlice) * K);
    for (let row = 0; row < N; row += rowsPerSlice) {
      const rows = Math.min(rowsPerSlice, N - row);
      const weights = slice.subarray(0, rows * K);
      this.checkpoint.readFloat32Into(canonical, [N, K], weights, row * K);
      const q = quantizeBlocks(weights, rows, K, bits, blockSize);
      new Uint8Array(buffer, dataAt + row * rowBytes, q.data.length).set(q.data);
      new Float32Array(buffer, scalesAt + row * blocks * 4, q.scales.length).set(q.scales);
    }
  }
}
